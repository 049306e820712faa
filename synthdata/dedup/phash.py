"""Batched 64-bit DCT perceptual hash, bit-identical to ``imagehash.phash`` (imagehash 4.3, hash_size=8).

``imagehash.phash`` does, per image::

    small = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS)
    dct = scipy.fftpack.dct(scipy.fftpack.dct(np.asarray(small), axis=0), axis=1)
    bits = dct[:8, :8] > np.median(dct[:8, :8])

Per image most of that time is call overhead. Here every step is replayed on whole batches:

* PIL images of one size are pasted side by side into a workspace array mapped as a Pillow canvas (a C
  memcpy per image, no allocation), converted to L by Pillow's own conversions (RGB ones in one call per
  chunk). The canvas is (H, N, W): rows of all images interleaved, the layout both resize passes want.
* The 32x32 thumbnails come from :func:`synthdata.dedup.resample.resize_hnw`, Pillow's 8-bit LANCZOS resize
  replayed exactly as banded GEMMs over the whole chunk.
* The DCT is two matrix products with scipy's unnormalised DCT-II basis, keeping the 8 low rows/columns.
  It differs from scipy's FFT-based DCT by ~1e-10, which can only flip a bit when a coefficient ties the
  median (flat or symmetric images); those images are recomputed with the exact scipy call imagehash uses.
* :func:`crop_robust_hashes` adds a companion average hash from the same 32x32 thumbnails (its block sums
  ride along in the DCT's GEMMs), for the crop-tolerant candidate channel of
  :func:`synthdata.dedup.candidates.candidate_pairs`.
* :func:`image_hashes` adds the shift hashes (:mod:`synthdata.dedup.shift_hash`) from the same L canvas, for
  the shift channel of :func:`synthdata.dedup.candidates.candidate_pairs`, and from the same DCT how many of
  the pHash's bits noise decides (:data:`FRAGILE_TOLERANCE`) with, for a fragile pHash, the low frequencies
  that :mod:`synthdata.dedup.fragile_phash` pairs such images by.

``benchmarks/phash_speed.py`` measures the throughput against imagehash and checks every hash.

Hashes are ``uint64`` with the first (top-left, row-major) bit most significant, i.e. equal to
``int(str(imagehash.phash(img)), 16)``. DuckDB stores them as signed ``BIGINT`` (the same 64 bits
reinterpreted, see :func:`to_signed`): pandas and Arrow round-trip int64 losslessly everywhere, and
xor / bit_count / shift-and-mask give the same answers on the bit pattern as on UBIGINT.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from functools import lru_cache
from operator import attrgetter
from typing import NamedTuple

import numpy as np
from PIL import Image

from synthdata.blas import single_threaded_blas
from synthdata.color import rgb_to_l
from synthdata.dedup.resample import WORKSPACE, resize_hnw
from synthdata.dedup.shift_hash import N_SHIFTS, shift_hashes_hnw

HASH_SIZE = 8
HIGHFREQ_FACTOR = 4
IMG_SIZE = HASH_SIZE * HIGHFREQ_FACTOR  # 32: imagehash's working resolution

# Absolute distance to the median under which the matrix-product DCT may disagree with scipy's FFT DCT.
# Coefficients are at most ~1e6 and both methods err by ~1e-9 there, so 1e-6 leaves a 1000x margin.
_TIE_TOLERANCE = 1e-6

# Input pixels per chunk: keeps GEMM operands and the elementwise temporaries (~1-2 MB each) in L2/L3
# while amortising the fixed cost of a chunk's numpy calls; at most _CHUNK_IMAGES images (small images:
# the per-image temporaries of the DCT/median stage grow with the count).
_CHUNK_PIXELS = 1 << 19
_CHUNK_IMAGES = 256


# Crop-robust companion hash (see :func:`crop_robust_hashes`): images with a side below this get none (0).
CROP_HASH_MIN_SIDE = 16

# A pHash bit is decided by noise when its coefficient lies within this share of the AC coefficients' RMS of
# the median. Symmetric drawings (circles, flags, plus signs, sunbursts) have dozens of coefficients at the
# median (0, by symmetry), and a re-encode, brightness change or resize moves each of them to either side: of
# the bits that such copies of 10,360 desktop icons and clip art flipped, 64% had a coefficient this close.
FRAGILE_TOLERANCE = 0.02
# A pHash is fragile when at least this many of its bits are: a copy that flips half of them, as noise does,
# lies at the candidate search's default radius (10) before anything else differs.
FRAGILE_BITS = 20
# Images with at least this many keep their low frequencies too, as partners of fragile ones: a copy may lose
# part of its original's symmetry (WebP smooths a 16 px glyph: 5-19 such bits left where the original had
# 20-33), so its own pHash is no longer fragile while it still lies beyond the radius.
LOWFREQ_BITS = 12
# 8x8 DCT coefficients -> those of the orthonormal DCT up to one factor: the first row and column of scipy's
# unnormalised DCT-II are sqrt(2) too large relative to the rest, so inner products of the rescaled blocks are
# those of the low-pass images they stand for.
_ORTHO = np.ones((HASH_SIZE, HASH_SIZE))
_ORTHO[0, :] *= np.sqrt(0.5)
_ORTHO[:, 0] *= np.sqrt(0.5)
_ORTHO[0, 0] = 0.0  # the mean (DC) is left out: a brightness offset moves it
_ORTHO = _ORTHO.ravel()
_FLAT_AC = 1e-3


class ImageHashes(NamedTuple):
    """What ingestion stores per image (:func:`image_hashes`); arrays are per image, in the given order."""

    phash: np.ndarray  # uint64
    phash2: np.ndarray  # uint64 crop-robust companion (0 = none)
    shifts: np.ndarray  # (N, N_SHIFTS) uint64 shift hashes
    fragile_bits: np.ndarray  # uint8: pHash bits decided by noise (FRAGILE_TOLERANCE)
    lowfreq: np.ndarray  # (N, 64) float16: unit-norm low frequencies, NaN for a flat image
    thumbs: np.ndarray  # (N, 1024) uint8: the 32x32 LANCZOS luma pHash works on (stored for the fragile channel's rows)


def fragility(dct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For pHash DCT blocks (N, 64) (imagehash's unnormalised 8x8 coefficients, row-major): how many bits noise
    decides (coefficients within FRAGILE_TOLERANCE x the AC RMS of the median), and the low frequencies as a
    unit vector (DC left out, orthonormal scaling; float16), NaN for a flat image (no AC to describe).
    FRAGILE_BITS or more make the pHash fragile; with LOWFREQ_BITS or more an image is in the fragile-pHash
    channel (:func:`fragile_channel`). Every image's low frequencies also rank its pHash partners
    (:func:`synthdata.dedup.candidates.candidate_pairs`): finer than 64 bits of Hamming distance."""
    dct = np.asarray(dct, np.float64).reshape(len(dct), HASH_SIZE * HASH_SIZE)
    med = np.median(dct, axis=1, keepdims=True)
    rms = np.sqrt(np.mean(dct[:, 1:] ** 2, axis=1, keepdims=True))
    counts = (np.abs(dct - med) <= FRAGILE_TOLERANCE * rms).sum(axis=1).astype(np.uint8)
    low = dct * _ORTHO
    norm = np.linalg.norm(low, axis=1, keepdims=True)
    # A flat image's AC is the matrix-product DCT's rounding (~1e-10), not content; any visible detail is >= ~1.
    kept = norm[:, 0] > _FLAT_AC
    out = np.full(low.shape, np.nan, np.float16)
    out[kept] = low[kept] / norm[kept]
    return counts, out


def lowfreq_bytes(lowfreq: np.ndarray) -> bytes | None:
    """One image's ``lowfreq`` row (64 float16, NaN when not kept) as stored: 128 bytes, or None."""
    row = np.asarray(lowfreq, np.float16)
    return None if np.isnan(row).any() else row.astype("<f2").tobytes()


def lowfreq_array(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored ``lowfreq`` values (each 128 bytes) -> (N, 64) float32 unit rows."""
    if not blobs:
        return np.zeros((0, 64), np.float32)
    return np.frombuffer(b"".join(blobs), "<f2").reshape(len(blobs), 64).astype(np.float32)


THUMB_BYTES = IMG_SIZE * IMG_SIZE


def fragile_channel(fragile_bits: np.ndarray, lowfreq: np.ndarray) -> np.ndarray:
    """Which images (``fragile_bits`` (N,), ``lowfreq`` (N, 64), NaN rows unknown) are in the fragile-pHash
    channel (:mod:`synthdata.dedup.fragile_phash`): LOWFREQ_BITS or more noise-decided bits, and not flat."""
    return (np.asarray(fragile_bits) >= LOWFREQ_BITS) & ~np.isnan(np.asarray(lowfreq, np.float32)).any(axis=-1)


def thumb_bytes(thumb: np.ndarray, lowfreq: np.ndarray, fragile_bits: int) -> bytes | None:
    """One image's 32x32 pHash thumbnail as stored (1,024 bytes) where it is in the fragile-pHash channel
    (:func:`fragile_channel`), else None: only those images need it (:mod:`synthdata.dedup.fragile_phash`)."""
    if not fragile_channel(fragile_bits, lowfreq):
        return None
    return np.asarray(thumb, np.uint8).tobytes()


def thumb_array(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored thumbnails (each 1,024 bytes) -> (N, 1024) uint8 rows."""
    if not blobs:
        return np.zeros((0, THUMB_BYTES), np.uint8)
    return np.frombuffer(b"".join(blobs), np.uint8).reshape(len(blobs), THUMB_BYTES).copy()


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


def _hash_thumbs(
    thumbs: np.ndarray, vertical_first: bool, crop_hash: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """pHashes (and with ``crop_hash`` the 8x8 block-mean hashes) of float64 thumbnails from
    :func:`~synthdata.dedup.resample.resize_hnw`: (32, N, 32), rows outermost unless ``vertical_first`` (then columns),
    and the pHash's DCT blocks (N, 64), a view of a workspace the next batch overwrites.

    Both hashes are 8x8 projections P^T S P of each thumbnail S, computed for the whole batch as two GEMMs
    with no transpose: the first contracts the innermost axis, the second the outermost.
    """
    s_out, n, s_in = thumbs.shape
    proj = _projection(crop_hash)
    m = proj.shape[1]
    inner = WORKSPACE.get("inner", (s_out * n, m), np.float64)
    np.matmul(thumbs.reshape(s_out * n, s_in), proj, out=inner)  # (32 outer, N, m)
    both = WORKSPACE.get("both", (m, n * m), np.float64)
    np.matmul(proj.T, inner.reshape(s_out, n * m), out=both)
    both = both.reshape(m, n, m)  # [projection of the outer axis, image, projection of the inner axis]
    kinds = m // HASH_SIZE
    feats = WORKSPACE.get("feats", (n, kinds, HASH_SIZE, HASH_SIZE), np.float64)
    for kind in range(kinds):
        sel = slice(kind * HASH_SIZE, (kind + 1) * HASH_SIZE)
        block = both[sel, :, sel]  # [outer, image, inner]; the DCT's first index is the image row
        np.copyto(feats[:, kind], block.transpose(1, 2, 0) if vertical_first else block.transpose(1, 0, 2))
    flat = feats.reshape(n, kinds, HASH_SIZE * HASH_SIZE)
    # np.median of 64 values is the mean of the 32nd and 33rd smallest; numpy sorts short rows vectorised,
    # where np.median selects row by row.
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
    return hashes[:, 0], (hashes[:, 1] if crop_hash else None), flat[:, 0]


def _hash_hnw(
    src: np.ndarray, crop_hash: bool, thumbs_out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Hashes of uint8 images laid out (H, N, W): pHashes, and crop-robust hashes when asked (0 for images
    with a side under CROP_HASH_MIN_SIDE); and the pHash DCT blocks (a workspace view, see :func:`_hash_thumbs`).
    ``thumbs_out`` (N, 1024) uint8, when given, receives the 32x32 thumbnails, row-major."""
    h, n, w = src.shape
    thumbs, vertical_first = resize_hnw(src, IMG_SIZE, IMG_SIZE, np.float64)
    if thumbs_out is not None:  # exact uint8 values (see resize_hnw), [row or column, image, the other]
        view = thumbs.transpose(1, 2, 0) if vertical_first else thumbs.transpose(1, 0, 2)
        thumbs_out.reshape(n, IMG_SIZE, IMG_SIZE)[...] = view
    crop_hash_here = crop_hash and min(h, w) >= CROP_HASH_MIN_SIDE
    hashes, crops, dct = _hash_thumbs(thumbs, vertical_first, crop_hash_here)
    if crop_hash and crops is None:
        crops = np.zeros(n, dtype=np.uint64)
    return hashes, crops, dct


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
    """The ``ImagingCore`` of each image. Decoded images are loaded already, and ``load()`` is one more Python
    call per image, so it only runs when a lazily opened image is among them."""
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
    buffer = WORKSPACE.get("canvas", (h, len(images) * w), np.uint8).reshape(h, len(images), w)
    for i, im in enumerate(images):
        buffer[:, i, :] = np.asarray(im if im.mode == "L" else im.convert("L"))
    return buffer


def _paste_side_by_side(images: Sequence[Image.Image], n_l: int, n_rgb: int, w: int, h: int) -> np.ndarray:
    """uint8 (h, N, w) holding ``np.asarray(im.convert("L"))`` of each image, with little per-image cost.
    The first ``n_l`` images are in mode L, the next ``n_rgb`` in RGB, the rest in any other mode.

    ``tobytes()`` / ``np.asarray`` set up a Python-level encoder per image, which costs more than hashing a
    small one. Instead a workspace array is mapped as one Pillow canvas with the images side by side and
    each image is pasted into it (a C memcpy per row, no allocation); the canvas is already the (H, N, W)
    layout the resize wants. Conversions to L are Pillow's own, the ones ``imagehash`` runs: RGB images are
    pasted into an RGBX canvas converted in one call (not one call per image),
    other modes (palettes, alpha, 16-bit...) are converted one by one exactly as ``Image.convert("L")`` does.
    """
    if not _canvas_maps_buffer():
        return _stack_side_by_side(images, w, h)
    n = len(images)
    buffer = WORKSPACE.get("canvas", (h, n * w), np.uint8)
    # A writable buffer maps as a writable Pillow image: only the Python wrapper is flagged read-only, and
    # the pastes go through its core.
    canvas = Image.frombuffer("L", (n * w, h), buffer, "raw", "L", 0, 1).im
    boxes = _boxes(n, w, h)
    n_direct = n_l + n_rgb
    cores = _pillow_cores(images[:n_direct]) + [im.convert("L").im for im in images[n_direct:]]
    deque(map(canvas.paste, cores[:n_l], boxes[:n_l]), maxlen=0)
    if n_rgb:
        rgbx = WORKSPACE.get("canvas_rgb", (h, n_rgb * w, 4), np.uint8)
        rgb_canvas = Image.frombuffer("RGBX", (n_rgb * w, h), rgbx, "raw", "RGBX", 0, 1).im
        deque(map(rgb_canvas.paste, cores[n_l:n_direct], boxes), maxlen=0)
        canvas.paste(rgb_canvas.convert("L"), (n_l * w, 0, n_direct * w, h))  # RGBX -> L: rgb2l, as for RGB
    deque(map(canvas.paste, cores[n_direct:], boxes[n_direct:]), maxlen=0)
    return buffer.reshape(h, n, w)


@lru_cache(maxsize=64)
def _boxes(n: int, w: int, h: int) -> tuple[tuple[int, int, int, int], ...]:
    return tuple((i * w, 0, (i + 1) * w, h) for i in range(n))


def _hash_images(
    images: Sequence[Image.Image], crop_hash: bool, shift_hash: bool = False, dct: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Hashes of PIL images, batched by size. Within a size the images are ordered L, RGB, other, so that
    a chunk mixing modes still is one canvas, one resize and one DCT (ingestion's batches mix L and RGB).
    With ``shift_hash`` the shift hashes (:mod:`synthdata.dedup.shift_hash`) come from the same canvas; with
    ``dct`` the pHash's DCT blocks (N, 64)."""
    out = np.zeros(len(images), dtype=np.uint64)
    crops = np.zeros(len(images), dtype=np.uint64) if crop_hash else None
    shifts = np.zeros((len(images), N_SHIFTS), dtype=np.uint64) if shift_hash else None
    blocks = np.zeros((len(images), HASH_SIZE * HASH_SIZE)) if dct else None
    thumbs = np.zeros((len(images), IMG_SIZE * IMG_SIZE), np.uint8) if dct else None
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
                part_thumbs = np.empty((len(part), IMG_SIZE * IMG_SIZE), np.uint8) if thumbs is not None else None
                hashes, crop, coefficients = _hash_hnw(canvas, crop_hash, part_thumbs)
                if thumbs is not None:
                    thumbs[part] = part_thumbs
                out[part] = hashes
                if crops is not None:
                    crops[part] = crop
                if blocks is not None:
                    blocks[part] = coefficients
                if shifts is not None:
                    shifts[part] = shift_hashes_hnw(canvas)
    return out, crops, shifts, blocks, thumbs


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
    ``CROP_HASH_MIN_SIDE`` and flat images get 0, which :func:`synthdata.dedup.candidates.candidate_pairs` skips
    (on tiny 8x8 digits the average hash collides for ~10% of distinct pairs).
    """
    return phash_and_crop_hashes(images)[1]


def phash_and_crop_hashes(images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """``(phash_images(images), crop_robust_hashes(images))`` from one pass over the images (the block sums
    ride along in the DCT's GEMMs)."""
    phash, crops, _, _, _ = _hash_images(images, crop_hash=True)
    assert crops is not None
    return phash, crops


def image_hashes(images: Sequence[Image.Image]) -> ImageHashes:
    """``phash_and_crop_hashes(images)``, the shift hashes ((N, N_SHIFTS), see
    :mod:`synthdata.dedup.shift_hash`) and the pHash's :func:`fragility` from one pass over the images: what
    ingestion stores as ``phash``, ``phash2``, ``shift_hashes``, ``phash_fragile_bits``, ``lowfreq`` and
    ``thumb32``."""
    phash, crops, shifts, blocks, thumbs = _hash_images(images, crop_hash=True, shift_hash=True, dct=True)
    assert crops is not None and shifts is not None and blocks is not None and thumbs is not None
    return ImageHashes(phash, crops, shifts, *fragility(blocks), thumbs)


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
