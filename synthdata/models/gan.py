"""Conditional GAN for small data sets: hinge (or non-saturating) loss, spectral-norm projection discriminator
with a minibatch-std feature, DiffAugment on both real and fake batches, FiLM-conditioned generator, and a
mode-seeking term that keeps the generator from ignoring its noise input.

References: Miyato et al. 2018 (spectral norm; projection discriminator), Zhao et al. 2020 (DiffAugment),
Karras et al. 2018 (minibatch std), Mao et al. 2019 (mode seeking).
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from synthdata.models.base import Autocast, GenerativeModel, Update, register
from synthdata.models.blocks import Arch, make_decoder, make_encoder
from synthdata.models.diffaugment import diff_augment


class GANConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    loss: Literal["hinge", "nonsaturating"] = "hinge"
    spectral_norm: bool = True
    diffaugment: str = "color,translation,cutout"  # "" disables; applied identically to real and fake
    z_dim: int = 64
    embed_dim: int = 64
    width: int = 64  # base channels (conv) or a quarter of the hidden width (MLP)
    arch: Arch = "auto"
    minibatch_std: bool = True  # D sees per-group feature spread: counters within-class mode collapse
    # Weight of the mode-seeking term in G's loss; 0 disables. Chosen on the val split of the digits by
    # `python -m benchmarks gan_selection` (docs/training.md): 0.05 and 0.1 tie at val TSTR/TRTR ~0.92 (0.02:
    # 0.91, 0.01: 0.89, 0: 0.79 and collapsed), and more seeds favour 0.05, whose sample spread is also closest
    # to the real digits'.
    mode_seeking: float = 0.05
    d_lr_mult: float = 1.0  # discriminator lr = lr * d_lr_mult
    betas: tuple[float, float] = (0.5, 0.999)


class Generator(nn.Module):
    def __init__(self, shape: tuple[int, int, int], num_classes: int, cfg: GANConfig) -> None:
        super().__init__()
        self.z_dim = cfg.z_dim
        self.embed = nn.Embedding(num_classes, cfg.embed_dim)
        self.net = make_decoder(cfg.arch, cfg.z_dim, cfg.embed_dim, shape, cfg.width)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.net(z, self.embed(y))


class Discriminator(nn.Module):
    """Projection discriminator: D(x, y) = w.phi(x) + embed(y).phi(x) - the class enters as an inner product."""

    def __init__(self, shape: tuple[int, int, int], num_classes: int, cfg: GANConfig) -> None:
        super().__init__()
        wrap = spectral_norm if cfg.spectral_norm else (lambda m: m)
        self.features = make_encoder(cfg.arch, shape, cfg.width, sn=cfg.spectral_norm, mbstd=cfg.minibatch_std)
        self.linear = wrap(nn.Linear(self.features.out_dim, 1))
        self.embed = wrap(nn.Embedding(num_classes, self.features.out_dim))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


@register
class ConditionalGAN(GenerativeModel):
    family: ClassVar[str] = "gan"
    default_lr: ClassVar[float] = 2e-4
    config_class: ClassVar[type[GANConfig]] = GANConfig

    def __init__(self, shape: tuple[int, int, int], num_classes: int, cfg: GANConfig | None = None) -> None:
        super().__init__(shape, num_classes)
        self.cfg = cfg or GANConfig()
        self.G = Generator(self.shape, num_classes, self.cfg)
        self.D = Discriminator(self.shape, num_classes, self.cfg)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        betas = tuple(self.cfg.betas)
        return {
            "d": torch.optim.Adam(self.D.parameters(), lr=lr * self.cfg.d_lr_mult, betas=betas),
            "g": torch.optim.Adam(self.G.parameters(), lr=lr, betas=betas),
        }

    def sampling_module(self) -> nn.Module:
        return self.G

    def d_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.cfg.loss == "hinge":
            return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        return F.softplus(-real).mean() + F.softplus(fake).mean()

    def g_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.mean() if self.cfg.loss == "hinge" else F.softplus(-fake).mean()

    def train_step(self, x: torch.Tensor, y: torch.Tensor, update: Update, autocast: Autocast) -> dict[str, torch.Tensor]:
        policy = self.cfg.diffaugment
        # Discriminator step: G runs without a graph, its weights are not being updated here.
        z = torch.randn(len(x), self.cfg.z_dim, device=x.device)
        with autocast():
            with torch.no_grad():
                fake = self.G(z, y)
            d_real = self.D(diff_augment(x, policy), y)
            d_fake = self.D(diff_augment(fake, policy), y)
            loss_d = self.d_loss(d_real.float(), d_fake.float())
        update("d", loss_d)

        # Generator step through a frozen D (no D weight grads: cheaper, and nothing leaks into D's next step).
        self.D.requires_grad_(False)
        z = torch.randn(len(x), self.cfg.z_dim, device=x.device)
        half = len(x) // 2
        if self.cfg.mode_seeking > 0 and half > 0:  # pair sample i with i + half under the same label
            y = torch.cat([y[:half], y[:half], y[2 * half :]])
        with autocast():
            fake = self.G(z, y)
            loss_g = self.g_loss(self.D(diff_augment(fake, policy), y).float())
        if self.cfg.mode_seeking > 0 and half > 0:
            # Mode seeking (Mao et al. 2019): two noises under one label must give images as far apart as the
            # noises are. Without it the generator ignores z and emits one image per class.
            f, zz = fake.float(), z.float()
            spread = (f[:half] - f[half : 2 * half]).abs().flatten(1).mean(1) / (zz[:half] - zz[half : 2 * half]).abs().mean(1)
            loss_g = loss_g + self.cfg.mode_seeking / (spread.mean() + 1e-5)
        update("g", loss_g)
        self.D.requires_grad_(True)
        return {
            "loss_d": loss_d.detach(),
            "loss_g": loss_g.detach(),
            "d_real": d_real.detach().float().mean(),
            "d_fake": d_fake.detach().float().mean(),
        }

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(len(labels), self.cfg.z_dim, device=labels.device, generator=generator)
        return self.G(z, labels).float()
