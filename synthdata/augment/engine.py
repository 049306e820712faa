"""Seeded, batched application of an `AugmentPolicy`.

Two phases keep this both reproducible and fast:

1. Sampling (CPU). Each row gets its own `torch.Generator` seeded from a stable hash of
   (policy fingerprint, seed, parent_id) and draws every uniform it will ever need in one `torch.rand` call.
   A row's draws therefore depend on nothing else in the batch: not its position, not the batch size.
   The uniforms are then turned into op parameters with vectorised NumPy over the whole batch (NumPy, not
   torch, because these arrays are tiny and torch's per-op overhead and threading would dominate).
2. Applying (the images' device, batched). Every op runs once over the batch with per-row parameter tensors.
   Rows where an op was not drawn get identity parameters (factor 1, empty box, ...) that leave them
   bit-exact, or are left out of the op's row subset. Consecutive geometric ops (flips, rotate, affine,
   resized crop) are composed into one 3x3 matrix per row, so each run of them resamples the image once;
   brightness/contrast/saturation/hue are fused into one affine colour map per row. The apply path uses only
   row-independent tensor ops (no batched convolution, whose algorithm may change with the batch size), so a
   row's output is bit-identical in any batch on the CPU.

Per-pixel noise is not drawn row by row: the row's generator draws an offset into a fixed bank of standard
normals (made once from a constant seed), and the row's noise is the window of the bank at that offset. It is
still a pure function of the row's seed, costs one strided copy on the device, and is i.i.d. within a row.
Two rows' windows overlap only if their offsets fall within one image size of each other.

Mixup and cutmix need a second image. A row picks its partner with its own generator from the *sorted*
parent_ids of the other rows in the batch, so the choice does not depend on row order; the partner's
parent_id and lambda are recorded. Reproducing such a row needs the partner's image (augmented up to that op,
which is itself reproducible from the partner's parent_id). The row's own image always keeps at least half
the weight (lambda >= 0.5), so its parent_id remains the honest provenance. In a batch of one there is no
partner and the op is skipped.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from synthdata.augment.policy import (
    Affine,
    AugmentPolicy,
    ColorJitter,
    Cutmix,
    GaussianBlur,
    GaussianNoise,
    HFlip,
    Mixup,
    RandomErasing,
    RandomResizedCrop,
    Rotate,
    VFlip,
)

# How many uniforms each op consumes per row. The first of each block decides whether the op fires; the
# count is fixed per op type (drawn even when the op does not fire) so that the layout depends only on the policy.
DRAWS: dict[type, int] = {
    HFlip: 1,
    VFlip: 1,
    Rotate: 2,  # gate, angle
    Affine: 6,  # gate, tx, ty, scale, shear x, shear y
    RandomResizedCrop: 5,  # gate, area, log-ratio, x, y
    ColorJitter: 5,  # gate, brightness, contrast, saturation, hue
    GaussianBlur: 2,  # gate, sigma
    GaussianNoise: 3,  # gate, std, bank offset
    RandomErasing: 5,  # gate, area, log-aspect, x, y
    Mixup: 3,  # gate, partner, lambda
    Cutmix: 5,  # gate, partner, lambda, x, y
}
GEOMETRIC = (HFlip, VFlip, Rotate, Affine, RandomResizedCrop)

NOISE_BANK_SEED = 20240611  # changing it changes every noisy row ever produced
_noise_banks: dict[tuple[str, int], Tensor] = {}


@dataclass
class AugmentResult:
    """Augmented images (N, C, H, W) in [0, 1], their soft labels (N, num_classes), and one record per row.

    records[i] = {"parent_id": str, "ops": [{"op": name, "params": {...}}, ...]} lists, in order, the ops
    actually applied to row i and the parameters drawn for it; everything in it is JSON-serialisable.
    """

    images: Tensor
    soft_labels: Tensor
    records: list[dict[str, Any]]


def row_seed(fingerprint: str, seed: int, parent_id: str) -> int:
    """The 63-bit generator seed of one row: a stable hash, unlike Python's salted `hash()`."""
    digest = hashlib.blake2b(f"{fingerprint}|{seed}|{parent_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def draw_uniforms(policy: AugmentPolicy, seed: int, parent_ids: Sequence[str]) -> np.ndarray:
    """All uniforms of every row, (N, K) float64 in [0, 1); row i depends only on (policy, seed, parent_ids[i])."""
    k = sum(DRAWS[type(op)] for op in policy.ops)
    if k == 0 or not parent_ids:
        return np.zeros((len(parent_ids), k))
    # Hashing the shared prefix once and copying the hasher per row gives row_seed's value, a bit cheaper.
    prefix = hashlib.blake2b(f"{policy.fingerprint()}|{seed}|".encode(), digest_size=8)
    gen = torch.Generator()  # re-seeded per row: creating one per row would cost more than the draws
    rows = []
    for pid in parent_ids:
        h = prefix.copy()
        h.update(pid.encode())
        gen.manual_seed(int.from_bytes(h.digest(), "little") >> 1)
        rows.append(torch.rand(k, generator=gen, dtype=torch.float64))  # rand(out=row view) is 5x slower
    return torch.stack(rows).numpy()


def noise_bank(numel: int, device: torch.device) -> Tensor:
    """The fixed bank of standard normals for images of `numel` values, extended so any window fits unwrapped."""
    size = max(1 << 20, 1 << (4 * numel - 1).bit_length())  # >= 4 images long keeps row overlaps rare
    key = (str(device), size)
    if key not in _noise_banks:
        bank = torch.randn(size, generator=torch.Generator().manual_seed(NOISE_BANK_SEED))
        _noise_banks[key] = bank.to(device)
    bank = _noise_banks[key]
    return torch.cat([bank, bank[:numel]])


def _lerp(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Map uniforms in [0, 1) onto [lo, hi]."""
    lo, hi = bounds
    return lo + u * (hi - lo)


def _log_lerp(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Map uniforms onto [lo, hi] evenly in log space, so that ratio r and 1/r are equally likely."""
    return np.exp(_lerp(u, (math.log(bounds[0]), math.log(bounds[1]))))


def _beta_half(u: np.ndarray, alpha: float) -> np.ndarray:
    """Beta(alpha, alpha) by inverse CDF of the row's uniform, folded onto [0.5, 1] so the row keeps the majority."""
    from scipy.special import betaincinv  # only mixup/cutmix need it

    lam = betaincinv(alpha, alpha, u)
    return np.maximum(lam, 1.0 - lam)


def _linear_about(
    center: tuple[float, float], a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray
) -> np.ndarray:
    """Per-row 3x3 matrices applying [[a, b], [c, d]] about `center` (pixel-index coordinates)."""
    cx, cy = center
    m = np.zeros((a.shape[0], 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = a, b, c, d, 1.0
    m[:, 0, 2] = cx - a * cx - b * cy
    m[:, 1, 2] = cy - c * cx - d * cy
    return m


class _Ctx:
    """Per-call state shared by the op handlers: the batch, its shape and the growing records."""

    def __init__(self, images: Tensor, soft: Tensor, parent_ids: Sequence[str], policy: AugmentPolicy) -> None:
        # One copy up front lets every op work in place without touching the caller's tensor.
        self.x = images.clone()
        self.soft = soft
        self.parent_ids = list(parent_ids)
        self.n, self.c, self.h, self.w = images.shape
        self.center = ((self.w - 1) / 2, (self.h - 1) / 2)
        self.device = images.device
        self.policy = policy
        self.records: list[dict[str, Any]] = [{"parent_id": pid, "ops": []} for pid in self.parent_ids]
        # Partner choice ranks rows by parent_id so that it ignores row order; ties keep a stable order.
        self.sorted_rows = np.argsort(np.array(self.parent_ids, dtype=object), kind="stable").astype(np.int64)
        self.rank = np.empty(self.n, dtype=np.int64)
        self.rank[self.sorted_rows] = np.arange(self.n)

    def record(self, name: str, fired: np.ndarray, params: Callable[[int], dict[str, Any]]) -> None:
        """Append `name` with `params(i)` to the record of every row i where the op fired."""
        records = self.records
        for i in np.flatnonzero(fired).tolist():
            records[i]["ops"].append({"op": name, "params": params(i)})

    def to_dev(self, a: np.ndarray, shape: tuple[int, ...] = (-1, 1, 1, 1)) -> Tensor:
        """A CPU parameter array as a tensor on the batch's device, in the images' dtype, reshaped."""
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=self.device, dtype=self.x.dtype).view(shape)

    def rows(self, fired: np.ndarray) -> tuple[np.ndarray, Tensor]:
        """Indices of the rows where an op fired, on the CPU and on the device."""
        idx = np.flatnonzero(fired)
        return idx, torch.from_numpy(idx).to(self.device)

    def update_rows(self, rows_dev: Tensor, fn: Callable[[Tensor], Tensor], clamp: bool = False) -> None:
        """Replace rows `rows_dev` of the batch by `fn(those rows)`; the other rows stay bit-identical.

        `clamp` only for ops that can leave [0, 1]; convex ones (warps, blurs) cannot.
        """
        out = fn(self.x.index_select(0, rows_dev))
        if clamp:
            out = out.clamp_(0.0, 1.0)
        self.x.index_copy_(0, rows_dev, out.to(self.x.dtype))


# ---------------------------------------------------------------------------------------------------------
# Geometric ops: each returns per-row 3x3 forward matrices (source pixel index -> output pixel index),
# identity where the op did not fire, and records what it drew.


def _geo_flip(ctx: _Ctx, op: HFlip | VFlip, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror about the centre column (hflip) or row (vflip)."""
    fired = u[:, 0] < op.p
    sign, one, zero = np.where(fired, -1.0, 1.0), np.ones(ctx.n), np.zeros(ctx.n)
    if isinstance(op, HFlip):
        m = _linear_about(ctx.center, sign, zero, zero, one)
    else:
        m = _linear_about(ctx.center, one, zero, zero, sign)
    ctx.record(op.op, fired, lambda i: {})
    return m, fired


def _geo_rotate(ctx: _Ctx, op: Rotate, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the centre by an angle drawn from `degrees`."""
    fired = u[:, 0] < op.p
    deg = np.where(fired, _lerp(u[:, 1], op.degrees), 0.0)
    cos, sin = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    # Image y points down, so this matrix turns the picture counter-clockwise for positive angles (as PIL does).
    m = _linear_about(ctx.center, cos, sin, -sin, cos)
    degs = deg.tolist()
    ctx.record(op.op, fired, lambda i: {"degrees": degs[i]})
    return m, fired


def _geo_affine(ctx: _Ctx, op: Affine, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale and shear about the centre, then translate by fractions of the size."""
    fired = u[:, 0] < op.p
    tx = np.where(fired, _lerp(u[:, 1], (-op.translate, op.translate)), 0.0)
    ty = np.where(fired, _lerp(u[:, 2], (-op.translate, op.translate)), 0.0)
    scale = np.where(fired, _lerp(u[:, 3], op.scale), 1.0)
    shx = np.where(fired, _lerp(u[:, 4], op.shear), 0.0)
    shy = np.where(fired, _lerp(u[:, 5], op.shear), 0.0)
    kx, ky = np.tan(np.deg2rad(shx)), np.tan(np.deg2rad(shy))
    m = _linear_about(ctx.center, scale, scale * kx, scale * ky, scale)
    m[:, 0, 2] += tx * ctx.w
    m[:, 1, 2] += ty * ctx.h
    t_l, s_l, x_l, y_l = np.stack([tx, ty], 1).tolist(), scale.tolist(), shx.tolist(), shy.tolist()
    ctx.record(op.op, fired, lambda i: {"translate": t_l[i], "scale": s_l[i], "shear": [x_l[i], y_l[i]]})
    return m, fired


def _geo_resized_crop(ctx: _Ctx, op: RandomResizedCrop, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map a random box (area fraction `scale`, aspect `ratio`) onto the whole output."""
    fired = u[:, 0] < op.p
    area = _lerp(u[:, 1], op.scale) * (ctx.h * ctx.w)
    ratio = _log_lerp(u[:, 2], op.ratio)
    # Clamp instead of torchvision's rejection loop: a fixed number of draws per row keeps sampling vectorised.
    bw = np.where(fired, np.minimum(np.sqrt(area * ratio), ctx.w), float(ctx.w))
    bh = np.where(fired, np.minimum(np.sqrt(area / ratio), ctx.h), float(ctx.h))
    x0, y0 = u[:, 3] * (ctx.w - bw), u[:, 4] * (ctx.h - bh)
    # Box edges (continuous coords, pixel i spans [i, i+1]) map onto the output's edges.
    sx, sy = ctx.w / bw, ctx.h / bh
    m = np.zeros((ctx.n, 3, 3))
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = sx, sy, 1.0
    m[:, 0, 2] = (0.5 - x0) * sx - 0.5
    m[:, 1, 2] = (0.5 - y0) * sy - 0.5
    box = np.stack([x0, y0, bw, bh], 1).tolist()
    ctx.record(op.op, fired, lambda i: {"box_xywh": box[i]})
    return m, fired


_GEO_HANDLERS: dict[type, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    HFlip: _geo_flip,
    VFlip: _geo_flip,
    Rotate: _geo_rotate,
    Affine: _geo_affine,
    RandomResizedCrop: _geo_resized_crop,
}


def _sampling_theta(forward: np.ndarray, h: int, w: int) -> np.ndarray:
    """`affine_grid` thetas (N, 2, 3): the inverse warp (output -> source) in normalised coordinates.

    With align_corners=False, pixel index x sits at normalised (2x + 1) / W - 1 for every size, even W = 1.
    """
    to_norm = np.array([[2.0 / w, 0.0, 1.0 / w - 1.0], [0.0, 2.0 / h, 1.0 / h - 1.0], [0.0, 0.0, 1.0]])
    from_norm = np.linalg.inv(to_norm)
    return (to_norm @ np.linalg.inv(forward) @ from_norm)[:, :2, :]


def _affine_grid(theta: Tensor, h: int, w: int) -> Tensor:
    """`F.affine_grid(theta, align_corners=False)` as an outer sum of a column and a row term: 20-30x faster on CPU."""
    xs = (2 * torch.arange(w, device=theta.device, dtype=theta.dtype) + 1) / w - 1
    ys = (2 * torch.arange(h, device=theta.device, dtype=theta.dtype) + 1) / h - 1
    along_x = theta[:, :, 0:1] * xs + theta[:, :, 2:3]  # (N, 2, W)
    along_y = theta[:, :, 1:2] * ys  # (N, 2, H)
    grid = along_x.transpose(1, 2).unsqueeze(1) + along_y.transpose(1, 2).unsqueeze(2)  # (N, H, W, 2)
    return grid.contiguous()  # the broadcast sum comes out permuted; grid_sample reads contiguous grids faster


def _apply_warp(ctx: _Ctx, forward: np.ndarray, fired: np.ndarray) -> None:
    """Resample, once, only the rows that some geometric op of the run touched."""
    idx, rows_dev = ctx.rows(fired)
    if idx.size == 0:
        return
    theta = torch.from_numpy(_sampling_theta(forward[idx], ctx.h, ctx.w)).to(ctx.device, torch.float32)
    grid = _affine_grid(theta, ctx.h, ctx.w)
    ctx.update_rows(
        rows_dev,
        lambda x: F.grid_sample(
            x.float(), grid, mode="bilinear", padding_mode=ctx.policy.padding_mode, align_corners=False
        ),
    )


# ---------------------------------------------------------------------------------------------------------
# Pixel ops: each samples its parameters from its block of uniforms, records them, and applies itself.


_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, as PIL's convert("L") uses
# In YIQ, hue is the angle in the IQ plane, so a hue shift is a rotation there, which is linear in RGB.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)


def _hue_matrices(turns: np.ndarray) -> np.ndarray:
    """Per-row RGB matrices rotating hue by `turns` of a full circle about the gray axis (0 -> exactly I)."""
    ang = turns * (2 * math.pi)
    rot = np.zeros((turns.shape[0], 3, 3))
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = np.cos(ang), np.sin(ang), -np.sin(ang), np.cos(ang)
    m = _YIQ_INV @ rot @ _YIQ
    return np.where((turns != 0)[:, None, None], m, np.eye(3))  # the round trip through YIQ is not exactly I


def _color_jitter(ctx: _Ctx, op: ColorJitter, u: np.ndarray) -> None:
    """Brightness, contrast, saturation and hue, in that order, fused into one affine colour map per row.

    Every stage is linear in the pixels, so the row's whole jitter is out = A x + T mean(x), with A and T
    (C x C) composed on the CPU; the batch then costs one pass. Unlike chaining torchvision's ops, it clamps
    once at the end rather than after every stage.
    """
    fired = u[:, 0] < op.p
    n, c = ctx.n, ctx.c
    rgb = c == 3
    eye = np.eye(c)
    to_gray = np.ones((c, 1)) @ (_LUMA[None, :] if rgb else np.ones((1, 1)))  # x -> its luma in every channel
    a = np.broadcast_to(eye, (n, c, c)).copy()
    t = np.zeros((n, c, c))
    drawn: dict[str, list[float]] = {}

    def factor(name: str, col: int, amount: float) -> np.ndarray:
        # Factor 1 where the op did not fire keeps A = I and T = 0 exactly, so such rows are untouched.
        f = np.where(fired, _lerp(u[:, col], (max(0.0, 1.0 - amount), 1.0 + amount)), 1.0)
        drawn[name] = f.tolist()
        return f[:, None, None]

    if op.brightness > 0:
        a = a * factor("brightness", 1, op.brightness)
    if op.contrast > 0:
        k = factor("contrast", 2, op.contrast)
        t = k * t + (1.0 - k) * (to_gray @ (a + t))  # blend towards the current mean gray, itself linear in mean(x)
        a = k * a
    if rgb and op.saturation > 0:
        s = factor("saturation", 3, op.saturation)
        m = s * eye + (1.0 - s) * to_gray
        a, t = m @ a, m @ t
    if rgb and op.hue > 0:
        hue = np.where(fired, _lerp(u[:, 4], (-op.hue, op.hue)), 0.0)
        drawn["hue"] = hue.tolist()
        m = _hue_matrices(hue)
        a, t = m @ a, m @ t

    x = ctx.x
    flat = x.view(n, c, -1)
    offset = torch.zeros(n, c, 1, device=ctx.device, dtype=x.dtype)
    if op.contrast > 0:
        offset = torch.bmm(ctx.to_dev(t, (n, c, c)), flat.mean(dim=2, keepdim=True))
    if c == 1:
        out = torch.addcmul(offset.view(n, 1, 1, 1), x, ctx.to_dev(a))
    else:
        out = torch.baddbmm(offset, ctx.to_dev(a, (n, c, c)), flat).view_as(x)
    ctx.x = out.clamp_(0.0, 1.0)
    ctx.record(op.op, fired, lambda i: {k: v[i] for k, v in drawn.items()})


def _blur_rows(x: Tensor, weights: Tensor) -> Tensor:
    """Separable blur of each row with its own 1-D kernel (rows, k), as shifted multiply-adds.

    Elementwise on purpose: a batched convolution may pick a different algorithm for a different batch
    size and change the last bit, which would break "same row, same output in any batch".
    """
    k = weights.shape[1]
    r = k // 2
    h, w = x.shape[-2:]
    # Reflect padding needs the pad to be smaller than the image; tiny images fall back to replicate.
    mode = "reflect" if r < min(h, w) else "replicate"
    wts = weights.to(x.dtype).view(-1, k, 1, 1, 1).unbind(1)
    padded = F.pad(x, (r, r, 0, 0), mode=mode)
    out = padded[..., 0:w] * wts[0]
    for j in range(1, k):
        out.addcmul_(padded[..., j : j + w], wts[j])
    padded = F.pad(out, (0, 0, r, r), mode=mode)
    out = padded[..., 0:h, :] * wts[0]
    for j in range(1, k):
        out.addcmul_(padded[..., j : j + h, :], wts[j])
    return out


def _gaussian_blur(ctx: _Ctx, op: GaussianBlur, u: np.ndarray) -> None:
    """Blur the rows that drew it, each with its own sigma."""
    fired = u[:, 0] < op.p
    sigma = _lerp(u[:, 1], op.sigma)
    idx, rows_dev = ctx.rows(fired)
    if idx.size:
        taps = np.arange(op.kernel_size) - op.kernel_size // 2
        kernel = np.exp(-(taps[None, :] ** 2) / (2.0 * sigma[idx, None] ** 2))
        kernel /= kernel.sum(axis=1, keepdims=True)
        ctx.update_rows(rows_dev, lambda x: _blur_rows(x, ctx.to_dev(kernel, kernel.shape)))
    sig_l = sigma.tolist()
    ctx.record(op.op, fired, lambda i: {"kernel_size": op.kernel_size, "sigma": sig_l[i]})


def _gaussian_noise(ctx: _Ctx, op: GaussianNoise, u: np.ndarray) -> None:
    """Add the row's window of the noise bank, scaled by its drawn std."""
    fired = u[:, 0] < op.p
    std = _lerp(u[:, 1], op.std)
    numel = ctx.c * ctx.h * ctx.w
    bank = noise_bank(numel, ctx.device)
    offsets = np.floor(u[:, 2] * (bank.numel() - numel)).astype(np.int64)
    idx, rows_dev = ctx.rows(fired)
    if idx.size:
        # unfold gives every window of the bank as a strided view; indexing copies just the rows' windows.
        windows = bank.unfold(0, numel, 1)[torch.from_numpy(offsets[idx]).to(ctx.device)]
        noise = windows.view(-1, ctx.c, ctx.h, ctx.w).to(ctx.x.dtype)
        ctx.update_rows(rows_dev, lambda x: x.addcmul_(noise, ctx.to_dev(std[idx])), clamp=True)
    std_l, off_l = std.tolist(), offsets.tolist()
    ctx.record(op.op, fired, lambda i: {"std": std_l[i], "bank_offset": off_l[i]})


def _box_mask(ctx: _Ctx, box_yxhw: np.ndarray) -> Tensor:
    """(N, 1, H, W) bool mask of each row's integer box (y0, x0, h, w); a zero-sized box is an empty mask."""
    b = torch.from_numpy(box_yxhw).to(ctx.device)
    y0, x0 = b[:, 0].view(-1, 1, 1, 1), b[:, 1].view(-1, 1, 1, 1)
    y1, x1 = y0 + b[:, 2].view(-1, 1, 1, 1), x0 + b[:, 3].view(-1, 1, 1, 1)
    ys = torch.arange(ctx.h, device=ctx.device).view(1, 1, -1, 1)
    xs = torch.arange(ctx.w, device=ctx.device).view(1, 1, 1, -1)
    return ((ys >= y0) & (ys < y1)) & ((xs >= x0) & (xs < x1))


def _random_erasing(ctx: _Ctx, op: RandomErasing, u: np.ndarray) -> None:
    """Fill one box per row (area and aspect drawn) with the fill value."""
    fired = u[:, 0] < op.p
    area = _lerp(u[:, 1], op.area) * (ctx.h * ctx.w)
    aspect = _log_lerp(u[:, 2], op.aspect)  # height / width
    bh = np.where(fired, np.clip(np.round(np.sqrt(area * aspect)), 0, ctx.h), 0).astype(np.int64)
    bw = np.where(fired, np.clip(np.round(np.sqrt(area / aspect)), 0, ctx.w), 0).astype(np.int64)
    y0 = np.floor(u[:, 3] * (ctx.h - bh + 1)).astype(np.int64)
    x0 = np.floor(u[:, 4] * (ctx.w - bw + 1)).astype(np.int64)
    box = np.stack([y0, x0, bh, bw], 1)
    ctx.x.masked_fill_(_box_mask(ctx, box), op.fill)
    box_l = box.tolist()
    ctx.record(op.op, fired, lambda i: {"box_yxhw": box_l[i], "fill": op.fill})


def _partners(ctx: _Ctx, u: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """Each firing row's partner: a uniform pick among the other rows ranked by parent_id; itself elsewhere."""
    pick = np.minimum(np.floor(u * (ctx.n - 1)).astype(np.int64), max(ctx.n - 2, 0))
    pick = pick + (pick >= ctx.rank)  # skip the row's own rank
    partner = ctx.sorted_rows[np.minimum(pick, ctx.n - 1)]
    return np.where(fired, partner, np.arange(ctx.n))


def _mix_labels(ctx: _Ctx, partner_dev: Tensor, lam: np.ndarray) -> None:
    """Soft labels follow the pixels: lambda of the row's own, 1 - lambda of its partner's."""
    lam_y = torch.from_numpy(lam).to(device=ctx.device, dtype=ctx.soft.dtype).view(-1, 1)
    ctx.soft = ctx.soft * lam_y + ctx.soft[partner_dev] * (1.0 - lam_y)


def _mixup(ctx: _Ctx, op: Mixup, u: np.ndarray) -> None:
    """Blend each firing row with its partner: lambda * own + (1 - lambda) * partner."""
    fired = (u[:, 0] < op.p) & (ctx.n > 1)
    partner = _partners(ctx, u[:, 1], fired)
    lam = np.where(fired, _beta_half(u[:, 2], op.alpha), 1.0)
    partner_dev = torch.from_numpy(partner).to(ctx.device)
    idx, rows_dev = ctx.rows(fired)
    if idx.size:
        other = ctx.x.index_select(0, partner_dev[rows_dev])  # gathered before any row is overwritten
        lam_x = ctx.to_dev(lam[idx])
        ctx.update_rows(rows_dev, lambda x: torch.lerp(other, x, lam_x))
    _mix_labels(ctx, partner_dev, lam)
    partner_l, lam_l = partner.tolist(), lam.tolist()
    ctx.record(op.op, fired, lambda i: {"partner_parent_id": ctx.parent_ids[partner_l[i]], "lambda": lam_l[i]})


def _cutmix(ctx: _Ctx, op: Cutmix, u: np.ndarray) -> None:
    """Paste a box of the partner into each firing row; the box covers 1 - lambda of it."""
    fired = (u[:, 0] < op.p) & (ctx.n > 1)
    partner = _partners(ctx, u[:, 1], fired)
    cut = np.sqrt(1.0 - _beta_half(u[:, 2], op.alpha))
    ch, cw = np.round(cut * ctx.h).astype(np.int64), np.round(cut * ctx.w).astype(np.int64)
    cy, cx = np.floor(u[:, 3] * ctx.h).astype(np.int64), np.floor(u[:, 4] * ctx.w).astype(np.int64)
    y0, x0 = np.clip(cy - ch // 2, 0, ctx.h), np.clip(cx - cw // 2, 0, ctx.w)
    y1, x1 = np.clip(cy + ch - ch // 2, 0, ctx.h), np.clip(cx + cw - cw // 2, 0, ctx.w)
    box = np.stack([y0, x0, np.where(fired, y1 - y0, 0), np.where(fired, x1 - x0, 0)], 1)
    # The box is clipped at the border, so lambda is recomputed from the area actually pasted.
    lam = 1.0 - (box[:, 2] * box[:, 3]) / (ctx.h * ctx.w)
    partner_dev = torch.from_numpy(partner).to(ctx.device)
    idx, rows_dev = ctx.rows(fired)
    if idx.size:
        other = ctx.x.index_select(0, partner_dev[rows_dev])  # gathered before any row is overwritten
        mask = _box_mask(ctx, box[idx])
        ctx.update_rows(rows_dev, lambda x: torch.where(mask, other, x))
    _mix_labels(ctx, partner_dev, lam)
    partner_l, lam_l, box_l = partner.tolist(), lam.tolist(), box.tolist()
    ctx.record(
        op.op,
        fired,
        lambda i: {"partner_parent_id": ctx.parent_ids[partner_l[i]], "lambda": lam_l[i], "box_yxhw": box_l[i]},
    )


_PIXEL_HANDLERS: dict[type, Callable[..., None]] = {
    ColorJitter: _color_jitter,
    GaussianBlur: _gaussian_blur,
    GaussianNoise: _gaussian_noise,
    RandomErasing: _random_erasing,
    Mixup: _mixup,
    Cutmix: _cutmix,
}


def _soft_labels(labels: Tensor, num_classes: int, n: int, device: torch.device) -> Tensor:
    """One-hot float labels from class ids (N,), or already-soft labels (N, num_classes) passed through."""
    if labels.shape[0] != n:
        raise ValueError(f"labels has {labels.shape[0]} rows but images has {n}")
    if labels.dim() == 2 and labels.is_floating_point():
        if labels.shape[1] != num_classes:
            raise ValueError(f"soft labels have {labels.shape[1]} columns, expected num_classes={num_classes}")
        return labels.to(device=device, dtype=torch.float32)
    if labels.dim() != 1 or labels.is_floating_point():
        raise ValueError("labels must be integer class ids (N,) or float soft labels (N, num_classes)")
    if n and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(labels.min())}, {int(labels.max())}]")
    return F.one_hot(labels.long(), num_classes).to(device=device, dtype=torch.float32)


def _check_images(images: Tensor, parent_ids: Sequence[str]) -> None:
    """Fail early, with the reason, on inputs the ops would otherwise mangle silently."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (N, C, H, W) with C in (1, 3), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"images must be float in [0, 1], got dtype {images.dtype}")
    if len(parent_ids) != images.shape[0]:
        raise ValueError(f"got {len(parent_ids)} parent_ids for {images.shape[0]} images")


def augment_batch(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    parent_ids: Sequence[str],
    policy: AugmentPolicy,
    seed: int,
) -> AugmentResult:
    """Augment a batch with `policy`; row i is reproducible from (policy, seed, parent_ids[i]) alone.

    `images` are float (N, C, H, W) in [0, 1] with C = 1 or 3, on any device (the work runs there);
    `labels` are class ids (N,) or soft labels (N, num_classes). Ops run in the policy's order. Mixup and
    cutmix rows also depend on their recorded partner's image (see the module docstring).
    """
    _check_images(images, parent_ids)
    ctx = _Ctx(images, _soft_labels(labels, num_classes, images.shape[0], images.device), parent_ids, policy)
    if ctx.n == 0:
        return AugmentResult(ctx.x, ctx.soft, ctx.records)
    uniforms = draw_uniforms(policy, seed, ctx.parent_ids)

    col = 0
    run: tuple[np.ndarray, np.ndarray] | None = None  # (composed matrices, rows touched) of a geometric run
    for op in policy.ops:
        u = uniforms[:, col : col + DRAWS[type(op)]]
        col += DRAWS[type(op)]
        if isinstance(op, GEOMETRIC):
            m, fired = _GEO_HANDLERS[type(op)](ctx, op, u)
            run = (m, fired) if run is None else (m @ run[0], run[1] | fired)  # later ops act on earlier output
            continue
        if run is not None:
            _apply_warp(ctx, *run)
            run = None
        _PIXEL_HANDLERS[type(op)](ctx, op, u)
    if run is not None:
        _apply_warp(ctx, *run)
    return AugmentResult(ctx.x, ctx.soft, ctx.records)
