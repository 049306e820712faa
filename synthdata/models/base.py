"""The one interface every generator family implements, and the registry that builds a family by name.

The training loop (synthdata/training/loop.py) and the sampler (synthdata/training/sample.py) only ever talk to
`GenerativeModel`; they never branch on the family. A family decides for itself how many optimizers it has and
how one training step uses them (a GAN alternates D and G, a VAE and a diffusion model take one step), and hands
each loss to the loop's `update` callback, which owns backward, AMP loss scaling, DDP gradient averaging and the
optimizer step. That split keeps the model files about models and the loop about training.

Images inside the models are float tensors (B, C, H, W) in [-1, 1]. The network pieces the families share are in
`blocks.py`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, ClassVar

import pydantic
import torch
from torch import nn

# update(optimizer_name, loss): backward, (all-reduce), optimizer step, zero grads. Provided by the loop.
Update = Callable[[str, torch.Tensor], None]
# autocast(): a context manager for the forward pass (bf16/fp16 autocast on CUDA, a no-op on CPU).
Autocast = Callable[[], AbstractContextManager]


class GenerativeModel(nn.Module, abc.ABC):
    """A class-conditional image generator together with whatever it needs to train (critic, encoder, ...)."""

    family: ClassVar[str]
    default_lr: ClassVar[float]
    config_class: ClassVar[type[pydantic.BaseModel]]  # the family's hyperparameters (GANConfig, ...)
    cfg: pydantic.BaseModel  # this model's instance of config_class, set by the family's __init__

    def __init__(self, shape: tuple[int, int, int], num_classes: int) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)  # (C, H, W)
        self.num_classes = int(num_classes)

    @abc.abstractmethod
    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; `train_step` refers to them by name when it calls `update`."""

    @abc.abstractmethod
    def train_step(self, x: torch.Tensor, y: torch.Tensor, update: Update, autocast: Autocast) -> dict[str, torch.Tensor]:
        """One optimisation step on a batch (x in [-1, 1], y int64). Returns detached scalar losses for logging."""

    @abc.abstractmethod
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Images in [-1, 1] for `labels`, drawing all randomness from `generator` (so a seed fixes the output)."""

    def sampling_module(self) -> nn.Module:
        """The part whose weights `sample` uses; the loop keeps an EMA of exactly this part."""
        return self

    @property
    def uses_conv(self) -> bool:
        return any(isinstance(m, nn.Conv2d) for m in self.modules())


# family name -> class; filled by the @register decorator in each family's module (imported by models/__init__).
MODEL_FAMILIES: dict[str, type[GenerativeModel]] = {}


def register(cls: type[GenerativeModel]) -> type[GenerativeModel]:
    MODEL_FAMILIES[cls.family] = cls
    return cls


def build_model(model_args: dict[str, Any]) -> GenerativeModel:
    """A freshly initialised model from its constructor arguments as plain data (nanoGPT's `model_args`):
    {"family": str, "shape": [C, H, W], "num_classes": int, "config": the family config as a JSON-able dict}.

    Checkpoints store exactly this dict, so a model is rebuilt from its checkpoint alone.
    """
    cls = MODEL_FAMILIES[model_args["family"]]
    config = cls.config_class.model_validate(model_args["config"])
    return cls(tuple(model_args["shape"]), int(model_args["num_classes"]), config)
