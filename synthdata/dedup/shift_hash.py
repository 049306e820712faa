"""Shift hashes: candidates for 1-2 px crops and shifts of small images, which pHash does not pair.

pHash works on the whole image resized to 32x32, so a copy shifted or cropped by 2 px of a 28 px image moves
7% of its frame: within the radius that still separates distinct look-alikes, pHash pairs 18% of such shifts
and 40% of such crops on Fashion-MNIST. At pixel scale both are translations: the content of a
window of the original reappears, pixel for pixel, in the copy, ``d`` pixels away (a crop of ``t`` rows at the
top and ``b`` at the bottom moves the centre of the image by ``(t - b) / 2``).

So each image gets :data:`N_SHIFTS` hashes of the ``WINDOW`` x ``WINDOW`` window at its centre moved by every
offset of up to ``MAX_SHIFT`` pixels each way (row-major, the centred window at index :data:`CENTRE`). A
copy's centred window equals one of its original's shifted windows, and the other way round; so comparing
the new images' shifted hashes with every image's centred hash finds each shifted or cropped copy, whichever
side arrived first (:func:`synthdata.dedup.candidates.candidate_pairs`). Each hash is 64 bits: the signs of the
8x8 lowest DCT-II coefficients of the window (pHash's features without the resize, which would undo the pixel
scale). 0 means no hash: a window off the image or plain (``MIN_STD``), where any two would agree.

``benchmarks/candidate_search.py --channels`` compares this channel with the other hashes tried (re-centred,
DFT magnitude, block average), ``benchmarks/near_dup_recall.py`` measures what curation then confirms. The
hashes of a batch cost two matrix products (the windows share their row and column passes).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from synthdata.blas import single_threaded_blas

WINDOW = 16  # pixels; fits images of >= 20 px (PIXEL_SHIFT_MIN_SIDE) at every shift, 16..19 px centred only
MAX_SHIFT = 2  # pixels each way: the supported crops and shifts
_SPAN = 2 * MAX_SHIFT + 1
N_SHIFTS = _SPAN * _SPAN
CENTRE = N_SHIFTS // 2
SHIFTS: tuple[tuple[int, int], ...] = tuple((dy, dx) for dy in range(-MAX_SHIFT, MAX_SHIFT + 1)
                                            for dx in range(-MAX_SHIFT, MAX_SHIFT + 1))  # fmt: skip
# Windows whose low frequencies vary less than this (grey levels, standard deviation) get no hash: every plain
# window (a white or black background) would collide. Kept low: a shifted copy repeats even a faint window
# exactly, and a photo whose centre is nearly plain (a face against a wall) still has its copies found.
MIN_STD = 0.5
_COEFFS = 8
_CHUNK_PIXELS = 1 << 20  # input pixels per batch: keeps the products' operands in cache


@lru_cache(maxsize=1)
def _basis() -> np.ndarray:
    """(WINDOW, 8) float32: the first 8 DCT-II basis vectors for length WINDOW, as columns."""
    n = np.arange(WINDOW)[:, None]
    k = np.arange(_COEFFS)[None, :]
    basis = (2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * WINDOW))).astype(np.float32)
    basis.flags.writeable = False
    return basis


@lru_cache(maxsize=64)
def _placed(size: int) -> tuple[np.ndarray, np.ndarray]:
    """For an axis of ``size`` pixels: (size, _SPAN * 8) float32 whose column block j holds the basis at the
    window moved by ``j - MAX_SHIFT`` (zero where it would leave the axis), and which of the _SPAN offsets fit."""
    start = (size - WINDOW) // 2
    out = np.zeros((size, _SPAN, _COEFFS), np.float32)
    fits = np.zeros(_SPAN, bool)
    for j in range(_SPAN):
        lo = start + j - MAX_SHIFT
        if 0 <= lo and lo + WINDOW <= size:
            out[lo : lo + WINDOW, j] = _basis()
            fits[j] = True
    return out.reshape(size, _SPAN * _COEFFS), fits


def shift_hashes_arrays(luma: np.ndarray) -> np.ndarray:
    """Shift hashes of a batch of same-size grey images (N, h, w), any real dtype: (N, N_SHIFTS) uint64."""
    luma = np.asarray(luma)
    n, h, w = luma.shape
    out = np.zeros((n, N_SHIFTS), np.uint64)
    chunk = max(1, _CHUNK_PIXELS // max(1, h * w))
    for s in range(0, n, chunk):
        out[s : s + chunk] = shift_hashes_hnw(luma[s : s + chunk].transpose(1, 0, 2))
    return out


def shift_hashes_hnw(canvas: np.ndarray) -> np.ndarray:
    """Shift hashes of same-size grey images laid out (h, N, w), the layout of pHash's canvas
    (:mod:`synthdata.dedup.phash`): (N, N_SHIFTS) uint64."""
    h, m, w = canvas.shape
    if m == 0 or min(h, w) < WINDOW:
        return np.zeros((m, N_SHIFTS), np.uint64)
    rows, row_fits = _placed(h)
    cols, col_fits = _placed(w)
    k = _COEFFS
    with single_threaded_blas():
        # One product per axis covers every offset: the column pass for all horizontal offsets (rows of all
        # images stay interleaved, as the row pass wants them), then the row pass for all vertical ones,
        # giving (dy, row freq, image, dx, col freq).
        inner = np.ascontiguousarray(canvas, dtype=np.float32).reshape(h * m, w) @ cols
        both = (rows.T @ inner.reshape(h, m * _SPAN * k)).reshape(_SPAN, k, m, _SPAN, k)
    coeffs = both.transpose(2, 0, 3, 1, 4).reshape(m, N_SHIFTS, k * k)
    return _bits(coeffs, (row_fits[:, None] & col_fits[None, :]).ravel())


def _bits(coeffs: np.ndarray, fits: np.ndarray) -> np.ndarray:
    """Hashes from the (m, N_SHIFTS, 64) low DCT coefficients of each window: a bit per coefficient, set when
    the coefficient is positive (the DC one: when the window is brighter than mid-grey); 0 for windows that
    do not fit or whose low-frequency contrast is under MIN_STD. Signs need no sort (pHash's median
    threshold would cost a sort of every window's coefficients) and separate windows as well."""
    bits = coeffs > 0
    bits[..., 0] = coeffs[..., 0] > 127.5 * 4 * WINDOW * WINDOW  # DC of the 2cos basis is 4 x the sum
    # Orthonormal coefficients are about these / (2 WINDOW) (exactly, where both frequencies are non-zero);
    # their squares sum to WINDOW^2 x the variance the low frequencies carry.
    ac = np.square(coeffs[..., 1:]).sum(axis=-1) / (2.0 * WINDOW) ** 2 / WINDOW**2
    packed = np.packbits(bits, axis=-1, bitorder="big").view(">u8")[..., 0].astype(np.uint64)
    return np.where(fits[None, :] & (ac >= MIN_STD * MIN_STD), packed, np.uint64(0))


def stored(hashes: np.ndarray) -> list[list[int]]:
    """Rows of shift hashes (:func:`shift_hashes_arrays`, or :func:`synthdata.dedup.phash.image_hashes` for PIL
    images) as the warehouse stores them (``shift_hashes UBIGINT[]``): the list of N_SHIFTS hashes, or an
    empty list when the image has none at all (NULL is left to rows written before the column existed)."""
    return [row.tolist() if row.any() else [] for row in np.asarray(hashes, np.uint64)]
