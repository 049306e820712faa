"""Conditional VAE (Kingma & Welling 2014; Sohn et al. 2015): q(z | x, y), p(x | z, y) Gaussian, prior N(0, I).

The decoder is the same network the GAN generator uses, so the families differ in objective, not capacity.
Reconstruction is a Gaussian log-likelihood with a fixed pixel noise `recon_sigma` (in [-1, 1] units): smaller
sigma means sharper reconstructions but a posterior that drifts further from the prior, i.e. worse samples.
"""

from __future__ import annotations

from typing import ClassVar

import pydantic
import torch
from torch import nn

from synthdata.models.base import Autocast, GenerativeModel, Update, register
from synthdata.models.blocks import Arch, make_decoder, make_encoder


class VAEConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    z_dim: int = 32
    embed_dim: int = 64
    width: int = 64
    arch: Arch = "auto"
    recon_sigma: float = 0.2
    beta: float = 1.0  # KL weight (beta-VAE); 1 is the true ELBO


@register
class ConditionalVAE(GenerativeModel):
    family: ClassVar[str] = "vae"
    default_lr: ClassVar[float] = 1e-3
    config_class: ClassVar[type[VAEConfig]] = VAEConfig

    def __init__(self, shape: tuple[int, int, int], num_classes: int, cfg: VAEConfig | None = None) -> None:
        super().__init__(shape, num_classes)
        self.cfg = cfg = cfg or VAEConfig()
        self.embed = nn.Embedding(num_classes, cfg.embed_dim)
        self.encoder = make_encoder(cfg.arch, self.shape, cfg.width)
        self.to_posterior = nn.Linear(self.encoder.out_dim + cfg.embed_dim, 2 * cfg.z_dim)
        self.decoder = make_decoder(cfg.arch, cfg.z_dim, cfg.embed_dim, self.shape, cfg.width)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"vae": torch.optim.Adam(self.parameters(), lr=lr)}

    def train_step(self, x: torch.Tensor, y: torch.Tensor, update: Update, autocast: Autocast) -> dict[str, torch.Tensor]:
        with autocast():
            e = self.embed(y)
            mu, logvar = self.to_posterior(torch.cat([self.encoder(x), e], dim=1)).float().chunk(2, dim=1)
            logvar = logvar.clamp(-12, 8)  # keeps exp() finite in the first steps / under fp16
            z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
            recon = self.decoder(z, e).float()
        # Per-image negative ELBO (up to a constant), computed in fp32 outside autocast.
        rec = ((recon - x.float()) ** 2).flatten(1).sum(1).mean() / (2 * self.cfg.recon_sigma**2)
        kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1).mean()
        loss = rec + self.cfg.beta * kl
        update("vae", loss)
        return {"loss": loss.detach(), "recon": rec.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        z = torch.randn(len(labels), self.cfg.z_dim, device=labels.device, generator=generator)
        return self.decoder(z, self.embed(labels)).float()
