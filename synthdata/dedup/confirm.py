"""Confirmation of candidate pairs on pixels: pHash agreement is necessary but not sufficient (small or plain
images collide), so candidates are confirmed with a normalised cross-correlation that tolerates crops,
resizes and brightness/contrast changes (:func:`similarity`, on the frame of :mod:`synthdata.dedup.sampling`).
``crop_only`` pairs need a higher score, and small images resized to another size are also confirmed when a
standard resize of one reproduces the other (:func:`reproduction_similarity`).

:func:`confirm_pairs` is the batched form: each image is loaded and prepared once into a bounded cache, its
crops sampled once and correlated with all its partners in one matrix product (:func:`_score_pairs`), while
a background thread loads the images the next chunk needs. ``benchmarks/near_dup_recall.py`` measures recall
and the false-duplicate rate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from synthdata.blas import single_threaded_blas
from synthdata.color import luma8, luma_float
from synthdata.dedup.sampling import WORK_SIZE, _crop_boxes, _prefilter, _sample, _Sampler

# Minimum :func:`similarity` to confirm a candidate; chosen from the measured gap between planted copies
# (JPEG, brightness, resize, crop: >= 0.95 on faces and photo tiles) and distinct images that collide in
# pHash (distinct faces reached 0.96). See benchmarks/near_dup_recall.py.
DEFAULT_SIMILARITY = 0.95

# Tiny images carry too little evidence for the general threshold: distinct 8x8 digits of one class
# correlate at 0.95..0.997 (some are nearly pixel-identical in the source data). When either image has a
# side below SMALL_SIDE, this stricter threshold applies; it keeps JPEG / brightness copies (>= 0.996) and
# drops most downscaled digits, which are genuinely ambiguous at 4..7 px.
SMALL_SIDE = 16
DEFAULT_SMALL_SIMILARITY = 0.993

# ...but a resized copy of a small image is reproduced almost exactly by resizing the other image to its
# size with a standard filter (the planted and real-world resizes use bilinear, bicubic or Lanczos). When
# either image is small and the sizes differ, a pair is also confirmed when such a reproduction correlates
# at REPRO_SIMILARITY or more, on at least REPRO_MIN_PIXELS pixels. Measured: planted resizes of 8x8 digits
# (to 4..16 px) reproduce at >= 0.999; a distinct same-class digit resized to the copy's size reaches 0.987.
REPRO_SIMILARITY = 0.998
REPRO_MIN_PIXELS = 16
_REPRO_FILTERS = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)
_REPRO_MAX_SIDE = 4 * SMALL_SIDE  # keep the uint8 luma of images up to this side for the reproduction test

# Pairs found only by the crop-robust candidate channel (``crop_only``: pHash farther than the radius, see
# synthdata.dedup.candidates) need more pixel evidence: distinct LFW faces that share an average hash
# reached 0.983, planted crops of faces score >= 0.99.
DEFAULT_CROP_SIMILARITY = 0.99

# Prepared images confirm_pairs keeps at once (LRU, 16..24 KB each): bounds its memory whatever the number
# of candidates; an image evicted and needed again is loaded again. The locality order of _locality_rank
# keeps a candidate's partners close, so a cache this size loads most images once.
_PREPARED_CACHE = 8192

# Pair ends scored per chunk, and images whose ends a chunk holds (loaded and prepared together); crops are
# sampled _CROP_BATCH images at a time (147 KB each in float32), so that a batch stays in the CPU caches.
_CHUNK_ENDS = 2048
_CHUNK_OWNERS = 64
_CROP_BATCH = 16

# Below this standard deviation (grey levels, 0..255) an image is flat and correlation is undefined.
_FLAT_STD = 1.0


def _centre(samples: np.ndarray) -> np.ndarray:
    """Subtract each row's mean along the last axis, in place, and return the rows' norms."""
    samples -= samples.mean(axis=-1, keepdims=True)
    return np.sqrt(np.einsum("...d,...d->...", samples, samples))


def _normalise(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm along the last axis (for correlation), and each row's standard deviation.
    Works in place: callers pass samples they no longer need."""
    norm = _centre(samples)
    samples /= np.maximum(norm, 1e-12)[..., None]
    return samples, norm / np.sqrt(samples.shape[-1])


class _Prepared(NamedTuple):
    """Images ready for comparison: blurred canvases (crops are sampled from them when needed: 147 KB per
    image, so they are never kept), normalised full-frame samples, and what the thresholds depend on."""

    canvas: np.ndarray  # (n, 2*WORK_SIZE, 2*WORK_SIZE) float32
    full: np.ndarray  # (n, WORK_SIZE^2) float32, zero-mean and unit-norm
    flat: np.ndarray  # (n,) bool
    min_side: np.ndarray  # (n,) int
    luma: list[np.ndarray | None]  # uint8 luma of images up to _REPRO_MAX_SIDE, for the reproduction test


def _prepare(images: Iterable[np.ndarray]) -> _Prepared:
    """Prepare a batch of images; consumed one at a time, so a lazy iterable never holds two decoded."""
    sides, luma = [], []

    def grays() -> Iterator[np.ndarray]:
        for image in images:
            gray = luma_float(image)
            sides.append(min(gray.shape))
            luma.append(luma8(image) if max(gray.shape) <= _REPRO_MAX_SIDE else None)
            yield gray

    canvas = _prefilter(grays())
    full, std = _normalise(_sample(canvas, _crop_boxes()[:1])[:, 0])  # box 0 is the uncropped frame
    return _Prepared(canvas, full, std < _FLAT_STD, np.array(sides, dtype=np.int64), luma)


def _crops(canvas: np.ndarray, sampler: _Sampler | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean samples of every crop box of each canvas (n, K, WORK_SIZE^2), in ``sampler``'s buffer
    when one is given, and the inverse of their norms (n, K): a crop's correlation with a unit frame is
    their dot product times its inverse norm (scaling K products is cheaper than scaling K * 1024 samples)."""
    samples = (sampler or _Sampler(canvas.shape[-2:], _crop_boxes()))(canvas)
    return samples, 1 / np.maximum(_centre(samples), 1e-12)


def _best_correlation(crops: np.ndarray, inverse_norm: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Best correlation over one image's crops (K, D) with each unit frame (m, D): (m,)."""
    return ((crops @ frames.T) * inverse_norm[:, None]).max(axis=0)


def _correlations(xs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Correlation of each row of xs (k, n) with y (n,), in float64; 0 where either is constant."""
    xs = xs.astype(np.float64)
    y = y.astype(np.float64).ravel()
    xs -= xs.mean(axis=1, keepdims=True)
    y -= y.mean()
    denom = np.linalg.norm(xs, axis=1) * np.linalg.norm(y)
    return np.divide(xs @ y, denom, out=np.zeros(len(xs)), where=denom > 0)


def reproduction_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation between one uint8 luma image and the other resized to its size (bilinear, bicubic or
    Lanczos, either direction); -1 when the sizes are equal or the target has too few pixels."""
    best = -1.0
    for src, dst in ((a, b), (b, a)):
        if src.shape == dst.shape or dst.size < REPRO_MIN_PIXELS or min(src.shape) < 2:
            continue
        pil = Image.fromarray(src)
        resized = [np.asarray(pil.resize((dst.shape[1], dst.shape[0]), method)) for method in _REPRO_FILTERS]
        best = max(best, float(_correlations(np.stack(resized).reshape(len(resized), -1), dst).max()))
    return best


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Alignment-tolerant similarity in [-1, 1] of two uint8 images (any sizes, gray or RGB).

    Both are sampled on a common 32x32 grid in normalised coordinates (so resizes line up) and compared by
    normalised cross-correlation (so brightness/contrast changes do not matter), maximised over crops of
    up to 5% of either image (so trimmed copies line up): either full frame against every crop of the
    other. Flat images match only flat images.
    """
    prepared = _prepare([a, b])
    if prepared.flat.any():
        return 1.0 if prepared.flat.all() else 0.0
    crops, inverse_norm = _crops(prepared.canvas)
    best = max(float(_best_correlation(crops[i], inverse_norm[i], prepared.full[1 - i : 2 - i])[0]) for i in (0, 1))
    return float(np.clip(best, -1.0, 1.0))


class _PreparedCache:
    """Prepared images of one confirm_pairs call in preallocated slots, the least recently used evicted
    first: memory is bounded by the capacity whatever the number of images (16..24 KB per slot)."""

    def __init__(self, ids: Sequence, load: Callable[[str], np.ndarray], capacity: int) -> None:
        self.ids, self.load = ids, load
        capacity = max(1, min(capacity, len(ids)))
        side = 2 * WORK_SIZE
        self.canvas = np.empty((capacity, side, side), np.float32)  # pages are touched only when used
        self.full = np.empty((capacity, WORK_SIZE * WORK_SIZE), np.float32)
        self.luma: list[np.ndarray | None] = [None] * capacity
        self.slot_of = np.full(len(ids), -1, np.intp)
        self.code_of = np.full(capacity, -1, np.intp)
        self.last_used = np.full(capacity, -1, np.int64)
        # Per image, kept after eviction: the final thresholds need them for every pair.
        self.flat = np.zeros(len(ids), bool)
        self.min_side = np.zeros(len(ids), np.int64)

    def missing(self, codes: np.ndarray) -> np.ndarray:
        return codes[self.slot_of[codes] < 0]

    def fetch(self, codes: np.ndarray, tick: int, loaded: dict[int, np.ndarray] | None = None) -> np.ndarray:
        """Slots holding ``codes`` (distinct, at most the capacity), marked used at ``tick`` (increasing
        per call); the missing images are prepared as one batch into slots not used at tick, taken from
        ``loaded`` (code -> image, see :class:`_LoadAhead`) or loaded here."""
        slots = self.slot_of[codes]
        self.last_used[slots[slots >= 0]] = tick
        missing = np.flatnonzero(slots < 0)
        if len(missing):
            free = np.flatnonzero(self.last_used < tick)
            if len(free) < len(missing):
                raise ValueError(f"{len(codes)} images needed at once, cache holds {len(self.code_of)}")
            pick = free[np.argpartition(self.last_used[free], len(missing) - 1)[: len(missing)]]
            evicted = self.code_of[pick]
            self.slot_of[evicted[evicted >= 0]] = -1
            new = codes[missing]
            loaded = loaded or {}
            prepared = _prepare(
                loaded.pop(code) if code in loaded else self.load(self.ids[code]) for code in new.tolist()
            )
            self.canvas[pick], self.full[pick] = prepared.canvas, prepared.full
            for slot, luma in zip(pick, prepared.luma):
                self.luma[slot] = luma
            self.flat[new], self.min_side[new] = prepared.flat, prepared.min_side
            self.slot_of[new], self.code_of[pick], self.last_used[pick] = pick, new, tick
            slots[missing] = pick
        return slots


class _LoadAhead:
    """Loads (reads and decodes) the next chunk's missing images on one background thread while the
    current chunk is scored: decoding is a large share of confirmation, and from an object store each load
    also waits on the network. Pillow and file reads release the GIL.

    At most ``max_bytes`` of decoded images are held ahead (the rest of a chunk is loaded on demand), so a
    chunk of large photographs cannot multiply memory. ``load`` must be safe to call from another thread
    (reading a store and decoding is).
    """

    def __init__(self, ids: Sequence, load: Callable[[str], np.ndarray], max_bytes: int = 64 << 20) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.ids, self.load, self.max_bytes = ids, load, max_bytes
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="near-dup-load")
        self.pending = None

    def _load_all(self, codes: list[int]) -> dict[int, np.ndarray]:
        out, held = {}, 0
        for code in codes:
            if held >= self.max_bytes:
                break
            image = self.load(self.ids[code])
            out[code] = image
            held += image.nbytes
        return out

    def start(self, codes: np.ndarray) -> None:
        self.pending = self.pool.submit(self._load_all, codes.tolist()) if len(codes) else None

    def take(self) -> dict[int, np.ndarray]:
        """The images started last (waiting for them); a load error is raised here, as it would be inline."""
        pending, self.pending = self.pending, None
        return pending.result() if pending is not None else {}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _locality_rank(a: np.ndarray, b: np.ndarray, n_images: int) -> np.ndarray:
    """Rank of each image in an order that keeps candidate partners close together (reverse Cuthill-McKee
    on the candidate graph), so that a bounded cache of prepared images serves most partners."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    rows, cols = np.concatenate([a, b]), np.concatenate([b, a])
    graph = coo_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n_images, n_images)).tocsr()
    rank = np.empty(n_images, np.intp)
    rank[reverse_cuthill_mckee(graph, symmetric_mode=True)] = np.arange(n_images)
    return rank


def _chunk_bounds(owners: np.ndarray, max_owners: int, max_ends: int) -> list[tuple[int, int]]:
    """Split ends sorted by owner into consecutive chunks of at most ``max_owners`` owners and
    ``max_ends`` ends; an owner with more ends than that is split over several chunks."""
    starts = np.flatnonzero(np.r_[True, owners[1:] != owners[:-1]])
    cuts, n_owners = [0], 0
    for start, stop in zip(starts.tolist(), np.r_[starts[1:], len(owners)].tolist()):
        if start > cuts[-1] and (n_owners == max_owners or stop - cuts[-1] > max_ends):
            cuts.append(start)
            n_owners = 0
        while stop - cuts[-1] > max_ends:
            cuts.append(cuts[-1] + max_ends)
            n_owners = 0
        n_owners += 1
    cuts.append(len(owners))
    return [(lo, hi) for lo, hi in pairwise(cuts) if hi > lo]


def _score_pairs(
    code_a: np.ndarray, code_b: np.ndarray, cache: _PreparedCache, small_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Best crop correlation of every pair (a, b given as image codes of ``cache``), and its reproduction
    similarity where the small-image test applies (-1 elsewhere).

    Every pair has two ends, (crops of a, frame of b) and (crops of b, frame of a). Ends are grouped by
    the image whose crops they need (its owner), owners visited in an order that keeps partners close,
    and scored in chunks: the chunk's missing images are loaded and prepared together, each owner's crops
    are sampled once and multiplied with all its partners' frames in one matrix product.
    """
    n = len(code_a)
    owner, partner = np.concatenate([code_a, code_b]), np.concatenate([code_b, code_a])
    order = np.argsort(_locality_rank(code_a, code_b, len(cache.ids))[owner], kind="stable")
    position = np.empty(2 * n, np.intp)
    position[order] = np.arange(2 * n)
    scored_last = np.concatenate([position[:n] > position[n:], position[n:] > position[:n]])
    sampler = _Sampler((2 * WORK_SIZE, 2 * WORK_SIZE), _crop_boxes())
    end_score = np.empty(2 * n, np.float32)
    repro = np.full(n, -1.0)

    def chunk(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ends = order[lo:hi]
        own, other = owner[ends], partner[ends]
        starts = np.flatnonzero(np.r_[True, own[1:] != own[:-1]])
        return ends, own, other, starts, np.r_[starts[1:], len(ends)], np.unique(np.concatenate([own[starts], other]))

    bounds = _chunk_bounds(owner[order], _CHUNK_OWNERS, _CHUNK_ENDS)
    ahead = _LoadAhead(cache.ids, cache.load)
    try:
        upcoming = chunk(*bounds[0]) if bounds else None
        for tick in range(len(bounds)):
            ends, own, other, starts, stops, needed = upcoming
            cache.fetch(needed, tick, ahead.take())
            if tick + 1 < len(bounds):
                upcoming = chunk(*bounds[tick + 1])
                # The cache changes only in fetch, so what the next chunk will miss is known exactly now.
                ahead.start(cache.missing(upcoming[-1]))
            _score_chunk(cache, sampler, ends, own, other, starts, stops, end_score)
            _reproduce_chunk(cache, code_a, code_b, ends[scored_last[ends]] % n, end_score, repro, small_threshold)
    finally:
        ahead.close()
    return np.maximum(end_score[:n], end_score[n:]), repro


def _score_chunk(
    cache: _PreparedCache, sampler: _Sampler, ends: np.ndarray, own: np.ndarray, other: np.ndarray,
    starts: np.ndarray, stops: np.ndarray, end_score: np.ndarray,
) -> None:  # fmt: skip
    """Score one chunk's ends: each owner's crops sampled once, multiplied with all its partners' frames."""
    frames = cache.full[cache.slot_of[other]]
    for first in range(0, len(starts), _CROP_BATCH):
        batch = slice(first, first + _CROP_BATCH)
        crops, inverse_norm = _crops(cache.canvas[cache.slot_of[own[starts[batch]]]], sampler)
        for crop, scale, start, stop in zip(crops, inverse_norm, starts[batch].tolist(), stops[batch].tolist()):
            end_score[ends[start:stop]] = _best_correlation(crop, scale, frames[start:stop])


def _reproduce_chunk(
    cache: _PreparedCache, code_a: np.ndarray, code_b: np.ndarray, done: np.ndarray, end_score: np.ndarray,
    repro: np.ndarray, small_threshold: float,
) -> None:  # fmt: skip
    """A pair's score is final once its second end is scored, and both images are in the cache then: the
    small pairs (``done``) that the correlation does not confirm get their reproduction test here."""
    n = len(code_a)
    a, b = code_a[done], code_b[done]
    best = np.maximum(end_score[done], end_score[done + n])
    test = ((np.minimum(cache.min_side[a], cache.min_side[b]) < SMALL_SIDE) & (best < small_threshold)
            & ~cache.flat[a] & ~cache.flat[b])  # fmt: skip
    for pair, slot_a, slot_b in zip(done[test], cache.slot_of[a[test]], cache.slot_of[b[test]]):
        luma_a, luma_b = cache.luma[slot_a], cache.luma[slot_b]
        if luma_a is not None and luma_b is not None and luma_a.shape != luma_b.shape:
            repro[pair] = reproduction_similarity(luma_a, luma_b)


def confirm_pairs(
    pairs: pd.DataFrame,
    load: Callable[[str], np.ndarray],
    threshold: float = DEFAULT_SIMILARITY,
    small_threshold: float = DEFAULT_SMALL_SIMILARITY,
    crop_threshold: float = DEFAULT_CROP_SIMILARITY,
) -> pd.DataFrame:
    """Candidate pairs (columns a, b, ...) with a ``similarity`` column, keeping the confirmed ones.

    The similarity is :func:`similarity`'s. A pair is confirmed when it reaches ``threshold``, or
    ``small_threshold`` when either image has a side shorter than ``SMALL_SIDE`` pixels, or
    ``max(threshold, crop_threshold)`` for pairs marked ``crop_only`` (found by the crop-robust channel
    alone, see :func:`synthdata.dedup.candidates.candidate_pairs`). Small pairs whose sizes differ are also
    confirmed by :func:`reproduction_similarity` >= ``REPRO_SIMILARITY``.

    Pairs are scored in batches (see :func:`_score_pairs`); images are loaded once unless evicted from a
    cache of ``_PREPARED_CACHE`` prepared images. Memory is bounded by the chunk and cache sizes, not by
    the number of pairs or images (beyond a few bytes per pair and image).
    """
    n = len(pairs)
    crop_only = pairs["crop_only"].to_numpy(bool) if "crop_only" in pairs else np.zeros(n, bool)
    if n == 0:
        return pairs.assign(similarity=np.zeros(0, np.float64)).reset_index(drop=True)
    codes, uniques = pd.factorize(pd.concat([pairs["a"], pairs["b"]], ignore_index=True))
    code_a, code_b = codes[:n], codes[n:]
    cache = _PreparedCache(list(uniques), load, _PREPARED_CACHE)
    # The products are small (36 x 1024 by a few frames): a second BLAS thread only adds synchronisation,
    # and on a shared machine its spinning stalls the products.
    with single_threaded_blas():
        correlation, repro = _score_pairs(code_a, code_b, cache, small_threshold)

    flat_a, flat_b = cache.flat[code_a], cache.flat[code_b]
    correlation = np.minimum(correlation.astype(np.float64), 1.0)
    score = np.where(flat_a | flat_b, np.where(flat_a & flat_b, 1.0, 0.0), correlation)
    small = np.minimum(cache.min_side[code_a], cache.min_side[code_b]) < SMALL_SIDE
    required = np.where(small, small_threshold, threshold)
    required = np.where(crop_only, np.maximum(required, crop_threshold), required)
    reproduced = repro >= REPRO_SIMILARITY
    score = np.where(reproduced, np.maximum(score, repro), score)
    required = np.where(reproduced, REPRO_SIMILARITY, required)
    out = pairs.assign(similarity=score)
    return out[score >= required].reset_index(drop=True)

