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
  floats and ``math.sin`` are the same IEEE operations and libm as the C code) and applied as one GEMM per
  pass over the whole batch. Pillow 13 runs the vertical pass first when the height shrinks much more than
  the width; because each pass rounds, the order changes pixels, so the installed Pillow is probed once.
* The GEMMs run in float32 (twice the speed of float64) with a rigorous error bound; the few sums whose
  rounding point lies inside that bound are recomputed exactly in float64 (integer arithmetic there), so
  every resampled pixel equals Pillow's.
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

# Input pixels per chunk: keeps GEMM operands and the elementwise temporaries (~1 MB each) in L2/L3;
# measured 2x faster than 4x larger chunks on 28x28 and 64x64 batches.
_CHUNK_PIXELS = 1 << 18


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
def _fast_pass(in_size: int, out_size: int) -> tuple[np.ndarray, float]:
    """float32 weights (scaled by 2**-22, still exact) and the half-width of the untrusted band around .5.

    A float32 dot product of n nonzero terms is off by at most gamma_n * sum|x_i w_i| in any summation order,
    with or without FMA (zero terms add nothing); x <= 255. Adding 0.5 to a value below 1024 rounds by at
    most 2**-15 more. Twice that total is the band within which the float32 rounding is not trusted.
    """
    weights = _resample_matrix(in_size, out_size)
    scaled = weights / _ONE
    taps = int((weights != 0).sum(axis=0).max())
    gamma = taps * _F32_UNIT_ROUNDOFF / (1 - taps * _F32_UNIT_ROUNDOFF)
    bound = gamma * 255.0 * float(np.abs(scaled).sum(axis=0).max()) + 2.0**-15
    scaled32 = scaled.astype(np.float32)
    scaled32.flags.writeable = False
    return scaled32, 2.0 * bound


def _apply_pass(x: np.ndarray, in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point pass ``clip8(sum_i x[r, i] * k[i, c])`` for float32 rows x (R, in_size).

    Returns float32 (R, out_size) holding exact uint8 values.
    """
    scaled, band = _fast_pass(in_size, out_size)
    v = x @ scaled
    out = np.add(v, 0.5)
    np.floor(out, out=out)
    v -= out
    np.abs(v, out=v)  # distance of the rounding point from the middle of its unit interval
    flat = np.flatnonzero(v > 0.5 - band)
    if len(flat):
        rows, cols = np.divmod(flat, out_size)
        weights = _resample_matrix(in_size, out_size)
        exact = (x[rows].astype(np.float64) * weights.T[cols]).sum(axis=1)  # integer sums < 2**53: exact
        out.reshape(-1)[flat] = _fixed_point_to_uint8(exact)
    return np.clip(out, 0, 255, out=out)


def _resize_transposed(batch: np.ndarray, first: int, second: int) -> np.ndarray:
    """Resize uint8 (N, A, B) along B to ``first``, then along A to ``second``: float32 (N, first, second).

    The output is the resized image transposed: keeping the untouched axis outermost makes both passes
    single GEMMs, on (A*N, B) and (first*N, A) matrices, with no copies between them.
    """
    n, a, b = batch.shape
    x = np.ascontiguousarray(batch.transpose(1, 0, 2), dtype=np.float32).reshape(a * n, b)
    y = _apply_pass(x, b, first) if b != first else x  # Pillow skips a pass whose axis keeps its size
    if a == second:
        return np.ascontiguousarray(y.reshape(a, n, first).transpose(1, 2, 0))
    return _apply_pass(y.reshape(a, n * first).T, a, second).reshape(n, first, second)


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
    # Same arithmetic as np.median of 64 values: mean of the 32nd and 33rd smallest.
    part = np.partition(flat, (31, 32), axis=1)
    med = (part[:, 31:32] + part[:, 32:33]) / 2
    bits = flat > med
    near_tie = np.abs(flat - med).min(axis=1) < _TIE_TOLERANCE
    for i in np.flatnonzero(near_tie):
        pixels = (small[i].T if transposed else small[i]).astype(np.uint8)
        exact = _scipy_lowfreq(pixels).ravel()
        bits[i] = exact > np.median(exact)
    return _bits_to_uint64(bits)


def _phash_batch(batch: np.ndarray) -> np.ndarray:
    """Hashes of uint8 (N, H, W) or (N, H, W, 3), in chunks that keep the working set in cache."""
    n, h, w = batch.shape[:3]
    chunk = max(1, _CHUNK_PIXELS // (h * w))
    hashes = []
    for i in range(0, n, chunk):
        part = batch[i : i + chunk]
        gray = rgb_to_l(part) if part.ndim == 4 else part
        hashes.append(_hash_small(*_resize_f32(gray, IMG_SIZE, IMG_SIZE)))
    return np.concatenate(hashes)


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


def _luma_bytes(image: Image.Image) -> tuple[bytes, tuple[int, ...]]:
    """Raw bytes and array shape of an image whose L conversion equals ``image.convert("L")``."""
    w, h = image.size
    if image.mode == "L":
        return image.tobytes(), (h, w)
    if image.mode == "RGB":
        return image.tobytes(), (h, w, 3)
    # Palettes, alpha, 16-bit etc. have their own conversion paths; let Pillow do those exactly.
    return image.convert("L").tobytes(), (h, w)


def phash_images(images: Sequence[Image.Image]) -> np.ndarray:
    """uint64 pHashes of PIL images, equal to ``int(str(imagehash.phash(img)), 16)`` for each.

    Images are grouped by (size, channels) so each group is one batched resample + DCT; raw bytes are
    joined per group, which is cheaper than an array per image.
    """
    out = np.zeros(len(images), dtype=np.uint64)
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    raw = []
    for i, im in enumerate(images):
        data, shape = _luma_bytes(im)
        raw.append(data)
        groups[shape].append(i)
    with _single_threaded_blas():
        for shape, idx in groups.items():
            batch = np.frombuffer(b"".join([raw[i] for i in idx]), dtype=np.uint8).reshape(len(idx), *shape)
            out[idx] = _phash_batch(batch)
    return out


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
