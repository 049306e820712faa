"""Near-duplicate search without comparing all pairs: banded pHash candidates in DuckDB, an
alignment-tolerant pixel confirmation, and first-seen-wins grouping.

Pipeline (see ``benchmarks/near_dup_recall.py`` for the measured recall and false-duplicate rate):

1. :func:`candidate_pairs` - pigeonhole banding of 64-bit pHashes in SQL. Splitting the hash into
   ``radius + 1`` bands guarantees that two hashes within Hamming distance ``radius`` agree exactly on at
   least one band, so an equi-join on (band, value) finds every such pair while only touching pairs that
   share a band. For larger tables, fewer and wider bands probed with their few-bit flips (multi-index
   hashing, :func:`search_plan`) find the same pairs with far fewer collisions. Incremental: only pairs with
   a new image are produced, old images are never recompared.
   When the table also has ``phash2`` (:func:`synthdata.dedup.phash.crop_robust_hashes`, an average hash that
   crops move less), a second banded join on it adds pairs within ``CROP_RADIUS`` of ``phash2`` and
   ``CROP_PHASH_RADIUS`` of pHash; those are marked ``crop_only`` when pHash alone would have missed them.
2. :func:`confirm_pairs` / :func:`similarity` - pHash agreement is necessary but not sufficient (small or
   plain images collide), so candidates are confirmed on pixels with a normalised cross-correlation that
   tolerates crops, resizes and brightness/contrast changes; ``crop_only`` pairs need a higher score, and
   small images resized to another size are also confirmed when a standard resize of one reproduces the
   other (:func:`reproduction_similarity`). Batched: each image is loaded and prepared once, its crops
   sampled once and correlated with all its partners in one matrix product (:func:`_score_pairs`).
3. :func:`group_duplicates` - union-find over exact and confirmed near pairs; the image seen first keeps
   its place as the group's representative.

Hashes are stored as DuckDB BIGINT (the uint64 bits reinterpreted, see :func:`synthdata.dedup.phash.to_signed`);
UBIGINT columns work too.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from itertools import combinations, pairwise
from math import comb
from typing import NamedTuple

import duckdb
import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from synthdata.blas import single_threaded_blas
from synthdata.color import luma8, luma_float

HASH_BITS = 64

# Hamming radius for candidates. Measured on the planted set (benchmarks/near_dup_recall.py): resizes,
# JPEG and brightness changes stay within a few bits, crops of up to 5% spread to ~10; larger radii mostly
# add distinct-image candidates that the pixel check must then reject (and shrink the bands, which costs).
DEFAULT_RADIUS = 10

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

# Prepared images confirm_pairs keeps at once (LRU, 16..24 KB each): bounds its memory whatever the number
# of candidates; an image evicted and needed again is loaded again. With the locality order of
# _locality_rank, 8192 slots loaded each of benchmarks/ingest_speed.py's 11k candidate images once.
_PREPARED_CACHE = 8192

# Pair ends scored per chunk, and images whose ends a chunk holds (loaded and prepared together); crops are
# sampled _CROP_BATCH images at a time (147 KB each in float32): larger batches fell out of the CPU caches
# and ran 1.5x slower per image.
_CHUNK_ENDS = 2048
_CHUNK_OWNERS = 64
_CROP_BATCH = 16

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

# Below this standard deviation (grey levels, 0..255) an image is flat and correlation is undefined.
_FLAT_STD = 1.0


# --------------------------------------------------------------------------------------------------
# 1. Candidate search
# --------------------------------------------------------------------------------------------------


def band_layout(radius: int, bands: int | None = None) -> list[tuple[int, int]]:
    """(shift, width) of ``bands`` bands (default ``radius + 1``) that tile the 64 hash bits, widths differing by <= 1."""
    if not 0 <= radius < HASH_BITS:
        raise ValueError(f"radius must be in 0..{HASH_BITS - 1}, got {radius}")
    n_bands = radius + 1 if bands is None else bands
    if not 1 <= n_bands <= radius + 1:
        raise ValueError(f"bands must be in 1..radius + 1 = {radius + 1}, got {n_bands}")
    base, extra = divmod(HASH_BITS, n_bands)
    layout, shift = [], 0
    for i in range(n_bands):
        width = base + (1 if i < extra else 0)
        layout.append((shift, width))
        shift += width
    return layout


@lru_cache(maxsize=256)
def _flips(width: int, flip_radius: int) -> tuple[int, ...]:
    """Every ``width``-bit mask with at most ``flip_radius`` bits set (0 first)."""
    masks = [0]
    for k in range(1, flip_radius + 1):
        masks.extend(sum(1 << b for b in bits) for bits in combinations(range(width), k))
    return tuple(masks)


def _n_flips(width: int, flip_radius: int) -> int:
    return sum(comb(width, k) for k in range(flip_radius + 1))  # = len(_flips(width, flip_radius)), not built


# Probe rows per hash that a plan may cost: beyond this, the flip lists dwarf any saving in collisions.
_MAX_PROBES = 4096


def search_plan(radius: int, n_rows: int) -> tuple[list[tuple[int, int]], int]:
    """The band layout and per-band flip radius to search ``n_rows`` hashes within ``radius`` bits.

    Multi-index hashing (Norouzi et al., 2012): split the hash into m bands; two hashes within ``radius`` bits
    differ in at most ``radius // m`` bits on at least one band (pigeonhole), so probing each band's value and
    its flips within that many bits finds every pair. m = radius + 1 (no flips) is the classic banding; its
    bands are only ~6 bits wide at radius 10, so every hash collides with n / 64 others per band and the join
    grows with n^2 / 6. Fewer, wider bands trade flips (probe rows, linear in n) for far fewer collisions.
    The plan minimises probes * 2 + expected collisions per hash (uniform hashes): at radius 10 that is 11
    bands for a few thousand hashes, 6 bands of ~11 bits with 1-bit flips at ~20k, 4 bands of 16 bits with
    2-bit flips from ~60k (measured on uniform hashes at 100k: 4.7 s -> 1.6 s).
    """
    best: tuple[float, tuple[list[tuple[int, int]], int]] | None = None
    for m in range(1, radius + 2):  # m = radius + 1 (no flips, <= 64 probes) always qualifies
        layout, flip_radius, probes = _layout_with_flips(radius, m)
        if sum(probes) > _MAX_PROBES:
            continue
        cost = sum(2 * p + p * n_rows / 2.0**width for p, (_, width) in zip(probes, layout))
        if best is None or cost < best[0]:
            best = (cost, (layout, flip_radius))
    assert best is not None
    return best[1]


def _layout_with_flips(radius: int, bands: int) -> tuple[list[tuple[int, int]], int, list[int]]:
    """``bands`` bands for ``radius``: the layout, the flip radius its pigeonhole allows, the probes per band."""
    layout, flip_radius = band_layout(radius, bands), radius // bands
    return layout, flip_radius, [_n_flips(width, flip_radius) for _, width in layout]


# Second candidate channel (used when the hashes table has a ``phash2`` column, see
# synthdata.dedup.phash.crop_robust_hashes): pairs whose crop-robust hashes differ in at most CROP_RADIUS bits and
# whose pHashes differ in at most CROP_PHASH_RADIUS bits. Measured on the planted set: crops within it
# 99.7% (pHash radius 10 alone: 88%); distinct images >= 16 px passing both: 0.24% of pairs.
CROP_RADIUS = 10
CROP_PHASH_RADIUS = 24

# Pairs found only by that channel (pHash farther than the radius) need more pixel evidence: distinct LFW
# faces that share an average hash reached 0.983, planted crops of faces score >= 0.99.
DEFAULT_CROP_SIMILARITY = 0.99


def _channels(
    con: duckdb.DuckDBPyConnection, table: str, radius: int, crop_radius: int | None
) -> list[tuple[str, int, str, str]]:
    """The banded channels to search, as (column, radius, DuckDB type, row filter): pHash, plus the
    crop-robust ``phash2`` when the table has it and ``crop_radius`` is not None (0 there means no hash)."""
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
    wanted = [("phash", radius, "")]
    if crop_radius is not None and "phash2" in types:
        wanted.append(("phash2", crop_radius, "WHERE phash2 IS NOT NULL AND phash2 <> 0"))
    for column, _, _ in wanted:
        if types.get(column) not in ("BIGINT", "UBIGINT"):
            raise TypeError(f"{table}.{column} must be BIGINT or UBIGINT, got {types.get(column)}")
    return [(column, r, types[column], where) for column, r, where in wanted]


def _sql_bits(bits: int, dtype: str) -> str:
    """A 64-bit pattern as a literal of ``dtype``: on BIGINT, bit 63 is the sign bit (so all 64 bits are -1;
    arithmetic shifts on BIGINT are harmless because band masks keep only the band's own bits)."""
    value = bits - (1 << HASH_BITS) if dtype == "BIGINT" and bits >> (HASH_BITS - 1) else bits
    return f"({value})::{dtype}"


def _keyed_sql(table: str, column: str, dtype: str, layout: list[tuple[int, int]], flip_radius: int, where: str) -> str:
    """CTEs ``keyed`` (one row per hash and band, with the band's value ``v``) and ``probes`` (the same rows with
    ``v`` replaced by each of its flips within ``flip_radius`` bits)."""
    bands = [f"({i}, {shift}, {_sql_bits((1 << width) - 1, dtype)})" for i, (shift, width) in enumerate(layout)]
    flips = [f"({i}, {_sql_bits(mask, dtype)})" for i, (_, width) in enumerate(layout) for mask in _flips(width, flip_radius)]
    return f"""
        bands(band, shift, mask) AS (VALUES {", ".join(bands)}),
        flips(band, flip) AS (VALUES {", ".join(flips)}),
        keyed AS (
            SELECT h.image_id, h.phash, h.{column} AS key, h.is_new, b.band, (h.{column} >> b.shift) & b.mask AS v
            FROM {table} h CROSS JOIN bands b {where}
        ),
        probes AS (
            SELECT k.image_id, k.phash, k.key, k.is_new, k.band, xor(k.v, f.flip) AS v
            FROM keyed k JOIN flips f USING (band)
        )"""


def _banded_join(
    table: str, column: str, dtype: str, radius: int, new_only: bool, where: str, plan: tuple[list[tuple[int, int]], int]
) -> str:
    """SQL for pairs ``a, b, distance`` (pHash distance) of rows whose ``column`` agrees on a band of ``plan``'s
    layout up to its flips and lies within ``radius`` bits (pigeonhole: exactly the pairs within radius)."""
    keyed = _keyed_sql(table, column, dtype, *plan, where)
    if new_only:
        # Probe with the new images' bands only: cost scales with the drop, not with the archive.
        join = """
            SELECT least(x.image_id, y.image_id) AS a, greatest(x.image_id, y.image_id) AS b,
                   bit_count(xor(x.phash, y.phash)) AS distance, bit_count(xor(x.key, y.key)) AS key_distance
            FROM probes x JOIN keyed y ON x.band = y.band AND x.v = y.v AND x.image_id <> y.image_id
            WHERE x.is_new"""
    else:
        join = """
            SELECT x.image_id AS a, y.image_id AS b, bit_count(xor(x.phash, y.phash)) AS distance,
                   bit_count(xor(x.key, y.key)) AS key_distance
            FROM probes x JOIN keyed y ON x.band = y.band AND x.v = y.v AND x.image_id < y.image_id"""
    return f"WITH {keyed} SELECT a, b, distance, key_distance FROM ({join}) WHERE key_distance <= {int(radius)}"


def _plan_for(
    con: duckdb.DuckDBPyConnection, table: str, radius: int, where: str, bands: int | None
) -> tuple[list[tuple[int, int]], int]:
    """The plan of one channel: ``bands`` bands (at most radius + 1) if given, else :func:`search_plan`'s."""
    if bands is not None:
        layout, flip_radius, probes = _layout_with_flips(radius, min(bands, radius + 1))
        if sum(probes) > _MAX_PROBES:
            raise ValueError(
                f"{bands} bands at radius {radius} need {sum(probes):,} probes per hash (> {_MAX_PROBES}); use more bands"
            )
        return layout, flip_radius
    n_rows = con.execute(f"SELECT count(*) FROM {table} {where}").fetchone()[0]
    return search_plan(radius, int(n_rows))


def candidate_pairs(
    con: duckdb.DuckDBPyConnection,
    hashes_table: str,
    radius: int,
    new_only: bool = True,
    crop_radius: int | None = CROP_RADIUS,
    crop_phash_radius: int = CROP_PHASH_RADIUS,
    bands: int | None = None,
) -> pd.DataFrame:
    """Pairs of images whose pHashes differ in at most ``radius`` bits, found by banded equi-joins.

    ``hashes_table`` has columns ``image_id VARCHAR, phash BIGINT|UBIGINT, is_new BOOLEAN`` and optionally
    ``phash2`` (same type, from :func:`synthdata.dedup.phash.crop_robust_hashes`; 0 = none). Returns columns
    ``a, b, distance`` (pHash distance) with ``a < b`` (string order), one row per pair, sorted. With
    ``new_only`` only pairs with at least one new image are returned: old-vs-old pairs were settled when
    those images arrived. Exactly the pairs an all-pairs scan would find (pigeonhole), at the cost of the
    band collisions. ``bands`` fixes the number of bands (default: :func:`search_plan` picks it from the
    number of hashes); any choice gives the same pairs.

    When ``phash2`` is present (and ``crop_radius`` is not None) the pairs within ``crop_radius`` bits of
    ``phash2`` and within ``crop_phash_radius`` bits of pHash are added, from a second banded join: crops
    move pHash beyond the radius but the phase-free average hash much less.
    """
    channels = _channels(con, hashes_table, radius, crop_radius)
    # The joins run on dense integer keys numbered in image_id order (so least/greatest and the sort agree
    # with the ids'): with 64-character ids, 2.2M candidates among 95k crops of a few photos needed more than
    # the warehouse's 512 MB memory limit for the DISTINCT and sort, and failed; as integers they need ~1/8.
    extra = ", phash2" if any(column == "phash2" for column, *_ in channels) else ""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _candidate_keys AS
            SELECT (row_number() OVER (ORDER BY image_id) - 1)::INTEGER AS image_id, image_id AS id, phash{extra}, is_new
            FROM {hashes_table}"""
    )
    try:
        parts = []
        for column, r, dtype, where in channels:
            plan = _plan_for(con, "_candidate_keys", r, where, bands)
            join = _banded_join("_candidate_keys", column, dtype, r, new_only, where, plan)
            # The crop channel's pairs must also be within crop_phash_radius of each other's pHash.
            parts.append(join if column == "phash" else f"SELECT * FROM ({join}) WHERE distance <= {int(crop_phash_radius)}")
        union = " UNION ALL ".join(f"SELECT a, b, distance FROM ({part})" for part in parts)
        found = con.execute(f"SELECT DISTINCT a, b, distance::INTEGER AS distance FROM ({union}) ORDER BY a, b").fetchnumpy()
        ids = con.execute("SELECT id FROM _candidate_keys ORDER BY image_id").fetchnumpy()["id"]
    finally:
        con.execute("DROP TABLE IF EXISTS _candidate_keys")
    ids = np.asarray(ids, dtype=object)  # one string object per image, shared by all of its pairs
    frame = pd.DataFrame(
        {"a": ids[found["a"]], "b": ids[found["b"]], "distance": np.asarray(found["distance"], dtype=np.int32)}
    )
    if len(parts) > 1:
        frame["crop_only"] = frame["distance"] > radius  # found by the crop-robust channel alone
    return frame


def band_collisions(
    con: duckdb.DuckDBPyConnection,
    hashes_table: str,
    radius: int,
    new_only: bool = True,
    crop_radius: int | None = CROP_RADIUS,
    bands: int | None = None,
) -> int:
    """Row pairs the band joins examine before the distance filters (a pair meeting on several bands or flips
    counts once for each), summed over both channels when ``phash2`` is present: the joins' real work, to
    compare with the all-pairs count. Same plan as :func:`candidate_pairs`."""
    total = 0
    for column, r, dtype, where in _channels(con, hashes_table, radius, crop_radius):
        layout, flip_radius = _plan_for(con, hashes_table, r, where, bands)
        keyed = _keyed_sql(hashes_table, column, dtype, layout, flip_radius, where)
        # Each probing row meets itself once (flip 0); in all-pairs mode every pair is met from both sides.
        probe_filter, self_filter = ("p.is_new", "k.is_new") if new_only else ("true", "true")
        sql = f"""
            WITH {keyed}, counts AS (SELECT band, v, count(*) AS n FROM keyed GROUP BY band, v)
            SELECT coalesce(sum(c.n), 0)::HUGEINT - (SELECT count(*) FROM keyed k WHERE {self_filter})
            FROM probes p JOIN counts c ON c.band = p.band AND c.v = p.v WHERE {probe_filter}"""
        examined = int(con.execute(sql).fetchone()[0])
        total += examined if new_only else examined // 2
    return total


# --------------------------------------------------------------------------------------------------
# 2. Confirmation on pixels
# --------------------------------------------------------------------------------------------------


def _pillow_weights(n_in: int, n_out: int, method: Image.Resampling) -> np.ndarray:
    """(n_out, n_in) weights with which Pillow resamples one axis of n_in pixels to n_out (its
    ``precompute_coeffs`` for the box and bilinear filters); Pillow leaves an axis of unchanged length as is."""
    if n_in == n_out:
        return np.eye(n_out)
    if method == Image.Resampling.BOX:
        support, kernel = 0.5, lambda x: ((x > -0.5) & (x <= 0.5)).astype(np.float64)
    else:
        support, kernel = 1.0, lambda x: np.maximum(0.0, 1.0 - np.abs(x))
    scale = n_in / n_out
    stretch = max(scale, 1.0)  # a filter widens with the shrink factor
    weights = np.zeros((n_out, n_in))
    for out in range(n_out):
        centre = (out + 0.5) * scale
        first = max(int(centre - support * stretch + 0.5), 0)
        stop = min(int(centre + support * stretch + 0.5), n_in)
        taps = kernel((np.arange(first, stop) - centre + 0.5) / stretch)
        weights[out, first:stop] = taps / taps.sum() if taps.sum() != 0 else taps
    return weights


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
    return (_blur_weights(canvas) @ _pillow_weights(n, canvas, method)).astype(np.float32)


def _prefilter(grays: Iterable[np.ndarray]) -> np.ndarray:
    """Resample each image to a fixed (2*WORK_SIZE)^2 canvas and blur slightly: (n, canvas, canvas) float32.

    The canvas makes every image's detail scale comparable (a 8x8 digit and its 16x16 copy end up alike);
    area averaging avoids aliasing when shrinking large images. The blur (in canvas pixels, i.e. relative
    to the image extent) forgives the sub-step misalignment left by the discrete crop search, which
    otherwise costs textured photos most of their correlation.

    Both steps are linear and separable: images up to _MATRIX_RESAMPLE_MAX_SIDE are taken to the canvas
    with one matrix product per axis, which equals Pillow's resize then scipy's blur up to float32 rounding
    (tests/test_near_dup.py) at a quarter of the cost; larger ones go through Pillow and scipy, whose cost
    grows more slowly with the image.
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
    fresh arrays per batch cost more than the arithmetic (page faults).
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
        # Weights spelled out at the shape they multiply: a broadcast column made the products 2x slower.
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
    current chunk is scored: decoding was a third of confirmation time on benchmarks/ingest_speed.py, and
    from an object store each load also waits on the network. Pillow and file reads release the GIL.

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
    on the candidate graph), so that a bounded cache of prepared images serves most partners. Measured on
    benchmarks/ingest_speed.py's 93k candidates over 11k images, loads per distinct image in order of first
    appearance / in this order: 5.5 / 1.4 with 4096 cache slots, 1.7 / 1.0 with 8192."""
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
    alone, see :func:`candidate_pairs`). Small pairs whose sizes differ are also confirmed by
    :func:`reproduction_similarity` >= ``REPRO_SIMILARITY``.

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
    # and on a shared machine its spinning stalled the products (1.7 s -> 12 s on ingest_speed's candidates).
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


# --------------------------------------------------------------------------------------------------
# 3. Grouping
# --------------------------------------------------------------------------------------------------


def _edges(pairs: pd.DataFrame | Iterable | None, kind: str) -> list[tuple[str, str, str, int]]:
    """(a, b, kind, distance) from a DataFrame with a, b[, distance] or an iterable of (a, b[, distance])."""
    if pairs is None:
        return []
    if isinstance(pairs, pd.DataFrame):
        dist = pairs["distance"] if "distance" in pairs else [0] * len(pairs)
        rows = zip(pairs["a"], pairs["b"], dist)
    else:
        rows = ((p[0], p[1], p[2] if len(p) > 2 else 0) for p in pairs)
    return [(str(a), str(b), kind, int(d)) for a, b, d in rows]


def group_duplicates(
    order: Sequence[str],
    exact_pairs: pd.DataFrame | Iterable | None,
    near_pairs: pd.DataFrame | Iterable | None,
) -> pd.DataFrame:
    """Transitive duplicate groups: one row per non-representative member.

    Columns ``representative, member, kind ('exact'|'near'), distance``. The representative is the group
    member that comes first in ``order`` (first seen wins, so re-ingesting a drop never changes which copy
    is kept). Each member carries the edge that links it on a shortest path from the representative,
    exact edges preferred: a direct link to the representative when there is one.
    """
    rank = {image_id: i for i, image_id in enumerate(order)}
    edges = _edges(exact_pairs, "exact") + _edges(near_pairs, "near")
    unknown = {x for a, b, _, _ in edges for x in (a, b)} - rank.keys()
    if unknown:
        raise ValueError(f"pairs mention images missing from order: {sorted(unknown)[:5]}")

    parent = {x: x for a, b, _, _ in edges for x in (a, b)}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]  # path halving keeps the trees shallow
            x = parent[x]
        return x

    adjacency: dict[str, list[tuple[int, int, str, str]]] = defaultdict(list)
    for a, b, kind, dist in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            # Union toward the earlier-seen root so each root is its component's first-seen member.
            if rank[ra] < rank[rb]:
                parent[rb] = ra
            else:
                parent[ra] = rb
        key = (0 if kind == "exact" else 1, dist)
        adjacency[a].append((*key, b, kind))
        adjacency[b].append((*key, a, kind))

    rows = []
    for rep in sorted({find(x) for x in parent}, key=rank.__getitem__):
        # BFS from the representative; neighbours sorted so exact / closer edges claim members first.
        seen, queue = {rep}, deque([rep])
        while queue:
            node = queue.popleft()
            for _, dist, other, kind in sorted(adjacency[node]):
                if other not in seen:
                    seen.add(other)
                    queue.append(other)
                    rows.append((rep, other, kind, dist, rank[other]))
    frame = pd.DataFrame(rows, columns=["representative", "member", "kind", "distance", "_rank"])
    frame = frame.sort_values(["_rank"]).drop(columns="_rank").reset_index(drop=True)
    return frame.astype({"distance": "int64"})
