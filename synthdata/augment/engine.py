"""Seeded, batched application of an `AugmentPolicy`: `augment_batch`.

Two phases keep this both reproducible and fast:

1. Planning (CPU, vectorised over the batch). Every row's uniforms are drawn at once from its own key
   (`synthdata.augment.seeding`), so a row's draws depend on nothing else in the batch. Each op turns its block
   of uniforms into parameters with vectorised NumPy (not torch: these arrays are tiny and torch's per-op
   overhead would dominate), fills in the records, and becomes a step holding its parameters as tensors on
   the images' device (`synthdata.augment.ops`).
2. Applying (the images' device). Each step runs over many rows at once with per-row parameters. Rows where an
   op was not drawn get identity parameters (factor 1, empty box, ...) that leave them bit-exact, or are left
   out of the op's row subset. Consecutive geometric ops (flips, rotate, affine, resized crop) are composed
   into one 3x3 matrix per row, so each run of them resamples a row at most once (rows where only flips fired
   are mirrored exactly with `torch.flip`); brightness/contrast/saturation/hue are fused into one affine colour
   map per row. Row-local steps run over chunks of `CHUNK_BYTES` of rows in turn, so that a chunk's passes hit
   the cache instead of memory; mixup and cutmix run on the whole batch. The apply path uses only
   row-independent tensor ops (no batched convolution, whose algorithm may change with the batch size), so a
   row's output is bit-identical in any batch, at any position, in any chunk, on the CPU.

How draws become parameters is versioned by `SAMPLER_VERSION`, which is hashed into the policy fingerprint:
rows made by any other sampler carry a different fingerprint in the warehouse.

Mixup and cutmix rows also depend on their partner's image; `synthdata.augment.ops.mixing` says how a partner
is chosen and recorded.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from synthdata.augment.batch import Plan, Rows, Step, Subset
from synthdata.augment.ops import GeometricOp
from synthdata.augment.policy import AugmentPolicy
from synthdata.augment.seeding import draw_uniforms


@dataclass
class AugmentResult:
    """Augmented images (N, C, H, W) in [0, 1], their soft labels (N, num_classes), and one record per row.

    records[i] = {"parent_id": str, "ops": [{"op": name, "params": {...}}, ...]} lists, in order, the ops
    actually applied to row i and the parameters drawn for it; everything in it is JSON-serialisable.
    """

    images: Tensor
    soft_labels: Tensor
    records: list[dict[str, Any]]


# On the CPU, row-local steps run over chunks of about this many bytes of pixels: a chunk's passes then hit the
# cache instead of memory, which matters most for grid_sample's scattered reads.
CHUNK_BYTES = 2 << 20


# ---------------------------------------------------------------------------------------------------------
# A run of geometric ops: the composed per-row matrices become one resampling (or an exact flip) per row.


def _sampling_theta(forward: np.ndarray, h: int, w: int) -> np.ndarray:
    """`affine_grid` thetas (N, 2, 3): the inverse warp (output -> source) in normalised coordinates.

    Inverts [[a, b, tx], [c, d, ty]] in closed form (cheaper than np.linalg.inv on a stack of 3x3s) and
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
    with identical output. Cheaper than F.affine_grid, which multiplies an (H*W, 3) base grid per row.
    """
    n = theta.shape[0]
    xs, ys = _pixel_centres(w, theta.dtype, theta.device), _pixel_centres(h, theta.dtype, theta.device)
    along_x = torch.addcmul(theta[:, :, 2:3], theta[:, :, 0:1], xs)  # (N, 2, W)
    along_y = theta[:, :, 1:2] * ys  # (N, 2, H)
    return along_x.view(n, 1, 2, w), along_y.transpose(1, 2).reshape(n, h, 2, 1)


def _plan_warp(plan: Plan, forward: np.ndarray, resampled: np.ndarray) -> Step | None:
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
    sub, padding = Subset(resampled), plan.policy.padding_mode

    def warp(rows: Rows) -> None:
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
# Planning the steps and running them over the batch.


def _plan_steps(plan: Plan, uniforms: np.ndarray) -> list[tuple[bool, Step]]:
    """Sample every op for the whole batch (filling the records) and list the steps, each flagged row-local."""
    steps: list[tuple[bool, Step]] = []
    col = 0
    # A run of consecutive geometric ops: (composed matrices, rows that some op in it resamples).
    run: tuple[np.ndarray, np.ndarray] | None = None
    for op in [*plan.policy.ops, None]:  # None: the end, which closes a last geometric run
        if run is not None and not isinstance(op, GeometricOp):
            warp = _plan_warp(plan, *run)
            steps += [(True, warp)] if warp else []
            run = None
        if op is None:
            break
        u = uniforms[:, col : col + op.draws]
        col += op.draws
        if isinstance(op, GeometricOp):
            m, resampled = op.matrices(plan, u)
            run = (m, resampled) if run is None else (m @ run[0], run[1] | resampled)  # later ops act on the output
            continue
        step = op.step(plan, u)
        steps += [(op.stage != "mixing", step)] if step else []
    return steps


def _run_row_local(steps: list[Step], x: Tensor, owned: bool) -> tuple[Tensor, bool]:
    """Apply row-local steps in order, chunk by chunk so that each chunk's passes stay in the cache."""
    n = x.shape[0]
    # The cache argument is a CPU one: on an accelerator, fewer and larger kernels are what pays.
    per = max(1, CHUNK_BYTES // max(1, x[0].numel() * x.element_size())) if x.device.type == "cpu" else n
    if n <= per:
        rows = Rows(x, 0, n, owned)
        for step in steps:
            step(rows)
        return rows.x, rows.owned
    # An owned batch is written in place, chunk by chunk; otherwise the chunks' results go to a new batch.
    out = x if owned else torch.empty_like(x)
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        view, dest = x[lo:hi], out[lo:hi]
        rows = Rows(view, lo, hi, owned, None if owned else dest)
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
    generation, which soon triggers a full collection of every object in the process (torch alone holds many),
    which can cost more than the pixels. Paused, the first collection after the call runs when the caller has
    usually dropped the records already.
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
    plan = Plan(x, soft, ids, policy)
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
                rows = Rows(x, 0, plan.n, owned)
                step(rows)
                x, owned = rows.x, rows.owned
    records = [{"parent_id": pid, "ops": ops} for pid, ops in zip(ids, plan.ops_of)]
    return AugmentResult(x if owned else x.clone(), plan.soft, records)
