"""Pillow-exact resampling: Pillow's resize weights for one axis, and its 8-bit LANCZOS resize replayed on
whole batches as GEMMs.

:func:`pillow_weights` is Pillow's ``precompute_coeffs`` (``libImaging/Resample.c``) for the box, bilinear
and LANCZOS filters: per output pixel a window of filter taps, normalised by their sequential sum, with the
float rounding of every step (center, window bounds, filter argument, normalisation) kept in order. Python
floats and ``math.sin`` are the same IEEE operations and libm as the C code, so the weights are Pillow's own.
Both users build on it: the near-duplicate canvas (:mod:`synthdata.dedup.sampling`) takes the normalised
float weights, as Pillow's float-image resize does; the pHash thumbnail takes the fixed-point weights of
Pillow's 8-bit resize (:func:`_resample_matrix`), which round each normalised weight to 22 fractional bits.

The 8-bit LANCZOS resize (:func:`resize_lanczos`, and :func:`resize_hnw` for the pHash):

* Pillow runs two 1-D passes, each rounding (``+ 2**21``, arithmetic shift) and clipping to uint8. The
  weights depend only on (input size, output size), so they are built once per size and applied as banded
  GEMMs over a whole batch: the first pass over the rows of (H*N, W), the second over the columns of the
  result (H, N*out), so no transpose is ever copied. Pillow 13 runs the vertical pass first when the height
  shrinks much more than the width; because each pass rounds, the order changes pixels, so the installed
  Pillow is probed once. Scratch arrays are reused between batches (:class:`Workspace`).
* The GEMMs run in float32 (twice the SIMD lanes of float64) with a rigorous error bound; the few sums whose
  rounding point lies inside that bound (smooth images hit exact half-integers often) are recomputed
  exactly in float64 over their own tap window (integer arithmetic there), so every resampled pixel
  equals Pillow's.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from functools import lru_cache
from itertools import pairwise

import numpy as np
from PIL import Image

from synthdata.blas import single_threaded_blas

# Pillow's fixed-point precision for 8-bit resampling: 32 bits - 8 for the pixel - 2 for overflow headroom.
_PRECISION_BITS = 32 - 8 - 2
_ONE = float(1 << _PRECISION_BITS)
_F32_UNIT_ROUNDOFF = 2.0**-24


# --------------------------------------------------------------------------------------------------
# Pillow's weights
# --------------------------------------------------------------------------------------------------


def _box(x: float) -> float:
    """Pillow's ``box_filter``."""
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    """Pillow's ``bilinear_filter`` (a triangle)."""
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


def _bicubic(x: float) -> float:
    """Pillow's ``bicubic_filter`` (Keys cubic, a = -0.5)."""
    a, x = -0.5, abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    """Pillow's ``sinc_filter``."""
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    """Pillow's ``lanczos_filter``: sinc truncated by a 3-lobe sinc window."""
    if -3.0 <= x < 3.0:
        return _sinc(x) * _sinc(x / 3)
    return 0.0


# Pillow's filters: (support, filter) by resampling method.
_FILTERS: dict[Image.Resampling, tuple[float, Callable[[float], float]]] = {
    Image.Resampling.BOX: (0.5, _box),
    Image.Resampling.BILINEAR: (1.0, _bilinear),
    Image.Resampling.BICUBIC: (2.0, _bicubic),
    Image.Resampling.LANCZOS: (3.0, _lanczos),
}


def pillow_weights(in_size: int, out_size: int, method: Image.Resampling) -> np.ndarray:
    """(out_size, in_size) float64: the normalised weights with which Pillow resizes one axis of ``in_size``
    pixels to ``out_size`` (``precompute_coeffs`` for the full box (0, in_size)). An axis that keeps its
    length gets the identity: Pillow skips that pass."""
    if in_size == out_size:
        return np.eye(out_size)
    filter_support, kernel = _FILTERS[method]
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)  # a filter widens with the shrink factor
    support = filter_support * filterscale
    inv_filterscale = 1.0 / filterscale
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C (int) truncates toward zero, as int() does
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [kernel((x + xmin - center + 0.5) * inv_filterscale) for x in range(xmax)]
        ww = 0.0
        for w in k:  # sequential sum, same association order as the C loop
            ww += w
        if ww != 0.0:
            k = [w / ww for w in k]
        weights[xx, xmin : xmin + xmax] = k
    return weights


def _np_kernel(method: Image.Resampling, x: np.ndarray) -> np.ndarray:
    """The filters of _FILTERS on an array of offsets (same formulas, vectorised)."""
    a = np.abs(x)
    if method == Image.Resampling.BOX:
        return ((x > -0.5) & (x <= 0.5)).astype(np.float64)
    if method == Image.Resampling.BILINEAR:
        return np.where(a < 1.0, 1.0 - a, 0.0)
    if method == Image.Resampling.BICUBIC:
        c = -0.5
        return np.where(a < 1.0, ((c + 2.0) * a - (c + 3.0)) * a * a + 1,
                        np.where(a < 2.0, (((a - 5) * a + 8) * a - 4) * c, 0.0))  # fmt: skip
    return np.where((x >= -3.0) & (x < 3.0), np.sinc(x) * np.sinc(x / 3), 0.0)  # np.sinc is sin(pi x)/(pi x)


def filter_weights(in_size: int, out_size: int, method: Image.Resampling) -> np.ndarray:
    """:func:`pillow_weights` computed with NumPy for every output pixel at once: equal to within float
    rounding (the sums associate differently), so for uses that need Pillow's filters but not its exact
    fixed-point results (copy evidence's resized views). Pure-Python ``pillow_weights`` costs milliseconds
    per size pair, and a set of many image sizes has thousands of pairs."""
    if in_size == out_size:
        return np.eye(out_size)
    filter_support, _ = _FILTERS[method]
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = filter_support * filterscale
    center = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((center + support + 0.5).astype(np.int64), in_size)
    x = np.arange(in_size)[None, :]
    taps = (x >= xmin[:, None]) & (x < xmax[:, None])
    k = np.where(taps, _np_kernel(method, (x - center[:, None] + 0.5) / filterscale), 0.0)
    total = k.sum(axis=1, keepdims=True)
    return np.divide(k, total, out=k, where=total != 0.0)


def padded_filter_weights(
    in_sizes: np.ndarray, out_sizes: np.ndarray, method: Image.Resampling, pad_in: int, pad_out: int
) -> np.ndarray:
    """(P, pad_out, pad_in) float32: :func:`filter_weights` (in_sizes[i], out_sizes[i]) of every line pair at
    once, in the top-left corner of a padded map whose rows beyond out_sizes[i] repeat the last one and
    whose columns beyond in_sizes[i] are zero (the identity where the sizes are equal). The same formulas
    on each row's taps only (a band of ~2 x support columns, not every input pixel) for the whole batch:
    one map per size pair from :func:`filter_weights` cost ~0.1 ms, and a set of many image sizes has
    thousands of pairs, each seen in few batches. Only a row's sum associates differently (float rounding)."""
    n_in = np.asarray(in_sizes, np.int64)[:, None]
    n_out = np.asarray(out_sizes, np.int64)[:, None]
    filter_support, _ = _FILTERS[method]
    scale = n_in / n_out
    filterscale = np.maximum(scale, 1.0)
    support = filter_support * filterscale
    row = np.minimum(np.arange(pad_out)[None, :], n_out - 1)  # (P, pad_out): padding rows repeat the last
    center = (row + 0.5) * scale
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((center + support + 0.5).astype(np.int64), n_in)
    width = max(1, min(pad_in, int((xmax - xmin).max())))
    # Each row's band starts early enough to stay on the canvas: its columns are distinct and cover the taps.
    x = np.minimum(xmin, pad_in - width)[..., None] + np.arange(width)  # (P, pad_out, width)
    taps = (x >= xmin[..., None]) & (x < xmax[..., None])
    k = np.where(taps, _np_kernel(method, (x - center[..., None] + 0.5) / filterscale[..., None]), 0.0)
    total = k.sum(axis=-1, keepdims=True)
    np.divide(k, total, out=k, where=total != 0.0)
    same = (n_in == n_out)[:, 0]
    if same.any():  # Pillow skips that pass (filter_weights: the identity)
        k[same] = x[same] == row[same][..., None]
    out = np.zeros((len(n_in), pad_out, pad_in), np.float32)
    np.put_along_axis(out, x, k.astype(np.float32), axis=2)
    return out


@lru_cache(maxsize=256)
def _resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Dense (in_size, out_size) float64 matrix of Pillow's fixed-point LANCZOS weights for one axis:
    :func:`pillow_weights` rounded half away from zero to ``_PRECISION_BITS`` fractional bits, as
    ``normalize_coeffs_8bpc`` does (integers, exact in float64)."""
    scaled = pillow_weights(in_size, out_size, Image.Resampling.LANCZOS) * _ONE
    fixed = np.trunc(np.where(scaled < 0, scaled - 0.5, scaled + 0.5))  # C (int) truncates toward zero
    weights = np.ascontiguousarray(fixed.T)
    weights.flags.writeable = False
    return weights


# --------------------------------------------------------------------------------------------------
# The 8-bit LANCZOS passes
# --------------------------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _pass_plan(in_size: int, out_size: int, data_rows: bool) -> tuple[tuple[tuple[int, int, int, int, np.ndarray], ...], float]:
    """Blocks of the float32 weights (scaled by 2**-22, still exact) and the error bound of the float32 sums.

    ``data_rows``: the data holds one line per row, x (R, in) @ W (in, out); otherwise one line per column,
    W^T (out, in) @ y (in, C). The LANCZOS matrix is banded (each output reads ~6 * scale neighbouring
    inputs), so the outputs are cut into blocks, each multiplied with only the inputs its band touches.
    With lines in rows each block is a column slice of x, and a GEMM over a narrow column slice runs below
    the BLAS kernel's efficiency, so two blocks (~40% fewer flops than dense at 64 -> 32). With lines in
    columns each block is a contiguous row slice of y and small blocks stay efficient, so blocks of 4
    outputs. See ``benchmarks/phash_speed.py``.

    Blocks are ``(in_lo, in_hi, out_lo, out_hi, weights)``. With lines in columns the weights are
    ``W[in_lo:in_hi, out_lo:out_hi].T``. With lines in rows x is framed by a column of ones on each side
    (see :func:`_pass_rows`) and ``(in_lo, in_hi)`` index the framed x: the first block is widened to start
    at input 0 and the last to end at ``in_size``, each takes the ones column next to it, and its weights
    get one more row holding the bias ``0.5 + bound``, which turns Pillow's round-half-up into a floor that
    needs checking on one side only (see :func:`_floor_pass`).

    A float32 dot product of n nonzero terms is off by at most gamma_n * sum|x_i w_i| in any summation order,
    with or without FMA (zero terms add nothing, so dropping them keeps the bound); x <= 255 and the bias
    term is below 1. The extra 2**-15 is a margin beyond that bound, and covers the float32 rounding of the
    bias (< 2**-25).
    """
    weights = _resample_matrix(in_size, out_size)
    scaled = weights / _ONE
    taps = int((weights != 0).sum(axis=0).max()) + 1  # + the bias term
    gamma = taps * _F32_UNIT_ROUNDOFF / (1 - taps * _F32_UNIT_ROUNDOFF)
    bound = float(np.float32(gamma * (255.0 * float(np.abs(scaled).sum(axis=0).max()) + 1.0) + 2.0**-15))
    scaled32 = scaled.astype(np.float32)
    n_blocks = (2 if out_size >= 16 else 1) if data_rows else max(1, out_size // 4)
    edges = np.linspace(0, out_size, n_blocks + 1).round().astype(int)
    blocks = []
    for c0, c1 in pairwise(edges):
        rows = np.flatnonzero(scaled32[:, c0:c1].any(axis=1))
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 1)
        blocks.append([lo, hi, int(c0), int(c1)])
    if sum(hi - lo for lo, hi, _, _ in blocks) >= in_size * 0.8 * n_blocks:
        blocks = [[0, in_size, 0, out_size]]  # the band covers almost everything: one GEMM is cheaper
    if data_rows:
        blocks[0][0], blocks[-1][1] = 0, in_size
    plan = []
    bias = np.full((1, out_size), 0.5 + bound, dtype=np.float32)
    for i, (lo, hi, c0, c1) in enumerate(blocks):
        block = scaled32[lo:hi, c0:c1]
        if not data_rows:
            block = block.T
        elif i == 0:  # framed columns 0 (ones) .. hi
            block = np.concatenate([bias[:, c0:c1], block])
            hi += 1
        else:  # framed columns lo + 1 .. in_size + 1 (ones)
            block = np.concatenate([block, bias[:, c0:c1]])
            lo, hi = lo + 1, hi + 2
        block = np.ascontiguousarray(block)
        block.flags.writeable = False
        plan.append((lo, hi, c0, c1, block))
    return tuple(plan), bound


def _flagged(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the True entries of a contiguous boolean array. Flagged entries are rare, so the
    8-byte words holding any are found first, then the bytes within them: only the few nonzero words are
    looked at byte by byte."""
    flat = mask.reshape(-1)
    if flat.size % 8 or flat.size < 1 << 14:  # small arrays: one call beats the eight below
        return np.flatnonzero(flat)
    words = flat.view(np.uint64)
    hit = np.flatnonzero(words != 0)
    sub = np.flatnonzero(words[hit].view(np.bool_))
    return hit[sub >> 3] * 8 + (sub & 7)


class Workspace(threading.local):
    """Scratch arrays reused from batch to batch (one set per thread), for the resize passes and the hashes.

    Temporaries of this size that are freed go back to the kernel (glibc unmaps large allocations), so
    allocating them per batch would fault their pages in again every time. Views are cached by
    (name, shape, dtype): a batch asks for many, and looking one up is cheaper than building it.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}
        self.views: dict[tuple[str, tuple[int, ...], type], np.ndarray] = {}
        self.framed: dict[str, tuple[int, int]] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        view = self.views.get((name, shape, dtype))
        if view is not None:
            return view
        size = math.prod(shape) * np.dtype(dtype).itemsize
        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < size:
            buf = self.buffers[name] = np.empty(max(size, 1), dtype=np.uint8)
            self.views = {key: v for key, v in self.views.items() if key[0] != name}
            self.framed.pop(name, None)
        if len(self.views) > 512:  # many image sizes (a heterogeneous ingest batch): start over
            self.views.clear()
        view = self.views[(name, shape, dtype)] = buf[:size].view(dtype).reshape(shape)
        return view

    def get_framed(self, name: str, rows: int, cols: int) -> np.ndarray:
        """float32 (rows, cols + 2) framed by a first and a last column of ones (the bias column the pass plans
        expect); they are only rewritten when the layout changes, since a strided column write per batch
        would eat into what the frame saves."""
        out = self.get(name, (rows, cols + 2), np.float32)
        if self.framed.get(name) != (rows, cols):
            out[:, 0] = 1.0
            out[:, -1] = 1.0
            self.framed[name] = (rows, cols)
        return out


WORKSPACE = Workspace()


def _round_pass(v: np.ndarray, dst: np.ndarray, bound: float) -> np.ndarray:
    """Round the float32 sums v (destroyed) to nearest into dst, clipped to 0..255; return the flat indices
    of the sums that may round differently from Pillow.

    Rounding v to nearest (``rint``) agrees with Pillow's round-half-up of the exact sum whenever v is farther
    than twice the error bound from a half-integer, checked as ``|v - rint(v)| <= 0.5 - 2 bound`` (the
    subtraction is exact).
    """
    r = dst if dst.dtype == np.float32 else WORKSPACE.get("rounded", v.shape, np.float32)
    np.rint(v, out=r)
    v -= r
    np.abs(v, out=v)  # distance of the sum from the integer it rounds to
    mask = WORKSPACE.get("mask", v.shape, np.bool_)
    np.greater(v, np.float32(0.5 - 2 * bound), out=mask)
    np.clip(r, 0, 255, out=dst)
    return _flagged(mask)


def _floor_pass(w: np.ndarray, dst: np.ndarray, bound: float) -> np.ndarray:
    """Pillow's result from float32 sums w that include the bias 0.5 + bound: ``floor(w)`` into dst, clipped
    to 0..255; return the flat indices of the sums that may round differently from Pillow.

    With the exact sum s and |w - (s + 0.5 + bound)| <= bound, s + 0.5 lies in [w - 2 bound, w], so
    ``floor(w)`` is Pillow's ``floor(s + 0.5)`` unless ``w - floor(w) < 2 bound``: one comparison instead of
    the distance to the nearest half-integer (one pass over the data less). The subtraction is exact for
    w >= 0; negative w clip to 0, which is right whatever their fraction.
    """
    np.floor(w, out=dst)
    w -= dst
    mask = WORKSPACE.get("mask", w.shape, np.bool_)
    np.less(w, np.float32(2 * bound), out=mask)
    np.clip(dst, 0, 255, out=dst)
    return _flagged(mask)


def _fix_flagged(flat: np.ndarray, dst: np.ndarray, src: np.ndarray, in_size: int, out_size: int, data_rows: bool) -> None:
    """Recompute the flagged sums exactly (float64 products of integers with their own window of taps).

    Smooth images hit exact half-integers often (a ramp averages to k + 0.5): ~5 sums per 64x64 image and pass.
    ``src`` is the pass input: framed x (R, in + 2) with lines in rows, contiguous y (in, C) with lines in
    columns. Each window is a row of a strided view of src, so gathering them is a row gather.
    """
    starts, taps = _tap_windows(in_size, out_size)
    if data_rows:  # dst (R, out): flat = r * out + j, input of tap t at r * (in + 2) + 1 + starts[j] + t
        lines, outs = np.divmod(flat, out_size)
        first = lines * src.shape[1] + 1 + starts[outs]
        step = 1
    else:  # dst (out, C): flat = j * C + c, input of tap t at (starts[j] + t) * C + c
        outs, first = np.divmod(flat, src.shape[1])
        first += starts[outs] * src.shape[1]
        step = src.shape[1]
    length = taps.shape[1]
    windows = np.ndarray((src.size - (length - 1) * step, length), np.float32, src, 0, (4, 4 * step))
    exact = np.einsum("ij,ij->i", windows[first].astype(np.float64), taps[outs])  # integer sums / 2**22: exact
    np.floor(exact + 0.5, out=exact)
    dst.reshape(-1)[flat] = np.clip(exact, 0, 255, out=exact)


def _pass_rows(x: np.ndarray, in_size: int, out_size: int, dst: np.ndarray) -> None:
    """Pillow's fixed-point pass ``clip8(sum_i x[r, i] * k[i, c])`` over the rows of float32 x (R, in_size + 2)
    framed by columns of ones (see :meth:`Workspace.get_framed`), into contiguous dst (R, out_size) as exact
    uint8 values."""
    blocks, bound = _pass_plan(in_size, out_size, True)
    w = WORKSPACE.get("v", dst.shape, np.float32)
    for lo, hi, c0, c1, block in blocks:
        np.matmul(x[:, lo:hi], block, out=w[:, c0:c1] if len(blocks) > 1 else w)
    flat = _floor_pass(w, dst, bound)
    if len(flat):
        _fix_flagged(flat, dst, x, in_size, out_size, True)


def _pass_cols(y: np.ndarray, in_size: int, out_size: int, dst: np.ndarray) -> None:
    """The same pass over the columns of contiguous float32 y (in_size, C), into dst (out_size, C)."""
    blocks, bound = _pass_plan(in_size, out_size, False)
    v = WORKSPACE.get("v", dst.shape, np.float32)
    for lo, hi, c0, c1, block in blocks:
        np.matmul(block, y[lo:hi], out=v[c0:c1])
    flat = _round_pass(v, dst, bound)
    if len(flat):
        _fix_flagged(flat, dst, y, in_size, out_size, False)


@lru_cache(maxsize=256)
def _tap_windows(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output: first input of its window, and its weights / 2**22 (exact) over a common window length
    (zero padded; windows near the end start earlier so every index stays inside the input)."""
    weights = _resample_matrix(in_size, out_size)
    nonzero = weights != 0
    first = np.where(nonzero.any(axis=0), nonzero.argmax(axis=0), 0)
    last = np.where(nonzero.any(axis=0), in_size - 1 - nonzero[::-1].argmax(axis=0), 0)
    length = int((last - first).max()) + 1
    starts = np.minimum(first, in_size - length)
    taps = np.stack([weights[s : s + length, c] for c, s in enumerate(starts)]) / _ONE
    starts.flags.writeable = False
    taps.flags.writeable = False
    return starts, taps


def _resize_anb(src: np.ndarray, first: int, second: int, dtype: type = np.float32) -> np.ndarray:
    """Resize uint8 (A, N, B) (any strides) along B to ``first``, then along A to ``second``: contiguous
    (second, N, first) exact uint8 values as ``dtype``, in the workspace (valid until the next resize on this
    thread).

    Keeping the image index between the two image axes makes both passes single GEMMs per block with no
    copies: the first over the rows of x (A*N, B), the second over the columns of its result (A, N*first).
    """
    a, n, b = src.shape
    if b != first:  # Pillow skips a pass whose axis keeps its size
        x = WORKSPACE.get_framed("x", a * n, b)
        np.copyto(x[:, 1 : b + 1].reshape(a, n, b), src, casting="unsafe")
        y = WORKSPACE.get("y", (a * n, first), np.float32)
        _pass_rows(x, b, first, y)
    else:
        y = WORKSPACE.get("y", (a * n, first), np.float32)
        np.copyto(y.reshape(a, n, b), src, casting="unsafe")
    y = y.reshape(a, n * first)
    out = WORKSPACE.get("thumbs", (second, n * first), dtype)
    if a != second:
        _pass_cols(y, a, second, out)
    else:
        np.copyto(out, y)
    return out.reshape(second, n, first)


def resize_hnw(
    src: np.ndarray, width: int, height: int, dtype: type = np.float32, vertical_first: bool | None = None
) -> tuple[np.ndarray, bool]:
    """Resize uint8 images laid out (H, N, W) like Pillow's LANCZOS: contiguous exact uint8 values as
    ``dtype``, and the pass order. Horizontal first gives (height, N, width); vertical first (width, N, height).
    The result lives in :data:`WORKSPACE` and is valid until the next resize on this thread.

    (H, N, W) is the layout of a canvas with the images side by side (the PIL path) and a free view of an
    (N, H, W) batch. ``vertical_first`` defaults to the installed Pillow's pass order.
    """
    h, _, w = src.shape
    if vertical_first is None:
        vertical_first = _pillow13_vertical_first(w, h, width, height) and _pillow_orders_passes()
    if vertical_first:
        return _resize_anb(src.transpose(2, 1, 0), height, width, dtype), True
    return _resize_anb(src, width, height, dtype), False


def _pillow13_vertical_first(w: int, h: int, width: int, height: int) -> bool:
    """Pillow 13's pass order: vertical first when the height shrinks by more than twice the width's change.

    Not in the Pillow source we could read; inferred by probing Pillow 13.0.0 on thousands of (size, target)
    pairs, where the boundary is exactly ``h - height > 2 * (w - width)`` for shrinking heights.
    """
    return h > height and (h - height) > 2 * (w - width)


@lru_cache(maxsize=1)
def _pillow_orders_passes() -> bool:
    """Whether the installed Pillow picks the pass order (Pillow 13) rather than always going horizontal first.

    Each pass rounds to uint8, so the order changes pixels; a 40x100 probe resized to 32x32 tells the two
    behaviours apart.
    """
    probe = np.random.default_rng(0).integers(0, 256, size=(100, 1, 40), dtype=np.uint8)
    want = np.asarray(Image.fromarray(probe[:, 0]).resize((32, 32), Image.Resampling.LANCZOS))
    for ordered in (True, False):
        got, _ = resize_hnw(probe, 32, 32, vertical_first=ordered)
        if np.array_equal(got[:, 0].T if ordered else got[:, 0], want):
            return ordered
    raise RuntimeError("installed Pillow's LANCZOS resample is not reproduced by either pass order")


def resize_lanczos(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (N, H, W) images resized exactly like ``Image.resize((width, height), LANCZOS)``: (N, height, width)."""
    with single_threaded_blas():
        out, vertical_first = resize_hnw(np.asarray(gray, dtype=np.uint8).transpose(1, 0, 2), width, height)
        return np.ascontiguousarray(out.transpose(1, 2, 0) if vertical_first else out.transpose(1, 0, 2), np.uint8)
