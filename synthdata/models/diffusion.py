"""Small class-conditional DDPM (Ho et al. 2020) with epsilon prediction, a cosine noise schedule (Nichol &
Dhariwal 2021), deterministic DDIM sampling in a few dozen steps (Song et al. 2021) and classifier-free guidance
(Ho & Salimans 2022): labels are dropped to a "null" class with probability p_uncond during training, and at
sampling time eps = eps_uncond + guidance * (eps_cond - eps_uncond). guidance = 1 is plain conditional sampling.

The denoiser is a U-Net for real images and a residual MLP for tiny ones (8x8), chosen by `arch`.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import pydantic
import torch
import torch.nn.functional as F
from torch import nn

from synthdata.models.base import Autocast, GenerativeModel, Update, register
from synthdata.models.blocks import Arch, ResBlock, groups_for, level_channels, resolution_plan, use_mlp, zero_init


class DiffusionConfig(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid")

    timesteps: int = 1000
    schedule: Literal["cosine", "linear"] = "cosine"
    sampling_steps: int = 10  # DDIM steps at sampling time (quality against steps: docs/training.md)
    guidance: float = 2.0
    p_uncond: float = 0.1
    width: int = 64  # U-Net base channels / a quarter of the MLP width
    arch: Arch = "auto"
    cond_dim: int = 128
    # "edm": the net's output is preconditioned as in Karras et al. 2022 (a noise-level-dependent skip from the
    # input), so at high noise eps ~ x_t comes for free. Without it an MLP denoiser narrower than the image
    # (784 pixels through 256 units at 28x28) cannot pass x_t through and samples stay noise. "eps": the plain
    # epsilon-prediction of Ho et al.; checkpoints of format 1 were trained that way.
    precondition: Literal["edm", "eps"] = "edm"
    sigma_data: float = 0.5  # the data's std in [-1, 1] units, as EDM assumes


def alpha_bar_schedule(timesteps: int, kind: str) -> torch.Tensor:
    """alpha_bar[t] = prod_{s<=t} (1 - beta_s) for t = 0..T-1 (float64 for an exact, device-independent table)."""
    if kind == "linear":
        betas = torch.linspace(1e-4, 0.02, timesteps, dtype=torch.float64)
        return torch.cumprod(1 - betas, 0)
    s = 0.008
    t = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)  # clipping avoids a singular last step
    return torch.cumprod(1 - betas, 0)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=1)


class UNet(nn.Module):
    def __init__(self, shape: tuple[int, int, int], cond_dim: int, width: int) -> None:
        super().__init__()
        c, h, w = shape
        _, levels = resolution_plan(h, w)
        chs = level_channels(width, levels)[::-1]  # largest resolution first
        self.stem = nn.Conv2d(c, chs[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(chs[i], chs[i], cond_dim) for i in range(levels))
        self.downsample = nn.ModuleList(nn.Conv2d(chs[i], chs[i + 1], 3, stride=2, padding=1) for i in range(levels))
        self.mid = nn.ModuleList([ResBlock(chs[-1], chs[-1], cond_dim), ResBlock(chs[-1], chs[-1], cond_dim)])
        self.up = nn.ModuleList(ResBlock(chs[i + 1] + chs[i], chs[i], cond_dim) for i in range(levels))
        self.out = nn.Sequential(nn.GroupNorm(groups_for(chs[0]), chs[0]), nn.SiLU(), nn.Conv2d(chs[0], c, 3, padding=1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, cond)
            skips.append(h)
            h = down(h)
        for block in self.mid:
            h = block(h, cond)
        for i in reversed(range(len(self.up))):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = self.up[i](torch.cat([h, skips[i]], dim=1), cond)
        return self.out(h)


class MLPDenoiser(nn.Module):
    def __init__(self, shape: tuple[int, int, int], cond_dim: int, width: int, depth: int = 3) -> None:
        super().__init__()
        dim = math.prod(shape)
        self.inp = nn.Linear(dim, width)
        self.norms = nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False) for _ in range(depth))
        self.films = nn.ModuleList(zero_init(nn.Linear(cond_dim, 2 * width)) for _ in range(depth))
        self.fc1 = nn.ModuleList(nn.Linear(width, 2 * width) for _ in range(depth))
        self.fc2 = nn.ModuleList(nn.Linear(2 * width, width) for _ in range(depth))
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.inp(x.flatten(1))
        for norm, film, fc1, fc2 in zip(self.norms, self.films, self.fc1, self.fc2):
            scale, shift = film(cond).chunk(2, dim=1)
            h = h + fc2(F.silu(fc1(norm(h) * (1 + scale) + shift)))
        return self.out(h).view_as(x)


@register
class ConditionalDDPM(GenerativeModel):
    family: ClassVar[str] = "diffusion"
    default_lr: ClassVar[float] = 1e-3
    config_class: ClassVar[type[DiffusionConfig]] = DiffusionConfig

    def __init__(self, shape: tuple[int, int, int], num_classes: int, cfg: DiffusionConfig | None = None) -> None:
        super().__init__(shape, num_classes)
        self.cfg = cfg = cfg or DiffusionConfig()
        self.null_class = num_classes  # the extra embedding row used for "no label" (classifier-free guidance)
        self.class_embed = nn.Embedding(num_classes + 1, cfg.cond_dim)
        self.time_mlp = nn.Sequential(nn.Linear(cfg.cond_dim, cfg.cond_dim), nn.SiLU(), nn.Linear(cfg.cond_dim, cfg.cond_dim))
        if use_mlp(cfg.arch, self.shape):
            self.net = MLPDenoiser(self.shape, cfg.cond_dim, 4 * cfg.width)
        else:
            self.net = UNet(self.shape, cfg.cond_dim, cfg.width)
        # A derived table, not state: rebuilt from the config, so it is kept out of state_dict / checkpoints.
        self.register_buffer("alpha_bar", alpha_bar_schedule(cfg.timesteps, cfg.schedule).float(), persistent=False)

    def configure_optimizers(self, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"net": torch.optim.Adam(self.parameters(), lr=lr)}

    def eps(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        cond = F.silu(self.time_mlp(timestep_embedding(t, self.cfg.cond_dim)) + self.class_embed(y))
        if self.cfg.precondition == "eps":
            return self.net(x, cond)
        # EDM's x0 = c_skip x~ + c_out F(c_in x~) with x~ = x_t / sqrt(ab), sigma^2 = (1 - ab) / ab, rewritten for
        # eps = (x~ - x0) / sigma in terms of ab alone (no 1 / sqrt(ab) blow-up at the last timesteps):
        # eps = x_t sqrt(1 - ab) / D - sigma_d sqrt(ab / D) F(x_t / sqrt(D)), D = 1 - ab + ab sigma_d^2.
        ab = self.alpha_bar[t].view(-1, *([1] * (x.dim() - 1)))
        sd = self.cfg.sigma_data
        d = 1 - ab + ab * sd**2
        out = self.net(x / d.sqrt(), cond)
        return x * ((1 - ab).sqrt() / d) - (sd * (ab / d).sqrt()) * out

    def train_step(self, x: torch.Tensor, y: torch.Tensor, update: Update, autocast: Autocast) -> dict[str, torch.Tensor]:
        t = torch.randint(0, self.cfg.timesteps, (len(x),), device=x.device)
        noise = torch.randn_like(x)
        ab = self.alpha_bar[t][:, None, None, None]
        xt = ab.sqrt() * x + (1 - ab).sqrt() * noise
        drop = torch.rand(len(x), device=x.device) < self.cfg.p_uncond
        y_in = torch.where(drop, torch.full_like(y, self.null_class), y)
        with autocast():
            pred = self.eps(xt, t, y_in)
        loss = F.mse_loss(pred.float(), noise)
        update("net", loss)
        return {"loss": loss.detach()}

    def guided_eps(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w = self.cfg.guidance
        if w == 1.0:
            return self.eps(x, t, y).float()
        both = self.eps(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, self.null_class)]))
        cond, uncond = both.float().chunk(2)
        return uncond + w * (cond - uncond)

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Deterministic DDIM (eta = 0): all randomness is the starting noise, drawn from `generator`."""
        n, device = len(labels), labels.device
        steps = torch.linspace(self.cfg.timesteps - 1, 0, self.cfg.sampling_steps, dtype=torch.float64).round().long()
        steps = torch.unique_consecutive(steps).tolist()
        x = torch.randn(n, *self.shape, device=device, generator=generator)
        for i, t in enumerate(steps):
            ab = self.alpha_bar[t]
            ab_prev = self.alpha_bar[steps[i + 1]] if i + 1 < len(steps) else torch.ones((), device=device)
            eps = self.guided_eps(x, torch.full((n,), t, device=device, dtype=torch.long), labels)
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # re-derive eps from the clipped x0 keeps the path in range
            x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return x.clamp(-1, 1)
