"""Load a finished (or mid-run) checkpoint and draw class-conditional samples from its EMA generator.

Needs only `synthdata.models` and the checkpoint file: the network is rebuilt from the checkpoint's `model_args`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthdata.models import GenerativeModel, build_model
from synthdata.training.checkpoint import checkpoint_model_args, load_checkpoint
from synthdata.training.tensors import to_uint8


class LoadedGenerator:
    def __init__(self, model: GenerativeModel, model_args: dict[str, Any], input_rank: int, device: torch.device) -> None:
        self.model = model.eval().requires_grad_(False)
        self.model_args = model_args  # what build_model rebuilt the network from
        self.family: str = model.family
        self.config = model.cfg  # the family's hyperparameters (GANConfig, VAEConfig or DiffusionConfig)
        self.num_classes: int = model.num_classes
        self.shape: tuple[int, int, int] = model.shape  # (C, H, W)
        self.input_rank = input_rank
        self.device = device

    def sample(self, labels: np.ndarray, seed: int, batch_size: int = 1024) -> np.ndarray:
        """uint8 images for `labels`: (N, H, W, C), or (N, H, W) if trained on (N, H, W) input.

        Deterministic given (seed, batch_size, device): one generator seeded once feeds all batches in order.
        """
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise ValueError(f"labels must lie in [0, {self.num_classes})")
        gen = torch.Generator(self.device).manual_seed(int(seed))
        chunks = []
        for start in range(0, len(labels), batch_size):
            y = torch.from_numpy(labels[start : start + batch_size]).to(self.device)
            chunks.append(to_uint8(self.model.sample(y, gen), self.input_rank))
        c, h, w = self.shape
        empty_shape = (0, h, w) if self.input_rank == 3 else (0, h, w, c)
        return np.concatenate(chunks) if chunks else np.zeros(empty_shape, np.uint8)


def load_generator(checkpoint_path: Path, device: str = "cpu") -> LoadedGenerator:
    ckpt = load_checkpoint(checkpoint_path, map_location=device)
    model_args = checkpoint_model_args(ckpt)
    model = build_model(model_args)
    model.sampling_module().load_state_dict(ckpt["ema"])  # the EMA weights are the ones worth sampling from
    return LoadedGenerator(model.to(device), model_args, int(ckpt["input_rank"]), torch.device(device))
