"""Batched 64-bit DCT perceptual hash, bit-identical to ``imagehash.phash`` (imagehash 4.3, hash_size=8).

``imagehash.phash`` does, per image::

    small = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(np.asarray(small), axis=0), axis=1)
    bits = dct[:8, :8] > np.median(dct[:8, :8])

Per image that is ~100 us, mostly call overhead. Here every step is replayed on whole batches:

* Pillow's RGB->L conversion is integer arithmetic, reproduced exactly.
* Pillow's 8-bit LANCZOS resample (``libImaging/Resample.c``) precomputes, per output pixel, a window of
  normalised filter weights, turns them into fixed point with ``PRECISION_BITS = 22`` and runs two 1-D
  passes, each rounding (``+ 2**21``, arithmetic shift) and clipping to uint8. The weights depend only on
  (input size, output size), so they are built once per size with the same double arithmetic (Python
  floats and ``math.sin`` are the same IEEE operations and libm as the C code) and applied as GEMMs over
  the whole batch: the matrix is banded, so each pass multiplies two column blocks with only the input
  rows their band touches. Scratch arrays are reused between chunks (freeing them made the kernel fault
  the pages in again on every chunk, which cost more than the arithmetic). Pillow 13 runs the vertical pass first when the height shrinks much more than
  the width; because each pass rounds, the order changes pixels, so the installed Pillow is probed once.
* The GEMMs run in float32 (twice the speed of float64) with a rigorous error bound; the few sums whose
  rounding point lies inside that bound (smooth images hit exact half-integers often) are recomputed
  exactly in float64 over their own tap window (integer arithmetic there), so every resampled pixel
  equals Pillow's.
* PIL images are read out by pasting same-size images into one canvas per chunk and converting/reading
  that canvas once (``tobytes`` per small image costs more than hashing it).
* :func:`crop_robust_hashes` adds a companion average hash from the same 32x32 thumbnails, for the
  crop-tolerant candidate channel of :mod:`synthdata.near_dup`.
* The DCT is two matrix products with scipy's unnormalised DCT-II basis, keeping the 8 low rows/columns.
  It differs from scipy's FFT-based DCT by ~1e-10, which can only flip a bit when a coefficient ties the
  median (flat or symmetric images); those images are recomputed with the exact scipy call imagehash uses.

Hashes are ``uint64`` with the first (top-left, row-major) bit most significant, i.e. equal to
``int(str(imagehash.phash(img)), 16)``. DuckDB stores them as signed ``BIGINT`` (the same 64 bits
reinterpreted, see :func:`to_signed`): pandas and Arrow round-trip int64 losslessly everywhere, and
xor / bit_count / shift-and-mask give the same answers on the bit pattern as on UBIGINT.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
IMG_SIZE = HASH_SIZE * HIGHFREQ_FACTOR  # 32: imagehash's working resolution

# Pillow's fixed-point precision for 8-bit resampling: 32 bits - 8 for the pixel - 2 for overflow headroom.
_PRECISION_BITS = 32 - 8 - 2
_ONE = float(1 << _PRECISION_BITS)
_HALF = float(1 << (_PRECISION_BITS - 1))
_LANCZOS_SUPPORT = 3.0
_F32_UNIT_ROUNDOFF = 2.0**-24

# Absolute distance to the median under which the matrix-product DCT may disagree with scipy's FFT DCT.
# Coefficients are at most ~1e6 and both methods err by ~1e-9 there, so 1e-6 leaves a 1000x margin.
_TIE_TOLERANCE = 1e-6

# Input pixels per chunk: keeps GEMM operands and the elementwise temporaries (~1-2 MB each) in L2/L3
# while amortising the per-chunk Python overhead; at most _CHUNK_IMAGES images (small images: the per-image
# temporaries of the DCT/median stage grow with the count). Measured best on 28x28 (256) and 64x64 (128).
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


def _fixed_point_to_uint8(acc: np.ndarray) -> np.ndarray:
    """Pillow's ``clip8`` on exact float64 integer sums: add the rounding half, shift out the precision, clamp."""
    out = np.floor((acc + _HALF) * (1.0 / _ONE))  # exact: integer plus integer, power-of-two scaling
    return np.clip(out, 0, 255, out=out)


@lru_cache(maxsize=256)
def _fast_pass(in_size: int, out_size: int) -> tuple[tuple[tuple[int, int, int, int, np.ndarray], ...], float]:
    """Column blocks of the float32 weights (scaled by 2**-22, still exact) and the untrusted band around .5.

    The LANCZOS matrix is banded (each output reads ~6 * scale neighbouring inputs), so it is cut into at most
    two column blocks, each multiplied with only the input rows its band touches: ~40% fewer flops than the
    dense product at 64 -> 32, while each block stays a single well-shaped GEMM (finer blocks were slower).
    Blocks are ``(in_lo, in_hi, out_lo, out_hi, weights[in_lo:in_hi, out_lo:out_hi])``.

    A float32 dot product of n nonzero terms is off by at most gamma_n * sum|x_i w_i| in any summation order,
    with or without FMA (zero terms add nothing, so dropping them keeps the bound); x <= 255. The extra 2**-15
    keeps the margin the rounding step was validated with. Twice that total is the band within which the
    float32 rounding is not trusted.
    """
    weights = _resample_matrix(in_size, out_size)
    scaled = weights / _ONE
    taps = int((weights != 0).sum(axis=0).max())
    gamma = taps * _F32_UNIT_ROUNDOFF / (1 - taps * _F32_UNIT_ROUNDOFF)
    bound = gamma * 255.0 * float(np.abs(scaled).sum(axis=0).max()) + 2.0**-15
    scaled32 = scaled.astype(np.float32)
    n_blocks = 2 if out_size >= 16 else 1
    edges = np.linspace(0, out_size, n_blocks + 1).round().astype(int)
    blocks = []
    for c0, c1 in zip(edges[:-1], edges[1:]):
        rows = np.flatnonzero(scaled32[:, c0:c1].any(axis=1))
        lo, hi = (int(rows[0]), int(rows[-1]) + 1) if len(rows) else (0, 1)
        block = np.ascontiguousarray(scaled32[lo:hi, c0:c1])
        block.flags.writeable = False
        blocks.append((lo, hi, int(c0), int(c1), block))
    if n_blocks == 2 and blocks[0][1] - blocks[0][0] + blocks[1][1] - blocks[1][0] >= in_size * 1.6:
        dense = np.ascontiguousarray(scaled32)  # the band covers almost everything: one GEMM is cheaper
        dense.flags.writeable = False
        blocks = [(0, in_size, 0, out_size, dense)]
    return tuple(blocks), 2.0 * bound


def _flagged(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the True entries of a contiguous boolean array. Flagged entries are rare, so the
    8-byte words holding any are found first (~5x cheaper than ``np.flatnonzero`` on the booleans)."""
    flat = mask.reshape(-1)
    if flat.size % 8:
        return np.flatnonzero(flat)
    words = np.flatnonzero(flat.view(np.uint64) != 0)
    if not len(words):
        return words
    sub_rows, sub_cols = np.nonzero(flat.reshape(-1, 8)[words])
    return words[sub_rows] * 8 + sub_cols


class _Workspace(threading.local):
    """Scratch arrays reused from chunk to chunk (one set per thread).

    Allocating and freeing the ~0.5 MB temporaries of every chunk made glibc hand the pages back to the
    kernel and fault them in again on the next chunk: measured 3-4x slower than the arithmetic itself.
    """

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        size = math.prod(shape) * np.dtype(dtype).itemsize
        buf = self.buffers.get(name)
        if buf is None or buf.nbytes < size:
            buf = self.buffers[name] = np.empty(max(size, 1), dtype=np.uint8)
        return buf[:size].view(dtype).reshape(shape)


_WORK = _Workspace()


def _apply_pass(x: np.ndarray, in_size: int, out_size: int, tag: str = "") -> np.ndarray:
    """Pillow's fixed-point pass ``clip8(sum_i x[r, i] * k[i, c])`` for float32 rows x (R, in_size).

    Returns float32 (R, out_size) holding exact uint8 values, in the workspace buffer ``"out" + tag`` (valid
    until the next call with the same tag). The float32 sum v is rounded to nearest (``rint``); that agrees
    with Pillow's round-half-up of the exact sum whenever v is farther than the error band from a
    half-integer, checked as ``|v - rint(v)| <= 0.5 - band`` (the subtraction is exact). The rare sums
    inside the band are recomputed exactly in float64 integer arithmetic.
    """
    blocks, band = _fast_pass(in_size, out_size)
    rows_n = x.shape[0]
    v = _WORK.get("v" + tag, (rows_n, out_size), np.float32)
    for lo, hi, c0, c1, block in blocks:
        if len(blocks) == 1:
            np.matmul(x, block, out=v)
        else:
            np.matmul(x[:, lo:hi], block, out=v[:, c0:c1])
    out = _WORK.get("out" + tag, (rows_n, out_size), np.float32)
    np.rint(v, out=out)
    v -= out
    np.abs(v, out=v)  # distance of the sum from the integer it rounds to
    mask = _WORK.get("mask" + tag, (rows_n, out_size), np.bool_)
    np.greater(v, np.float32(0.5 - band), out=mask)
    flat = _flagged(mask)
    np.clip(out, 0, 255, out=out)
    if len(flat):
        # Smooth images hit exact half-integers often (a ramp averages to k + 0.5): ~10 sums per 64x64 image.
        rows, cols = np.divmod(flat, out_size)
        starts, taps = _tap_windows(in_size, out_size)
        idx = starts[cols][:, None] + np.arange(taps.shape[1])  # each output's own window of inputs
        exact = (x[rows[:, None], idx].astype(np.float64) * taps[cols]).sum(axis=1)  # integer sums: exact
        out.reshape(-1)[flat] = _fixed_point_to_uint8(exact)
    return out


@lru_cache(maxsize=256)
def _tap_windows(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output: first input of its window, and its fixed-point weights over a common window length (zero
    padded; windows near the end start earlier so every index stays inside the input)."""
    weights = _resample_matrix(in_size, out_size)
    nonzero = weights != 0
    first = np.where(nonzero.any(axis=0), nonzero.argmax(axis=0), 0)
    last = np.where(nonzero.any(axis=0), in_size - 1 - nonzero[::-1].argmax(axis=0), 0)
    length = int((last - first).max()) + 1
    starts = np.minimum(first, in_size - length)
    taps = np.stack([weights[s : s + length, c] for c, s in enumerate(starts)])
    starts.flags.writeable = False
    taps.flags.writeable = False
    return starts, taps


def _resize_transposed(batch: np.ndarray, first: int, second: int) -> np.ndarray:
    """Resize uint8 (N, A, B) along B to ``first``, then along A to ``second``: float32 (N, first, second).

    The output is the resized image transposed: keeping the untouched axis outermost makes both passes
    single GEMMs, on (A*N, B) and (first*N, A) matrices, with no copies between them. The result lives in
    the workspace (valid until the next resize on this thread) unless no pass runs.
    """
    n, a, b = batch.shape
    x = _WORK.get("x", (a, n, b), np.float32)
    np.copyto(x, batch.transpose(1, 0, 2), casting="unsafe")
    x = x.reshape(a * n, b)
    y = _apply_pass(x, b, first, "1") if b != first else x  # Pillow skips a pass whose axis keeps its size
    if a == second:
        return np.ascontiguousarray(y.reshape(a, n, first).transpose(1, 2, 0))
    return _apply_pass(y.reshape(a, n * first).T, a, second, "2").reshape(n, first, second)


def _resize_in_order(batch: np.ndarray, width: int, height: int, vertical_first: bool) -> tuple[np.ndarray, bool]:
    """uint8 (N, H, W) -> contiguous float32 with exact uint8 values, passes in the given order.

    Returns the array and whether it is transposed, (N, width, height), rather than (N, height, width).
    """
    if vertical_first:
        return _resize_transposed(batch.transpose(0, 2, 1), height, width), False
    return _resize_transposed(batch, width, height), True


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
    probe = np.random.default_rng(0).integers(0, 256, size=(1, 100, 40), dtype=np.uint8)
    want = np.asarray(Image.fromarray(probe[0]).resize((IMG_SIZE, IMG_SIZE), Image.Resampling.LANCZOS))
    for ordered in (True, False):
        got, transposed = _resize_in_order(probe, IMG_SIZE, IMG_SIZE, vertical_first=ordered)
        if np.array_equal(got[0].T if transposed else got[0], want):
            return ordered
    raise RuntimeError("installed Pillow's LANCZOS resample is not reproduced by either pass order")


def _resize_f32(gray: np.ndarray, width: int, height: int) -> tuple[np.ndarray, bool]:
    """:func:`resize_lanczos` as contiguous float32, possibly transposed (see :func:`_resize_in_order`)."""
    _, h, w = gray.shape
    vertical_first = _pillow13_vertical_first(w, h, width, height) and _pillow_orders_passes()
    return _resize_in_order(gray, width, height, vertical_first)


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run BLAS on one thread: these GEMMs are skinny and memory-bound, and OpenBLAS's spinning worker
    threads made them up to 10x slower on shared cores (measured). Parallelise across batches instead."""
    try:
        from threadpoolctl import threadpool_limits  # ships with scikit-learn, a project dependency
    except ImportError:  # pragma: no cover - only without scikit-learn
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def resize_lanczos(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 (N, H, W) images resized exactly like ``Image.resize((width, height), LANCZOS)``: (N, height, width)."""
    with _single_threaded_blas():
        out, transposed = _resize_f32(np.asarray(gray, dtype=np.uint8), width, height)
        return np.ascontiguousarray((out.transpose(0, 2, 1) if transposed else out).astype(np.uint8))


def rgb_to_l(rgb: np.ndarray) -> np.ndarray:
    """Pillow's RGB->L conversion (ITU-R 601-2 luma in 16-bit fixed point) on (..., 3) uint8 arrays."""
    acc = rgb[..., 0] * np.uint32(19595)  # uint32 scalars: promote without a full uint32 copy of the input
    acc += rgb[..., 1] * np.uint32(38470)
    acc += rgb[..., 2] * np.uint32(7471)
    acc += np.uint32(0x8000)
    acc >>= np.uint32(16)
    return acc.astype(np.uint8)


@lru_cache(maxsize=1)
def _dct_rows() -> np.ndarray:
    """First 8 rows of scipy's unnormalised DCT-II matrix for length 32: ``2 cos(pi k (2n+1) / 64)``."""
    k = np.arange(HASH_SIZE)[:, None]
    n = np.arange(IMG_SIZE)[None, :]
    basis = 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * IMG_SIZE))
    basis.flags.writeable = False
    return basis


def _low_dct(small: np.ndarray) -> np.ndarray:
    """Top-left 8x8 of scipy's 2-D DCT-II of contiguous (N, 32, 32) images, as (N, 8, 8) float64.

    Two GEMMs over the whole batch (contract columns, then rows) instead of N small products.
    """
    n = len(small)
    basis = _dct_rows()
    cols = small.reshape(n * IMG_SIZE, IMG_SIZE).astype(np.float64) @ basis.T  # (N, 32 rows, 8 l)
    cols = np.ascontiguousarray(cols.reshape(n, IMG_SIZE, HASH_SIZE).transpose(0, 2, 1))  # (N, 8 l, 32 rows)
    both = cols.reshape(n * HASH_SIZE, IMG_SIZE) @ basis.T  # (N, 8 l, 8 k): the DCT, transposed
    return both.reshape(n, HASH_SIZE, HASH_SIZE).transpose(0, 2, 1)


def _scipy_lowfreq(pixels: np.ndarray) -> np.ndarray:
    """imagehash's own DCT call on one 32x32 uint8 image, used only for near-tie images."""
    import scipy.fftpack

    dct = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=0), axis=1)
    return dct[:HASH_SIZE, :HASH_SIZE]


def _bits_to_uint64(bits: np.ndarray) -> np.ndarray:
    """(N, 64) booleans, row-major, first bit most significant -> (N,) uint64."""
    packed = np.packbits(bits, axis=1, bitorder="big")  # (N, 8) bytes
    return packed.view(">u8").ravel().astype(np.uint64)


def _hash_small(small: np.ndarray, transposed: bool) -> np.ndarray:
    """Hashes of contiguous float32 (N, 32, 32) images holding exact uint8 values (stored transposed or not)."""
    low = _low_dct(small)
    if transposed:  # the DCT of a transposed image is the transposed DCT
        low = low.transpose(0, 2, 1)
    flat = low.reshape(len(low), -1)
    # Same arithmetic as np.median of 64 values: mean of the 32nd and 33rd smallest. A full row sort is
    # ~10x faster than np.partition here (numpy's vectorised sort on short rows vs a per-row selection).
    part = np.sort(flat, axis=1)
    med = (part[:, 31:32] + part[:, 32:33]) / 2
    bits = flat > med
    near_tie = np.abs(flat - med).min(axis=1) < _TIE_TOLERANCE
    for i in np.flatnonzero(near_tie):
        pixels = (small[i].T if transposed else small[i]).astype(np.uint8)
        exact = _scipy_lowfreq(pixels).ravel()
        bits[i] = exact > np.median(exact)
    return _bits_to_uint64(bits)


# Crop-robust companion hash (see :func:`crop_robust_hashes`): images with a side below this get none (0).
CROP_HASH_MIN_SIDE = 16


def _block_mean_hash(small: np.ndarray, transposed: bool) -> np.ndarray:
    """8x8 block means of (N, 32, 32) thumbnails thresholded at their median, as uint64; flat -> 0."""
    n = len(small)
    blocks = small.reshape(n, HASH_SIZE, HIGHFREQ_FACTOR, HASH_SIZE, HIGHFREQ_FACTOR).sum(axis=(2, 4))
    if transposed:
        blocks = blocks.transpose(0, 2, 1)
    flat = blocks.reshape(n, -1)  # integer sums of 16 pixels: exact, so the bits are deterministic
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return _bits_to_uint64(bits)


def _phash_batch(batch: np.ndarray, crop_hash: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Hashes of uint8 (N, H, W) or (N, H, W, 3), in chunks that keep the working set in cache; with
    ``crop_hash`` also the crop-robust hashes, from the same 32x32 thumbnails."""
    n, h, w = batch.shape[:3]
    chunk = _chunk_images(h, w)
    hashes, crops = [], []
    for i in range(0, n, chunk):
        part = batch[i : i + chunk]
        gray = rgb_to_l(part) if part.ndim == 4 else part
        small, transposed = _resize_f32(gray, IMG_SIZE, IMG_SIZE)
        if crop_hash:
            crops.append(_block_mean_hash(small, transposed) if min(h, w) >= CROP_HASH_MIN_SIDE
                         else np.zeros(len(part), dtype=np.uint64))
        hashes.append(_hash_small(small, transposed))
    if crop_hash:
        return np.concatenate(hashes), np.concatenate(crops)
    return np.concatenate(hashes)


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
    if len(arr) == 0:
        return np.zeros(0, dtype=np.uint64)
    with _single_threaded_blas():
        return _phash_batch(arr)


def _luma_group_key(image: Image.Image) -> tuple[str, int, int]:
    """(kind, width, height): images of one key are stacked into one canvas; ``kind`` is the mode pasted."""
    w, h = image.size
    if image.mode in ("L", "RGB"):
        return image.mode, w, h
    return "other", w, h  # palettes, alpha, 16-bit...: Pillow converts those itself, one by one


def _stack_luma(images: Sequence[Image.Image], kind: str, w: int, h: int) -> np.ndarray:
    """uint8 (N, h, w) equal to ``np.asarray(im.convert("L"))`` for each image, with little per-image cost.

    ``tobytes()`` / ``np.asarray`` cost ~3-10 us per small image (Python-level encoder setup), more than
    hashing it. Instead the images are pasted (a C memcpy per row, ~0.5-1 us) one under the other into one
    canvas of their mode, the canvas is converted to L by Pillow in one call (the exact conversion
    ``imagehash`` uses) and read out with a single ``tobytes``.
    """
    n = len(images)
    canvas = Image.new("L" if kind == "other" else kind, (w, h * n))
    core = canvas.im
    for i, im in enumerate(images):
        im.load()
        src = im.convert("L") if kind == "other" else im
        core.paste(src.im, (0, i * h, w, (i + 1) * h))
    if kind == "RGB":
        canvas = canvas.convert("L")
    return np.frombuffer(canvas.tobytes(), dtype=np.uint8).reshape(n, h, w)


def _hash_images(images: Sequence[Image.Image], crop_hash: bool) -> tuple[np.ndarray, np.ndarray | None]:
    out = np.zeros(len(images), dtype=np.uint64)
    crops = np.zeros(len(images), dtype=np.uint64) if crop_hash else None
    groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for i, im in enumerate(images):
        groups[_luma_group_key(im)].append(i)
    with _single_threaded_blas():
        for (kind, w, h), idx in groups.items():
            chunk = _chunk_images(h, w)
            for s in range(0, len(idx), chunk):
                part = idx[s : s + chunk]
                result = _phash_batch(_stack_luma([images[i] for i in part], kind, w, h), crop_hash)
                if crop_hash:
                    out[part], crops[part] = result
                else:
                    out[part] = result
    return out, crops


def phash_images(images: Sequence[Image.Image]) -> np.ndarray:
    """uint64 pHashes of PIL images, equal to ``int(str(imagehash.phash(img)), 16)`` for each.

    Images are grouped by (mode, size); each group is read out through shared canvases (see
    :func:`_stack_luma`) in chunks that keep the working set in cache, then hashed as one batch.
    """
    return _hash_images(images, crop_hash=False)[0]


def crop_robust_hashes(images: Sequence[Image.Image]) -> np.ndarray:
    """uint64 crop-robust companion hashes of PIL images (store as ``phash2`` next to ``phash``).

    64 bits: the 8x8 block means of the same 32x32 LANCZOS thumbnail pHash uses, thresholded at their
    median (an average hash). It ignores phase, so a crop of a few percent moves ~4 bits (p95 9) where
    pHash moves 6 (p95 12+). It is only meaningful on images with enough pixels: images with a side below
    ``CROP_HASH_MIN_SIDE`` and flat images get 0, which :func:`synthdata.near_dup.candidate_pairs` skips
    (on tiny 8x8 digits the average hash collides for ~10% of distinct pairs).
    """
    return _hash_images(images, crop_hash=True)[1]


def phash_and_crop_hashes(images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """``(phash_images(images), crop_robust_hashes(images))`` from one pass over the images (~5% more
    than pHash alone): what ingestion should store as ``phash`` and ``phash2``."""
    phash, crops = _hash_images(images, crop_hash=True)
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
