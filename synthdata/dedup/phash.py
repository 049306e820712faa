"""Batched 64-bit DCT perceptual hash, bit-identical to ``imagehash.phash`` (imagehash 4.3, hash_size=8).

``imagehash.phash`` does, per image::

    small = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(np.asarray(small), axis=0), axis=1)
    bits = dct[:8, :8] > np.median(dct[:8, :8])

Per image that is ~50-70 us, mostly call overhead. Here every step is replayed on whole batches:

* PIL images of one size are pasted side by side into a workspace array mapped as a Pillow canvas (a C
  memcpy per image, no allocation), converted to L by Pillow's own conversions (RGB ones in one call per
  chunk). The canvas is (H, N, W): rows of all images interleaved, the layout both resize passes want.
* Pillow's 8-bit LANCZOS resample (``libImaging/Resample.c``) precomputes, per output pixel, a window of
  normalised filter weights, turns them into fixed point with ``PRECISION_BITS = 22`` and runs two 1-D
  passes, each rounding (``+ 2**21``, arithmetic shift) and clipping to uint8. The weights depend only on
  (input size, output size), so they are built once per size with the same double arithmetic (Python
  floats and ``math.sin`` are the same IEEE operations and libm as the C code) and applied as banded GEMMs
  over the whole chunk: the first pass over the rows of (H*N, W), the second over the columns of the
  result (H, N*32), so no transpose is ever copied. Pillow 13 runs the vertical pass first when the height
  shrinks much more than the width; because each pass rounds, the order changes pixels, so the installed
  Pillow is probed once. Scratch arrays are reused between chunks (freeing them made the kernel fault the
  pages in again on every chunk, which cost more than the arithmetic).
* The GEMMs run in float32 (twice the speed of float64) with a rigorous error bound; the few sums whose
  rounding point lies inside that bound (smooth images hit exact half-integers often) are recomputed
  exactly in float64 over their own tap window (integer arithmetic there), so every resampled pixel
  equals Pillow's.
* The DCT is two matrix products with scipy's unnormalised DCT-II basis, keeping the 8 low rows/columns.
  It differs from scipy's FFT-based DCT by ~1e-10, which can only flip a bit when a coefficient ties the
  median (flat or symmetric images); those images are recomputed with the exact scipy call imagehash uses.
* :func:`crop_robust_hashes` adds a companion average hash from the same 32x32 thumbnails (its block sums
  ride along in the DCT's GEMMs), for the crop-tolerant candidate channel of :mod:`synthdata.dedup.near_dup`.

Where the time goes (2-core AMD EPYC, OpenBLAS, 64x64 photos, per image; imagehash takes ~66 us for L and
~68 us for RGB): pasting 1.4 us for L images and 4.1 us for RGB ones (cold pixels, and Pillow's RGB->L),
the two resize GEMMs ~2.4 us (at the core's float32 peak: the band wastes ~2/3 of the flops, and narrower
blocks run slower), rounding checks ~1 us, finding and fixing the near-half sums ~1 us (~10 per smooth
image), DCT and median ~1 us, the crop-robust hash ~0.8 us more. See ``benchmarks/phash_speed.py``.

Hashes are ``uint64`` with the first (top-left, row-major) bit most significant, i.e. equal to
``int(str(imagehash.phash(img)), 16)``. DuckDB stores them as signed ``BIGINT`` (the same 64 bits
reinterpreted, see :func:`to_signed`): pandas and Arrow round-trip int64 losslessly everywhere, and
xor / bit_count / shift-and-mask give the same answers on the bit pattern as on UBIGINT.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from operator import attrgetter

import numpy as np
from PIL import Image

from synthdata.blas import single_threaded_blas
from synthdata.color import rgb_to_l

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
IMG_SIZE = HASH_SIZE * HIGHFREQ_FACTOR  # 32: imagehash's working resolution

# Pillow's fixed-point precision for 8-bit resampling: 32 bits - 8 for the pixel - 2 for overflow headroom.
_PRECISION_BITS = 32 - 8 - 2
_ONE = float(1 << _PRECISION_BITS)
_LANCZOS_SUPPORT = 3.0
_F32_UNIT_ROUNDOFF = 2.0**-24

# Absolute distance to the median under which the matrix-product DCT may disagree with scipy's FFT DCT.
# Coefficients are at most ~1e6 and both methods err by ~1e-9 there, so 1e-6 leaves a 1000x margin.
_TIE_TOLERANCE = 1e-6

# Input pixels per chunk: keeps GEMM operands and the elementwise temporaries (~1-2 MB each) in L2/L3
# while amortising the per-chunk overhead (~100 us of numpy calls); at most _CHUNK_IMAGES images (small
# images: the per-image temporaries of the DCT/median stage grow with the count). Measured flat between
# 96 and 192 images at 64x64 and best at 256 for 28x28.
_CHUNK_PIXELS = 1 << 19
_CHUNK_IMAGES = 256


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


@lru_cache(maxsize=256)
def _resample_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Dense (in_size, out_size) float64 matrix of Pillow's fixed-point LANCZOS weights for one axis.

    Mirrors ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the full box (0, in_size); the float
    rounding of every step (center, window bounds, normalisation, fixed-point rounding) is kept in order.
    """
    scale = float(in_size) / out_size
    filterscale = max(scale, 1.0)
    support = _LANCZOS_SUPPORT * filterscale
    inv_filterscale = 1.0 / filterscale
    weights = np.zeros((in_size, out_size), dtype=np.float64)
    for xx in range(out_size):
        center = 0.0 + (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C (int) truncates toward zero, as int() does
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_lanczos((x + xmin - center + 0.5) * inv_filterscale) for x in range(xmax)]
        ww = 0.0
        for w in k:  # sequential sum, same association order as the C loop
            ww += w
        if ww != 0.0:
            k = [w / ww for w in k]
        weights[xmin : xmin + xmax, xx] = [int(-0.5 + w * _ONE) if w < 0 else int(0.5 + w * _ONE) for w in k]
    weights.flags.writeable = False
    return weights


@lru_cache(maxsize=512)
def _pass_plan(in_size: int, out_size: int, data_rows: bool) -> tuple[tuple[tuple[int, int, int, int, np.ndarray], ...], float]:
    """Blocks of the float32 weights (scaled by 2**-22, still exact) and the error bound of the float32 sums.

    ``data_rows``: the data holds one line per row, x (R, in) @ W (in, out); otherwise one line per column,
    W^T (out, in) @ y (in, C). The LANCZOS matrix is banded (each output reads ~6 * scale neighbouring
    inputs), so the outputs are cut into blocks, each multiplied with only the inputs its band touches.
    With lines in rows each block is a column slice of x, and OpenBLAS loses efficiency below ~16 outputs
    per block, so two blocks (~40% fewer flops than dense at 64 -> 32; 4 blocks were slower). With lines in
    columns each block is a contiguous row slice of y and small blocks stay efficient, so blocks of 4
    outputs (at 64 -> 32: 8 blocks of 4 took 0.58 us per image, 2 blocks 0.76, dense 1.17).

    Blocks are ``(in_lo, in_hi, out_lo, out_hi, weights)``. With lines in columns the weights are
    ``W[in_lo:in_hi, out_lo:out_hi].T``. With lines in rows x is framed by a column of ones on each side
    (see :func:`_pass_rows`) and ``(in_lo, in_hi)`` index the framed x: the first block is widened to start
    at input 0 and the last to end at ``in_size``, each takes the ones column next to it, and its weights
    get one more row holding the bias ``0.5 + bound``, which turns Pillow's round-half-up into a floor that
    needs checking on one side only (see :func:`_floor_pass`).

    A float32 dot product of n nonzero terms is off by at most gamma_n * sum|x_i w_i| in any summation order,
    with or without FMA (zero terms add nothing, so dropping them keeps the bound); x <= 255 and the bias
    term is below 1. The extra 2**-15 keeps the margin the rounding step was validated with, and covers the
    float32 rounding of the bias (< 2**-25).
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
    8-byte words holding any are found first, then the bytes within them (2x cheaper than
    ``np.flatnonzero`` on the booleans, 4x cheaper than a 2-D ``np.nonzero`` on the words' bytes)."""
    flat = mask.reshape(-1)
    if flat.size % 8 or flat.size < 1 << 14:  # small arrays: one call beats the eight below
        return np.flatnonzero(flat)
    words = flat.view(np.uint64)
    hit = np.flatnonzero(words != 0)
    sub = np.flatnonzero(words[hit].view(np.bool_))
    return hit[sub >> 3] * 8 + (sub & 7)


class _Workspace(threading.local):
    """Scratch arrays reused from chunk to chunk (one set per thread).

    Allocating and freeing the ~0.5 MB temporaries of every chunk made glibc hand the pages back to the
    kernel and fault them in again on the next chunk: measured 3-4x slower than the arithmetic itself.
    Views are cached by (name, shape, dtype): building one costs ~2 us, and a chunk asks for ~15.
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
        expect); they are only rewritten when the layout changes (a strided column write per chunk cost a third
        of what the frame saves)."""
        out = self.get(name, (rows, cols + 2), np.float32)
        if self.framed.get(name) != (rows, cols):
            out[:, 0] = 1.0
            out[:, -1] = 1.0
            self.framed[name] = (rows, cols)
        return out


_WORK = _Workspace()


def _round_pass(v: np.ndarray, dst: np.ndarray, bound: float) -> np.ndarray:
    """Round the float32 sums v (destroyed) to nearest into dst, clipped to 0..255; return the flat indices
    of the sums that may round differently from Pillow.

    Rounding v to nearest (``rint``) agrees with Pillow's round-half-up of the exact sum whenever v is farther
    than twice the error bound from a half-integer, checked as ``|v - rint(v)| <= 0.5 - 2 bound`` (the
    subtraction is exact).
    """
    r = dst if dst.dtype == np.float32 else _WORK.get("rounded", v.shape, np.float32)
    np.rint(v, out=r)
    v -= r
    np.abs(v, out=v)  # distance of the sum from the integer it rounds to
    mask = _WORK.get("mask", v.shape, np.bool_)
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
    mask = _WORK.get("mask", w.shape, np.bool_)
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
    framed by columns of ones (see :meth:`_Workspace.get_framed`), into contiguous dst (R, out_size) as exact
    uint8 values."""
    blocks, bound = _pass_plan(in_size, out_size, True)
    w = _WORK.get("v", dst.shape, np.float32)
    for lo, hi, c0, c1, block in blocks:
        np.matmul(x[:, lo:hi], block, out=w[:, c0:c1] if len(blocks) > 1 else w)
    flat = _floor_pass(w, dst, bound)
    if len(flat):
        _fix_flagged(flat, dst, x, in_size, out_size, True)


def _pass_cols(y: np.ndarray, in_size: int, out_size: int, dst: np.ndarray) -> None:
    """The same pass over the columns of contiguous float32 y (in_size, C), into dst (out_size, C)."""
    blocks, bound = _pass_plan(in_size, out_size, False)
    v = _WORK.get("v", dst.shape, np.float32)
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
        x = _WORK.get_framed("x", a * n, b)
        np.copyto(x[:, 1 : b + 1].reshape(a, n, b), src, casting="unsafe")
        y = _WORK.get("y", (a * n, first), np.float32)
        _pass_rows(x, b, first, y)
    else:
        y = _WORK.get("y", (a * n, first), np.float32)
        np.copyto(y.reshape(a, n, b), src, casting="unsafe")
    y = y.reshape(a, n * first)
    out = _WORK.get("thumbs", (second, n * first), dtype)
    if a != second:
        _pass_cols(y, a, second, out)
    else:
        np.copyto(out, y)
    return out.reshape(second, n, first)


def _resize_hnw(
    src: np.ndarray, width: int, height: int, dtype: type = np.float32, vertical_first: bool | None = None
) -> tuple[np.ndarray, bool]:
    """Resize uint8 images laid out (H, N, W) like Pillow's LANCZOS: contiguous exact uint8 values as
    ``dtype``, and the pass order. Horizontal first gives (height, N, width); vertical first (width, N, height).

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

    Each pass rounds to uint8, so the order changes pixels; a 40x100 probe tells the two behaviours apart.
    """
    probe = np.random.default_rng(0).integers(0, 256, size=(100, 1, 40), dtype=np.uint8)
    want = np.asarray(Image.fromarray(probe[:, 0]).resize((IMG_SIZE, IMG_SIZE), Image.Resampling.LANCZOS))
    for ordered in (True, False):
        got, _ = _resize_hnw(probe, IMG_SIZE, IMG_SIZE, vertical_first=ordered)
        if np.array_equal(got[:, 0].T if ordered else got[:, 0], want):
            return ordered
    raise RuntimeError("installed Pillow's LANCZOS resample is not reproduced by either pass order")


def resize_lanczos(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (N, H, W) images resized exactly like ``Image.resize((width, height), LANCZOS)``: (N, height, width)."""
    with single_threaded_blas():
        out, vertical_first = _resize_hnw(np.asarray(gray, dtype=np.uint8).transpose(1, 0, 2), width, height)
        return np.ascontiguousarray(out.transpose(1, 2, 0) if vertical_first else out.transpose(1, 0, 2), np.uint8)


# Crop-robust companion hash (see :func:`crop_robust_hashes`): images with a side below this get none (0).
CROP_HASH_MIN_SIDE = 16


@lru_cache(maxsize=2)
def _projection(with_blocks: bool) -> np.ndarray:
    """(32, 8) float64: the first 8 rows of scipy's unnormalised DCT-II for length 32, ``2 cos(pi k (2n+1) / 64)``,
    as columns; ``with_blocks`` appends 8 columns that sum 4-pixel runs, so the same two GEMMs that give the
    8x8 DCT also give the 8x8 block sums of the crop-robust hash (on the block diagonal of a 16x16 result)."""
    n = np.arange(IMG_SIZE)[:, None]
    k = np.arange(HASH_SIZE)[None, :]
    columns = [2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * IMG_SIZE))]
    if with_blocks:
        columns.append((n // HIGHFREQ_FACTOR == k).astype(np.float64))
    proj = np.ascontiguousarray(np.concatenate(columns, axis=1))
    proj.flags.writeable = False
    return proj


def _scipy_lowfreq(pixels: np.ndarray) -> np.ndarray:
    """imagehash's own DCT call on one 32x32 uint8 image, used only for near-tie images."""
    import scipy.fftpack

    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    return dct[:HASH_SIZE, :HASH_SIZE]


def _bits_to_uint64(bits: np.ndarray) -> np.ndarray:
    """(..., 64) booleans, row-major, first bit most significant -> (...) uint64."""
    packed = np.packbits(bits, axis=-1, bitorder="big")  # (..., 8) bytes
    return packed.view(">u8")[..., 0].astype(np.uint64)


def _hash_thumbs(thumbs: np.ndarray, vertical_first: bool, crop_hash: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """pHashes (and with ``crop_hash`` the 8x8 block-mean hashes) of float64 thumbnails from
    :func:`_resize_hnw`: (32, N, 32), rows outermost unless ``vertical_first`` (then columns).

    Both hashes are 8x8 projections P^T S P of each thumbnail S, computed for the whole batch as two GEMMs
    with no transpose: the first contracts the innermost axis, the second the outermost.
    """
    s_out, n, s_in = thumbs.shape
    proj = _projection(crop_hash)
    m = proj.shape[1]
    inner = _WORK.get("inner", (s_out * n, m), np.float64)
    np.matmul(thumbs.reshape(s_out * n, s_in), proj, out=inner)  # (32 outer, N, m)
    both = _WORK.get("both", (m, n * m), np.float64)
    np.matmul(proj.T, inner.reshape(s_out, n * m), out=both)
    both = both.reshape(m, n, m)  # [projection of the outer axis, image, projection of the inner axis]
    kinds = m // HASH_SIZE
    feats = _WORK.get("feats", (n, kinds, HASH_SIZE, HASH_SIZE), np.float64)
    for kind in range(kinds):
        sel = slice(kind * HASH_SIZE, (kind + 1) * HASH_SIZE)
        block = both[sel, :, sel]  # [outer, image, inner]; the DCT's first index is the image row
        np.copyto(feats[:, kind], block.transpose(1, 2, 0) if vertical_first else block.transpose(1, 0, 2))
    flat = feats.reshape(n, kinds, HASH_SIZE * HASH_SIZE)
    # np.median of 64 values is the mean of the 32nd and 33rd smallest; numpy's vectorised sort of short
    # rows is ~10x faster than np.median's per-row selection.
    part = np.sort(flat, axis=-1)
    med = (part[..., 31] + part[..., 32]) / 2
    bits = flat > med[..., None]
    # The GEMM DCT differs from scipy's FFT DCT by ~1e-10: a bit can only differ when a coefficient is within
    # _TIE_TOLERANCE of the median, and the coefficients nearest the median are the 32nd and 33rd smallest.
    # Block sums are exact integers, so their bits are already exactly np.median's.
    for i in np.flatnonzero(part[:, 0, 32] - part[:, 0, 31] < 2 * _TIE_TOLERANCE):
        thumb = thumbs[:, i]
        pixels = (thumb.T if vertical_first else thumb).astype(np.uint8)
        exact = _scipy_lowfreq(pixels).ravel()
        bits[i, 0] = exact > np.median(exact)
    hashes = _bits_to_uint64(bits)
    return hashes[:, 0], (hashes[:, 1] if crop_hash else None)


def _hash_hnw(src: np.ndarray, crop_hash: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Hashes of uint8 images laid out (H, N, W): pHashes, and crop-robust hashes when asked (0 for images
    with a side under CROP_HASH_MIN_SIDE)."""
    h, n, w = src.shape
    thumbs, vertical_first = _resize_hnw(src, IMG_SIZE, IMG_SIZE, np.float64)
    crop_hash_here = crop_hash and min(h, w) >= CROP_HASH_MIN_SIDE
    hashes, crops = _hash_thumbs(thumbs, vertical_first, crop_hash_here)
    if crop_hash and crops is None:
        crops = np.zeros(n, dtype=np.uint64)
    return hashes, crops


def _chunk_images(h: int, w: int) -> int:
    return max(1, min(_CHUNK_IMAGES, _CHUNK_PIXELS // max(1, h * w)))


def _check_batch(arr: np.ndarray) -> np.ndarray:
    """Validate a uint8 (N, H, W) grayscale or (N, H, W, 3) RGB batch."""
    if arr.dtype != np.uint8:
        raise TypeError(f"expected uint8 images, got {arr.dtype}")
    if not (arr.ndim == 3 or (arr.ndim == 4 and arr.shape[-1] == 3)):
        raise ValueError(f"expected (N, H, W) or (N, H, W, 3), got shape {arr.shape}")
    return arr


def phash_arrays(gray: np.ndarray) -> np.ndarray:
    """uint64 pHashes of a batch of same-size uint8 images: (N, H, W) grayscale or (N, H, W, 3) RGB."""
    arr = _check_batch(np.asarray(gray))
    n, h, w = arr.shape[:3]
    out = np.zeros(n, dtype=np.uint64)
    chunk = _chunk_images(h, w)
    with single_threaded_blas():
        for s in range(0, n, chunk):
            part = arr[s : s + chunk]
            if part.ndim == 4:
                part = rgb_to_l(part)
            out[s : s + len(part)] = _hash_hnw(part.transpose(1, 0, 2), crop_hash=False)[0]
    return out


def _pillow_cores(images: Sequence[Image.Image]) -> list:
    """The ``ImagingCore`` of each image. Decoded images are loaded already, and ``load()`` costs ~0.2 us
    each (half the cost of pasting a 64x64 image), so it only runs when a lazily opened image is among them."""
    try:
        cores: list | None = list(map(_IM, images))
    except AssertionError:  # Pillow asserts that the image is loaded...
        cores = None
    if cores is None or None in cores:  # ...or, under python -O, returns None
        cores = []
        for im in images:
            im.load()
            cores.append(im.im)
    return cores


_IM = attrgetter("im")


@lru_cache(maxsize=1)
def _canvas_maps_buffer() -> bool:
    """Whether pasting into a ``frombuffer`` canvas writes the numpy buffer behind it, as Pillow 11-13 do.

    It is Pillow's implementation, not its promise: a version that copied the buffer would leave our canvas
    unwritten and every hash wrong without an error. Checked once per process; if it fails, images are
    converted one by one instead (slower, same hashes).
    """
    probe = Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4) * 20)
    buffer = np.zeros((3, 8), np.uint8)
    try:
        canvas = Image.frombuffer("L", (8, 3), buffer, "raw", "L", 0, 1).im
        canvas.paste(probe.im, (4, 0, 8, 3))
    except Exception:  # any API change: take the safe path
        return False
    return bool(np.array_equal(buffer[:, 4:], np.asarray(probe)) and not buffer[:, :4].any())


def _stack_side_by_side(images: Sequence[Image.Image], w: int, h: int) -> np.ndarray:
    """The safe equivalent of :func:`_paste_side_by_side`: one ``convert("L")`` and array copy per image."""
    buffer = _WORK.get("canvas", (h, len(images) * w), np.uint8).reshape(h, len(images), w)
    for i, im in enumerate(images):
        buffer[:, i, :] = np.asarray(im if im.mode == "L" else im.convert("L"))
    return buffer


def _paste_side_by_side(images: Sequence[Image.Image], n_l: int, n_rgb: int, w: int, h: int) -> np.ndarray:
    """uint8 (h, N, w) holding ``np.asarray(im.convert("L"))`` of each image, with little per-image cost.
    The first ``n_l`` images are in mode L, the next ``n_rgb`` in RGB, the rest in any other mode.

    ``tobytes()`` / ``np.asarray`` cost ~3-10 us per small image (Python-level encoder setup), more than
    hashing it. Instead a workspace array is mapped as one Pillow canvas with the images side by side and
    each image is pasted into it (a C memcpy per row, no allocation); the canvas is already the (H, N, W)
    layout the resize wants. Conversions to L are Pillow's own, the ones ``imagehash`` runs: RGB images are
    pasted into an RGBX canvas converted in one call (~1 us per 64x64 image less than one call per image),
    other modes (palettes, alpha, 16-bit...) are converted one by one exactly as ``Image.convert("L")`` does.
    """
    if not _canvas_maps_buffer():
        return _stack_side_by_side(images, w, h)
    n = len(images)
    buffer = _WORK.get("canvas", (h, n * w), np.uint8)
    # A writable buffer maps as a writable Pillow image: only the Python wrapper is flagged read-only, and
    # the pastes go through its core.
    canvas = Image.frombuffer("L", (n * w, h), buffer, "raw", "L", 0, 1).im
    boxes = _boxes(n, w, h)
    n_direct = n_l + n_rgb
    cores = _pillow_cores(images[:n_direct]) + [im.convert("L").im for im in images[n_direct:]]
    deque(map(canvas.paste, cores[:n_l], boxes[:n_l]), maxlen=0)
    if n_rgb:
        rgbx = _WORK.get("canvas_rgb", (h, n_rgb * w, 4), np.uint8)
        rgb_canvas = Image.frombuffer("RGBX", (n_rgb * w, h), rgbx, "raw", "RGBX", 0, 1).im
        deque(map(rgb_canvas.paste, cores[n_l:n_direct], boxes), maxlen=0)
        canvas.paste(rgb_canvas.convert("L"), (n_l * w, 0, n_direct * w, h))  # RGBX -> L: rgb2l, as for RGB
    deque(map(canvas.paste, cores[n_direct:], boxes[n_direct:]), maxlen=0)
    return buffer.reshape(h, n, w)


@lru_cache(maxsize=64)
def _boxes(n: int, w: int, h: int) -> tuple[tuple[int, int, int, int], ...]:
    return tuple((i * w, 0, (i + 1) * w, h) for i in range(n))


def _hash_images(images: Sequence[Image.Image], crop_hash: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Hashes of PIL images, batched by size. Within a size the images are ordered L, RGB, other, so that
    a chunk mixing modes still is one canvas, one resize and one DCT (ingestion's batches mix L and RGB)."""
    out = np.zeros(len(images), dtype=np.uint64)
    crops = np.zeros(len(images), dtype=np.uint64) if crop_hash else None
    groups: dict[tuple[int, int], tuple[list[int], list[int], list[int]]] = {}
    for i, im in enumerate(images):
        mode = im.mode
        by_kind = groups.get(im.size)
        if by_kind is None:
            by_kind = groups[im.size] = ([], [], [])
        by_kind[0 if mode == "L" else 1 if mode == "RGB" else 2].append(i)
    with single_threaded_blas():
        for (w, h), (l_idx, rgb_idx, other_idx) in groups.items():
            idx = l_idx + rgb_idx + other_idx
            chunk = _chunk_images(h, w)
            for s in range(0, len(idx), chunk):
                part = idx[s : s + chunk]
                n_l = min(max(len(l_idx) - s, 0), len(part))
                n_rgb = min(max(len(l_idx) + len(rgb_idx) - s, 0), len(part)) - n_l
                canvas = _paste_side_by_side([images[i] for i in part], n_l, n_rgb, w, h)
                hashes, crop = _hash_hnw(canvas, crop_hash)
                out[part] = hashes
                if crops is not None:
                    crops[part] = crop
    return out, crops


def phash_images(images: Sequence[Image.Image]) -> np.ndarray:
    """uint64 pHashes of PIL images, equal to ``int(str(imagehash.phash(img)), 16)`` for each.

    Images are grouped by size; each group is pasted side by side into shared canvases (see
    :func:`_paste_side_by_side`) in chunks that keep the working set in cache, each hashed as one batch.
    """
    return _hash_images(images, crop_hash=False)[0]


def crop_robust_hashes(images: Sequence[Image.Image]) -> np.ndarray:
    """uint64 crop-robust companion hashes of PIL images (store as ``phash2`` next to ``phash``).

    64 bits: the 8x8 block means of the same 32x32 LANCZOS thumbnail pHash uses, thresholded at their
    median (an average hash). It ignores phase, so a crop of a few percent moves ~4 bits (p95 9) where
    pHash moves 6 (p95 12+). It is only meaningful on images with enough pixels: images with a side below
    ``CROP_HASH_MIN_SIDE`` and flat images get 0, which :func:`synthdata.dedup.near_dup.candidate_pairs` skips
    (on tiny 8x8 digits the average hash collides for ~10% of distinct pairs).
    """
    return phash_and_crop_hashes(images)[1]


def phash_and_crop_hashes(images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """``(phash_images(images), crop_robust_hashes(images))`` from one pass over the images (the block sums
    ride along in the DCT's GEMMs): what ingestion should store as ``phash`` and ``phash2``."""
    phash, crops = _hash_images(images, crop_hash=True)
    assert crops is not None
    return phash, crops


def _as_uint64(hashes: np.ndarray | int) -> np.ndarray:
    """Hashes given as uint64, int64 (BIGINT) or Python ints -> uint64 with the same bits."""
    arr = np.asarray(hashes)
    if arr.dtype == np.int64:
        return arr.view(np.uint64)
    return arr.astype(np.uint64)


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Element-wise Hamming distance between 64-bit hashes (uint64, int64 or ints; broadcastable)."""
    return np.bitwise_count(np.bitwise_xor(_as_uint64(a), _as_uint64(b))).astype(np.int64)


def to_signed(hashes: np.ndarray) -> np.ndarray:
    """uint64 hashes -> int64 with the same 64 bits, for DuckDB BIGINT columns."""
    return np.asarray(hashes, dtype=np.uint64).view(np.int64)


def to_unsigned(hashes: np.ndarray) -> np.ndarray:
    """int64 hashes read back from BIGINT -> uint64 with the same 64 bits."""
    return np.asarray(hashes, dtype=np.int64).view(np.uint64)
