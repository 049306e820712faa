"""Copy evidence: how far one image is from being a supported transform of another (:func:`copy_distance`).

The evidence is the residual left after the best alignment and one photometric fit: its L8 mean (the eighth
root of the mean eighth power, ``RESIDUAL_POWER``) relative to the reference image's contrast. A copy's
residual is codec and resampling noise spread thin over every edge; a distinct look-alike's is concentrated
where it differs (a glyph, a stroke, a sleeve), and a high power weighs a concentrated difference more than
the same energy spread thin (statistic v4; v3 used the root mean square: on desktop icons it kept 26.7% of
JPEG and 29.7% of WebP copies at the calibrated threshold, v4 50.3% and 56.7%; docs/benchmarks.md).

Alignment tries what the supported transforms do: the same pixel scale shifted or cropped by up to
``MAX_SHIFT`` pixels (or 5% of the side), and a resize of either image to the other's size with a standard
filter. The photometric fit is one gain and one offset shared by all colour channels (brightness/contrast
change every channel alike): a red and a grey version of one button leave a large
residual, and colour counts. Pixels clipped at 0 or 255 in the copy are not held against it when the fit
predicts beyond the clip. The residual is blurred slightly (``BLUR_SIGMA`` grid pixels) so JPEG noise and
resampling filters are forgiven while a different sleeve, logo or stitch is not. Its colour part (the chroma of
JPEG's YCbCr) is blurred more (``CHROMA_BLUR_SIGMA``): JPEG and WebP store chroma at half resolution, so a
re-encoded copy of saturated line art differs from its original by a colour fringe along every edge (desktop
icons, statistic v3: blurring it cut the median distance of JPEG copies from 0.062 to 0.033), while a colour
that differs over an area still counts in full. Grey pairs have no chroma and are scored exactly as without it.

A resize view of an image's own 8-bit pixels is also made as Pillow makes one (each pass rounded and clipped,
:func:`_resized_views`): a resized copy made by Pillow is then reproduced almost exactly, as a float resize
reproduces one made by OpenCV (statistic v6). Of a pair of two shapes' six resize views (three filters, either
direction), only those whose luma correlation is among the three best are scored in full (statistic v7,
``_SCORED_VIEWS``): the least residual comes from one of them, for a fraction of the work.

A pair whose file is lossy (JPEG, WebP: ``copy_evidence``'s ``encoding``) also gets codec views: the other
image encoded the way that file was (:mod:`synthdata.dedup.codec`), which reproduces a re-encoded copy made
with the same encoder pixel for pixel (statistic v5). They are views of pairs that pass the screen, scored like
the others; the correlation the screen judges stays that of the alignments.

0 means an exact transform; re-encoded, resized, shifted and brightness-changed copies of real images stay
under ~0.2, distinct look-alikes of one class (Fashion-MNIST, faces) mostly above. Where the line falls is
a property of the data set: :mod:`synthdata.dedup.calibrate` measures it.

Images are compared on a frame whose longer side is at most ``GRID`` pixels (larger images are reduced with
a Gaussian prefilter, which keeps the reduction nearly shift-equivariant); the resize and crop views of two
images of different sizes use the images themselves when they are at most ``_NATIVE_RESIZE_SIDE``, and so
does a second shift search of two same-size images larger than the grid (a 1-2 px shift is a fraction of a
grid pixel there, which fine textures do not forgive). Larger images are seen only through their frames,
and a frame is made by one sparse matrix product per axis (the Gaussian and the box as one banded matrix),
in strips: a 4000x3000 photo costs a fraction of a second and no float copy of itself.

Cost: pairs of one shape are compared as stacks; pairs of two shapes (crops, resizes, and any two images of
a set of many sizes) in padded batches whatever their sizes (:func:`_different_shape_distance`): every view
is a matrix product of a padded canvas, the screen runs on luma alone, the crop offsets of a whole batch
come from FFT correlations. The numbers are those of one pair at a time on its own canvases, to float
rounding (``tests/test_evidence_batching.py``). A pair of two grey images (one channel, or three equal ones)
is scored on one channel: three equal channels add nothing but three times the work, and the result is the
same to float rounding (``tests/test_evidence_batching.py``).

One file: this is the definition of one number, ``copy_distance``, whose meaning calibrated rules are stored
under (``calibrate.STATISTIC``). Its same-shape, mixed-shape and native-scale paths must agree to float
rounding, so a change to any of them is a change of the statistic and is read, reviewed and versioned as one.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import fft as sp_fft
from scipy import ndimage
from scipy.sparse import coo_matrix, csr_matrix

from synthdata.blas import single_threaded_blas
from synthdata.dedup.codec import Encoding, encode_like
from synthdata.dedup.resample import filter_weights, padded_filter_weights

GRID = 64
MAX_SHIFT = 2  # grid pixels tried each way at the same pixel scale (1-2 px shifts and crops)
_MAX_SHIFT_FRACTION = 0.05  # ...or this share of the side, when larger
_MIN_OVERLAP = 0.75  # an alignment must compare at least this share of the smaller image
BLUR_SIGMA = 0.5
# The residual's size is its L8 mean (the eighth root of the mean eighth power), not its root mean square: a
# concentrated difference weighs more than the same energy spread thin (module docstring). Measured with
# near_dup_recall at the calibrated threshold, JPEG / WebP recall by power: icons 2 (v3) 26.7 / 29.7, 4 45.3 /
# 54.7, 8 50.3 / 56.7; icons16 2: 1.7 / 5.7, 4: 15.0 / 22.7, 6: 23.7 / 33.7, 8: 31.0 / 40.7, 12: 34.3 / 42.7 (but
# false duplicates not one picture 0.155% -> 0.258%), 16: 35.3 / 43.3 (0.361%); mix 2: 97.0 / 97.7, 4 and 8:
# 98.7 / 98.7, 12: 98.3 / 98.0, 16: 97.7 / 97.7; Fashion and MNIST 10k the same at 4, 6 and 8. A power of two,
# raised by squarings.
RESIDUAL_POWER = 8
_SQUARINGS = RESIDUAL_POWER.bit_length() - 1
assert 1 << _SQUARINGS == RESIDUAL_POWER, "RESIDUAL_POWER is raised by squarings: a power of two"
# ...and its chroma this much (grid pixels): measured on 300 JPEG / WebP copies of colour icons against their
# 11,429 closest distinct pairs, at the distinct pairs' 1% quantile: chroma as luma 52% / 65% of copies kept,
# sigma 1.0 77% / 91%, 1.5 86% / 95%, 2.0 88% / 95% (a wider blur loses small colour details for little more).
CHROMA_BLUR_SIGMA = 1.5
# JPEG's luma (BT.601): the residual is split into luma and chroma as JPEG splits an image.
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Images up to this side are resized as they are when testing for a resized copy (a standard resize of
# the original reproduces the copy almost exactly); larger ones are compared on their frames.
_NATIVE_RESIZE_SIDE = 256
_RESIZE_FILTERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
# Of the six resize views of a pair of two shapes (three filters, either direction), only those whose luma
# correlation in the screen is among the _SCORED_VIEWS best (or within _VIEW_SLACK of the last of them, so that
# float rounding between batchings cannot swap one in or out) are scored in full (statistic v7): the residual
# work of a pair is most of its cost, and the least residual comes from one of the best-correlated views. Of
# 890 resized and cropped copies of icons, the least of the three best equals the least of all six for 94%,
# and every copy within 0.05 or 0.12 stays there; of the 2,440 such pairs that ingest_speed's later drop scores
# in full, every decision at 0.12 is the same, and that scoring takes 30-45% less time.
_SCORED_VIEWS = 3
_VIEW_SLACK = 1e-3
# Gain of the photometric fit is kept within these bounds: contrast changes of +-15% need 0.85..1.18, a
# fit that erases contrast (gain 0: any flat image "matches" any other) is not a copy.
_GAIN_RANGE = (0.6, 1.67)
# ...and the mean level may move by at most this much (grey levels): brightness +-15% of the range, with room
# for the gain's share. A black and a white flat image are not copies of each other.
_MAX_LEVEL_SHIFT = 0.2 * 255
# Contrast floor of the normaliser (grey levels): near-flat images are not made equal by their noise.
_MIN_STD = 4.0
_CLIP_LO, _CLIP_HI = 0.5, 254.5
# Images held at once by copy_evidence (originals up to _NATIVE_RESIZE_SIDE as uint8, frames as float32),
# least recently used evicted first: memory is bounded whatever the number of pairs; an evicted image is
# loaded again when needed.
_CACHE_BYTES = 512 << 20
_CHUNK = 4096
# Batches scored at once: their array work (ufuncs, BLAS, FFT) releases the GIL, so two threads use both cores
# of a small machine (ingest_speed's 5,811 candidates: 8.7 s -> 5.7 s wall on the shared 2-core box while
# another benchmark ran). The numbers do not depend on it: every batch is formed before any is scored.
_THREADS = max(1, min(2, os.cpu_count() or 1))
_NATIVE_CHUNK = 256  # pairs compared at once at their own scale (up to 256 x 256 x 3 floats each)
# Codec views are taken of images up to this side (larger ones are held only as frames): callers need not look
# up the encodings of larger files.
CODEC_VIEW_MAX_SIDE = _NATIVE_RESIZE_SIDE
_CODEC_CACHE_BYTES = 64 << 20  # re-encoded frames kept for reuse (an image against many files of one encoding)
_CODEC_CHUNK = 1024  # codec views scored at once
_CODEC_BLOCK = 128  # scored pairs whose missing encodes are made at once (on _THREADS threads)


def _rgb(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 of a uint8 (h, w) or (h, w, 3|4) image: grey is three equal channels."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3], dtype=np.float32)


def _grey(image: np.ndarray) -> np.ndarray:
    """(h, w, 1) float32 of a grey image: a uint8 (h, w), or a frame whose three channels are equal. A pair of
    two grey images is scored on this one channel: every sum of the three equal ones is three times its
    sum, so the distance is the same to float rounding, for a third of the work."""
    arr = np.asarray(image)
    return np.ascontiguousarray(arr[..., None] if arr.ndim == 2 else arr[..., :1], dtype=np.float32)


def _is_grey(image: np.ndarray) -> bool:
    """Whether an image (uint8 or a frame) has one channel or three equal ones (alpha aside)."""
    arr = np.asarray(image)
    return arr.ndim == 2 or (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]))


def _grid_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def _factor(shape: tuple[int, ...]) -> float:
    return min(1.0, GRID / max(shape[:2]))


@lru_cache(maxsize=256)  # up to 64 x 8000 floats each: a few sizes of large images recur, most do not
def _shrink_matrix(n_in: int, n_out: int, sigma: float) -> np.ndarray:
    """(n_out, n_in) float32: ``ndimage.gaussian_filter1d(.., sigma, mode="nearest")`` (truncate 4) followed
    by Pillow's BOX reduction to n_out, as one matrix. Built from the kernel's taps, never from an
    (n_in, n_in) identity: a 4000-px side costs 64 x 4000 floats, not 128 MB."""
    radius = int(4.0 * sigma + 0.5)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    rows = np.repeat(np.arange(n_in), len(taps))
    cols = np.clip(rows + np.tile(np.arange(-radius, radius + 1), n_in), 0, n_in - 1)  # "nearest" edges
    gauss = coo_matrix((np.tile(taps, n_in), (rows, cols)), shape=(n_in, n_in)).tocsr()  # duplicates add up
    box = filter_weights(n_in, n_out, Image.Resampling.BOX)  # (n_out, n_in)
    return np.ascontiguousarray((gauss.T @ box.T).T, dtype=np.float32)


def _resize(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Each channel resized ("F" mode: no rounding): BOX when shrinking, after a Gaussian prefilter of half an
    output pixel (box sums of a shrink by a non-integer factor change with the phase of the content, so a
    copy shifted by one source pixel would not match; the prefilter makes the reduction nearly
    shift-equivariant), bilinear (Pillow) when growing. A shrink is one matrix product per axis
    (:func:`_shrink_matrix`): what the Gaussian filter and Pillow's BOX give, to float rounding, at a cost of
    2 x out x in per pixel row instead of a (8 sigma + 1)-tap filter over every native pixel (a 1792 px
    image took seconds)."""
    h, w = shape
    if rgb.shape[:2] == (h, w):
        return rgb
    if h <= rgb.shape[0] and w <= rgb.shape[1]:
        sigma = 0.5 * max(rgb.shape[0] / h, rgb.shape[1] / w)
        rows, cols = _shrink_matrix(rgb.shape[0], h, sigma), _shrink_matrix(rgb.shape[1], w, sigma)
        # The row pass reads every native pixel: a sparse product (each output row has ~8 sigma + the box
        # of nonzero taps), so its cost grows with the pixels, not with pixels x output rows.
        sparse_rows = csr_matrix(rows)
        lines = rgb.reshape(rgb.shape[0], -1)  # (h, w * channels): every channel in one product
        step = max(1, (8 << 20) // (4 * lines.shape[0]))  # float32 strips of ~8 MB, not a float copy
        reduced = np.concatenate([np.asarray(sparse_rows @ np.asarray(lines[:, i : i + step], np.float32))
                                  for i in range(0, lines.shape[1], step)], axis=1).astype(np.float32)  # fmt: skip
        if rgb.ndim == 2:
            return reduced @ cols.T
        # (A stacked product against one 2-D matrix runs off BLAS in NumPy: 30x slower at 4000 px.)
        planes = np.ascontiguousarray(reduced.reshape(h, rgb.shape[1], rgb.shape[2])[..., :3].transpose(2, 0, 1))
        return np.ascontiguousarray((planes.reshape(3 * h, -1) @ cols.T).reshape(3, h, w).transpose(1, 2, 0))
    rgb = np.asarray(rgb, np.float32)
    if rgb.ndim == 2:
        rgb = rgb[..., None].repeat(3, axis=2)
    channels = [np.asarray(Image.fromarray(rgb[..., c]).resize((w, h), Image.Resampling.BILINEAR)) for c in range(3)]
    return np.stack(channels, axis=-1)


def _frame(image: np.ndarray) -> np.ndarray:
    """An image on its own grid: (h, w, 3) float32, longer side at most GRID. A large image is reduced
    straight from its uint8 planes (grey once), so no float copy of the full image is made."""
    arr = np.asarray(image)
    shape = _grid_shape(arr.shape, _factor(arr.shape))
    if shape == arr.shape[:2]:
        return _rgb(arr)
    if arr.ndim == 2:
        return np.repeat(_resize(arr, shape)[..., None], 3, axis=2)
    return _resize(arr[..., :3], shape)


def residual(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Relative residual of y after the gain/offset fit y ~ g x + o shared by all channels, for stacks
    x, y (P, h, w, 3) of aligned views; the smaller of both directions (either may be the copy): (P,)."""
    return _residuals(x, y)


def _residuals(
    x: np.ndarray,
    y: np.ndarray,
    valid: np.ndarray | None = None,
    blur: tuple[float, ...] = (0, BLUR_SIGMA, BLUR_SIGMA, 0),
    channel_axis: int = 3,
) -> np.ndarray:  # fmt: skip
    """:func:`residual`: both directions (y after the fit y ~ g x + o, and x after x ~ g' y + o') from one set
    of sums, the least. With ``valid`` (P, x[0].size) only those entries of padded, edge-replicated stacks
    count (see :func:`_masked_residual`); ``blur`` is the luma blur's sigma per axis of x, whose colour
    channels lie on ``channel_axis``."""
    p = len(x)
    xf, yf = x.reshape(p, -1), y.reshape(p, -1)
    # Pixels at or beyond a clip level, found once per image: they are few, so the clip rule below looks at
    # them alone instead of testing every pixel again in each direction.
    clipped = [(v <= _CLIP_LO) | (v >= _CLIP_HI) for v in (yf, xf)]
    # Fit on pixels clipped in neither image (a clipped pixel says nothing about the gain).
    ok = np.logical_not(clipped[0] | clipped[1])
    if valid is not None:
        ok &= valid
    w = ok.astype(np.float32)
    n = w.sum(axis=1)  # (counts: exact in float32)
    # Counted in colour values: a grey pair's one channel (:func:`_grey`) stands for three.
    few = n * (3 // x.shape[channel_axis]) < 8
    if few.any():
        ok[few] = True if valid is None else valid[few]
        w = ok.astype(np.float32)
        n = w.sum(axis=1)
    mx, my = np.einsum("pd,pd->p", w, xf) / n, np.einsum("pd,pd->p", w, yf) / n
    cx, cy = xf - mx[:, None], yf - my[:, None]
    wcx = cx * w
    sxy, sxx = np.einsum("pd,pd->p", wcx, cy), np.einsum("pd,pd->p", wcx, cx)
    w *= cy
    syy = np.einsum("pd,pd->p", w, cy)
    r = np.empty((2, p, xf.shape[1]), np.float32)
    for k, (c_src, dst, s_src, m_src, m_dst) in enumerate(((cx, yf, sxx, mx, my), (cy, xf, syy, my, mx))):
        gain = np.clip(sxy / np.maximum(s_src, 1e-6), *_GAIN_RANGE)
        level = m_src + np.clip(m_dst - m_src, -_MAX_LEVEL_SHIFT, _MAX_LEVEL_SHIFT)
        pred = c_src * gain[:, None]
        pred += level[:, None]
        np.subtract(dst, pred, out=r[k])
        # A copy clipped at black or white is not held to values beyond the clip.
        at = np.flatnonzero(clipped[k])
        d, q = dst.reshape(-1)[at], pred.reshape(-1)[at]
        r[k].reshape(-1)[at[((d <= _CLIP_LO) & (q < d)) | ((d >= _CLIP_HI) & (q > d))]] = 0.0
    # Edge-replicated padding blurs into nothing but copies of the edge: the valid part is as without it.
    r = _blur_residual(r.reshape(2 * p, *x.shape[1:]), blur, channel_axis).reshape(2, p, -1)
    # Its L8 mean relative to the contrast (RESIDUAL_POWER): the power by squarings, then its root.
    for _ in range(_SQUARINGS):
        r *= r
    if valid is None:
        var = np.maximum(np.stack([yf.var(axis=1), xf.var(axis=1)]), _MIN_STD**2)
        return (r.mean(axis=2) ** (1.0 / RESIDUAL_POWER) / np.sqrt(var)).min(axis=0)
    count = valid.sum(axis=1)
    mask = valid.astype(np.float32)
    var = []
    centred = np.empty(yf.shape, np.float64)  # (the mean is float64: so is the centred copy)
    for dst in (yf, xf):
        np.subtract(dst, (np.einsum("pd,pd->p", mask, dst) / count)[:, None], out=centred)
        centred *= mask
        var.append(np.einsum("pd,pd->p", centred, centred) / count)
    var = np.maximum(np.stack(var), _MIN_STD**2)
    return ((np.einsum("kpd,pd->kp", r, mask) / count) ** (1.0 / RESIDUAL_POWER) / np.sqrt(var)).min(axis=0)


def _blur_residual(r: np.ndarray, sigma: tuple[float, ...], channel_axis: int) -> np.ndarray:
    """The residual stack blurred: its luma by ``sigma`` per axis, its chroma by CHROMA_BLUR_SIGMA where
    ``sigma`` blurs; grey residuals (three equal channels, or one) by ``sigma`` alone, as they were before
    chroma was. ``channel_axis`` is 1 (padded canvases, (n, C, H, W)) or the last axis (stacks of views,
    (n, h, w, C)); C is 3, or 1 for a grey pair."""
    last = channel_axis == r.ndim - 1
    if r.shape[channel_axis] == 1 or _is_grey(np.moveaxis(r, channel_axis, -1)):  # one channel, or three equal
        return _blur(r, sigma)
    # In YCbCr's inverse every channel is Y plus chroma terms, so the residual is its luma on all three
    # channels plus a chroma part (r minus that): each is blurred by its own sigma, and no planes are copied.
    luma = r @ _LUMA if last else np.einsum("nchw,c->nhw", r, _LUMA)
    expand = (Ellipsis, None) if last else (slice(None), None)
    chroma = r - luma[expand]
    out = _blur(chroma, tuple(CHROMA_BLUR_SIGMA if s else 0 for s in sigma))
    out += _blur(luma, tuple(s for axis, s in enumerate(sigma) if axis != channel_axis))[expand]
    return out


# Sides up to this are blurred by a dense matrix product (a BLAS product of n taps per value beats the 5 taps
# of ndimage's line-by-line filter ~3x at 64 px); longer ones, where n taps cost more, by ndimage itself.
_BLUR_MATRIX_SIDE = 128


@lru_cache(maxsize=512)
def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) float32: ``ndimage.gaussian_filter1d(.., sigma, mode="nearest")`` (truncate 4) of a line of n
    values as a matrix (taps beyond an end fold onto the end value)."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 / (sigma * sigma) * x**2)  # scipy's kernel, so the same weights to the last bit
    taps /= taps.sum()
    rows = np.repeat(np.arange(n), len(taps))
    cols = np.clip(rows + np.tile(x, n), 0, n - 1)
    matrix = coo_matrix((np.tile(taps, n), (rows, cols)), shape=(n, n)).toarray()  # duplicates add up
    return matrix.astype(np.float32)


def _blur(stack: np.ndarray, sigma: Sequence[float]) -> np.ndarray:
    """``ndimage.gaussian_filter(stack, sigma, mode="nearest")`` of a float32 stack, to float rounding: per
    blurred axis one matrix product (:func:`_blur_matrix`) where the axis is short."""
    for axis, s in enumerate(sigma):
        n = stack.shape[axis]
        if not s or n == 1:  # a line of one value blurs into itself
            continue
        if n > _BLUR_MATRIX_SIDE:
            stack = ndimage.gaussian_filter1d(stack, s, axis=axis, mode="nearest")
            continue
        shape, matrix = stack.shape, _blur_matrix(n, float(s))
        trailing = int(np.prod(shape[axis + 1 :]))
        if trailing == 1:  # the last axis: one product of all lines at once
            stack = (stack.reshape(-1, n) @ matrix.T).reshape(shape)
        else:
            stack = np.matmul(matrix, stack.reshape(-1, n, trailing)).reshape(shape)
    return stack


def _aligned_residual(
    large: np.ndarray, small: np.ndarray, ly: slice, lx: slice, sy: slice, sx: slice, subpixel: bool
) -> np.ndarray:
    """:func:`residual` of the aligned views large[:, ly, lx] and small[:, sy, sx]; with ``subpixel`` (frames
    reduced from larger images, where a one-pixel crop is a fraction of a grid pixel) also at half-pixel
    shifts of the large view (bilinear midpoints, on the overlap less one pixel each side): the least."""
    best = residual(large[:, ly, lx], small[:, sy, sx])
    if not subpixel or min(ly.stop - ly.start, lx.stop - lx.start) < 4:
        return best
    ly2, lx2 = slice(ly.start + 1, ly.stop - 1), slice(lx.start + 1, lx.stop - 1)
    target = small[:, sy.start + 1 : sy.stop - 1, sx.start + 1 : sx.stop - 1]
    for hy in (-1, 0, 1):
        for hx in (-1, 0, 1):
            if not (hy or hx):
                continue
            taps = [(dy, dx) for dy in {0, hy} for dx in {0, hx}]
            view = sum(large[:, ly2.start + dy : ly2.stop + dy, lx2.start + dx : lx2.stop + dx] for dy, dx in taps)
            best = np.minimum(best, residual(view / len(taps), target))
    return best


def _max_shift(shape: tuple[int, int]) -> int:
    return max(MAX_SHIFT, int(np.ceil(_MAX_SHIFT_FRACTION * max(shape))))


def _offsets(
    small: tuple[int, int], large: tuple[int, int], max_shift: int | None = None
) -> list[tuple[int, int, slice, slice, slice, slice]]:
    """Every alignment of a small grid inside/over a large one at the same pixel scale, shifted by up to
    ``max_shift`` (default :func:`_max_shift`): (ty, tx, small rows, small cols, large rows, large cols) with
    at least _MIN_OVERLAP of the small grid compared."""
    m = _max_shift(small) if max_shift is None else max_shift
    out = []
    dh, dw = large[0] - small[0], large[1] - small[1]
    for ty in range(min(0, dh) - m, max(0, dh) + m + 1):
        for tx in range(min(0, dw) - m, max(0, dw) + m + 1):
            y0, y1 = max(0, -ty), min(small[0], large[0] - ty)
            x0, x1 = max(0, -tx), min(small[1], large[1] - tx)
            if y1 <= y0 or x1 <= x0 or (y1 - y0) * (x1 - x0) < _MIN_OVERLAP * small[0] * small[1]:
                continue
            out.append((ty, tx, slice(y0, y1), slice(x0, x1), slice(y0 + ty, y1 + ty), slice(x0 + tx, x1 + tx)))
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows zero-mean and unit-norm along the last axis (float32)."""
    x = x - x.mean(axis=-1, keepdims=True)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _window_sums(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Summed-area tables (P, h + 1, w + 1) of a stack and of its squares, in float64."""
    out = []
    for values in (stack, stack * stack):
        table = np.zeros((len(stack), stack.shape[1] + 1, stack.shape[2] + 1))
        np.cumsum(np.cumsum(values, axis=1, dtype=np.float64), axis=2, out=table[:, 1:, 1:])
        out.append(table)
    return out[0], out[1]


def _box(table: np.ndarray, r0, r1, c0, c1, images: np.ndarray | slice = slice(None)) -> np.ndarray:
    """Sums over windows rows r0:r1, columns c0:c1, from summed-area tables (P, h + 1, w + 1): ints (one window
    of every image: (P,)) or index arrays that broadcast with ``images`` (one window per entry)."""
    return table[images, r1, c1] - table[images, r0, c1] - table[images, r1, c0] + table[images, r0, c0]


def _best_offsets(small: np.ndarray, large: np.ndarray, offsets: list) -> tuple[np.ndarray, np.ndarray]:
    """Luma correlation of stacks small (P, hs, ws) and large (P, hl, wl) at every offset: the best one's
    index and correlation, (P,) each. Per offset only the cross term is a pass over the pixels; the sums and
    sums of squares of both windows come from summed-area tables (a handful of calls per image pair and
    offset: pairs of two sizes are often alone in their stack)."""
    p = len(small)
    best, pick = np.full(p, -np.inf, np.float32), np.zeros(p, np.intp)
    (s1, s2), (l1, l2) = _window_sums(small), _window_sums(large)
    for k, (_, _, sy, sx, ly, lx) in enumerate(offsets):
        n = (sy.stop - sy.start) * (sx.stop - sx.start)
        small_window, large_window = (sy.start, sy.stop, sx.start, sx.stop), (ly.start, ly.stop, lx.start, lx.stop)
        xs, ys = _box(s1, *small_window), _box(l1, *large_window)
        cross = np.einsum("pij,pij->p", small[:, sy, sx], large[:, ly, lx], dtype=np.float64) - xs * ys / n
        var = np.maximum(_box(s2, *small_window) - xs * xs / n, 0.0) * np.maximum(_box(l2, *large_window) - ys * ys / n, 0.0)
        corr = np.divide(cross, np.sqrt(var), out=np.zeros(p), where=var > 1e-6).astype(np.float32)
        better = corr > best
        best[better], pick[better] = corr[better], k
    return pick, best


def _pixel_scale_distance(
    small: np.ndarray, large: np.ndarray, subpixel: bool = False, screen: float = -np.inf,
    max_shift: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Best alignment of stacks small (P, hs, ws, 3) and large (P, hl, wl, 3) at one pixel scale: chosen by
    luma correlation over every offset (up to ``max_shift``, see :func:`_offsets`), then scored by
    :func:`residual` there where that correlation reaches ``screen`` (inf elsewhere): the distances and the
    best correlations, (P,) each."""
    p = len(small)
    offsets = _offsets(small.shape[1:3], large.shape[1:3], max_shift)
    out = np.full(p, np.inf)
    if not offsets:
        return out, np.full(p, -np.inf, np.float32)
    pick, corr = _best_offsets(small.mean(axis=3), large.mean(axis=3), offsets)
    for k in np.unique(pick[corr >= screen]):
        rows = np.flatnonzero((pick == k) & (corr >= screen))
        _, _, sy, sx, ly, lx = offsets[k]
        out[rows] = _aligned_residual(large[rows], small[rows], ly, lx, sy, sx, subpixel)
    return out, corr


def _same_shape_distance(
    frames: np.ndarray, a: np.ndarray, b: np.ndarray, screen: float, subpixel: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_pixel_scale_distance` of pairs (a[i], b[i]) of one stack of equal-shape frames (n, h, w, 3).

    The offset search runs per image a as one matrix product: its luma windows at every shift (K, D) times
    the central windows of all its partners (D, k), so each pair costs K * D multiply-adds, not K passes over
    memory. Only pairs whose best correlation reaches ``screen`` get the full residual. Returns the
    distances and the best correlations."""
    h, w = frames.shape[1:3]
    m = _max_shift((h, w))
    out = np.full(len(a), np.inf)
    if h <= 2 * m or w <= 2 * m:  # too small to leave a central window: every pair is scored in full
        return _pixel_scale_distance(frames[a], frames[b], subpixel)[0], np.ones(len(a), np.float32)
    luma = frames.mean(axis=3)
    centre = _unit(luma[:, m : h - m, m : w - m].reshape(len(luma), -1))
    chosen = _offsets((h, w), (h, w))  # the shifts that leave enough overlap
    # Each shift's window as flat indices into an image (K, D): an image's windows are one gather.
    window = (np.arange(m, h - m)[:, None] * w + np.arange(m, w - m)[None, :]).ravel()
    at = np.stack([window + ty * w + tx for ty, tx, *_ in chosen])
    pixels = luma.reshape(len(luma), -1)
    order = np.argsort(a, kind="stable")
    starts = np.flatnonzero(np.r_[True, a[order][1:] != a[order][:-1]])
    ends = np.r_[starts[1:], len(order)]
    pick, corr = np.zeros(len(a), np.intp), np.zeros(len(a), np.float32)
    for lo, hi in zip(starts, ends):
        rows = order[lo:hi]
        scores = _unit(pixels[a[rows[0]]][at]) @ centre[b[rows]].T  # (K, k)
        pick[rows], corr[rows] = scores.argmax(axis=0), scores.max(axis=0)
    # A flat window has no correlation to speak of: such pairs are never screened out.
    flat = np.linalg.norm(centre, axis=1) < 0.5
    corr[flat[a] | flat[b]] = 1.0
    # Full residual at the chosen shift, on the whole overlap (the window search left out an m-pixel border).
    for s in np.unique(pick[corr >= screen]):
        rows = np.flatnonzero((pick == s) & (corr >= screen))
        _, _, sy, sx, ly, lx = chosen[s]
        out[rows] = _aligned_residual(frames[a[rows]], frames[b[rows]], ly, lx, sy, sx, subpixel)
    return out, corr


def _native_shift_distance(
    originals: list[np.ndarray], a: np.ndarray, b: np.ndarray, corr: np.ndarray, screen: float,
    channels: Callable[[np.ndarray], np.ndarray] = _rgb,
) -> np.ndarray:  # fmt: skip
    """Distances of same-shape pairs (a[i], b[i]) at their own pixel scale, shifted by up to MAX_SHIFT pixels,
    for the pairs whose frame correlation reaches ``screen`` (inf elsewhere). On a frame reduced from a larger
    image a shift of 1-2 source pixels is a fraction of a grid pixel, which leaves fine textures (grass,
    brick, a star field) a residual no grid alignment removes; at the source's own scale it is exact.
    ``channels``: :func:`_rgb`, or :func:`_grey` for grey pairs."""
    out = np.full(len(a), np.inf)
    rows = np.flatnonzero(corr >= screen)
    for start in range(0, len(rows), _NATIVE_CHUNK):
        part = rows[start : start + _NATIVE_CHUNK]
        small = np.stack([channels(originals[i]) for i in b[part]])
        large = np.stack([channels(originals[i]) for i in a[part]])
        out[part] = _pixel_scale_distance(small, large, screen=screen, max_shift=MAX_SHIFT)[0]
    return out


# Pairs of two shapes are compared in batches of padded stacks, whatever their sizes: each pair's images and
# views sit in the top-left corner of a common canvas, edge-replicated beyond it (so the residual's blur,
# "nearest" at the edges, sees there what it sees on the view alone) and left out of every sum. Canvas
# sides are rounded up to _PAD_STEP, so pairs of many sizes share a few batches (pairs of two sizes used to
# be compared one size pair at a time, ~3 ms a pair); a batch holds at most _BATCH_PIXELS canvas pixels.
_PAD_STEP = 8
_BATCH_PIXELS = 1 << 19


def _ceil(side: int) -> int:
    return -(-side // _PAD_STEP) * _PAD_STEP


# Resize weights per (n_in, n_out, filter), float32, held up to this many bytes (then dropped all at once and
# rebuilt as needed): sides of 24..64 px and three filters make ~5,000 maps of ~8 KB, more than an LRU of
# 2,048 held (it missed on nearly every new batch).
_WEIGHT_CACHE_BYTES = 64 << 20
_weight_cache: dict[tuple[int, int, int], np.ndarray] = {}
_weight_cache_bytes = [0]
_weight_cache_lock = threading.Lock()


def _weights(sizes: Sequence[tuple[int, int]], method: Image.Resampling) -> list[np.ndarray]:
    """``filter_weights(n_in, n_out, method)`` as float32 for each (n_in, n_out) of ``sizes``, from the cache;
    the missing ones are computed together (:func:`padded_filter_weights`: one vectorised pass over the
    taps of all of them, not ~30 array operations per size pair)."""
    code = int(method)  # an Enum hashes in Python: int keys keep the per-pair lookups cheap
    # Held here, not looked up again: another thread may empty the cache meanwhile.
    cores = {size: _weight_cache.get((*size, code)) for size in set(sizes)}
    missing = sorted(size for size, core in cores.items() if core is None)
    if missing:
        n_in, n_out = np.array([a for a, _ in missing]), np.array([b for _, b in missing])
        maps = padded_filter_weights(n_in, n_out, method, int(n_in.max()), int(n_out.max()))
        fresh = {(a, b): np.ascontiguousarray(map_[:b, :a]) for map_, (a, b) in zip(maps, missing)}
        cores.update(fresh)
        with _weight_cache_lock:
            added = sum(core.nbytes for core in fresh.values())
            if _weight_cache_bytes[0] + added > _WEIGHT_CACHE_BYTES:
                _weight_cache.clear()
                _weight_cache_bytes[0] = 0
            _weight_cache.update({(a, b, code): core for (a, b), core in fresh.items()})
            _weight_cache_bytes[0] += added
    return [cores[size] for size in sizes]


def _line_maps(
    n_in: np.ndarray, n_out: np.ndarray, method: Image.Resampling | None, pad_in: int, pad_out: int,
    sigma: Sequence[float] | None = None,
) -> np.ndarray:  # fmt: skip
    """(P, pad_out, pad_in) float32 maps of padded lines of n_in[i] values to n_out[i] values: a standard
    resize with ``method`` (Pillow's weights), a Gaussian + BOX shrink (:func:`_shrink_matrix`, ``sigma[i]``)
    when ``method`` is None, the identity when the sizes are equal. Columns beyond n_in are zero (padding is
    never read), rows beyond n_out repeat the last one (the output is edge-replicated, as the canvases are).
    Built per batch from per-size weights (cached up to _WEIGHT_CACHE_BYTES), so memory follows the batch,
    not the sizes seen."""
    out = np.zeros((len(n_in), pad_out, pad_in), np.float32)
    sizes = list(zip(n_in.tolist(), n_out.tolist()))
    resized = iter(_weights([(a, b) for a, b in sizes if a != b], method) if method is not None else ())
    for i, (view, (a, b)) in enumerate(zip(out, sizes)):
        if a == b:
            core = _identity(a)
        elif method is None:
            core = _shrink_matrix(a, b, sigma[i])
        else:
            core = next(resized)
        view[:b, :a] = core
        if b < pad_out:
            view[b:, :a] = core[-1]
    return out


@lru_cache(maxsize=64)
def _identity(n: int) -> np.ndarray:
    return np.eye(n, dtype=np.float32)


def _canvas(images: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """(P, C, height, width) float32 of images (h, w, C), each in the top-left corner, edge-replicated beyond."""
    out = np.empty((len(images), images[0].shape[2], height, width), np.float32)
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        planes = image.transpose(2, 0, 1)
        out[i, :, :h, :w] = planes
        out[i, :, h:, :w] = planes[:, h - 1 : h]
        out[i, :, :, w:] = out[i, :, :, w - 1 : w]
    return out


def _valid(h: np.ndarray, w: np.ndarray, height: int, width: int) -> np.ndarray:
    """(P, height, width) bool: the top-left h[i] x w[i] of each canvas."""
    return (np.arange(height)[None, :, None] < h[:, None, None]) & (np.arange(width)[None, None, :] < w[:, None, None])


def _transposed(maps: np.ndarray) -> np.ndarray:
    """Column maps (P, pad_out, pad_in) as the right operands of :func:`_map`: (P, pad_in, pad_out), contiguous.
    Transposed views as operands of stacked products are slower than a contiguous copy of them (1.7x); the
    copy is made once per batch, not per product."""
    return np.ascontiguousarray(maps.transpose(0, 2, 1))


def _map(stack: np.ndarray, rows: np.ndarray, cols_t: np.ndarray) -> np.ndarray:
    """rows[i] @ stack[i] @ cols_t[i] for every image i (and channel, if ``stack`` has them): ``cols_t`` is a
    column map from :func:`_transposed`."""
    if stack.ndim == 4:
        return np.matmul(np.matmul(rows[:, None], stack), cols_t[:, None])
    return np.matmul(np.matmul(rows, stack), cols_t)


def _resized_views(
    stack: np.ndarray, rows: np.ndarray, cols_t: np.ndarray, native: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded colour canvases (P, 3, H, W) resized by their maps, in floats (:func:`_map`), and for the
    ``native`` ones (8-bit pixels) whose first pass leaves 0..255 also as Pillow resizes 8-bit images:
    columns first, each pass rounded and clipped to 0..255 (returned with their indices).

    Bicubic and Lanczos overshoot at sharp edges; Pillow clips the overshoot after the horizontal pass, so
    the vertical pass of a dark line on white differs from the float product by up to tens of levels near
    every edge. A float view left resized copies of desktop icons at a median copy distance of 0.015 (q90
    0.058); the 8-bit view reproduces them (median 5e-8, q90 0.003). Resizers that keep floats between the
    passes (OpenCV, kornia) are reproduced by the float view, so both are kept; a pass that stays within
    0..255 needs no second view (its rounding moves a value by at most half a level)."""
    first = np.matmul(stack, cols_t[:, None])
    views = np.matmul(rows[:, None], first)
    at = np.flatnonzero(native & ((first < -0.5) | (first > 255.5)).any(axis=(1, 2, 3)))
    if not len(at):
        return views, views[:0], at
    first = np.clip(np.floor(first[at] + 0.5), 0.0, 255.0)  # Pillow's fixed point rounds half up
    eight_bit = np.matmul(rows[at][:, None], first)
    return views, np.clip(np.floor(eight_bit + 0.5), 0.0, 255.0, out=eight_bit), at


def _resize_residual(
    stack: np.ndarray, rows: np.ndarray, cols_t: np.ndarray, native: np.ndarray, other: np.ndarray,
    h: np.ndarray, w: np.ndarray, view_first: bool,
) -> np.ndarray:  # fmt: skip
    """:func:`_grid_residual` of ``stack`` resized (:func:`_resized_views`) against ``other``, on their valid
    h[i] x w[i]: the least of the float and the 8-bit view. ``view_first`` puts the resized view first (the
    order of the arguments, as each direction of :func:`_different_shape_distance` has them)."""
    views, eight_bit, at = _resized_views(stack, rows, cols_t, native)
    score = _grid_residual(views, other, h, w) if view_first else _grid_residual(other, views, h, w)
    if len(at):
        pair = (eight_bit, other[at]) if view_first else (other[at], eight_bit)
        score[at] = np.minimum(score[at], _grid_residual(*pair, h[at], w[at]))
    return score


def _masked_residual(x: np.ndarray, y: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`residual` of padded views x, y (P, 3, H, W) on their valid top-left h[i] x w[i]."""
    valid = np.broadcast_to(_valid(h, w, *x.shape[2:])[:, None], x.shape).reshape(len(x), -1)
    return _residuals(x, y, valid, (0, 0, BLUR_SIGMA, BLUR_SIGMA), channel_axis=1)


def _unit_masked(luma: np.ndarray, mask: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Lumas (P, H, W) zero-mean and unit-norm over ``mask`` (P, H * W: 1.0 where valid, else 0.0; ``count``
    its row sums), zero elsewhere (as :func:`_unit`). The mask is made once per canvas by the caller: one
    canvas is normalised against four views."""
    p = len(luma)
    flat = luma.reshape(p, -1)
    centred = flat - (np.einsum("pd,pd->p", flat, mask) / count)[:, None]
    centred *= mask
    centred /= np.maximum(np.sqrt(np.einsum("pd,pd->p", centred, centred)), 1e-6)[:, None]
    return centred


def _grid_residual(x: np.ndarray, y: np.ndarray, h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """:func:`_masked_residual` of padded views, each reduced to the frame grid where larger than it (as
    :func:`_frame` reduces an image)."""
    grid = [_grid_shape((a, b), _factor((a, b))) for a, b in zip(h.tolist(), w.tolist())]
    gh, gw = np.array([g[0] for g in grid]), np.array([g[1] for g in grid])
    if np.array_equal(gh, h) and np.array_equal(gw, w):
        return _masked_residual(x, y, h, w)
    height, width = _ceil(int(gh.max())), _ceil(int(gw.max()))
    sigma = [0.5 * max(a / c, b / d) for a, b, c, d in zip(h.tolist(), w.tolist(), gh.tolist(), gw.tolist())]
    rows = _line_maps(h, gh, None, x.shape[2], height, sigma)
    cols_t = _transposed(_line_maps(w, gw, None, x.shape[3], width, sigma))
    return _masked_residual(_map(x, rows, cols_t), _map(y, rows, cols_t), gh, gw)


def _different_shape_distance(
    large: Sequence[np.ndarray], small: Sequence[np.ndarray], screen: float,
    native: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Distances of pairs (large[i], small[i]) of two shapes ((h, w, 3) float32, ``large`` has the larger
    area; any sizes: they are compared on padded canvases), and their best correlations.

    Views: either image resized to the other's size with a standard filter (bilinear, bicubic, Lanczos:
    what resized copies are made with; on the originals when at most _NATIVE_RESIZE_SIDE, so a resized copy
    is reproduced almost exactly, else on the frames), and, when the sizes differ by a crop's worth, the
    pixel-scale alignment (:func:`_pixel_scale_batch`, on the same images). ``native`` says per pair whether
    large[i] and small[i] are an image's own 8-bit pixels (not a frame): their resized views are also made as
    an 8-bit resizer makes them (:func:`_resized_views`). Pairs whose best luma correlation over the views is
    below ``screen`` are not scored in full."""
    p = len(large)
    hl, wl = np.array([v.shape[0] for v in large]), np.array([v.shape[1] for v in large])
    hs, ws = np.array([v.shape[0] for v in small]), np.array([v.shape[1] for v in small])
    Hl, Wl, Hs, Ws = (_ceil(int(v.max())) for v in (hl, wl, hs, ws))  # noqa: N806
    big, little = _canvas(large, Hl, Wl), _canvas(small, Hs, Ws)
    maps = []  # per filter: (rows, transposed cols) resizing large to small, then small to large
    # Square images (most sets) on square canvases: the column maps are the row maps.
    square = Hl == Wl and Hs == Ws and np.array_equal(hl, wl) and np.array_equal(hs, ws)
    for method in _RESIZE_FILTERS:
        down_r, up_r = _line_maps(hl, hs, method, Hl, Hs), _line_maps(hs, hl, method, Hs, Hl)
        down_c, up_c = (down_r, up_r) if square else (_line_maps(wl, ws, method, Wl, Ws),
                                                      _line_maps(ws, wl, method, Ws, Wl))
        maps.append((down_r, _transposed(down_c), up_r, _transposed(up_c)))
    # The screen on luma alone: a resize is linear, so the luma of a resized view is the resized luma (a
    # third of the work); the colour views are made for the pairs that pass.
    big_luma, little_luma = big.mean(axis=1), little.mean(axis=1)
    mask_l = _valid(hl, wl, Hl, Wl).reshape(p, -1).astype(np.float32)
    mask_s = _valid(hs, ws, Hs, Ws).reshape(p, -1).astype(np.float32)
    count_l, count_s = mask_l.sum(axis=1), mask_s.sum(axis=1)
    unit_l, unit_s = _unit_masked(big_luma, mask_l, count_l), _unit_masked(little_luma, mask_s, count_s)
    view_corr = []
    for down_r, down_c, up_r, up_c in maps:
        down = _unit_masked(_map(big_luma, down_r, down_c), mask_s, count_s)
        up = _unit_masked(_map(little_luma, up_r, up_c), mask_l, count_l)
        view_corr += [np.einsum("pd,pd->p", down, unit_s), np.einsum("pd,pd->p", up, unit_l)]
    view_corr = np.stack(view_corr, axis=1)
    corr = view_corr.max(axis=1)
    out = np.full(p, np.inf)
    keep = np.flatnonzero(corr >= screen)
    if len(keep):
        last = np.sort(view_corr[keep], axis=1)[:, -_SCORED_VIEWS]  # the _SCORED_VIEWS-th best
        scored = view_corr[keep] >= last[:, None] - _VIEW_SLACK
        native_l, native_s = (np.zeros(p, bool),) * 2 if native is None else native
        for v, (down_r, down_c, up_r, up_c) in enumerate(maps):  # (views in the screen's order: down, up)
            for at, args in ((keep[scored[:, 2 * v]], (big, down_r, down_c, native_l, little, hs, ws, True)),
                             (keep[scored[:, 2 * v + 1]], (little, up_r, up_c, native_s, big, hl, wl, False))):
                if len(at):
                    out[at] = np.minimum(out[at], _resize_residual(*(a[at] for a in args[:-1]), args[-1]))
    m = np.array([_max_shift((a, b)) for a, b in zip(hs.tolist(), ws.tolist())])
    near = np.flatnonzero((np.abs(hl - hs) <= 2 * m) & (np.abs(wl - ws) <= 2 * m))
    if len(near):
        # The lumas of the canvases, zero beyond each image: the ones the pixel-scale search would make.
        lumas = (little_luma[near] * mask_s[near].reshape(-1, Hs, Ws),
                 big_luma[near] * mask_l[near].reshape(-1, Hl, Wl))  # fmt: skip
        pixel, pixel_corr = _pixel_scale_batch([large[i] for i in near], [small[i] for i in near], screen, lumas)
        out[near], corr[near] = np.minimum(out[near], pixel), np.maximum(corr[near], pixel_corr)
    return out, corr


def _pixel_scale_batch(
    large: Sequence[np.ndarray], small: Sequence[np.ndarray], screen: float,
    canvases: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """:func:`_pixel_scale_distance` of pairs (small[i] within/over large[i], (h, w, 3) float32) of any
    shapes at once: the cross terms of every offset from one FFT correlation per pair (zero-padded, so a
    lag's sum covers exactly the overlap), window sums from summed-area tables, the best offset by luma
    correlation (the first in :func:`_offsets`' order on ties), then :func:`residual` there on padded views.
    ``canvases``: the lumas of small and large, each in the top-left corner of a zero canvas (any sizes that
    hold them), where the caller has them (one channel mean per image costs more than its FFT)."""
    q = len(large)
    hs, ws = np.array([v.shape[0] for v in small]), np.array([v.shape[1] for v in small])
    hl, wl = np.array([v.shape[0] for v in large]), np.array([v.shape[1] for v in large])
    m = np.array([_max_shift((a, b)) for a, b in zip(hs.tolist(), ws.tolist())])
    height, width = int(max(hs.max(), hl.max())), int(max(ws.max(), wl.max()))
    lumas = np.zeros((2, q, height, width))
    if canvases is not None:
        for k, canvas in enumerate(canvases):
            lumas[k, :, : canvas.shape[1], : canvas.shape[2]] = canvas[:, :height, :width]
    else:
        for i, (a, b) in enumerate(zip(small, large)):
            lumas[0, i, : a.shape[0], : a.shape[1]] = a.mean(axis=2)
            lumas[1, i, : b.shape[0], : b.shape[1]] = b.mean(axis=2)
    lo_y, hi_y = np.minimum(0, hl - hs) - m, np.maximum(0, hl - hs) + m  # each pair's offsets, as _offsets
    lo_x, hi_x = np.minimum(0, wl - ws) - m, np.maximum(0, wl - ws) + m
    ty, tx = np.arange(lo_y.min(), hi_y.max() + 1), np.arange(lo_x.min(), hi_x.max() + 1)
    # A circular correlation of this size aliases no lag that is read (|lag| + side <= size).
    fft_shape = (sp_fft.next_fast_len(height + int(np.abs(ty).max())),
                 sp_fft.next_fast_len(width + int(np.abs(tx).max())))  # fmt: skip
    spectra = sp_fft.rfft2(lumas, fft_shape)
    cross_all = sp_fft.irfft2(np.conj(spectra[0]) * spectra[1], fft_shape)  # [ty, tx] = sum S[y, x] L[y + ty, x + tx]
    cross = cross_all[:, ty % fft_shape[0]][:, :, tx % fft_shape[1]]  # (q, TY, TX)
    y0, y1 = np.maximum(0, -ty)[None, :], np.minimum(hs[:, None], hl[:, None] - ty[None, :])  # (1|q, TY)
    x0, x1 = np.maximum(0, -tx)[None, :], np.minimum(ws[:, None], wl[:, None] - tx[None, :])
    n = (np.maximum(y1 - y0, 0)[:, :, None] * np.maximum(x1 - x0, 0)[:, None, :]).astype(np.float64)
    ok = ((ty[None, :] >= lo_y[:, None]) & (ty[None, :] <= hi_y[:, None]) & (y1 > y0))[:, :, None] & (
        (tx[None, :] >= lo_x[:, None]) & (tx[None, :] <= hi_x[:, None]) & (x1 > x0))[:, None, :]  # fmt: skip
    ok &= n >= _MIN_OVERLAP * (hs * ws)[:, None, None]
    # Empty windows: sums of nothing, at a corner on the tables (a shift of a thin image can exceed its side).
    y0, x0 = np.broadcast_to(np.minimum(y0, height), y1.shape), np.broadcast_to(np.minimum(x0, width), x1.shape)
    y1, x1 = np.maximum(y1, y0), np.maximum(x1, x0)
    rows = np.arange(q)[:, None, None]
    (s1, s2), (l1, l2) = _window_sums(lumas[0]), _window_sums(lumas[1])
    # Large-side windows are the small-side ones moved by the offset; clipped where the offset is not used.
    ly0, ly1 = np.clip(y0 + ty, 0, height), np.clip(y1 + ty, 0, height)
    lx0, lx1 = np.clip(x0 + tx, 0, width), np.clip(x1 + tx, 0, width)
    safe = np.maximum(n, 1.0)
    # Every (row offset, column offset) window of each pair: (q, TY, 1) rows by (q|1, 1, TX) columns.
    small_window = (y0[:, :, None], y1[:, :, None], x0[:, None, :], x1[:, None, :])
    large_window = (ly0[:, :, None], ly1[:, :, None], lx0[:, None, :], lx1[:, None, :])
    xs, ys = _box(s1, *small_window, rows), _box(l1, *large_window, rows)
    centred = cross - xs * ys / safe
    var = np.maximum(_box(s2, *small_window, rows) - xs * xs / safe, 0.0)
    var *= np.maximum(_box(l2, *large_window, rows) - ys * ys / safe, 0.0)
    corr = np.divide(centred, np.sqrt(var), out=np.zeros_like(var), where=var > 1e-6).astype(np.float32)
    corr[~ok] = -np.inf
    flat = corr.reshape(q, -1)
    pick = flat.argmax(axis=1)
    best = flat[np.arange(q), pick]
    out = np.full(q, np.inf)
    scored = np.flatnonzero(best >= screen)
    if len(scored):
        ky, kx = np.divmod(pick[scored], len(tx))
        views_small, views_large = [], []
        for i, a, b in zip(scored.tolist(), ky.tolist(), kx.tolist()):
            r0, r1, c0, c1 = int(y0[i, a]), int(y1[i, a]), int(x0[i, b]), int(x1[i, b])
            views_small.append(small[i][r0:r1, c0:c1])
            views_large.append(large[i][r0 + ty[a] : r1 + ty[a], c0 + tx[b] : c1 + tx[b]])
        h = np.array([v.shape[0] for v in views_small])
        w = np.array([v.shape[1] for v in views_small])
        height, width = _ceil(int(h.max())), _ceil(int(w.max()))
        out[scored] = _masked_residual(_canvas(views_large, height, width), _canvas(views_small, height, width), h, w)
    return out, best


def _nbytes(item: tuple[np.ndarray, np.ndarray]) -> int:
    """Memory of one cache entry (original, frame): the frame once when it stands for the original too."""
    original, frame = item
    return frame.nbytes + (0 if original is frame else original.nbytes)


def copy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Copy evidence of two uint8 images (any sizes, grey or colour): 0 when one is exactly a supported
    transform of the other, growing with what no alignment, resize or gain/offset explains. Symmetric."""
    return float(copy_evidence([(0, 1)], [a, b].__getitem__)[0][0])


def copy_evidence(
    pairs: Sequence[tuple],
    load: Callable[[object], np.ndarray],
    screen: float = -1.0,
    encoding: Callable[[object], Encoding | None] | None = None,
    eight_bit_resizes: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`copy_distance` of every pair (ids a, b; ``load(id)`` gives the uint8 image), batched, and the
    best luma correlation over the alignments tried.

    Pairs whose best correlation is below ``screen`` are not scored in full: their distance is
    inf (:mod:`synthdata.dedup.calibrate` sets the screen below every planted copy it measured). Pairs of
    one shape are compared as stacks, pairs of two shapes in padded batches (:func:`_different_shape_distance`);
    each image is loaded once unless evicted from a bounded cache. ``encoding(id)`` says how an image's file
    was lossily encoded (:func:`synthdata.dedup.codec.encoding_of`; None: lossless, or not known): a scored
    pair with such a file also gets its codec views (:func:`_codec_views`; the correlation returned is that of
    the alignments, which the screen judges). ``eight_bit_resizes`` False leaves out the resize views made as
    Pillow makes them (:func:`_resized_views`; calibration's scale of copies, ``calibrate.Positives``).
    """
    pairs = list(pairs)
    out, corr = np.empty(len(pairs)), np.ones(len(pairs), np.float32)
    if not pairs:
        return out, corr
    cache: OrderedDict[object, tuple[np.ndarray, np.ndarray]] = OrderedDict()
    held = [0]

    def get(image_id: object) -> tuple[np.ndarray, np.ndarray]:
        """The image (uint8, as loaded; only its frame when larger than _NATIVE_RESIZE_SIDE) and its frame,
        from the bounded cache."""
        if image_id in cache:
            cache.move_to_end(image_id)
            return cache[image_id]
        image = np.asarray(load(image_id))
        frame = _frame(image)
        original = image if max(image.shape[:2]) <= _NATIVE_RESIZE_SIDE else frame
        cache[image_id] = item = (original, frame)
        held[0] += _nbytes(item)
        while held[0] > _CACHE_BYTES and len(cache) > 1:
            held[0] -= _nbytes(cache.popitem(last=False)[1])
        return item

    # Pairs of one shape are grouped by it (compared as stacks); pairs of two shapes, the larger area first,
    # go to padded batches of similar canvas sizes, however many distinct sizes there are. Pairs of two grey
    # images go to groups of their own, scored on one channel (:func:`_grey`).
    shape_of: dict[object, tuple[tuple[int, int], bool]] = {}
    groups: dict[tuple, list[tuple[int, object, object]]] = {}
    for k, (a, b) in enumerate(pairs):
        for x in (a, b):
            if x not in shape_of:
                original = get(x)[0]
                shape_of[x] = original.shape[:2], _is_grey(original)
        (sa, grey_a), (sb, grey_b) = shape_of[a], shape_of[b]
        if sa[0] * sa[1] < sb[0] * sb[1]:
            a, b, sa, sb = b, a, sb, sa
        grey = grey_a and grey_b
        key = (grey, sa) if sa == sb else (grey, *(_ceil(v) for v in (*sa, *sb)))
        groups.setdefault(key, []).append((k, a, b))

    def same_shape(where: np.ndarray, frames: np.ndarray, a: np.ndarray, b: np.ndarray, originals: list | None,
                   channels: Callable[[np.ndarray], np.ndarray]) -> None:  # fmt: skip
        distance, best = _same_shape_distance(frames, a, b, screen, subpixel=max(frames.shape[1:3]) >= GRID)
        if originals is not None:
            distance = np.minimum(distance, _native_shift_distance(originals, a, b, best, screen, channels))
        out[where], corr[where] = distance, best

    def mixed(where: np.ndarray, large: list, small: list, channels: Callable[[np.ndarray], np.ndarray]) -> None:
        native = tuple(np.array([eight_bit_resizes and x.dtype == np.uint8 for x in side]) for side in (large, small))
        out[where], corr[where] = _different_shape_distance([channels(x) for x in large], [channels(x) for x in small],
                                                            screen, native)  # fmt: skip

    # Images are fetched here (the cache is this thread's) and batches scored on _THREADS threads; the next
    # batch is formed while they run, so at most _THREADS + 1 batches are held.
    with single_threaded_blas(), ThreadPoolExecutor(_THREADS, thread_name_prefix="copy-evidence") as pool:
        pending: deque = deque()
        for key, everyone in groups.items():
            channels = _grey if key[0] else _rgb
            step = _CHUNK if len(key) == 2 else max(1, _BATCH_PIXELS // (key[1] * key[2] + key[3] * key[4]))
            for start in range(0, len(everyone), step):
                members = everyone[start : start + step]
                where = np.array([k for k, _, _ in members])
                if len(key) == 2:  # images (so frames) of one shape
                    ids = list(dict.fromkeys(x for _, a, b in members for x in (a, b)))
                    code = {x: i for i, x in enumerate(ids)}
                    frames = np.stack([channels(get(x)[1]) for x in ids])
                    a = np.array([code[x] for _, x, _ in members])
                    b = np.array([code[x] for _, _, x in members])
                    # Frames reduced from images of up to _NATIVE_RESIZE_SIDE are also shifted at native scale.
                    native = max(frames.shape[1:3]) >= GRID and get(ids[0])[0] is not get(ids[0])[1]
                    originals = [get(x)[0] for x in ids] if native else None
                    pending.append(pool.submit(same_shape, where, frames, a, b, originals, channels))
                else:
                    large = [get(x)[0] for _, x, _ in members]
                    small = [get(x)[0] for _, _, x in members]
                    pending.append(pool.submit(mixed, where, large, small, channels))
                while len(pending) > _THREADS:
                    pending.popleft().result()
        for job in pending:
            job.result()
    if encoding is not None:
        _codec_views(pairs, get, encoding, out, lambda x: shape_of[x][1])
    return out, corr


def _codec_views(
    pairs: Sequence[tuple],
    get: Callable[[object], tuple[np.ndarray, np.ndarray]],
    encoding: Callable[[object], Encoding | None],
    out: np.ndarray,
    grey: Callable[[object], bool],
) -> None:
    """Lower ``out`` (in place) to the codec views where they are less: for each scored pair (one that passed
    the screen) of one size where an image's file is lossy, the other image encoded as that file was
    (:mod:`synthdata.dedup.codec`), against the file's pixels, by :func:`residual` on their frames. A
    re-encoded copy made with the file's encoder is reproduced exactly (0); a distinct look-alike's codec view
    keeps it about as far as its pixels do. Images larger than _NATIVE_RESIZE_SIDE are left out: the cache
    holds only their frames, on which a reduction from that size has averaged a codec's noise away
    (CODEC_VIEW_MAX_SIDE). A grey view against a ``grey`` file is scored on one channel (:func:`_grey`).

    The pairs go in blocks: the block's missing encodes (a WebP file's take about ten encodes each: the
    quality search) and then its residuals run on _THREADS threads; ``out`` takes the least of each view in
    this thread, so the numbers do not depend on the threads."""
    views: dict[tuple, list[tuple[int, np.ndarray, np.ndarray]]] = {}
    # Re-encodes kept for reuse, by bytes: the JPEG files of a set mostly share their tables, so an image seen
    # against many of them is encoded once.
    encoded: OrderedDict[tuple[object, Encoding], list[tuple[np.ndarray, bool]]] = OrderedDict()
    held = 0
    scored = np.flatnonzero(np.isfinite(out) & (out > 0)).tolist()

    def encode(item: tuple[tuple[object, Encoding], np.ndarray]) -> list[tuple[np.ndarray, bool]]:
        (_, code), original = item
        return [(_frame(view), _is_grey(view)) for view in encode_like(original, code)]

    def lower(job: Future) -> None:
        rows, values = job.result()
        np.minimum.at(out, rows, values)

    with single_threaded_blas(), ThreadPoolExecutor(_THREADS, thread_name_prefix="codec-views") as pool:
        pending: deque = deque()
        for start in range(0, len(scored), _CODEC_BLOCK):
            tasks = []  # (pair row, (image encoded, file's encoding), file's frame, whether the file is grey)
            needed: dict[tuple[object, Encoding], np.ndarray] = {}
            for k in scored[start : start + _CODEC_BLOCK]:
                a, b = pairs[k]
                pair_images = {a: get(a), b: get(b)}  # (original, frame) of each
                if any(original is frame for original, frame in pair_images.values()) or (
                    pair_images[a][0].shape[:2] != pair_images[b][0].shape[:2]
                ):
                    continue
                for x, y in ((a, b), (b, a)):
                    code = encoding(y)
                    if code is None:
                        continue
                    if (x, code) not in encoded:
                        needed.setdefault((x, code), pair_images[x][0])
                    tasks.append((k, (x, code), pair_images[y][1], grey(y)))
            for key, frames in zip(needed, pool.map(encode, needed.items())):
                encoded[key] = frames
                held += sum(v.nbytes for v, _ in frames)
            for k, key, frame_y, grey_y in tasks:
                for view, grey_view in encoded[key]:
                    one = grey_y and grey_view
                    group = views.setdefault((*frame_y.shape[:2], one), [])
                    group.append((k, _grey(view), _grey(frame_y)) if one else (k, view, frame_y))
                    if len(group) >= _CODEC_CHUNK:  # scored a batch at a time: memory stays bounded
                        pending.append(pool.submit(_codec_residuals, views.pop((*frame_y.shape[:2], one))))
                        while len(pending) > _THREADS:
                            lower(pending.popleft())
            while held > _CODEC_CACHE_BYTES and len(encoded) > 1:
                held -= sum(v.nbytes for v, _ in encoded.popitem(last=False)[1])
        pending.extend(pool.submit(_codec_residuals, members) for members in views.values())
        for job in pending:
            lower(job)


def _codec_residuals(members: list) -> tuple[np.ndarray, np.ndarray]:
    """:func:`residual` of each codec view (pair row, view, file's frame): the rows and their residuals."""
    rows = np.array([k for k, _, _ in members])
    x, y = np.stack([v for _, v, _ in members]), np.stack([f for _, _, f in members])
    return rows, residual(x, y)
