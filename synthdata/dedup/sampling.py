"""The common frame near-duplicate confirmation compares images on: every image resampled to a blurred
(2*WORK_SIZE)^2 canvas (:func:`_prefilter`), and bilinear samples of crop boxes, in coordinates normalised
to the image extent, on a WORK_SIZE^2 grid (:class:`_Sampler`). A resized copy lands on the same grid, and a
cropped copy on the grid of the matching box, so :mod:`synthdata.dedup.confirm` can correlate them directly.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from synthdata.dedup.resample import pillow_weights

# Side of the square grid both images are sampled on. 32 matches pHash's own working resolution: enough
# to tell faces and digits apart, small enough to try dozens of alignments per pair.
WORK_SIZE = 32

# Crop fractions tried on each side when aligning, relative to the image's extent (0 .. 5% in total).
_CROP_STEPS = (0.0, 0.025, 0.05)
_MAX_CROP = 0.05

# Blur applied on the (2*WORK_SIZE)^2 canvas before sampling, in canvas pixels.
_BLUR_SIGMA = 1.0

# Images up to this side are resampled to the canvas by matrix products (see _prefilter).
_MATRIX_RESAMPLE_MAX_SIDE = 256


def _blur_weights(n: int) -> np.ndarray:
    """(n, n) weights of scipy.ndimage.gaussian_filter1d(sigma=_BLUR_SIGMA, truncate=4, mode="nearest")."""
    radius = int(4.0 * _BLUR_SIGMA + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 / (_BLUR_SIGMA * _BLUR_SIGMA) * offsets**2)
    weights = np.zeros((n, n))
    for offset, weight in zip(offsets, kernel / kernel.sum()):
        np.add.at(weights, (np.arange(n), np.clip(np.arange(n) + offset, 0, n - 1)), weight)
    return weights


@lru_cache(maxsize=2 * _MATRIX_RESAMPLE_MAX_SIDE)
def _canvas_operator(n: int, method: Image.Resampling) -> np.ndarray:
    """(2*WORK_SIZE, n) float32: an axis of n pixels resampled to the canvas as Pillow does, then blurred."""
    canvas = 2 * WORK_SIZE
    return (_blur_weights(canvas) @ pillow_weights(n, canvas, method)).astype(np.float32)


def _prefilter(grays: Iterable[np.ndarray]) -> np.ndarray:
    """Resample each image to a fixed (2*WORK_SIZE)^2 canvas and blur slightly: (n, canvas, canvas) float32.

    The canvas makes every image's detail scale comparable (a 8x8 digit and its 16x16 copy end up alike);
    area averaging avoids aliasing when shrinking large images. The blur (in canvas pixels, i.e. relative
    to the image extent) forgives the sub-step misalignment left by the discrete crop search, which
    otherwise costs textured photos most of their correlation.

    Both steps are linear and separable: images up to _MATRIX_RESAMPLE_MAX_SIDE are taken to the canvas
    with one matrix product per axis of Pillow's own weights (:func:`synthdata.dedup.resample.pillow_weights`),
    which equals Pillow's resize then scipy's blur up to float32 rounding (tests/test_near_dup.py) without a
    PIL image per image; larger ones go through Pillow and scipy, whose cost grows more slowly with the image.
    """
    canvas = 2 * WORK_SIZE
    out = []
    for gray in grays:  # one at a time: only the small canvases are kept, never the decoded images
        h, w = gray.shape
        method = Image.Resampling.BOX if min(h, w) >= canvas else Image.Resampling.BILINEAR
        if max(h, w) <= _MATRIX_RESAMPLE_MAX_SIDE:
            out.append(_canvas_operator(h, method) @ np.asarray(gray, np.float32) @ _canvas_operator(w, method).T)
        else:
            resized = np.asarray(Image.fromarray(gray.astype(np.float32)).resize((canvas, canvas), method))
            out.append(ndimage.gaussian_filter(resized, _BLUR_SIGMA, mode="nearest"))
    return np.stack(out) if out else np.empty((0, canvas, canvas), np.float32)


@lru_cache(maxsize=1)
def _crop_boxes() -> np.ndarray:
    """(K, 4) boxes (left, top, right, bottom) in normalised coordinates, each side cropped by a step of
    ``_CROP_STEPS`` with at most ``_MAX_CROP`` removed per axis: every way a <= 5% crop may have been cut."""
    axis = [(lo, 1.0 - hi) for lo in _CROP_STEPS for hi in _CROP_STEPS if lo + hi <= _MAX_CROP + 1e-9]
    boxes = [(x0, y0, x1, y1) for (x0, x1) in axis for (y0, y1) in axis]
    return np.array(boxes, dtype=np.float32)


def _taps(lo: np.ndarray, hi: np.ndarray, n: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps of WORK_SIZE samples spanning each normalised interval [lo, hi] of an n-pixel axis:
    first pixel, second pixel and the second's weight, each (len(lo), WORK_SIZE)."""
    t = (np.arange(WORK_SIZE, dtype=np.float32) + 0.5) / WORK_SIZE
    p = np.clip((lo[:, None] + (hi[:, None] - lo[:, None]) * t) * n - 0.5, 0, n - 1)  # pixel centres, clamped
    i0 = np.minimum(np.floor(p).astype(np.intp), max(n - 2, 0))
    # p - i0 is in [0, 1] with p's float32 resolution, so it is exact in either float type.
    return i0, np.minimum(i0 + 1, n - 1), (p - i0).astype(dtype)


class _Sampler:
    """Bilinear samples of a fixed set of normalised boxes from (h, w) images, on a WORK_SIZE^2 grid per box.

    Coordinates are normalised to the image extent, so images of any size share one frame: a resized copy
    lands on the same grid, and a cropped copy lands on the grid of the matching box.

    Separable and batched: rows are interpolated horizontally once per distinct x-interval (6 for the 36
    crop boxes), then each box gathers its rows and interpolates vertically. Every sample is computed with
    the direct 2-D gather's arithmetic, in the same order and precision, so the result is bit-identical to
    it (tests/test_near_dup.py). Work buffers are kept between calls and every product is taken in place:
    fresh arrays per batch would fault their pages in on every call.
    """

    def __init__(self, shape: tuple[int, int], boxes: np.ndarray, dtype: type = np.float32) -> None:
        h, w = shape
        self.shape, self.dtype, self.n_boxes = (h, w), np.dtype(dtype), len(boxes)
        x_intervals, which = np.unique(boxes[:, [0, 2]], axis=0, return_inverse=True)
        x0, x1, fx = _taps(x_intervals[:, 0], x_intervals[:, 1], w, self.dtype)  # (U, S)
        y0, y1, fy = _taps(boxes[:, 1], boxes[:, 3], h, self.dtype)  # (K, S)
        self.n_x = len(x_intervals)
        self.x0, self.x1 = x0.ravel(), x1.ravel()
        # Rows of the (U*h, S) planes a box reads: its x-interval's plane, then its taps' rows.
        first_row = which.ravel()[:, None] * h
        self.r0, self.r1 = (first_row + y0).ravel(), (first_row + y1).ravel()
        # Weights spelled out at the shape they multiply, so the products are plain same-shape loops, not
        # broadcasts of a column.
        def spelled_out(weights: np.ndarray, n: int) -> np.ndarray:
            return np.ascontiguousarray(np.broadcast_to(weights.reshape(-1, 1), (weights.size, n)))

        self.fx, self.gx = spelled_out(fx, h), spelled_out(1 - fx, h)
        self.fy, self.gy = spelled_out(fy, WORK_SIZE), spelled_out(1 - fy, WORK_SIZE)
        self._buffers: list[np.ndarray] = []

    def _work(self, n: int) -> list[np.ndarray]:
        if not self._buffers or len(self._buffers[0]) < n:
            h, w = self.shape
            cols, planes, out = (self.n_x * WORK_SIZE, h), (self.n_x * h, WORK_SIZE), (len(self.r0), WORK_SIZE)
            shapes = [(w, h), cols, cols, planes, out, out]  # as __call__ unpacks them
            self._buffers = [np.empty((n, *shape), self.dtype) for shape in shapes]
        return [buffer[:n] for buffer in self._buffers]

    def __call__(self, stack: np.ndarray) -> np.ndarray:
        """(n, K, WORK_SIZE^2) samples of the (n, h, w) stack: a view of a buffer that the next call reuses."""
        stack = np.asarray(stack, dtype=self.dtype)
        transposed, cols, part, planes, out, part2 = self._work(len(stack))
        h, _ = self.shape
        # Horizontal pass on the transposed images, so that every tap is a whole-row gather (mode="clip"
        # lets take write into out=; the indices are in range by construction).
        transposed[...] = stack.transpose(0, 2, 1)
        np.take(transposed, self.x0, axis=1, out=cols, mode="clip")
        cols *= self.gx
        np.take(transposed, self.x1, axis=1, out=part, mode="clip")
        part *= self.fx
        cols += part  # (n, U*S, h): the x-interpolated columns
        by_interval = cols.reshape(-1, self.n_x, WORK_SIZE, h).transpose(0, 1, 3, 2)
        planes.reshape(-1, self.n_x, h, WORK_SIZE)[...] = by_interval
        np.take(planes, self.r0, axis=1, out=out, mode="clip")
        out *= self.gy
        np.take(planes, self.r1, axis=1, out=part2, mode="clip")
        part2 *= self.fy
        out += part2  # (n, K*S, S)
        return out.reshape(len(stack), self.n_boxes, WORK_SIZE * WORK_SIZE)


def _sample(gray: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``gray`` (..., h, w) on a WORK_SIZE^2 grid spanning each normalised box:
    (..., K, WORK_SIZE^2), in gray's float type (float32 for integer input). See :class:`_Sampler`."""
    gray = np.asarray(gray)
    dtype = gray.dtype if np.issubdtype(gray.dtype, np.floating) else np.dtype(np.float32)
    *lead, h, w = gray.shape
    samples = _Sampler((h, w), boxes, dtype.type)(gray.reshape(-1, h, w))
    return samples.reshape(*lead, len(boxes), WORK_SIZE * WORK_SIZE)
