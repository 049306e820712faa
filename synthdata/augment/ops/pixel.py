"""Row-local pixel ops: blur, noise and erasing, each computed from the row alone.

Per-pixel noise is not drawn row by row: the row draws an offset into a fixed bank of standard normals (made
once from a constant seed), and the row's noise is the window of the bank at that offset. It is still a pure
function of the row's seed, costs one strided copy on the device, and is i.i.d. within a row. Two rows'
windows overlap only if their offsets fall within one image size of each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor

from synthdata.augment.batch import Subset
from synthdata.augment.ops.base import PixelOp, Range, Stage, lerp, log_lerp, register, within

if TYPE_CHECKING:
    from synthdata.augment.batch import Plan, Rows, Step

NOISE_BANK_SEED = 20240611  # changing it changes every noisy row ever produced
_noise_banks: dict[tuple[str, int, int], Tensor] = {}


def noise_bank(numel: int, device: torch.device) -> Tensor:
    """The fixed bank of standard normals for images of `numel` values, extended so any window fits unwrapped."""
    size = max(1 << 20, 1 << (4 * numel - 1).bit_length())  # >= 4 images long keeps row overlaps rare
    key = (str(device), size, numel)
    if key not in _noise_banks:
        bank = torch.randn(size, generator=torch.Generator().manual_seed(NOISE_BANK_SEED))
        # The extension is cached with the bank, so that no batch has to copy the bank to build it.
        _noise_banks[key] = torch.cat([bank, bank[:numel]]).to(device)
    return _noise_banks[key]


def _blur_rows(x: Tensor, weights: Tensor) -> Tensor:
    """Separable blur of each row with its own 1-D kernel (rows, k), as shifted multiply-adds.

    Elementwise on purpose: a batched convolution may pick a different algorithm for a different batch
    size and change the last bit, which would break "same row, same output in any batch". Padding both axes
    at once (one copy) and blurring the padded rows first is exact: padding rows only repeats whole rows.
    """
    k = weights.shape[1]
    r = k // 2
    h, w = x.shape[-2:]
    # Reflect padding needs the pad to be smaller than the image; tiny images fall back to replicate.
    mode = "reflect" if r < min(h, w) else "replicate"
    wts = weights.to(x.dtype).view(-1, k, 1, 1, 1).unbind(1)
    padded = F.pad(x, (r, r, r, r), mode=mode)
    rows = padded[..., 0:w] * wts[0]
    for j in range(1, k):
        rows.addcmul_(padded[..., j : j + w], wts[j])
    out = rows[..., 0:h, :] * wts[0]
    for j in range(1, k):
        out.addcmul_(rows[..., j : j + h, :], wts[j])
    return out


@register
class GaussianBlur(PixelOp):
    """Blur with an odd square kernel and a sigma drawn from `sigma`."""

    stage: ClassVar[Stage] = "pixel"
    draws: ClassVar[int] = 2  # gate, sigma

    op: Literal["gaussian_blur"] = "gaussian_blur"
    kernel_size: Annotated[int, Field(ge=1)] = 3
    sigma: Range = (0.1, 1.0)

    @model_validator(mode="after")
    def _check(self) -> GaussianBlur:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.sigma[0] <= 0:
            raise ValueError(f"sigma must be positive, got {list(self.sigma)}")
        return self

    def step(self, plan: Plan, u: np.ndarray) -> Step | None:
        """Blur the rows that drew it, each with its own sigma."""
        fired = u[:, 0] < self.p
        sigma = lerp(u[:, 1], self.sigma)
        idx = np.flatnonzero(fired)
        plan.record(self.op, idx, {"sigma": sigma}, kernel_size=self.kernel_size)
        if idx.size == 0:
            return None
        taps = np.arange(self.kernel_size) - self.kernel_size // 2
        kernel = np.exp(-(taps[None, :] ** 2) / (2.0 * sigma[idx, None] ** 2))
        kernel = plan.to_dev(kernel / kernel.sum(axis=1, keepdims=True))
        sub = Subset(fired)

        def blur(rows: Rows) -> None:
            local, part = sub.within(rows.lo, rows.hi)
            if local.size:
                rows.put(local, _blur_rows(rows.get(local), kernel[part]))

        return blur


@register
class GaussianNoise(PixelOp):
    """Add zero-mean Gaussian noise whose std is drawn from `std` (intensities are in [0, 1])."""

    stage: ClassVar[Stage] = "pixel"
    draws: ClassVar[int] = 3  # gate, std, bank offset

    op: Literal["gaussian_noise"] = "gaussian_noise"
    std: Range = (0.0, 0.05)

    @model_validator(mode="after")
    def _check(self) -> GaussianNoise:
        if self.std[0] < 0:
            raise ValueError(f"std must be non-negative, got {list(self.std)}")
        return self

    def step(self, plan: Plan, u: np.ndarray) -> Step | None:
        """Add the row's window of the noise bank, scaled by its drawn std."""
        fired = u[:, 0] < self.p
        std = lerp(u[:, 1], self.std)
        c, h, w = plan.c, plan.h, plan.w
        bank = noise_bank(c * h * w, plan.device)
        offsets = np.floor(u[:, 2] * (bank.numel() - c * h * w)).astype(np.int64)
        idx = np.flatnonzero(fired)
        plan.record(self.op, idx, {"std": std, "bank_offset": offsets})
        if idx.size == 0:
            return None
        # unfold gives every window of the bank as a strided view; index_select copies just the rows' windows.
        windows = bank.unfold(0, c * h * w, 1)
        std_dev = plan.to_dev(std[idx]).view(-1, 1, 1, 1)
        offsets_dev = torch.from_numpy(offsets[idx]).to(plan.device)
        sub = Subset(fired)

        def noise(rows: Rows) -> None:
            local, part = sub.within(rows.lo, rows.hi)
            if local.size:
                win = windows.index_select(0, offsets_dev[part]).view(-1, c, h, w).to(rows.x.dtype)
                rows.put(local, torch.addcmul(rows.get(local), win, std_dev[part]).clamp_(0.0, 1.0))

        return noise


@register
class RandomErasing(PixelOp):
    """Fill a rectangle covering `area` of the image, with aspect (h/w) from `aspect`, with `fill`.

    `cutout` is accepted as another name for the same op.
    """

    stage: ClassVar[Stage] = "pixel"
    draws: ClassVar[int] = 5  # gate, area, log-aspect, x, y

    op: Literal["random_erasing", "cutout"] = "random_erasing"
    area: Range = (0.02, 0.2)
    aspect: Range = (0.3, 3.3)
    fill: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0

    @model_validator(mode="after")
    def _check(self) -> RandomErasing:
        within(self.area, 0.0, 1.0, "area")
        if self.aspect[0] <= 0:
            raise ValueError(f"aspect must be positive, got {list(self.aspect)}")
        return self

    def step(self, plan: Plan, u: np.ndarray) -> Step | None:
        """Fill one box per row (area and aspect drawn) with the fill value."""
        fired = u[:, 0] < self.p
        h, w = plan.h, plan.w
        area = lerp(u[:, 1], self.area) * (h * w)
        aspect = log_lerp(u[:, 2], self.aspect)  # height / width
        bh = np.where(fired, np.clip(np.round(np.sqrt(area * aspect)), 0, h), 0).astype(np.int64)
        bw = np.where(fired, np.clip(np.round(np.sqrt(area / aspect)), 0, w), 0).astype(np.int64)
        y0 = np.floor(u[:, 3] * (h - bh + 1)).astype(np.int64)
        x0 = np.floor(u[:, 4] * (w - bw + 1)).astype(np.int64)
        box = np.stack([y0, x0, bh, bw], 1)
        idx = np.flatnonzero(fired)
        plan.record(self.op, idx, {"box_yxhw": box}, fill=self.fill)
        if idx.size == 0:
            return None
        in_y, in_x = plan.box_masks(box)
        fill = self.fill

        def erase(rows: Rows) -> None:
            lo, hi = rows.lo, rows.hi
            if not fired[lo:hi].any():
                return
            # Arithmetic with the 0/1 row and column masks instead of a boolean masked_fill_, which is slower on
            # the CPU; exact either way: x * (1 - 1) = 0 and x - x = 0 inside the box, x * 1 = x and x - 0 = x
            # outside.
            x, iy, ix = rows.writable(), in_y[lo:hi], in_x[lo:hi]
            if x.shape[1] == 1:
                x.addcmul_(x * iy, ix, value=-1.0)  # two passes over the pixels
            else:
                x.mul_(1.0 - iy * ix)  # the mask is built once for all channels
            if fill:
                x.addcmul_(iy, ix, value=fill)  # 0 + fill inside, x + 0 outside

        return erase
