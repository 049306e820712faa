"""Seeded, batched application of an `AugmentPolicy`.

Two phases keep this both reproducible and fast:

1. Planning (CPU, vectorised over the batch). A row's key is a stable hash of (policy fingerprint, seed,
   parent_id) (`row_seed`); its uniforms are the first K outputs of the SplitMix64 generator started at that key.
   SplitMix64 is counter-based (output j is a pure function of key + (j + 1) * golden gamma), so every uniform
   of every row comes out of a few NumPy uint64 operations over the whole (N, K) block, with no per-row
   generator to seed. A row's draws therefore depend on nothing else in the batch: not its position, not the
   batch size. The uniforms become op parameters with vectorised NumPy (not torch: these arrays are tiny and
   torch's per-op overhead would dominate), the records are filled in, and each op becomes a step holding its
   parameters as tensors on the images' device.
2. Applying (the images' device). Each step runs over many rows at once with per-row parameters. Rows where an
   op was not drawn get identity parameters (factor 1, empty box, ...) that leave them bit-exact, or are left
   out of the op's row subset. Consecutive geometric ops (flips, rotate, affine, resized crop) are composed
   into one 3x3 matrix per row, so each run of them resamples a row at most once (rows where only flips fired
   are mirrored exactly with `torch.flip`); brightness/contrast/saturation/hue are fused into one affine colour
   map per row. Row-local steps run over chunks of ~2 MiB of rows in turn, so that a chunk's passes hit the
   cache instead of memory; mixup and cutmix run on the whole batch. The apply path uses only row-independent
   tensor ops (no batched convolution, whose algorithm may change with the batch size), so a row's output is
   bit-identical in any batch, at any position, in any chunk, on the CPU.

How draws become parameters is versioned by `SAMPLER_VERSION`, which is hashed into the policy fingerprint:
rows made by the previous sampler (one `torch.Generator` per row) carry a different fingerprint in the warehouse.

Per-pixel noise is not drawn row by row: the row draws an offset into a fixed bank of standard normals (made
once from a constant seed), and the row's noise is the window of the bank at that offset. It is still a pure
function of the row's seed, costs one strided copy on the device, and is i.i.d. within a row. Two rows'
windows overlap only if their offsets fall within one image size of each other.

Mixup and cutmix need a second image. A row picks its partner with its own draws from the *sorted*
parent_ids of the other rows in the batch, so the choice does not depend on row order; the partner's
parent_id and lambda are recorded. Reproducing such a row needs the partner's image (augmented up to that op,
which is itself reproducible from the partner's parent_id). The row's own image always keeps at least half
the weight (lambda >= 0.5), so its parent_id remains the honest provenance. In a batch of one there is no
partner and the op is skipped.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
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
from synthdata.color import LUMA_WEIGHTS

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
_noise_banks: dict[tuple[str, int, int], Tensor] = {}

# SplitMix64 (Steele, Lea & Flood 2014): state advances by the golden gamma, output is the state mixed by two
# multiply-xorshift rounds. Counter-based, so draw j of a row is mix(key + (j + 1) * gamma) for any j.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


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
    """The 64-bit key of one row: a stable hash, unlike Python's salted `hash()`."""
    return int(_row_keys(fingerprint, seed, [parent_id])[0])


def _row_keys(fingerprint: str, seed: int, parent_ids: Sequence[str]) -> np.ndarray:
    """The 64-bit key of every row (uint64): blake2b of "fingerprint|seed|parent_id", little-endian, with the
    shared prefix hashed once (copying a hasher is cheaper)."""
    prefix = hashlib.blake2b(f"{fingerprint}|{seed}|".encode(), digest_size=8)
    digests = []
    for pid in parent_ids:
        h = prefix.copy()
        h.update(pid.encode())
        digests.append(h.digest())
    return np.frombuffer(b"".join(digests), dtype="<u8")


def splitmix64_uniforms(keys: np.ndarray, k: int) -> np.ndarray:
    """(N, k) float64 uniforms in [0, 1): row i is the first k outputs of SplitMix64 seeded with keys[i]."""
    z = keys.astype(np.uint64)[:, None] + np.arange(1, k + 1, dtype=np.uint64) * _GAMMA  # wraps mod 2^64
    z ^= z >> np.uint64(30)
    z *= _MIX1
    z ^= z >> np.uint64(27)
    z *= _MIX2
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))  # the top 53 bits: every double exact


def draw_uniforms(policy: AugmentPolicy, seed: int, parent_ids: Sequence[str]) -> np.ndarray:
    """All uniforms of every row, (N, K) float64 in [0, 1); row i depends only on (policy, seed, parent_ids[i])."""
    k = sum(DRAWS[type(op)] for op in policy.ops)
    if k == 0 or not parent_ids:
        return np.zeros((len(parent_ids), k))
    return splitmix64_uniforms(_row_keys(policy.fingerprint(), seed, parent_ids), k)


def noise_bank(numel: int, device: torch.device) -> Tensor:
    """The fixed bank of standard normals for images of `numel` values, extended so any window fits unwrapped."""
    size = max(1 << 20, 1 << (4 * numel - 1).bit_length())  # >= 4 images long keeps row overlaps rare
    key = (str(device), size, numel)
    if key not in _noise_banks:
        bank = torch.randn(size, generator=torch.Generator().manual_seed(NOISE_BANK_SEED))
        # The extension is cached with the bank: rebuilding it per batch copied megabytes every call.
        _noise_banks[key] = torch.cat([bank, bank[:numel]]).to(device)
    return _noise_banks[key]


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


# A row-local step works on any contiguous range of rows; a mixing step needs the whole batch.
Step = Callable[["_Rows"], None]

# On the CPU, row-local steps run over chunks of about this many bytes of pixels: a chunk's passes then hit the
# cache instead of memory, which matters most for grid_sample's scattered reads (about 2.5x faster at 64x64 RGB,
# 2 MiB measured best of 1-8 MiB on the 2-core box).
CHUNK_BYTES = 2 << 20


class _Plan:
    """Per-call state of the planning phase: the batch's shape, the records, and helpers the op planners share."""

    def __init__(self, images: Tensor, soft: Tensor, parent_ids: list[str], policy: AugmentPolicy) -> None:
        self.n, self.c, self.h, self.w = images.shape
        self.center = ((self.w - 1) / 2, (self.h - 1) / 2)
        self.device = images.device
        self.dtype = images.dtype
        # grid_sample needs float32/float64; other float inputs are warped in float32 and cast back.
        self.warp_dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
        self.soft = soft
        self.parent_ids = parent_ids
        self.policy = policy
        self.ops_of: list[list[dict[str, Any]]] = [[] for _ in range(self.n)]

    @functools.cached_property
    def id_array(self) -> np.ndarray:
        """parent_ids as an object array (sortable, indexable by row arrays)."""
        ids = np.empty(self.n, dtype=object)
        ids[:] = self.parent_ids
        return ids

    @functools.cached_property
    def ranked(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows sorted by parent_id, each row's rank): partner choice uses ranks so that it ignores row order."""
        order = np.argsort(self.id_array, kind="stable").astype(np.int64)
        rank = np.empty(self.n, dtype=np.int64)
        rank[order] = np.arange(self.n)
        return order, rank

    def record(self, name: str, idx: np.ndarray, columns: dict[str, np.ndarray], **const: Any) -> None:
        """Append `name` to the record of each row in `idx`, with that row's value of every column.

        Columns are per-row arrays (a 2-D column gives each row a list); `const` values are the same for all.
        At small image sizes the records are a visible share of the whole call, so each column count gets its
        own loop of dict displays (about half the cost of building each dict from zip).
        """
        if idx.size == 0:
            return
        ops_of, rows = self.ops_of, idx.tolist()
        keys = list(columns)
        cols = [np.asarray(col)[idx].tolist() for col in columns.values()]
        if not keys:
            for i in rows:
                ops_of[i].append({"op": name, "params": {**const}})
        elif len(keys) == 1:
            (k0,) = keys
            for i, a in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {k0: a, **const}})
        elif len(keys) == 2:
            k0, k1 = keys
            for i, a, b in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {k0: a, k1: b, **const}})
        elif len(keys) == 3:
            k0, k1, k2 = keys
            for i, a, b, c in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {k0: a, k1: b, k2: c, **const}})
        elif len(keys) == 4:
            k0, k1, k2, k3 = keys
            for i, a, b, c, d in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {k0: a, k1: b, k2: c, k3: d, **const}})
        else:
            for i, *vals in zip(rows, *cols):
                ops_of[i].append({"op": name, "params": {**dict(zip(keys, vals)), **const}})

    def to_dev(self, a: np.ndarray, dtype: torch.dtype | None = None) -> Tensor:
        """A CPU parameter array as a tensor on the batch's device, in the images' dtype unless told."""
        return torch.as_tensor(a, dtype=dtype or self.dtype, device=self.device)


class _Rows:
    """Rows [lo, hi) of the batch as the steps see them: their pixels, and whether this call may write them.

    The caller's tensor is read, never written: the first in-place write takes a copy (`writable`), and a step
    that computes a new tensor for every row (a warp of all rows, the colour map) needs no copy at all.
    """

    __slots__ = ("dest", "hi", "lo", "owned", "x")

    def __init__(self, x: Tensor, lo: int, hi: int, owned: bool, dest: Tensor | None = None) -> None:
        self.x, self.lo, self.hi, self.owned = x, lo, hi, owned
        self.dest = dest  # where these rows' result must end up, if not simply in `x`

    def output_buffer(self) -> Tensor | None:
        """`dest`, for a step that writes a whole new tensor, when that does not overwrite its own input.

        Writing the result there directly saves copying it there at the end.
        """
        if self.dest is None or self.x.untyped_storage().data_ptr() == self.dest.untyped_storage().data_ptr():
            return None
        return self.dest

    def writable(self) -> Tensor:
        """The rows as a tensor this call may modify in place."""
        if not self.owned:
            self.x, self.owned = self.x.clone(), True
        return self.x

    def replace(self, x: Tensor) -> None:
        """Adopt a freshly computed tensor for all the rows."""
        self.x, self.owned = x, True

    def get(self, local: np.ndarray) -> Tensor:
        """Rows `local` (indices within this range, sorted, unique), or all of them without a copy."""
        if local.size == self.x.shape[0]:
            return self.x
        return self.x.index_select(0, torch.from_numpy(local).to(self.x.device))

    def put(self, local: np.ndarray, out: Tensor) -> None:
        """Rows `local` become `out`; the other rows stay bit-identical."""
        self.put_many([(local, out)])

    def put_many(self, pieces: list[tuple[np.ndarray, Tensor]]) -> None:
        """For each (local, out), rows `local` become `out` (the pieces' rows are disjoint); others stay as they are.

        Not-owned rows are assembled into a new tensor in one go, reading and writing each row once: writing
        the pieces one by one would first copy all the rows and then overwrite those of every piece.
        """
        m, device = self.x.shape[0], self.x.device
        pieces = [(local, out.to(self.x.dtype)) for local, out in pieces if local.size]
        if len(pieces) == 1 and pieces[0][0].size == m:
            self.replace(pieces[0][1])
            return
        if not self.owned:
            keep = np.ones(m, dtype=bool)
            for local, _ in pieces:
                keep[local] = False
            x = torch.empty_like(self.x)
            if keep.any():
                rest = torch.from_numpy(np.flatnonzero(keep)).to(device)
                _copy_rows_(x, rest, self.x.index_select(0, rest))
            self.x, self.owned = x, True
        for local, out in pieces:
            _copy_rows_(self.x, torch.from_numpy(local).to(device), out)


def _copy_rows_(dst: Tensor, rows: Tensor, src: Tensor) -> None:
    """dst[rows] = src, for whole rows of contiguous tensors, bit for bit.

    index_copy_ moves one element at a time, about 3.5x slower than index_select's row copies. Viewing each
    row as 16-byte complex numbers only reinterprets the bytes (nothing is computed on them) and cuts the
    moves by 4, which makes it as fast as index_select.
    """

    def in_words(t: Tensor) -> bool:  # contiguous rows of whole 16-byte words, starting on a word
        size = t.element_size()
        return t.is_contiguous() and (t[0].numel() * size) % 16 == 0 and (t.storage_offset() * size) % 16 == 0

    if src.dtype == dst.dtype and in_words(dst) and in_words(src):
        dst = dst.view(dst.shape[0], -1).view(torch.complex128)
        src = src.view(src.shape[0], -1).view(torch.complex128)
    dst.index_copy_(0, rows, src)


class _Subset:
    """The rows an op fired on; parameters are stored for those rows only, in row order."""

    def __init__(self, fired: np.ndarray) -> None:
        self.fired = fired
        self.before = np.concatenate([[0], np.cumsum(fired)])  # fired rows before each row

    def within(self, lo: int, hi: int) -> tuple[np.ndarray, slice]:
        """Fired rows of [lo, hi) as indices within it, and the slice of the parameters that belongs to them."""
        return np.flatnonzero(self.fired[lo:hi]), slice(int(self.before[lo]), int(self.before[hi]))


# ---------------------------------------------------------------------------------------------------------
# Geometric ops: each returns per-row 3x3 forward matrices (source pixel index -> output pixel index),
# identity where the op did not fire, and records what it drew.


def _geo_flip(plan: _Plan, op: HFlip | VFlip, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror about the centre column (hflip) or row (vflip)."""
    fired = u[:, 0] < op.p
    sign, one, zero = np.where(fired, -1.0, 1.0), np.ones(plan.n), np.zeros(plan.n)
    if isinstance(op, HFlip):
        m = _linear_about(plan.center, sign, zero, zero, one)
    else:
        m = _linear_about(plan.center, one, zero, zero, sign)
    plan.record(op.op, np.flatnonzero(fired), {})
    return m, np.zeros(plan.n, dtype=bool)  # mirrored exactly, never resampled


def _geo_rotate(plan: _Plan, op: Rotate, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate about the centre by an angle drawn from `degrees`."""
    fired = u[:, 0] < op.p
    deg = np.where(fired, _lerp(u[:, 1], op.degrees), 0.0)
    cos, sin = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
    # Image y points down, so this matrix turns the picture counter-clockwise for positive angles (as PIL does).
    m = _linear_about(plan.center, cos, sin, -sin, cos)
    plan.record(op.op, np.flatnonzero(fired), {"degrees": deg})
    return m, fired


def _geo_affine(plan: _Plan, op: Affine, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale and shear about the centre, then translate by fractions of the size."""
    fired = u[:, 0] < op.p
    t = np.where(fired[:, None], _lerp(u[:, 1:3], (-op.translate, op.translate)), 0.0)
    scale = np.where(fired, _lerp(u[:, 3], op.scale), 1.0)
    shear = np.where(fired[:, None], _lerp(u[:, 4:6], op.shear), 0.0)
    k = np.tan(np.deg2rad(shear))
    m = _linear_about(plan.center, scale, scale * k[:, 0], scale * k[:, 1], scale)
    m[:, 0, 2] += t[:, 0] * plan.w
    m[:, 1, 2] += t[:, 1] * plan.h
    plan.record(op.op, np.flatnonzero(fired), {"translate": t, "scale": scale, "shear": shear})
    return m, fired


def _geo_resized_crop(plan: _Plan, op: RandomResizedCrop, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map a random box (area fraction `scale`, aspect `ratio`) onto the whole output."""
    fired = u[:, 0] < op.p
    area = _lerp(u[:, 1], op.scale) * (plan.h * plan.w)
    ratio = _log_lerp(u[:, 2], op.ratio)
    # Clamp instead of torchvision's rejection loop: a fixed number of draws per row keeps sampling vectorised.
    bw = np.where(fired, np.minimum(np.sqrt(area * ratio), plan.w), float(plan.w))
    bh = np.where(fired, np.minimum(np.sqrt(area / ratio), plan.h), float(plan.h))
    x0, y0 = u[:, 3] * (plan.w - bw), u[:, 4] * (plan.h - bh)
    # Box edges (continuous coords, pixel i spans [i, i+1]) map onto the output's edges.
    sx, sy = plan.w / bw, plan.h / bh
    m = np.zeros((plan.n, 3, 3))
    m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = sx, sy, 1.0
    m[:, 0, 2] = (0.5 - x0) * sx - 0.5
    m[:, 1, 2] = (0.5 - y0) * sy - 0.5
    plan.record(op.op, np.flatnonzero(fired), {"box_xywh": np.stack([x0, y0, bw, bh], 1)})
    return m, fired


_GEO_PLANNERS: dict[type, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    HFlip: _geo_flip,
    VFlip: _geo_flip,
    Rotate: _geo_rotate,
    Affine: _geo_affine,
    RandomResizedCrop: _geo_resized_crop,
}


def _sampling_theta(forward: np.ndarray, h: int, w: int) -> np.ndarray:
    """`affine_grid` thetas (N, 2, 3): the inverse warp (output -> source) in normalised coordinates.

    Inverts [[a, b, tx], [c, d, ty]] in closed form (np.linalg.inv on a stack of 3x3s costs 4x more) and
    rescales it: with align_corners=False, pixel index x sits at normalised (2x + 1) / W - 1 for every size.
    """
    a, b, tx = forward[:, 0, 0], forward[:, 0, 1], forward[:, 0, 2]
    c, d, ty = forward[:, 1, 0], forward[:, 1, 1], forward[:, 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    # Source pixel = inv @ (output pixel - t); output pixel = (size * normalised + size - 1) / 2.
    cx, cy = (w - 1) / 2 - tx, (h - 1) / 2 - ty
    theta = np.empty((forward.shape[0], 2, 3))
    theta[:, 0, 0], theta[:, 0, 1] = ia, ib * (h / w)
    theta[:, 0, 2] = (2.0 * (ia * cx + ib * cy) + 1.0) / w - 1.0
    theta[:, 1, 0], theta[:, 1, 1] = ic * (w / h), id_
    theta[:, 1, 2] = (2.0 * (ic * cx + id_ * cy) + 1.0) / h - 1.0
    return theta


@functools.lru_cache(maxsize=64)
def _pixel_centres(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Normalised coordinates of the pixel centres along an axis of `size` pixels (align_corners=False)."""
    return (2 * torch.arange(size, device=device, dtype=dtype) + 1) / size - 1


def _grid_terms(theta: Tensor, h: int, w: int) -> tuple[Tensor, Tensor]:
    """Terms whose sum, seen as (N, H, W, 2), is `F.affine_grid(theta, (N, C, H, W), align_corners=False)`.

    Each coordinate is an outer sum of a per-column term (N, 1, 2, W) and a per-row term (N, H, 2, 1). Their sum
    comes out in (N, H, 2, W) order, where the inner loop runs along W and vectorises, and goes to grid_sample
    as an (N, H, W, 2) view: grid_sample reads the grid through its strides, as fast as a contiguous one and
    with identical output. 5-30x faster than F.affine_grid on CPU, which multiplies an (H*W, 3) base grid.
    """
    n = theta.shape[0]
    xs, ys = _pixel_centres(w, theta.dtype, theta.device), _pixel_centres(h, theta.dtype, theta.device)
    along_x = torch.addcmul(theta[:, :, 2:3], theta[:, :, 0:1], xs)  # (N, 2, W)
    along_y = theta[:, :, 1:2] * ys  # (N, 2, H)
    return along_x.view(n, 1, 2, w), along_y.transpose(1, 2).reshape(n, h, 2, 1)


def _plan_warp(plan: _Plan, forward: np.ndarray, resampled: np.ndarray) -> Step | None:
    """The step that applies a run of geometric ops: each row is resampled at most once.

    Rows where only flips fired are mirrored by `torch.flip`, exactly and for the cost of a copy; rows where a
    rotation, affine or crop fired are resampled once with grid_sample through their composed matrix.
    """
    # For flip-only rows the composed matrix is diag(+-1, +-1): its signs say which axes end up mirrored.
    mirrored_x, mirrored_y = ~resampled & (forward[:, 0, 0] < 0), ~resampled & (forward[:, 1, 1] < 0)
    flips = [
        (dims, rows_mask)
        for dims, rows_mask in (
            ((-1,), mirrored_x & ~mirrored_y),
            ((-2,), mirrored_y & ~mirrored_x),
            ((-2, -1), mirrored_x & mirrored_y),
        )
        if rows_mask.any()
    ]
    idx = np.flatnonzero(resampled)
    if idx.size == 0 and not flips:
        return None
    theta = plan.to_dev(_sampling_theta(forward[idx], plan.h, plan.w), plan.warp_dtype)
    along_x, along_y = _grid_terms(theta, plan.h, plan.w)  # once per call; each chunk only adds its slice
    sub, padding = _Subset(resampled), plan.policy.padding_mode

    def warp(rows: _Rows) -> None:
        pieces = []
        for dims, rows_mask in flips:
            local = np.flatnonzero(rows_mask[rows.lo : rows.hi])
            if local.size:
                pieces.append((local, rows.get(local).flip(dims)))
        local, part = sub.within(rows.lo, rows.hi)
        if local.size:
            grid = (along_x[part] + along_y[part]).transpose(2, 3)  # (N, H, W, 2), see _grid_terms
            src = rows.get(local).to(grid.dtype)
            pieces.append((local, F.grid_sample(src, grid, mode="bilinear", padding_mode=padding, align_corners=False)))
        rows.put_many(pieces)

    return warp


# ---------------------------------------------------------------------------------------------------------
# Pixel ops: each samples its parameters from its block of uniforms, records them, and returns the step
# that applies them (None when it can leave every row as it is).


_LUMA = np.array(LUMA_WEIGHTS)
_GRAY = np.outer(np.ones(3), _LUMA)  # x -> its luma in every channel
# In YIQ, hue is the angle in the IQ plane, so a hue shift is a rotation there, which is linear in RGB:
# YIQ^-1 @ [[1, 0, 0], [0, cos, sin], [0, -sin, cos]] @ YIQ = _HUE_FIXED + cos * _HUE_COS + sin * _HUE_SIN.
_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_INV = np.linalg.inv(_YIQ)
_HUE_FIXED = _YIQ_INV @ np.diag([1.0, 0.0, 0.0]) @ _YIQ
_HUE_COS = _YIQ_INV @ np.diag([0.0, 1.0, 1.0]) @ _YIQ
_HUE_SIN = _YIQ_INV @ np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) @ _YIQ


def _hue_matrices(turns: np.ndarray) -> np.ndarray:
    """Per-row RGB matrices rotating hue by `turns` of a full circle about the gray axis (0 -> exactly I)."""
    ang = (turns * (2 * math.pi))[:, None, None]
    m = _HUE_FIXED + np.cos(ang) * _HUE_COS + np.sin(ang) * _HUE_SIN
    return np.where((turns != 0)[:, None, None], m, np.eye(3))  # the round trip through YIQ is not exactly I


def _plan_color_jitter(plan: _Plan, op: ColorJitter, u: np.ndarray) -> Step | None:
    """Brightness, contrast, saturation and hue, in that order, fused into one affine colour map per row.

    With factors b, k, s, hue rotation H and G = x -> luma(x) in every channel, the stages compose to
    out = k b (s H + (1 - s) G) x + (1 - k) b luma(mean(x)): contrast blends towards the mean gray of the
    brightened image, saturation towards the pixel's gray, and H and G both keep gray and luma (so H G = G and
    the hue turn leaves the contrast term alone). The batch then costs one matrix pass plus a per-row offset.
    Unlike chaining torchvision's ops, it clamps once at the end rather than after every stage.
    """
    fired = u[:, 0] < op.p
    n, c = plan.n, plan.c
    drawn: dict[str, np.ndarray] = {}
    ones = np.ones(n)

    def factor(name: str, col: int, amount: float) -> np.ndarray:
        # Factor 1 where the op did not fire makes the map exactly x -> x, so such rows are untouched.
        f = np.where(fired, _lerp(u[:, col], (max(0.0, 1.0 - amount), 1.0 + amount)), 1.0)
        drawn[name] = f
        return f

    b = factor("brightness", 1, op.brightness) if op.brightness > 0 else ones
    k = factor("contrast", 2, op.contrast) if op.contrast > 0 else ones
    offset_gain = plan.to_dev((1.0 - k) * b) if op.contrast > 0 else None  # times luma(mean(x))
    if c == 1:  # saturation and hue mean nothing for one channel; the map is one number per row
        gain = plan.to_dev(k * b).view(n, 1, 1, 1)
    else:
        s = factor("saturation", 3, op.saturation) if op.saturation > 0 else ones
        rotate = np.eye(3)
        if op.hue > 0:
            drawn["hue"] = np.where(fired, _lerp(u[:, 4], (-op.hue, op.hue)), 0.0)
            rotate = _hue_matrices(drawn["hue"])
        a = (k * b * s)[:, None, None] * rotate + (k * b * (1.0 - s))[:, None, None] * _GRAY
        gain, luma = plan.to_dev(a), plan.to_dev(_LUMA)
    plan.record(op.op, np.flatnonzero(fired), drawn)

    def color(rows: _Rows) -> None:
        x, lo, hi = rows.x, rows.lo, rows.hi
        m = hi - lo
        flat = x.view(m, c, -1)
        offset = None
        if offset_gain is not None:
            means = flat.mean(dim=2)
            if c == 1:
                offset = offset_gain[lo:hi] * means[:, 0]
            else:  # written out rather than `means @ luma`, for the reason given below
                offset = offset_gain[lo:hi] * (means[:, 0] * luma[0] + means[:, 1] * luma[1] + means[:, 2] * luma[2])
        buf = rows.output_buffer()
        buf = torch.empty_like(x) if buf is None else buf
        if c == 1:  # elementwise beats a (1 x 1) matmul
            torch.mul(x, gain[lo:hi], out=buf)
            if offset is not None:
                buf.add_(offset.view(m, 1, 1, 1))  # addcmul with a broadcast `self` is 3x slower than mul + add
        else:
            # Elementwise, not bmm/baddbmm: BLAS picks its kernel by batch size, which moved the last bit of a
            # row between batch sizes on a 16-core machine (torch 2.11 + MKL); separate mul and add round the
            # same way whatever the batch, the thread split or the vector tail.
            channels = x.unbind(1)
            g = gain[lo:hi].view(m, c, c, 1, 1)
            tmp = torch.empty_like(channels[0])
            for i in range(c):
                out_i = buf[:, i]
                torch.mul(channels[0], g[:, i, 0], out=out_i)
                for j in range(1, c):
                    out_i.add_(torch.mul(channels[j], g[:, i, j], out=tmp))
                if offset is not None:
                    out_i.add_(offset.view(m, 1, 1))
        rows.replace(buf.clamp_(0.0, 1.0))

    return color


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


def _plan_gaussian_blur(plan: _Plan, op: GaussianBlur, u: np.ndarray) -> Step | None:
    """Blur the rows that drew it, each with its own sigma."""
    fired = u[:, 0] < op.p
    sigma = _lerp(u[:, 1], op.sigma)
    idx = np.flatnonzero(fired)
    plan.record(op.op, idx, {"sigma": sigma}, kernel_size=op.kernel_size)
    if idx.size == 0:
        return None
    taps = np.arange(op.kernel_size) - op.kernel_size // 2
    kernel = np.exp(-(taps[None, :] ** 2) / (2.0 * sigma[idx, None] ** 2))
    kernel = plan.to_dev(kernel / kernel.sum(axis=1, keepdims=True))
    sub = _Subset(fired)

    def blur(rows: _Rows) -> None:
        local, part = sub.within(rows.lo, rows.hi)
        if local.size:
            rows.put(local, _blur_rows(rows.get(local), kernel[part]))

    return blur


def _plan_gaussian_noise(plan: _Plan, op: GaussianNoise, u: np.ndarray) -> Step | None:
    """Add the row's window of the noise bank, scaled by its drawn std."""
    fired = u[:, 0] < op.p
    std = _lerp(u[:, 1], op.std)
    c, h, w = plan.c, plan.h, plan.w
    bank = noise_bank(c * h * w, plan.device)
    offsets = np.floor(u[:, 2] * (bank.numel() - c * h * w)).astype(np.int64)
    idx = np.flatnonzero(fired)
    plan.record(op.op, idx, {"std": std, "bank_offset": offsets})
    if idx.size == 0:
        return None
    # unfold gives every window of the bank as a strided view; index_select copies just the rows' windows.
    windows = bank.unfold(0, c * h * w, 1)
    std_dev, offsets_dev = plan.to_dev(std[idx]).view(-1, 1, 1, 1), torch.from_numpy(offsets[idx]).to(plan.device)
    sub = _Subset(fired)

    def noise(rows: _Rows) -> None:
        local, part = sub.within(rows.lo, rows.hi)
        if local.size:
            win = windows.index_select(0, offsets_dev[part]).view(-1, c, h, w).to(rows.x.dtype)
            rows.put(local, torch.addcmul(rows.get(local), win, std_dev[part]).clamp_(0.0, 1.0))

    return noise


def _box_masks(plan: _Plan, box_yxhw: np.ndarray, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Each row's integer box (y0, x0, h, w) as 0/1 masks of its rows (N, 1, H, 1) and columns (N, 1, 1, W),
    in the images' dtype unless told.

    Their product is the box; a zero-sized box gives an empty mask.
    """
    b = box_yxhw
    in_y = (np.arange(plan.h) >= b[:, 0:1]) & (np.arange(plan.h) < b[:, 0:1] + b[:, 2:3])
    in_x = (np.arange(plan.w) >= b[:, 1:2]) & (np.arange(plan.w) < b[:, 1:2] + b[:, 3:4])
    n = b.shape[0]
    return plan.to_dev(in_y, dtype).view(n, 1, plan.h, 1), plan.to_dev(in_x, dtype).view(n, 1, 1, plan.w)


def _plan_random_erasing(plan: _Plan, op: RandomErasing, u: np.ndarray) -> Step | None:
    """Fill one box per row (area and aspect drawn) with the fill value."""
    fired = u[:, 0] < op.p
    h, w = plan.h, plan.w
    area = _lerp(u[:, 1], op.area) * (h * w)
    aspect = _log_lerp(u[:, 2], op.aspect)  # height / width
    bh = np.where(fired, np.clip(np.round(np.sqrt(area * aspect)), 0, h), 0).astype(np.int64)
    bw = np.where(fired, np.clip(np.round(np.sqrt(area / aspect)), 0, w), 0).astype(np.int64)
    y0 = np.floor(u[:, 3] * (h - bh + 1)).astype(np.int64)
    x0 = np.floor(u[:, 4] * (w - bw + 1)).astype(np.int64)
    box = np.stack([y0, x0, bh, bw], 1)
    idx = np.flatnonzero(fired)
    plan.record(op.op, idx, {"box_yxhw": box}, fill=op.fill)
    if idx.size == 0:
        return None
    in_y, in_x = _box_masks(plan, box)
    fill = op.fill

    def erase(rows: _Rows) -> None:
        lo, hi = rows.lo, rows.hi
        if not fired[lo:hi].any():
            return
        # Arithmetic with the 0/1 row and column masks instead of a boolean masked_fill_ (4-8x slower on CPU),
        # exact either way: x * (1 - 1) = 0 and x - x = 0 inside the box, x * 1 = x and x - 0 = x outside.
        x, iy, ix = rows.writable(), in_y[lo:hi], in_x[lo:hi]
        if x.shape[1] == 1:
            x.addcmul_(x * iy, ix, value=-1.0)  # two passes over the pixels
        else:
            x.mul_(1.0 - iy * ix)  # the mask is built once for all channels
        if fill:
            x.addcmul_(iy, ix, value=fill)  # 0 + fill inside, x + 0 outside

    return erase


def _partners(plan: _Plan, u: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """Each firing row's partner: a uniform pick among the other rows ranked by parent_id; itself elsewhere."""
    order, rank = plan.ranked
    pick = np.minimum(np.floor(u * (plan.n - 1)).astype(np.int64), max(plan.n - 2, 0))
    pick = pick + (pick >= rank)  # skip the row's own rank
    partner = order[np.minimum(pick, plan.n - 1)]
    return np.where(fired, partner, np.arange(plan.n))


def _mix_labels(plan: _Plan, idx: np.ndarray, partner: np.ndarray, lam: np.ndarray) -> None:
    """Soft labels follow the pixels: for each firing row, lambda of its own, 1 - lambda of its partner's.
    Rows that did not fire keep theirs (lambda 1), so only the firing rows are computed."""
    if idx.size == 0:
        return
    rows = torch.from_numpy(idx).to(plan.device)
    lam_y = plan.to_dev(lam[idx], plan.soft.dtype).view(-1, 1)
    mixed = plan.soft[rows] * lam_y + plan.soft[torch.from_numpy(partner[idx]).to(plan.device)] * (1.0 - lam_y)
    plan.soft = plan.soft.index_put((rows,), mixed)  # a new tensor: the caller's labels are never written


def _plan_mixup(plan: _Plan, op: Mixup, u: np.ndarray) -> Step | None:
    """Blend each firing row with its partner: lambda * own + (1 - lambda) * partner."""
    fired = (u[:, 0] < op.p) & (plan.n > 1)
    partner = _partners(plan, u[:, 1], fired)
    lam = np.where(fired, _beta_half(u[:, 2], op.alpha), 1.0)
    idx = np.flatnonzero(fired)
    _mix_labels(plan, idx, partner, lam)
    plan.record(op.op, idx, {"partner_parent_id": plan.id_array[partner], "lambda": lam})
    if idx.size == 0:
        return None
    partner_dev, lam_dev = torch.from_numpy(partner[idx]).to(plan.device), plan.to_dev(lam[idx]).view(-1, 1, 1, 1)

    def mixup(rows: _Rows) -> None:
        other = rows.x.index_select(0, partner_dev)  # gathered before any row is overwritten
        rows.put(idx, torch.lerp(other, rows.get(idx), lam_dev))

    return mixup


def _plan_cutmix(plan: _Plan, op: Cutmix, u: np.ndarray) -> Step | None:
    """Paste a box of the partner into each firing row; the box covers 1 - lambda of it."""
    fired = (u[:, 0] < op.p) & (plan.n > 1)
    partner = _partners(plan, u[:, 1], fired)
    h, w = plan.h, plan.w
    cut = np.sqrt(1.0 - _beta_half(u[:, 2], op.alpha))
    ch, cw = np.round(cut * h).astype(np.int64), np.round(cut * w).astype(np.int64)
    cy, cx = np.floor(u[:, 3] * h).astype(np.int64), np.floor(u[:, 4] * w).astype(np.int64)
    y0, x0 = np.clip(cy - ch // 2, 0, h), np.clip(cx - cw // 2, 0, w)
    y1, x1 = np.clip(cy + ch - ch // 2, 0, h), np.clip(cx + cw - cw // 2, 0, w)
    box = np.stack([y0, x0, np.where(fired, y1 - y0, 0), np.where(fired, x1 - x0, 0)], 1)
    # The box is clipped at the border, so lambda is recomputed from the area actually pasted.
    lam = 1.0 - (box[:, 2] * box[:, 3]) / (h * w)
    idx = np.flatnonzero(fired)
    _mix_labels(plan, idx, partner, lam)
    plan.record(op.op, idx, {"partner_parent_id": plan.id_array[partner], "lambda": lam, "box_yxhw": box})
    if idx.size == 0:
        return None
    partner_dev = torch.from_numpy(partner[idx]).to(plan.device)
    in_y, in_x = _box_masks(plan, box[idx], torch.bool)
    mask = in_y & in_x

    def cutmix(rows: _Rows) -> None:
        other = rows.x.index_select(0, partner_dev)  # gathered before any row is overwritten
        rows.put(idx, torch.where(mask, other, rows.get(idx)))

    return cutmix


_PIXEL_PLANNERS: dict[type, Callable[..., Step | None]] = {
    ColorJitter: _plan_color_jitter,
    GaussianBlur: _plan_gaussian_blur,
    GaussianNoise: _plan_gaussian_noise,
    RandomErasing: _plan_random_erasing,
    Mixup: _plan_mixup,
    Cutmix: _plan_cutmix,
}
_MIXING = (Mixup, Cutmix)


def _plan_steps(plan: _Plan, uniforms: np.ndarray) -> list[tuple[bool, Step]]:
    """Sample every op for the whole batch (filling the records) and list the steps, each flagged row-local."""
    steps: list[tuple[bool, Step]] = []
    col = 0
    # A run of consecutive geometric ops: (composed matrices, rows that some op in it resamples).
    run: tuple[np.ndarray, np.ndarray] | None = None
    for op in [*plan.policy.ops, None]:  # None: the end, which closes a last geometric run
        if run is not None and not isinstance(op, GEOMETRIC):
            warp = _plan_warp(plan, *run)
            steps += [(True, warp)] if warp else []
            run = None
        if op is None:
            break
        u = uniforms[:, col : col + DRAWS[type(op)]]
        col += DRAWS[type(op)]
        if isinstance(op, GEOMETRIC):
            m, resampled = _GEO_PLANNERS[type(op)](plan, op, u)
            run = (m, resampled) if run is None else (m @ run[0], run[1] | resampled)  # later ops act on the output
            continue
        step = _PIXEL_PLANNERS[type(op)](plan, op, u)
        steps += [(not isinstance(op, _MIXING), step)] if step else []
    return steps


def _run_row_local(steps: list[Step], x: Tensor, owned: bool) -> tuple[Tensor, bool]:
    """Apply row-local steps in order, chunk by chunk so that each chunk's passes stay in the cache."""
    n = x.shape[0]
    # The cache argument is a CPU one: on an accelerator, fewer and larger kernels are what pays.
    per = max(1, CHUNK_BYTES // max(1, x[0].numel() * x.element_size())) if x.device.type == "cpu" else n
    if n <= per:
        rows = _Rows(x, 0, n, owned)
        for step in steps:
            step(rows)
        return rows.x, rows.owned
    # An owned batch is written in place, chunk by chunk; otherwise the chunks' results go to a new batch.
    out = x if owned else torch.empty_like(x)
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        view, dest = x[lo:hi], out[lo:hi]
        rows = _Rows(view, lo, hi, owned, None if owned else dest)
        for step in steps:
            step(rows)
        if rows.x.data_ptr() != dest.data_ptr():
            dest.copy_(rows.x)
    return out, True


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a call builds its records (restored on exit).

    A call allocates a few thousand dicts and lists (the records), all alive until it returns and none in a
    reference cycle. Collections that run meanwhile find them alive and promote them towards the oldest
    generation, which soon triggers a full collection of every object in the process: ~100 ms with torch
    loaded, measured at ~4 us per 28x28 image over a 20k-image run, more than the pixels cost. Paused, the
    first collection after the call runs when the caller has usually dropped the records already.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


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
    if n:
        lo, hi = torch.aminmax(labels)
        if int(lo) < 0 or int(hi) >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), got [{int(lo)}, {int(hi)}]")
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
    cutmix rows also depend on their recorded partner's image (see the module docstring). The caller's
    tensors are never modified, and the returned images never share memory with them.
    """
    _check_images(images, parent_ids)
    with _gc_paused():
        return _augment(images, labels, num_classes, parent_ids, policy, seed)


def _augment(
    images: Tensor, labels: Tensor, num_classes: int, parent_ids: Sequence[str], policy: AugmentPolicy, seed: int
) -> AugmentResult:
    """The body of `augment_batch`, on checked inputs."""
    ids = parent_ids if isinstance(parent_ids, list) else list(parent_ids)
    soft = _soft_labels(labels, num_classes, images.shape[0], images.device)
    # Contiguous rows let every step view a row as flat pixels; a strided input (e.g. permuted from HWC) is
    # copied once here, and never written, so the caller's tensor is safe either way.
    x, owned = (images, False) if images.is_contiguous() else (images.contiguous(), True)
    plan = _Plan(x, soft, ids, policy)
    if plan.n:
        steps = _plan_steps(plan, draw_uniforms(policy, seed, ids))
        local: list[Step] = []
        for row_local, step in [*steps, (False, None)]:
            if row_local:
                local.append(step)
                continue
            if local:
                x, owned = _run_row_local(local, x, owned)
                local = []
            if step is not None:  # a mixing step: partners come from the whole batch, as augmented so far
                rows = _Rows(x, 0, plan.n, owned)
                step(rows)
                x, owned = rows.x, rows.owned
    records = [{"parent_id": pid, "ops": ops} for pid, ops in zip(ids, plan.ops_of)]
    return AugmentResult(x if owned else x.clone(), plan.soft, records)
