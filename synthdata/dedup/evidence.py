"""Copy evidence: how far one image is from being a supported transform of another (:func:`copy_distance`).

The evidence is the residual left after the best alignment and one photometric fit, relative to the
reference image's contrast. Alignment tries what the supported transforms do: the same pixel scale shifted
or cropped by up to ``MAX_SHIFT`` pixels (or 5% of the side), and a resize of either image to the other's
size with a standard filter. The photometric fit is one gain and one offset shared by all colour channels
(brightness/contrast change every channel alike): a red and a grey version of one button leave a large
residual, and colour counts. Pixels clipped at 0 or 255 in the copy are not held against it when the fit
predicts beyond the clip. The residual is blurred slightly (``BLUR_SIGMA`` grid pixels) so JPEG noise and
resampling filters are forgiven while a different sleeve, logo or stitch is not.

0 means an exact transform; re-encoded, resized, shifted and brightness-changed copies of real images stay
under ~0.1, distinct look-alikes of one class (Fashion-MNIST, faces) mostly above. Where the line falls is
a property of the data set: :mod:`synthdata.dedup.calibrate` measures it.

Images are compared on a frame whose longer side is at most ``GRID`` pixels (larger images are reduced with
a Gaussian prefilter, which keeps the reduction nearly shift-equivariant); the resize and crop views of two
images of different sizes use the images themselves when they are at most ``_NATIVE_RESIZE_SIDE``, and so
does a second shift search of two same-size images larger than the grid (a 1-2 px shift is a fraction of a
grid pixel there, which fine textures do not forgive).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import ndimage

from synthdata.blas import single_threaded_blas
from synthdata.dedup.resample import filter_weights

GRID = 64
MAX_SHIFT = 2  # grid pixels tried each way at the same pixel scale (1-2 px shifts and crops)
_MAX_SHIFT_FRACTION = 0.05  # ...or this share of the side, when larger
_MIN_OVERLAP = 0.75  # an alignment must compare at least this share of the smaller image
BLUR_SIGMA = 0.5
# Images up to this side are resized as they are when testing for a resized copy (a standard resize of
# the original reproduces the copy almost exactly); larger ones are compared on their frames.
_NATIVE_RESIZE_SIDE = 256
_RESIZE_FILTERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
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
_NATIVE_CHUNK = 256  # pairs compared at once at their own scale (up to 256 x 256 x 3 floats each)


def _rgb(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) float32 of a uint8 (h, w) or (h, w, 3|4) image: grey is three equal channels."""
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr[..., :3], dtype=np.float32)


def _grid_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def _factor(shape: tuple[int, ...]) -> float:
    return min(1.0, GRID / max(shape[:2]))


def _resize(rgb: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Each channel resized with Pillow ("F" mode: no rounding): BOX when shrinking, after a Gaussian prefilter
    of half an output pixel (box sums of a shrink by a non-integer factor change with the phase of the
    content, so a copy shifted by one source pixel would not match; the prefilter makes the reduction nearly
    shift-equivariant), bilinear when growing."""
    h, w = shape
    if rgb.shape[:2] == (h, w):
        return rgb
    method = Image.Resampling.BILINEAR
    if h <= rgb.shape[0] and w <= rgb.shape[1]:
        method = Image.Resampling.BOX
        sigma = 0.5 * max(rgb.shape[0] / h, rgb.shape[1] / w)
        rgb = ndimage.gaussian_filter(rgb, (sigma, sigma, 0), mode="nearest")
    channels = [np.asarray(Image.fromarray(rgb[..., c]).resize((w, h), method)) for c in range(3)]
    return np.stack(channels, axis=-1)


def _frame(image: np.ndarray) -> np.ndarray:
    """An image on its own grid: (h, w, 3) float32, longer side at most GRID."""
    rgb = _rgb(image)
    return _resize(rgb, _grid_shape(rgb.shape, _factor(rgb.shape)))


def residual(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Relative residual of y after the gain/offset fit y ~ g x + o shared by all channels, for stacks
    x, y (P, h, w, 3) of aligned views; the smaller of both directions (either may be the copy): (P,)."""
    return np.minimum(_fit_residual(x, y), _fit_residual(y, x))


def _fit_residual(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = len(x)
    xf, yf = x.reshape(p, -1), y.reshape(p, -1)
    # Fit on pixels clipped in neither image (a clipped pixel says nothing about the gain).
    ok = (xf > _CLIP_LO) & (xf < _CLIP_HI) & (yf > _CLIP_LO) & (yf < _CLIP_HI)
    few = ok.sum(axis=1) < 8
    ok[few] = True
    w = ok.astype(np.float32)
    n = w.sum(axis=1)
    mx, my = (w * xf).sum(axis=1) / n, (w * yf).sum(axis=1) / n
    dx, dy = (xf - mx[:, None]) * w, yf - my[:, None]
    gain = (dx * dy).sum(axis=1) / np.maximum((dx * dx).sum(axis=1), 1e-6)
    gain = np.clip(gain, *_GAIN_RANGE)
    level = mx + np.clip(my - mx, -_MAX_LEVEL_SHIFT, _MAX_LEVEL_SHIFT)
    pred = gain[:, None] * (xf - mx[:, None]) + level[:, None]
    r = yf - pred
    # A copy clipped at black or white is not held to values beyond the clip.
    r[((yf <= _CLIP_LO) & (pred < yf)) | ((yf >= _CLIP_HI) & (pred > yf))] = 0.0
    r = ndimage.gaussian_filter(r.reshape(y.shape), (0, BLUR_SIGMA, BLUR_SIGMA, 0), mode="nearest")
    var = np.maximum(yf.var(axis=1), _MIN_STD**2)
    return np.sqrt((r.reshape(p, -1) ** 2).mean(axis=1) / var)


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


def _box(table: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Sums over one window of every image, from its summed-area table: (P,)."""
    return (table[:, rows.stop, cols.stop] - table[:, rows.start, cols.stop]
            - table[:, rows.stop, cols.start] + table[:, rows.start, cols.start])  # fmt: skip


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
        xs, ys = _box(s1, sy, sx), _box(l1, ly, lx)
        cross = np.einsum("pij,pij->p", small[:, sy, sx], large[:, ly, lx], dtype=np.float64) - xs * ys / n
        var = np.maximum(_box(s2, sy, sx) - xs * xs / n, 0.0) * np.maximum(_box(l2, ly, lx) - ys * ys / n, 0.0)
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
    shifts = [(ty, tx) for ty, tx, *_ in chosen]
    order = np.argsort(a, kind="stable")
    starts = np.flatnonzero(np.r_[True, a[order][1:] != a[order][:-1]])
    pick, corr = np.zeros(len(a), np.intp), np.zeros(len(a), np.float32)
    for lo, hi in zip(starts, np.r_[starts[1:], len(order)]):
        rows = order[lo:hi]
        image = luma[a[rows[0]]]
        windows = _unit(np.stack([image[m + ty : h - m + ty, m + tx : w - m + tx].ravel() for ty, tx in shifts]))
        scores = windows @ centre[b[rows]].T  # (K, k)
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
    originals: list[np.ndarray], a: np.ndarray, b: np.ndarray, corr: np.ndarray, screen: float
) -> np.ndarray:
    """Distances of same-shape pairs (a[i], b[i]) at their own pixel scale, shifted by up to MAX_SHIFT pixels,
    for the pairs whose frame correlation reaches ``screen`` (inf elsewhere). On a frame reduced from a larger
    image a shift of 1-2 source pixels is a fraction of a grid pixel, which leaves fine textures (grass,
    brick, a star field) a residual no grid alignment removes; at the source's own scale it is exact."""
    out = np.full(len(a), np.inf)
    rows = np.flatnonzero(corr >= screen)
    for start in range(0, len(rows), _NATIVE_CHUNK):
        part = rows[start : start + _NATIVE_CHUNK]
        small = np.stack([_rgb(originals[i]) for i in b[part]])
        large = np.stack([_rgb(originals[i]) for i in a[part]])
        out[part] = _pixel_scale_distance(small, large, screen=screen, max_shift=MAX_SHIFT)[0]
    return out


@lru_cache(maxsize=4096)
def _weights(n_in: int, n_out: int, method: Image.Resampling) -> np.ndarray:
    return filter_weights(n_in, n_out, method).astype(np.float32)


def _resized(frames: np.ndarray, shape: tuple[int, int], method: Image.Resampling) -> np.ndarray:
    """A stack of images (P, h, w, 3) resized to ``shape`` with Pillow's weights for ``method`` (one matrix
    product per axis, synthdata.dedup.resample): what a standard resize of each image gives, unrounded."""
    planes = np.ascontiguousarray(frames.transpose(0, 3, 1, 2))  # (P, 3, h, w): batched matrix products
    out = _weights(frames.shape[1], shape[0], method) @ planes @ _weights(frames.shape[2], shape[1], method).T
    return out.transpose(0, 2, 3, 1)


def _luma_correlation(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = len(x)
    return np.einsum("pd,pd->p", _unit(x.mean(axis=3).reshape(p, -1)), _unit(y.mean(axis=3).reshape(p, -1)))


def _different_shape_distance(
    large: np.ndarray, small: np.ndarray, screen: float, large_rgb: np.ndarray, small_rgb: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Distances of pairs of two shapes (``large`` has the larger area), and their best correlations.

    Views: either image resized to the other's size with a standard filter (bilinear, bicubic, Lanczos:
    what resized copies are made with; on the originals when both are at most _NATIVE_RESIZE_SIDE, so a
    resized copy is reproduced almost exactly, else on the frames), and, when the sizes differ by a crop's
    worth, the pixel-scale alignment (:func:`_pixel_scale_distance`'s, on the same images). Pairs whose best luma
    correlation over the views is below ``screen`` are not scored in full."""
    p = len(large)
    if max(large_rgb.shape[1:3]) > _NATIVE_RESIZE_SIDE:
        large_rgb, small_rgb = large, small
    views = []
    for method in _RESIZE_FILTERS:
        views.append((_resized(large_rgb, small_rgb.shape[1:3], method), small_rgb))
        views.append((large_rgb, _resized(small_rgb, large_rgb.shape[1:3], method)))
    corr = np.max([_luma_correlation(x, y) for x, y in views], axis=0)
    out = np.full(p, np.inf)
    keep = np.flatnonzero(corr >= screen)
    if len(keep):
        out[keep] = np.min([residual(_to_grid(x[keep]), _to_grid(y[keep])) for x, y in views], axis=0)
    m = _max_shift(small_rgb.shape[1:3])
    if all(abs(hl - hs) <= 2 * m for hl, hs in zip(large_rgb.shape[1:3], small_rgb.shape[1:3])):
        pixel, pixel_corr = _pixel_scale_distance(small_rgb, large_rgb, screen=screen)
        out, corr = np.minimum(out, pixel), np.maximum(corr, pixel_corr)
    return out, corr


def _to_grid(stack: np.ndarray) -> np.ndarray:
    """A stack of views (P, h, w, 3) reduced to the frame grid when larger than it (as :func:`_frame`)."""
    shape = _grid_shape(stack.shape[1:3], _factor(stack.shape[1:3]))
    return stack if shape == stack.shape[1:3] else np.stack([_resize(v, shape) for v in stack])


def _nbytes(item: tuple[np.ndarray, np.ndarray]) -> int:
    """Memory of one cache entry (original, frame): the frame once when it stands for the original too."""
    original, frame = item
    return frame.nbytes + (0 if original is frame else original.nbytes)


def copy_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Copy evidence of two uint8 images (any sizes, grey or colour): 0 when one is exactly a supported
    transform of the other, growing with what no alignment, resize or gain/offset explains. Symmetric."""
    return float(copy_evidence([(0, 1)], [a, b].__getitem__)[0][0])


def copy_evidence(
    pairs: Sequence[tuple], load: Callable[[object], np.ndarray], screen: float = -1.0
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`copy_distance` of every pair (ids a, b; ``load(id)`` gives the uint8 image), batched, and the
    best luma correlation over the alignments tried.

    Pairs whose best correlation is below ``screen`` are not scored in full: their distance is
    inf (:mod:`synthdata.dedup.calibrate` sets the screen below every planted copy it measured). Images of
    one pair of shapes are compared as stacks; each image is loaded once unless evicted from a bounded cache.
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

    # Pairs grouped by the shapes of their images (so each group is compared as stacks), the larger first.
    shape_of: dict[object, tuple[int, int]] = {}
    groups: dict[tuple, list[tuple[int, object, object]]] = {}
    for k, (a, b) in enumerate(pairs):
        for x in (a, b):
            if x not in shape_of:
                shape_of[x] = get(x)[0].shape[:2]
        sa, sb = shape_of[a], shape_of[b]
        if sa[0] * sa[1] < sb[0] * sb[1]:
            a, b, sa, sb = b, a, sb, sa
        groups.setdefault((sa,) if sa == sb else (sa, sb), []).append((k, a, b))
    with single_threaded_blas():
        for key, everyone in groups.items():
            for start in range(0, len(everyone), _CHUNK):
                members = everyone[start : start + _CHUNK]
                where = np.array([k for k, _, _ in members])
                if len(key) == 1:  # images (so frames) of one shape
                    ids = list(dict.fromkeys(x for _, a, b in members for x in (a, b)))
                    code = {x: i for i, x in enumerate(ids)}
                    frames = np.stack([get(x)[1] for x in ids])
                    a = np.array([code[x] for _, x, _ in members])
                    b = np.array([code[x] for _, _, x in members])
                    subpixel = max(frames.shape[1:3]) >= GRID  # frames reduced from larger images
                    out[where], corr[where] = _same_shape_distance(frames, a, b, screen, subpixel)
                    if subpixel and get(ids[0])[0] is not get(ids[0])[1]:
                        originals = [get(x)[0] for x in ids]
                        out[where] = np.minimum(out[where], _native_shift_distance(originals, a, b, corr[where], screen))
                else:
                    large = [get(x) for _, x, _ in members]
                    small = [get(x) for _, _, x in members]
                    out[where], corr[where] = _different_shape_distance(
                        np.stack([f for _, f in large]), np.stack([f for _, f in small]), screen,
                        np.stack([_rgb(r) for r, _ in large]), np.stack([_rgb(r) for r, _ in small]),
                    )  # fmt: skip
    return out, corr
