"""Differentiable augmentation for data-efficient GANs (Zhao et al. 2020, "DiffAugment").

With a few hundred or thousand images the discriminator memorises the real set and its gradients stop being
useful to the generator. Augmenting what D sees helps only if the SAME random transforms are applied to real and
fake batches and the transforms are differentiable, so G is trained through them and never learns to produce
augmented-looking images. Every op here is plain tensor arithmetic / indexing, hence differentiable w.r.t. x.

All randomness comes from torch's global RNG, which the training loop seeds and checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    if x.size(1) == 1:  # a grayscale image has no saturation to change
        return x
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ratio*size pixels; the uncovered border is filled with -1 (black)."""
    b, _, h, w = x.shape
    sh, sw = max(1, int(h * ratio + 0.5)), max(1, int(w * ratio + 0.5))
    ty = torch.randint(-sh, sh + 1, (b, 1, 1), device=x.device)
    tx = torch.randint(-sw, sw + 1, (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(h, device=x.device), torch.arange(w, device=x.device), indexing="ij")
    # Index into a 1-pixel padded copy: clamping to the pad ring is what fills the uncovered border.
    gy = (gy[None] + ty + 1).clamp(0, h + 1)
    gx = (gx[None] + tx + 1).clamp(0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1], value=-1.0)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, gy, gx].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero (mid-grey in [-1, 1]) a random ratio*size square in each image."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    oy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    ox = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    gy, gx = torch.meshgrid(torch.arange(ch, device=x.device), torch.arange(cw, device=x.device), indexing="ij")
    gy = (gy[None] + oy - ch // 2).clamp(0, h - 1)
    gx = (gx[None] + ox - cw // 2).clamp(0, w - 1)
    mask = torch.ones(b, h, w, dtype=x.dtype, device=x.device)
    mask[torch.arange(b, device=x.device)[:, None, None], gy, gx] = 0
    return x * mask[:, None]


POLICIES = {
    "color": (brightness, saturation, contrast),
    "translation": (translation,),
    "cutout": (cutout,),
}


def diff_augment(x: torch.Tensor, policy: str) -> torch.Tensor:
    """Apply a comma-separated policy such as "color,translation,cutout" ("" = identity)."""
    for name in filter(None, (p.strip() for p in policy.split(","))):
        for fn in POLICIES[name]:
            x = fn(x)
    return x
