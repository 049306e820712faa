"""Network pieces the families share: encoders, decoders, residual blocks, and the plan that sizes them.

Image size and channel count come from the data. Tiny images (8x8 digits) get MLPs: at that size a convolution
has little spatial structure to exploit and an MLP learns them as well for less work. Anything larger gets conv
nets whose depth adapts to the size (see `resolution_plan`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

Arch = Literal["auto", "mlp", "conv"]

# Images with at most this many pixels per channel use MLPs under arch="auto" (8x8 digits: 64; 16x16: 256).
MLP_MAX_PIXELS = 256


# ----------------------------------------------------------------------------------------------------------------
# Shapes


def use_mlp(arch: Arch, shape: tuple[int, int, int]) -> bool:
    if arch == "auto":
        return shape[1] * shape[2] <= MLP_MAX_PIXELS
    return arch == "mlp"


def resolution_plan(height: int, width: int, min_size: int = 4) -> tuple[tuple[int, int], int]:
    """Halve (H, W) while both stay even and >= min_size: returns the base size and the number of halvings.

    64x64 -> (4, 4) after 4 halvings; 28x28 -> (7, 7) after 2; 8x8 -> (4, 4) after 1. A conv generator starts at
    the base size and upsamples that many times; a discriminator / encoder / U-Net mirrors it.
    """
    h, w, n = height, width, 0
    while h % 2 == 0 and w % 2 == 0 and h // 2 >= min_size and w // 2 >= min_size:
        h, w, n = h // 2, w // 2, n + 1
    return (h, w), n


def level_channels(width: int, levels: int, max_mult: int = 4) -> list[int]:
    """Channels per resolution level, smallest resolution first: more channels where the maps are small."""
    return [width * min(2 ** (levels - i), max_mult) for i in range(levels + 1)]


def groups_for(channels: int) -> int:
    for g in (32, 16, 8, 4, 2):
        if channels % g == 0 and channels // g >= 4:
            return g
    return 1


# ----------------------------------------------------------------------------------------------------------------
# Shared blocks


def zero_init(layer: nn.Linear) -> nn.Linear:
    """FiLM layers start as the identity. With default init the condition's scale/shift swamp the features at
    step 0, so a generator's output barely depends on its noise input and training never recovers from it."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class ResBlock(nn.Module):
    """Pre-activation residual conv block whose second norm is modulated (FiLM) by a conditioning vector.

    Used by the GAN generator / VAE decoder (condition = class embedding [+ latent]) and by the diffusion U-Net
    (condition = time + class embedding). GroupNorm rather than BatchNorm: no running statistics, so DDP ranks
    stay bit-identical and the output of one image never depends on the rest of its batch.
    """

    def __init__(self, c_in: int, c_out: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups_for(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups_for(c_out), c_out, affine=False)
        self.film = zero_init(nn.Linear(cond_dim, 2 * c_out))
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        h = self.conv2(F.silu(self.norm2(h) * (1 + scale) + shift))
        return h + self.skip(x)


class ConvDecoder(nn.Module):
    """(latent, condition) -> image: a linear map to the base resolution, then upsample + ResBlock per level."""

    def __init__(self, latent_dim: int, cond_dim: int, shape: tuple[int, int, int], width: int) -> None:
        super().__init__()
        c, h, w = shape
        (self.h0, self.w0), levels = resolution_plan(h, w)
        chs = level_channels(width, levels)
        self.fc = nn.Linear(latent_dim + cond_dim, chs[0] * self.h0 * self.w0)
        self.block0 = ResBlock(chs[0], chs[0], cond_dim)
        self.ups = nn.ModuleList(ResBlock(chs[i], chs[i + 1], cond_dim) for i in range(levels))
        self.out = nn.Sequential(nn.GroupNorm(groups_for(chs[-1]), chs[-1]), nn.SiLU(), nn.Conv2d(chs[-1], c, 3, padding=1))

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([z, cond], dim=1)).view(len(z), -1, self.h0, self.w0)
        h = self.block0(h, cond)
        for block in self.ups:
            h = block(F.interpolate(h, scale_factor=2.0, mode="nearest"), cond)
        return torch.tanh(self.out(h))


class MLPDecoder(nn.Module):
    """(latent, condition) -> image for tiny images: the condition enters at the input and, via FiLM, every layer."""

    def __init__(self, latent_dim: int, cond_dim: int, shape: tuple[int, int, int], width: int) -> None:
        super().__init__()
        self.shape = shape
        self.inp = nn.Linear(latent_dim + cond_dim, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(2))
        # LayerNorm keeps activations at unit scale. Without it PyTorch's default init shrinks the signal layer
        # by layer, the untrained output is ~ its bias, and the generator learns to ignore z (mode collapse).
        self.norms = nn.ModuleList(nn.LayerNorm(width, elementwise_affine=False) for _ in range(3))
        self.films = nn.ModuleList(zero_init(nn.Linear(cond_dim, 2 * width)) for _ in range(2))
        self.out = nn.Linear(width, math.prod(shape))

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.norms[0](self.inp(torch.cat([z, cond], dim=1))), 0.2)
        for lin, norm, film in zip(self.hidden, self.norms[1:], self.films):
            scale, shift = film(cond).chunk(2, dim=1)
            h = F.leaky_relu(norm(lin(h)) * (1 + scale) + shift, 0.2)
        return torch.tanh(self.out(h)).view(len(z), *self.shape)


def minibatch_std(h: torch.Tensor, group: int = 4) -> torch.Tensor:
    """Append the average feature std within groups of `group` samples as one extra feature / channel.

    (Karras et al. 2018.) A discriminator that can see how varied a group of images is punishes a generator that
    collapses onto a few images per class - the typical failure of a conditional GAN on a small data set.
    """
    b = h.shape[0]
    g = min(group, b)
    while b % g:
        g -= 1
    if g < 2:
        return torch.cat([h, torch.zeros_like(h[:, :1])], dim=1)
    grouped = h.float().reshape(b // g, g, *h.shape[1:])
    std = (grouped.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=tuple(range(1, h.dim())))  # (b // g,)
    std = std.to(h.dtype).repeat_interleave(g).view(b, *([1] * (h.dim() - 1)))
    return torch.cat([h, std.expand(b, 1, *h.shape[2:])], dim=1)


class ConvEncoder(nn.Module):
    """Image -> feature vector: conv stem, then (conv, conv, avg-pool) residual blocks down to the base size.

    With `sn=True` every layer is spectrally normalised (the GAN discriminator); without norms or SN it is the
    VAE encoder. No BatchNorm for the same reason as in ResBlock.
    """

    def __init__(self, shape: tuple[int, int, int], width: int, sn: bool = False, mbstd: bool = False) -> None:
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.mbstd = mbstd
        c, h, w = shape
        _, levels = resolution_plan(h, w)
        chs = level_channels(width, levels)[::-1]  # largest resolution first
        self.stem = wrap(nn.Conv2d(c, chs[0], 3, padding=1))
        self.blocks = nn.ModuleList()
        for i in range(levels):
            self.blocks.append(
                nn.ModuleDict(
                    {
                        "conv1": wrap(nn.Conv2d(chs[i], chs[i + 1], 3, padding=1)),
                        "conv2": wrap(nn.Conv2d(chs[i + 1], chs[i + 1], 3, padding=1)),
                        "skip": wrap(nn.Conv2d(chs[i], chs[i + 1], 1)),
                    }
                )
            )
        self.final = wrap(nn.Conv2d(chs[-1] + int(mbstd), chs[-1], 3, padding=1))
        self.out_dim = chs[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for b in self.blocks:
            r = b["conv2"](F.leaky_relu(b["conv1"](F.leaky_relu(h, 0.2)), 0.2))
            h = F.avg_pool2d(r, 2) + b["skip"](F.avg_pool2d(h, 2))
        h = F.leaky_relu(h, 0.2)
        h = self.final(minibatch_std(h) if self.mbstd else h)
        return F.leaky_relu(h, 0.2).sum(dim=(2, 3))  # sum pool: the D output scales with evidence, as in SNGAN


class MLPEncoder(nn.Module):
    def __init__(self, shape: tuple[int, int, int], width: int, sn: bool = False, mbstd: bool = False) -> None:
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.mbstd = mbstd
        self.fc1 = wrap(nn.Linear(math.prod(shape), 2 * width))
        self.fc2 = wrap(nn.Linear(2 * width + int(mbstd), width))
        self.out_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.fc1(x.flatten(1)), 0.2)
        return F.leaky_relu(self.fc2(minibatch_std(h) if self.mbstd else h), 0.2)


def make_decoder(arch: Arch, latent_dim: int, cond_dim: int, shape: tuple[int, int, int], width: int) -> nn.Module:
    cls = MLPDecoder if use_mlp(arch, shape) else ConvDecoder
    return cls(latent_dim, cond_dim, shape, width if cls is ConvDecoder else 4 * width)


def make_encoder(arch: Arch, shape: tuple[int, int, int], width: int, sn: bool = False, mbstd: bool = False) -> nn.Module:
    if use_mlp(arch, shape):
        return MLPEncoder(shape, 2 * width, sn=sn, mbstd=mbstd)
    return ConvEncoder(shape, width, sn=sn, mbstd=mbstd)
