"""Near-duplicate search without comparing all pairs: banded pHash candidates in DuckDB, an
alignment-tolerant pixel confirmation, and first-seen-wins grouping.

Pipeline (see ``benchmarks/near_dup_recall.py`` for the measured recall and false-duplicate rate):

1. :func:`candidate_pairs` - pigeonhole banding of 64-bit pHashes in SQL. Splitting the hash into
   ``radius + 1`` bands guarantees that two hashes within Hamming distance ``radius`` agree exactly on at
   least one band, so an equi-join on (band, value) finds every such pair while only touching pairs that
   share a band. Incremental: only pairs with a new image are produced, old images are never recompared.
   When the table also has ``phash2`` (:func:`synthdata.phash.crop_robust_hashes`, an average hash that
   crops move less), a second banded join on it adds pairs within ``CROP_RADIUS`` of ``phash2`` and
   ``CROP_PHASH_RADIUS`` of pHash; those are marked ``crop_only`` when pHash alone would have missed them.
2. :func:`confirm_pairs` / :func:`similarity` - pHash agreement is necessary but not sufficient (small or
   plain images collide), so candidates are confirmed on pixels with a normalised cross-correlation that
   tolerates crops, resizes and brightness/contrast changes; ``crop_only`` pairs need a higher score, and
   small images resized to another size are also confirmed when a standard resize of one reproduces the
   other (:func:`reproduction_similarity`).
3. :func:`group_duplicates` - union-find over exact and confirmed near pairs; the image seen first keeps
   its place as the group's representative.

Hashes are stored as DuckDB BIGINT (the uint64 bits reinterpreted, see :func:`synthdata.phash.to_signed`);
UBIGINT columns work too.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

import duckdb
import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

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

# Prepared images confirm_pairs keeps at once (LRU): bounds its memory whatever the number of candidates.
_PREPARED_CACHE = 4096

# Side of the square grid both images are sampled on. 32 matches pHash's own working resolution: enough
# to tell faces and digits apart, small enough to try dozens of alignments per pair.
WORK_SIZE = 32

# Crop fractions tried on each side when aligning, relative to the image's extent (0 .. 5% in total).
_CROP_STEPS = (0.0, 0.025, 0.05)
_MAX_CROP = 0.05

# Blur applied on the (2*WORK_SIZE)^2 canvas before sampling, in canvas pixels.
_BLUR_SIGMA = 1.0

# Images whose crop samples confirm_pairs keeps at once (~300 KB each in float64). Pairs arrive sorted by a,
# but b is random: 256 cost 55% more time than 2048, 2048 peaked near 1.2 GB in benchmarks/ingest_speed.py.
_CROP_CACHE = 1024

# Below this standard deviation (grey levels, 0..255) an image is flat and correlation is undefined.
_FLAT_STD = 1.0


# --------------------------------------------------------------------------------------------------
# 1. Candidate search
# --------------------------------------------------------------------------------------------------


def band_layout(radius: int) -> list[tuple[int, int]]:
    """(shift, width) of the ``radius + 1`` bands that tile the 64 hash bits, widths differing by <= 1."""
    if not 0 <= radius < HASH_BITS:
        raise ValueError(f"radius must be in 0..{HASH_BITS - 1}, got {radius}")
    n_bands = radius + 1
    base, extra = divmod(HASH_BITS, n_bands)
    layout, shift = [], 0
    for i in range(n_bands):
        width = base + (1 if i < extra else 0)
        layout.append((shift, width))
        shift += width
    return layout


# Second candidate channel (used when the hashes table has a ``phash2`` column, see
# synthdata.phash.crop_robust_hashes): pairs whose crop-robust hashes differ in at most CROP_RADIUS bits and
# whose pHashes differ in at most CROP_PHASH_RADIUS bits. Measured on the planted set: crops within it
# 99.7% (pHash radius 10 alone: 88%); distinct images >= 16 px passing both: 0.24% of pairs.
CROP_RADIUS = 10
CROP_PHASH_RADIUS = 24

# Pairs found only by that channel (pHash farther than the radius) need more pixel evidence: distinct LFW
# faces that share an average hash reached 0.983, planted crops of faces score >= 0.99.
DEFAULT_CROP_SIMILARITY = 0.99


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall()
    return {name: dtype for name, dtype in rows}


def _hash_column_type(con: duckdb.DuckDBPyConnection, table: str, column: str = "phash") -> str:
    """DuckDB type of ``table.column`` (BIGINT or UBIGINT)."""
    types = _column_types(con, table)
    if types.get(column) not in ("BIGINT", "UBIGINT"):
        raise TypeError(f"{table}.{column} must be BIGINT or UBIGINT, got {types.get(column)}")
    return types[column]


def _has_crop_hash(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return "phash2" in _column_types(con, table)


def _banded_join(table: str, column: str, dtype: str, radius: int, new_only: bool, where: str = "") -> str:
    """SQL for pairs ``a, b, distance`` (pHash distance) of rows whose ``column`` agrees on a band of the
    ``radius + 1`` band layout and lies within ``radius`` bits (pigeonhole: exactly the pairs within radius)."""
    bands = []
    for index, (shift, width) in enumerate(band_layout(radius)):
        mask = (1 << width) - 1
        if dtype == "BIGINT" and width == HASH_BITS:
            mask = -1  # all 64 bits of a signed value
        bands.append(f"({index}, {shift}, {mask}::{dtype})")
    # Arithmetic (sign-extending) shifts on BIGINT are harmless: the mask keeps only the band's own bits.
    keyed = f"""
        bands(band, shift, mask) AS (VALUES {", ".join(bands)}),
        keyed AS (
            SELECT h.image_id, h.phash, h.{column} AS key, h.is_new, b.band, (h.{column} >> b.shift) & b.mask AS v
            FROM {table} h CROSS JOIN bands b {where}
        )"""
    if new_only:
        # Probe with the new images' bands only: cost scales with the drop, not with the archive.
        join = """
            SELECT least(x.image_id, y.image_id) AS a, greatest(x.image_id, y.image_id) AS b,
                   bit_count(xor(x.phash, y.phash)) AS distance, bit_count(xor(x.key, y.key)) AS key_distance
            FROM keyed x JOIN keyed y ON x.band = y.band AND x.v = y.v AND x.image_id <> y.image_id
            WHERE x.is_new"""
    else:
        join = """
            SELECT x.image_id AS a, y.image_id AS b, bit_count(xor(x.phash, y.phash)) AS distance,
                   bit_count(xor(x.key, y.key)) AS key_distance
            FROM keyed x JOIN keyed y ON x.band = y.band AND x.v = y.v AND x.image_id < y.image_id"""
    return f"WITH {keyed} SELECT a, b, distance, key_distance FROM ({join}) WHERE key_distance <= {int(radius)}"


def candidate_pairs(
    con: duckdb.DuckDBPyConnection,
    hashes_table: str,
    radius: int,
    new_only: bool = True,
    crop_radius: int | None = CROP_RADIUS,
    crop_phash_radius: int = CROP_PHASH_RADIUS,
) -> pd.DataFrame:
    """Pairs of images whose pHashes differ in at most ``radius`` bits, found by banded equi-joins.

    ``hashes_table`` has columns ``image_id VARCHAR, phash BIGINT|UBIGINT, is_new BOOLEAN`` and optionally
    ``phash2`` (same type, from :func:`synthdata.phash.crop_robust_hashes`; 0 = none). Returns columns
    ``a, b, distance`` (pHash distance) with ``a < b`` (string order), one row per pair, sorted. With
    ``new_only`` only pairs with at least one new image are returned: old-vs-old pairs were settled when
    those images arrived. Exactly the pairs an all-pairs scan would find (pigeonhole), at the cost of the
    band collisions.

    When ``phash2`` is present (and ``crop_radius`` is not None) the pairs within ``crop_radius`` bits of
    ``phash2`` and within ``crop_phash_radius`` bits of pHash are added, from a second banded join: crops
    move pHash beyond the radius but the phase-free average hash much less.
    """
    dtype = _hash_column_type(con, hashes_table)
    parts = [_banded_join(hashes_table, "phash", dtype, radius, new_only)]
    if crop_radius is not None and _has_crop_hash(con, hashes_table):
        dtype2 = _hash_column_type(con, hashes_table, "phash2")
        crop = _banded_join(hashes_table, "phash2", dtype2, crop_radius, new_only,
                            where="WHERE h.phash2 IS NOT NULL AND h.phash2 <> 0")
        parts.append(f"SELECT * FROM ({crop}) WHERE distance <= {int(crop_phash_radius)}")
    union = " UNION ALL ".join(f"SELECT a, b, distance FROM ({part})" for part in parts)
    sql = f"SELECT DISTINCT a, b, distance::INTEGER AS distance FROM ({union}) ORDER BY a, b"
    frame = con.execute(sql).df()
    if len(parts) > 1:
        frame["crop_only"] = frame["distance"] > radius  # found by the crop-robust channel alone
    return frame


def band_collisions(
    con: duckdb.DuckDBPyConnection,
    hashes_table: str,
    radius: int,
    new_only: bool = True,
    crop_radius: int | None = CROP_RADIUS,
) -> int:
    """Pairs the band joins examine before the distance filters, summed over bands (a pair sharing several
    bands counts once per band) and over both channels when ``phash2`` is present: the joins' real work,
    to compare with the all-pairs count."""
    channels = [("phash", radius, "")]
    if crop_radius is not None and _has_crop_hash(con, hashes_table):
        channels.append(("phash2", crop_radius, "WHERE phash2 IS NOT NULL AND phash2 <> 0"))
    total = 0
    for column, r, where in channels:
        dtype = _hash_column_type(con, hashes_table, column)
        for shift, width in band_layout(r):
            mask = -1 if (dtype == "BIGINT" and width == HASH_BITS) else (1 << width) - 1
            old = "n - n_new" if new_only else "0"  # pairs among old images only are not examined
            sql = f"""
                SELECT coalesce(sum(n * (n - 1) / 2 - ({old}) * ({old} - 1) / 2), 0)::HUGEINT
                FROM (SELECT count(*) AS n, count(*) FILTER (WHERE is_new) AS n_new
                      FROM {hashes_table} {where} GROUP BY ({column} >> {shift}) & {mask}::{dtype})"""
            total += int(con.execute(sql).fetchone()[0])
    return total


# --------------------------------------------------------------------------------------------------
# 2. Confirmation on pixels
# --------------------------------------------------------------------------------------------------


def _to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) or (H, W, 3|4) -> float32 (H, W) luma."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return arr.astype(np.float32)


def _prefilter(gray: np.ndarray) -> np.ndarray:
    """Resample to a fixed (2*WORK_SIZE)^2 canvas and blur slightly.

    The canvas makes every image's detail scale comparable (a 8x8 digit and its 16x16 copy end up alike);
    area averaging avoids aliasing when shrinking large images. The blur (in canvas pixels, i.e. relative
    to the image extent) forgives the sub-step misalignment left by the discrete crop search, which
    otherwise costs textured photos most of their correlation.
    """
    canvas = 2 * WORK_SIZE
    h, w = gray.shape
    method = Image.Resampling.BOX if min(h, w) >= canvas else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(gray.astype(np.float32)).resize((canvas, canvas), method))
    return ndimage.gaussian_filter(resized, _BLUR_SIGMA, mode="nearest") if _BLUR_SIGMA > 0 else resized


@lru_cache(maxsize=1)
def _crop_boxes() -> np.ndarray:
    """(K, 4) boxes (left, top, right, bottom) in normalised coordinates, each side cropped by a step of
    ``_CROP_STEPS`` with at most ``_MAX_CROP`` removed per axis: every way a <= 5% crop may have been cut."""
    axis = [(lo, 1.0 - hi) for lo in _CROP_STEPS for hi in _CROP_STEPS if lo + hi <= _MAX_CROP + 1e-9]
    boxes = [(x0, y0, x1, y1) for (x0, x1) in axis for (y0, y1) in axis]
    return np.array(boxes, dtype=np.float32)


def _sample(gray: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``gray`` on a WORK_SIZE^2 grid spanning each normalised box: (K, WORK_SIZE^2).

    Coordinates are normalised to the image extent, so images of any size share one frame: a resized copy
    lands on the same grid, and a cropped copy lands on the grid of the matching box.

    Separable: the horizontal interpolation is computed once per distinct x-interval (6 for the 36 crop
    boxes) and then interpolated vertically per box. The arithmetic is the same, in the same order, as the
    direct 2-D gather (``_sample_direct``), so the samples are bit-identical, but it is several times faster.
    """
    h, w = gray.shape
    t = (np.arange(WORK_SIZE, dtype=np.float32) + 0.5) / WORK_SIZE
    xs = boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * t  # (K, S) normalised
    ys = boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * t
    px = np.clip(xs * w - 0.5, 0, w - 1)  # pixel-centre convention, clamped at the borders
    py = np.clip(ys * h - 0.5, 0, h - 1)
    x0 = np.minimum(np.floor(px).astype(np.intp), max(w - 2, 0))
    y0 = np.minimum(np.floor(py).astype(np.intp), max(h - 2, 0))
    fx = px - x0
    fy = (py - y0)[:, :, None]
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    _, first, inverse = np.unique(boxes[:, [0, 2]], axis=0, return_index=True, return_inverse=True)
    # (U, h, S): every row of the image interpolated horizontally for each distinct x-interval.
    cols = np.moveaxis(gray[:, x0[first]] * (1 - fx[first]) + gray[:, x1[first]] * fx[first], 1, 0)
    which = inverse.ravel()[:, None]  # gather straight to (K, S, S): no (K, h, S) copy
    top = cols[which, y0]
    bottom = cols[which, y1]
    return (top * (1 - fy) + bottom * fy).reshape(len(boxes), -1)


def _normalise(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-norm rows (for correlation) and each row's standard deviation."""
    centred = samples - samples.mean(axis=1, keepdims=True)
    std = centred.std(axis=1)
    norm = np.linalg.norm(centred, axis=1, keepdims=True)
    return centred / np.maximum(norm, 1e-12), std


class _Prepared:
    """An image ready for comparison: its blurred canvas and normalised full-frame samples. Crop samples
    are derived per pair (cheap) rather than cached, so memory stays ~20 KB per image."""

    def __init__(self, image: np.ndarray) -> None:
        gray = _to_gray(image)
        self.min_side = min(gray.shape)
        self.luma = _luma8(image) if max(gray.shape) <= _REPRO_MAX_SIDE else None
        self.canvas = _prefilter(gray)
        unit, std = _normalise(_sample(self.canvas, _crop_boxes()[:1]))
        self.full = unit[0]  # box 0 is the uncropped frame
        self.flat = bool(std[0] < _FLAT_STD)

    def crops(self) -> np.ndarray:
        """(K, WORK_SIZE^2) normalised samples of every crop box."""
        return _normalise(_sample(self.canvas, _crop_boxes()))[0]


def _luma8(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W) luma as Pillow computes it (what a resize of the decoded image would see)."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = np.asarray(Image.fromarray(np.ascontiguousarray(arr[..., :3]).astype(np.uint8)).convert("L"))
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _correlation(x: np.ndarray, y: np.ndarray) -> float:
    x = x.astype(np.float64).ravel()
    y = y.astype(np.float64).ravel()
    x -= x.mean()
    y -= y.mean()
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y / denom) if denom > 0 else 0.0


def reproduction_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation between one uint8 luma image and the other resized to its size (bilinear, bicubic or
    Lanczos, either direction); -1 when the sizes are equal or the target has too few pixels."""
    best = -1.0
    for src, dst in ((a, b), (b, a)):
        if src.shape == dst.shape or dst.size < REPRO_MIN_PIXELS or min(src.shape) < 2:
            continue
        pil = Image.fromarray(src)
        for method in _REPRO_FILTERS:
            resized = np.asarray(pil.resize((dst.shape[1], dst.shape[0]), method))
            best = max(best, _correlation(resized, dst))
    return best


def _prepared_similarity(a: _Prepared, b: _Prepared) -> float:
    """Max correlation of either full frame against every crop of the other (crops <= 5%)."""
    if a.flat or b.flat:
        return 1.0 if a.flat and b.flat else 0.0
    # b may be a crop of a (compare a's crops with b's frame) or the other way round.
    best = max(float((a.crops() @ b.full).max()), float((b.crops() @ a.full).max()))
    return float(np.clip(best, -1.0, 1.0))


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Alignment-tolerant similarity in [-1, 1] of two uint8 images (any sizes, gray or RGB).

    Both are sampled on a common 32x32 grid in normalised coordinates (so resizes line up) and compared by
    normalised cross-correlation (so brightness/contrast changes do not matter), maximised over crops of
    up to 5% of either image (so trimmed copies line up). Flat images match only flat images.
    """
    return _prepared_similarity(_Prepared(a), _Prepared(b))


def confirm_pairs(
    pairs: pd.DataFrame,
    load: Callable[[str], np.ndarray],
    threshold: float = DEFAULT_SIMILARITY,
    small_threshold: float = DEFAULT_SMALL_SIMILARITY,
    crop_threshold: float = DEFAULT_CROP_SIMILARITY,
) -> pd.DataFrame:
    """Candidate pairs (columns a, b, ...) with a ``similarity`` column, keeping the confirmed ones.

    A pair is confirmed when its similarity reaches ``threshold``, or ``small_threshold`` when either image
    has a side shorter than ``SMALL_SIDE`` pixels, or ``max(threshold, crop_threshold)`` for pairs marked
    ``crop_only`` (found by the crop-robust channel alone, see :func:`candidate_pairs`). Small pairs whose
    sizes differ are also confirmed by :func:`reproduction_similarity` >= ``REPRO_SIMILARITY``. Each
    image is loaded and prepared once.
    """
    crop_only = pairs["crop_only"].to_numpy(bool) if "crop_only" in pairs else np.zeros(len(pairs), bool)
    # Both caches are bounded so memory does not grow with the number of candidates (pairs arrive sorted
    # by a, so a is reused; a b evicted early is simply loaded again).
    prepared: OrderedDict[str, _Prepared] = OrderedDict()
    crops: dict[str, np.ndarray] = {}  # 147 KB each

    def get(image_id: str) -> _Prepared:
        if image_id in prepared:
            prepared.move_to_end(image_id)
        else:
            if len(prepared) >= _PREPARED_CACHE:
                prepared.popitem(last=False)
            prepared[image_id] = _Prepared(load(image_id))
        return prepared[image_id]

    def get_crops(image_id: str) -> np.ndarray:
        if image_id not in crops:
            if len(crops) >= _CROP_CACHE:
                del crops[next(iter(crops))]  # evict the oldest
            crops[image_id] = get(image_id).crops()
        return crops[image_id]

    scores, required = [], []
    for a, b, far in zip(pairs["a"], pairs["b"], crop_only):
        pa, pb = get(a), get(b)
        if pa.flat or pb.flat:
            scores.append(_prepared_similarity(pa, pb))
        else:
            best = max(float((get_crops(a) @ pb.full).max()), float((get_crops(b) @ pa.full).max()))
            scores.append(min(best, 1.0))
        small = min(pa.min_side, pb.min_side) < SMALL_SIDE
        required.append(small_threshold if small else threshold)
        if far:
            required[-1] = max(required[-1], crop_threshold)
        if (small and scores[-1] < small_threshold and not (pa.flat or pb.flat)
                and pa.luma is not None and pb.luma is not None):
            repro = reproduction_similarity(pa.luma, pb.luma)
            if repro >= REPRO_SIMILARITY:
                scores[-1] = max(scores[-1], repro)
                required[-1] = REPRO_SIMILARITY
    out = pairs.assign(similarity=np.asarray(scores, dtype=np.float64))
    return out[out["similarity"] >= np.asarray(required, dtype=np.float64)].reset_index(drop=True)


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
