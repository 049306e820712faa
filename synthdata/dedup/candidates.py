"""Candidate pairs for near-duplicate search without comparing all pairs: banded pHash joins in DuckDB.

Pigeonhole banding of 64-bit pHashes in SQL (:func:`candidate_pairs`). Splitting the hash into ``radius + 1``
bands guarantees that two hashes within Hamming distance ``radius`` agree exactly on at least one band, so an
equi-join on (band, value) finds every such pair while only touching pairs that share a band. For larger
tables, fewer and wider bands probed with their few-bit flips (multi-index hashing, :func:`search_plan`) find
the same pairs with far fewer collisions. Incremental: only pairs with a new image are produced, old images
are never recompared.

When the table also has ``shift_hashes`` (:mod:`synthdata.dedup.shift_hash`: hashes of a pixel-scale window
at every shift of up to 2 px), a banded join of the new images' shifted windows against every image's centred
one adds the 1-2 px crops and shifts that pHash misses on small images. When it has ``phash2``
(:func:`synthdata.dedup.phash.crop_robust_hashes`, an average hash that crops move less), a banded join on it
adds pairs within ``CROP_RADIUS`` of ``phash2`` and ``CROP_PHASH_RADIUS`` of pHash, for the images without
shift hashes. Pairs of these channels are marked ``crop_only`` when pHash alone would have missed them.

Hashes are stored as DuckDB BIGINT (the uint64 bits reinterpreted, see :func:`synthdata.dedup.phash.to_signed`);
UBIGINT columns work too.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from math import comb
from typing import NamedTuple

import duckdb
import numpy as np
import pandas as pd

from synthdata.dedup.phash import lowfreq_array
from synthdata.dedup.shift_hash import CENTRE, N_SHIFTS

HASH_BITS = 64

# Hamming radius for candidates. Measured on the planted set (benchmarks/near_dup_recall.py): resizes,
# JPEG and brightness changes stay within a few bits, crops of up to 5% spread to ~10; larger radii mostly
# add distinct-image candidates that the pixel check must then reject (and shrink the bands, which costs).
DEFAULT_RADIUS = 10

# Second candidate channel (used when the hashes table has a ``phash2`` column, see
# synthdata.dedup.phash.crop_robust_hashes): pairs whose crop-robust hashes differ in at most CROP_RADIUS bits and
# whose pHashes differ in at most CROP_PHASH_RADIUS bits. Measured on the planted set: crops within it
# 99.7% (pHash radius 10 alone: 88%); distinct images >= 16 px passing both: 0.24% of pairs.
CROP_RADIUS = 10
CROP_PHASH_RADIUS = 24

# Third channel (used when the hashes table has ``shift_hashes``, see synthdata.dedup.shift_hash): a new image's
# window at any shift of up to 2 px within SHIFT_RADIUS bits of another image's centred window. A shifted or
# cropped copy reproduces the window exactly (0 bits); the radius leaves room for a re-encode on top. Measured
# on 10k Fashion-MNIST images: 1-2 px crops and shifts 100% within 4 bits, 0.4 distinct partners per image.
SHIFT_RADIUS = 4

# Nearest pHash partners each new image keeps at most (candidate_pairs' max_partners; curation keeps 2, 4, 8 or
# this many, the fewest that keep planted copies of the run's new images paired as this many would:
# synthdata.dedup.partner_cap). Within radius 10, distinct look-alikes per image grow with the set
# (Fashion-MNIST: 29 at 10k, 101 at 35k, 213 at 70k images), while re-encoded, resized and brightness-changed
# copies rank among their original's 5 nearest.
# Where both images store the pHash's low frequencies (every image ingested since 2026-12-07), half are the nearest
# by Hamming distance and half the best-correlated by low frequencies, of the 32 nearest (:func:`_by_lowfreq`): 64
# bits tie a copy with its look-alikes, 64 real values rarely do, and each ranking keeps copies the other misses.
# Planted copies whose original lies within the radius, kept among K partners by Hamming distance, then by low
# frequencies alone: Fashion-MNIST + MNIST 100k, K=2 brightness 97.0 -> 100, crop 47.7 -> 70.5; K=16 brightness
# 99.3 -> 100, crop 77.3 -> 90.9; desktop icons K=16 brightness 96.5 -> 96.9, resize 99.0 -> 100, but low
# frequencies alone (8 or 16) lost one icon brightness copy of 300 that Hamming distance keeps
# (docs/benchmarks.md).
DEFAULT_MAX_PARTNERS = 16

# Nearest shift-hash partners each new image keeps at most (candidate_pairs' shift_max_partners: curation chooses 1,
# 2, 4 or this per run, synthdata.dedup.partner_cap.SHIFT_CAP_CHOICES). Uncapped, the shift channel's distinct
# partners grew with the set like pHash's (Fashion-MNIST: 0.23 pairs per image at 10k images, 1.67 at 70k), so the
# work per image had no bound. A shifted or cropped copy reproduces one of its original's windows (0 bits), so it
# ranks first unless look-alikes share that window: desktop icons, whose themes share glyphs, lost 1 crop and 2
# shift copies of 300 each at 4 and none at 8 (near_dup_recall --set icons --shift-partners K: crop / shift 98.0 /
# 98.0% uncapped, 97.67 / 97.33 at 4, 98.0 / 98.0 at 8).
DEFAULT_SHIFT_MAX_PARTNERS = 8

# Probe rows per hash that a plan may cost: beyond this, the flip lists dwarf any saving in collisions.
_MAX_PROBES = 4096


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


def search_plan(radius: int, n_rows: int) -> tuple[list[tuple[int, int]], int]:
    """The band layout and per-band flip radius to search ``n_rows`` hashes within ``radius`` bits.

    Multi-index hashing (Norouzi et al., 2012): split the hash into m bands; two hashes within ``radius`` bits
    differ in at most ``radius // m`` bits on at least one band (pigeonhole), so probing each band's value and
    its flips within that many bits finds every pair. m = radius + 1 (no flips) is the classic banding; its
    bands are only ~6 bits wide at radius 10, so every hash collides with n / 64 others per band and the join
    grows with n^2 / 6. Fewer, wider bands trade flips (probe rows, linear in n) for far fewer collisions.
    The plan minimises probes * 2 + expected collisions per hash (uniform hashes): at radius 10 that is 11
    bands for a few thousand hashes, 6 bands of ~11 bits with 1-bit flips at ~20k, 4 bands of 16 bits with
    2-bit flips from ~60k. ``benchmarks/candidate_search.py`` times the plan against the classic banding.
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


class Channel(NamedTuple):
    """One banded search: pairs whose ``key`` values differ in at most ``radius`` bits. ``keyed`` and
    ``probes`` are SQL row sources with columns ``image_id, phash, key, is_new``: every probe row of a new image
    (of any row, in all-pairs mode) is matched with the keyed rows. ``symmetric``: probes are the keyed rows,
    so each pair is met from both sides and the all-pairs join may keep one side."""

    name: str
    radius: int
    dtype: str
    keyed: str
    probes: str
    symmetric: bool = True


def _channels(
    con: duckdb.DuckDBPyConnection, table: str, radius: int, crop_radius: int | None, shift_radius: int | None
) -> list[Channel]:
    """The banded channels to search: pHash; the crop-robust ``phash2`` when the table has it and
    ``crop_radius`` is not None (0 there means no hash); the shift hashes when the table has ``shift_hashes``
    and ``shift_radius`` is not None. Where both could run, the crop channel only pairs images of which at
    least one has no centred shift hash (rows written before the column, small or flat-centred images): the
    shift channel finds the crops of the others with far fewer look-alikes."""
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
    for column in ["phash"] + (["phash2"] if crop_radius is not None and "phash2" in types else []):
        if types.get(column) not in ("BIGINT", "UBIGINT"):
            raise TypeError(f"{table}.{column} must be BIGINT or UBIGINT, got {types.get(column)}")
    plain = f"SELECT image_id, phash, phash AS key, is_new FROM {table}"
    found = [Channel("phash", radius, types["phash"], plain, plain)]
    shifts = shift_radius is not None and "shift_hashes" in types
    if shifts and types["shift_hashes"] not in ("BIGINT[]", "UBIGINT[]"):
        raise TypeError(f"{table}.shift_hashes must be BIGINT[] or UBIGINT[], got {types['shift_hashes']}")
    centred = f"len(shift_hashes) = {N_SHIFTS} AND shift_hashes[{CENTRE + 1}] <> 0"
    if crop_radius is not None and "phash2" in types:
        crop = f"SELECT image_id, phash, phash2 AS key, is_new FROM {table} WHERE phash2 IS NOT NULL AND phash2 <> 0"
        if not shifts:
            found.append(Channel("phash2", crop_radius, types["phash2"], crop, crop))
        else:
            lacking = f"{crop} AND NOT coalesce({centred}, false)"
            found.append(Channel("phash2", crop_radius, types["phash2"], crop, lacking, symmetric=False))
            found.append(Channel("phash2", crop_radius, types["phash2"], lacking, f"{crop} AND coalesce({centred}, false)",
                                 symmetric=False))  # fmt: skip
    if shifts:
        found.append(Channel(
            "shift_hashes", shift_radius, types["shift_hashes"][:-2],
            keyed=f"SELECT image_id, phash, shift_hashes[{CENTRE + 1}] AS key, is_new FROM {table} WHERE {centred}",
            probes=f"""SELECT * FROM (SELECT image_id, phash, unnest(shift_hashes) AS key, is_new FROM {table}
                       WHERE len(shift_hashes) = {N_SHIFTS}) WHERE key <> 0""",
            symmetric=False,
        ))  # fmt: skip
    return found


def _sql_bits(bits: int, dtype: str) -> str:
    """A 64-bit pattern as a literal of ``dtype``: on BIGINT, bit 63 is the sign bit (so all 64 bits are -1;
    arithmetic shifts on BIGINT are harmless because band masks keep only the band's own bits)."""
    value = bits - (1 << HASH_BITS) if dtype == "BIGINT" and bits >> (HASH_BITS - 1) else bits
    return f"({value})::{dtype}"


def _keyed_sql(channel: Channel, layout: list[tuple[int, int]], flip_radius: int, new_only: bool) -> str:
    """CTEs ``keyed`` (one row per keyed hash and band, with the band's value ``v``) and ``probes`` (one row per
    probe hash and band, ``v`` replaced by each of its flips within ``flip_radius`` bits; only new images'
    probes with ``new_only``)."""
    dtype = channel.dtype
    bands = [f"({i}, {shift}, {_sql_bits((1 << width) - 1, dtype)})" for i, (shift, width) in enumerate(layout)]
    flips = [f"({i}, {_sql_bits(mask, dtype)})" for i, (_, width) in enumerate(layout) for mask in _flips(width, flip_radius)]
    probing = "WHERE h.is_new" if new_only else ""
    return f"""
        bands(band, shift, mask) AS (VALUES {", ".join(bands)}),
        flips(band, flip) AS (VALUES {", ".join(flips)}),
        keyed AS (
            SELECT h.image_id, h.phash, h.key, h.is_new, b.band, (h.key >> b.shift) & b.mask AS v
            FROM ({channel.keyed}) h CROSS JOIN bands b
        ),
        probe_rows AS (
            SELECT h.image_id, h.phash, h.key, h.is_new, b.band, (h.key >> b.shift) & b.mask AS v
            FROM ({channel.probes}) h CROSS JOIN bands b {probing}
        ),
        probes AS (
            SELECT k.image_id, k.phash, k.key, k.is_new, k.band, xor(k.v, f.flip) AS v
            FROM probe_rows k JOIN flips f USING (band)
        )"""


def _banded_join(
    channel: Channel, new_only: bool, plan: tuple[list[tuple[int, int]], int], max_partners: int | None = None,
    shortlist: int | None = None,
) -> str:
    """SQL for pairs ``a, b, distance`` (pHash distance) of rows whose keys agree on a band of ``plan``'s
    layout up to its flips and lie within the channel's radius (pigeonhole: exactly the pairs within it).
    With ``max_partners``, each probing image keeps only its nearest partners (by key distance, then pHash
    distance, then id); ``capped`` is true on one row of each image that had more. With ``shortlist``, each
    probing image's that many nearest as ``owner, partner, distance``, each one's ``place`` (1 = nearest) and
    the owner's count of ``partners`` before (for :func:`_by_lowfreq`)."""
    keyed = _keyed_sql(channel, *plan, new_only)
    if new_only or not channel.symmetric or max_partners is not None or shortlist is not None:
        # Probe with the new images' bands only: cost scales with the drop, not with the archive.
        join = f"""
            SELECT DISTINCT x.image_id AS owner, y.image_id AS partner, bit_count(xor(x.phash, y.phash)) AS distance,
                   bit_count(xor(x.key, y.key)) AS key_distance
            FROM probes x JOIN keyed y ON x.band = y.band AND x.v = y.v AND x.image_id <> y.image_id
            WHERE bit_count(xor(x.key, y.key)) <= {int(channel.radius)}"""
        if max_partners is not None or shortlist is not None:
            # Ranked once per pair (met on several bands, or at several shifts: the nearest key counts), by key
            # distance, then pHash distance, then id.
            join = f"""SELECT owner, partner, min(distance) AS distance, min(key_distance) AS key_distance,
                   row_number() OVER nearest AS place, count(*) OVER (PARTITION BY owner) AS partners
            FROM ({join}) GROUP BY owner, partner
            WINDOW nearest AS (PARTITION BY owner ORDER BY min(key_distance), min(distance), partner)
            QUALIFY row_number() OVER nearest <= {int(shortlist if shortlist is not None else max_partners)}"""
            if shortlist is not None:
                return f"WITH {keyed} SELECT owner, partner, distance, partners, place FROM ({join})"
            # ``capped`` marks an owner's first row when it had more partners than it keeps.
            join = f"SELECT owner, partner, distance, place = 1 AND partners > {int(max_partners)} AS capped FROM ({join})"
        else:
            join = f"SELECT *, false AS capped FROM ({join})"
        return f"""WITH {keyed} SELECT least(owner, partner) AS a, greatest(owner, partner) AS b, distance, capped
                   FROM ({join})"""
    join = """
        SELECT x.image_id AS a, y.image_id AS b, bit_count(xor(x.phash, y.phash)) AS distance,
               bit_count(xor(x.key, y.key)) AS key_distance
        FROM probes x JOIN keyed y ON x.band = y.band AND x.v = y.v AND x.image_id < y.image_id"""
    return f"WITH {keyed} SELECT a, b, distance, false AS capped FROM ({join}) WHERE key_distance <= {int(channel.radius)}"


# Each new image's pHash shortlist that its low frequencies then rank: its LOWFREQ_SHORTLIST nearest partners by
# Hamming distance (twice max_partners, if more), whatever the cap. 64 bits tie a copy with its look-alikes, 64 real
# values rarely do: of 2,048 WebP, brightness-changed and resized copies each of Fashion-MNIST images in its
# 70,000, every original ranked first by low frequencies among its 128 nearest by Hamming distance, while by
# Hamming distance 20-35 of each kind ranked 3rd to 56th. A shortlist of twice the cap (4 at a cap of 2, as before)
# lost 18 resized copies at a cap of 2 and 10 at 4 that a cap of 16 pairs, a shortlist of 32 none at either
# (Fashion-MNIST + MNIST 140k: 30 and 16 -> 1 and 1), so the cap no longer grows with the archive to keep them
# (docs/benchmarks.md). Ranking every pair within the radius instead (9.5M rows for 50,000 new images against
# 100,000, in numpy) made the search 35 s instead of 15; a shortlist of 32, in the search's own SQL, 16.5 s.
LOWFREQ_SHORTLIST = 32


def lowfreq_shortlist(max_partners: int) -> int:
    """How many of a new image's nearest pHash partners its low frequencies rank (:data:`LOWFREQ_SHORTLIST`)."""
    return max(LOWFREQ_SHORTLIST, 2 * int(max_partners))


def _by_lowfreq(shortlist_sql: str, max_partners: int) -> str:
    """SQL for the pairs ``a, b, distance, capped`` each owner keeps of its shortlist (``shortlist_sql``: its
    nearest partners by pHash distance, ties by id, and its count of ``partners`` in all): the first half of
    ``max_partners`` of the shortlist, and the half whose low frequencies (``_candidate_lowfreq``) correlate
    best with its own; a partner without them (a row ingested before every image stored them) also when it is
    among the ``max_partners`` nearest, as before. ``capped`` marks an owner's first row when it had more
    partners than it kept."""
    half = max(1, max_partners // 2)
    return f"""
        SELECT least(owner, partner) AS a, greatest(owner, partner) AS b, distance,
               row_number() OVER (PARTITION BY owner ORDER BY partner) = 1
                   AND partners > count(*) OVER (PARTITION BY owner) AS capped
        FROM (
            SELECT s.owner, s.partner, s.distance, s.partners,
                   row_number() OVER (PARTITION BY s.owner ORDER BY s.distance, s.partner) AS by_distance,
                   array_inner_product(x.lowfreq, y.lowfreq) AS similarity,
                   row_number() OVER (PARTITION BY s.owner, similarity IS NULL
                                      ORDER BY similarity DESC, s.partner) AS by_lowfreq
            FROM ({shortlist_sql}) s
            LEFT JOIN _candidate_lowfreq x ON x.image_id = s.owner
            LEFT JOIN _candidate_lowfreq y ON y.image_id = s.partner
        )
        WHERE by_distance <= {half} OR (similarity IS NOT NULL AND by_lowfreq <= {half})
              OR (similarity IS NULL AND by_distance <= {int(max_partners)})"""


_LOWFREQ_CHUNK = 1 << 16  # images whose low frequencies are converted at once (16 MB of float32)


def _lowfreq_table(con: duckdb.DuckDBPyConnection) -> None:
    """``_candidate_lowfreq``: each image's low frequencies (stored as 128 float16 bytes) as FLOAT[64], by its
    dense key in ``_candidate_keys`` (image_id order); images without them are left out. Converted a chunk of
    keys at a time, so memory does not grow with the archive."""
    import pyarrow as pa

    con.execute("CREATE OR REPLACE TEMP TABLE _candidate_lowfreq (image_id INTEGER, lowfreq FLOAT[64])")
    (n,) = con.execute("SELECT count(*) FROM _candidate_keys").fetchone()
    for start in range(0, n, _LOWFREQ_CHUNK):
        found = con.execute(
            """SELECT image_id, lowfreq FROM _candidate_keys
               WHERE image_id >= ? AND image_id < ? AND lowfreq IS NOT NULL""",
            [start, start + _LOWFREQ_CHUNK],
        ).fetchall()
        if not found:
            continue
        keys, blobs = zip(*found)
        rows = lowfreq_array([bytes(b) for b in blobs])
        chunk = pa.table({"image_id": pa.array(np.array(keys, np.int32)),
                          "lowfreq": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), 64)})  # fmt: skip
        con.register("_candidate_lowfreq_chunk", chunk)
        try:
            con.execute("INSERT INTO _candidate_lowfreq SELECT * FROM _candidate_lowfreq_chunk")
        finally:
            con.unregister("_candidate_lowfreq_chunk")


def _plan_for(con: duckdb.DuckDBPyConnection, channel: Channel, bands: int | None) -> tuple[list[tuple[int, int]], int]:
    """The plan of one channel: ``bands`` bands (at most radius + 1) if given, else :func:`search_plan`'s for
    its keyed rows."""
    radius = channel.radius
    if bands is not None:
        layout, flip_radius, probes = _layout_with_flips(radius, min(bands, radius + 1))
        if sum(probes) > _MAX_PROBES:
            raise ValueError(
                f"{bands} bands at radius {radius} need {sum(probes):,} probes per hash (> {_MAX_PROBES}); use more bands"
            )
        return layout, flip_radius
    n_rows = con.execute(f"SELECT count(*) FROM ({channel.keyed})").fetchone()[0]
    return search_plan(radius, int(n_rows))


def shift_partners(
    con: duckdb.DuckDBPyConnection, table: str, probes_sql: str, shift_radius: int = SHIFT_RADIUS,
    max_partners: int = DEFAULT_SHIFT_MAX_PARTNERS,
) -> pd.DataFrame:  # fmt: skip
    """The shift channel of :func:`candidate_pairs` for outside images: each row of ``probes_sql`` (columns
    ``image_id, phash, shift_hashes``, typed as ``table``'s) with its ``max_partners`` nearest partners among
    ``table``'s rows (``owner, partner, place``: 1 = nearest), ranked as the search ranks them, so that a cap of
    k keeps the rows of ``place <= k``. Probes never pair with each other (:mod:`synthdata.dedup.partner_cap`
    asks where planted copies' originals rank)."""
    dtype = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())["shift_hashes"][:-2]
    channel = Channel(
        "shift_hashes", shift_radius, dtype,
        keyed=f"""SELECT image_id, phash, shift_hashes[{CENTRE + 1}] AS key, false AS is_new FROM {table}
                  WHERE len(shift_hashes) = {N_SHIFTS} AND shift_hashes[{CENTRE + 1}] <> 0""",
        probes=f"""SELECT * FROM (SELECT image_id, phash, unnest(shift_hashes) AS key, true AS is_new FROM ({probes_sql})
                   WHERE len(shift_hashes) = {N_SHIFTS}) WHERE key <> 0""",
        symmetric=False,
    )  # fmt: skip
    join = _banded_join(channel, True, _plan_for(con, channel, None), shortlist=max_partners)
    return con.execute(f"SELECT owner, partner, place FROM ({join}) ORDER BY owner, place").df()


def candidate_pairs(
    con: duckdb.DuckDBPyConnection,
    hashes_table: str,
    radius: int,
    new_only: bool = True,
    crop_radius: int | None = CROP_RADIUS,
    crop_phash_radius: int = CROP_PHASH_RADIUS,
    bands: int | None = None,
    shift_radius: int | None = SHIFT_RADIUS,
    max_partners: int | None = None,
    shift_max_partners: int | None = None,
) -> pd.DataFrame:
    """Pairs of images whose pHashes differ in at most ``radius`` bits, found by banded equi-joins.

    ``hashes_table`` has columns ``image_id VARCHAR, phash BIGINT|UBIGINT, is_new BOOLEAN`` and optionally
    ``phash2`` (same type, from :func:`synthdata.dedup.phash.crop_robust_hashes`; 0 = none) and
    ``shift_hashes`` (a list of that type, from :func:`synthdata.dedup.phash.image_hashes`; empty or NULL =
    none). Returns columns ``a, b, distance`` (pHash distance) with ``a < b`` (string order), one row per
    pair, sorted. With ``new_only`` only pairs with at least one new image are returned: old-vs-old pairs
    were settled when those images arrived. Exactly the pairs an all-pairs scan would find (pigeonhole), at
    the cost of the band collisions. ``bands`` fixes the number of bands (default: :func:`search_plan` picks
    it from the number of hashes); any choice gives the same pairs.

    Two more channels add pairs that pHash misses (then a ``crop_only`` column marks the pairs beyond
    ``radius``): with ``shift_hashes`` (and ``shift_radius`` not None), pairs where a new image's window at
    some shift of up to 2 px lies within ``shift_radius`` bits of the other's centred window
    (:mod:`synthdata.dedup.shift_hash`: 1-2 px crops and shifts); with ``phash2`` (and ``crop_radius`` not
    None), pairs within ``crop_radius`` bits of ``phash2`` and ``crop_phash_radius`` bits of pHash (crops
    move pHash beyond the radius but the phase-free average hash much less), for images the shift channel
    does not cover (see :func:`_channels`).

    ``max_partners`` caps the pHash channel: each new image keeps its ``max_partners`` nearest pHash partners
    within ``radius``, so candidates per image stay bounded as the archive grows (a homogeneous set's
    look-alikes within a fixed radius grow with n, a copy stays among the nearest; see
    :data:`DEFAULT_MAX_PARTNERS`): nearest by Hamming distance (ties by id); where the table has a ``lowfreq``
    column (:func:`synthdata.dedup.phash.lowfreq_bytes`), half of them by Hamming distance and half by the
    correlation of both images' low frequencies, of its :func:`lowfreq_shortlist` nearest
    (:func:`_by_lowfreq`). None keeps every pair within the radius. ``shift_max_partners`` caps the
    shift channel the same way: each new image keeps its nearest partners by the least key distance over its
    shifts, then pHash distance, then id (:data:`DEFAULT_SHIFT_MAX_PARTNERS`). ``frame.attrs["capped"]`` says,
    per capped channel, how many new images had more partners than they kept.
    """
    caps = {"phash": max_partners, "shift_hashes": shift_max_partners if shift_radius is not None else None}
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {hashes_table})").fetchall())
    rank_lowfreq = max_partners is not None and "lowfreq" in types  # pHash partners ranked by low frequencies
    columns = ("phash2", "shift_hashes") + (("lowfreq",) if rank_lowfreq else ())
    extra = "".join(f", {c}" for c in columns if c in types)
    # The joins run on dense integer keys numbered in image_id order (so least/greatest and the sort agree
    # with the ids'): the DISTINCT and the sort hold every candidate, and keyed by 64-character ids they
    # outgrow the warehouse's memory limit on drops of many near-identical images; integer keys take a
    # fraction of that (tests/test_near_dup.py runs the search under a small limit).
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _candidate_keys AS
            SELECT (row_number() OVER (ORDER BY image_id) - 1)::INTEGER AS image_id, image_id AS id, phash{extra}, is_new
            FROM {hashes_table}"""
    )
    try:
        if rank_lowfreq:
            _lowfreq_table(con)
        channels = _channels(con, "_candidate_keys", radius, crop_radius, shift_radius)
        parts = []
        for channel in channels:
            plan = _plan_for(con, channel, bands)
            if channel.name == "phash" and rank_lowfreq:
                shortlist = _banded_join(channel, new_only, plan, shortlist=lowfreq_shortlist(max_partners))
                parts.append(_by_lowfreq(shortlist, int(max_partners)))
                continue
            join = _banded_join(channel, new_only, plan, caps.get(channel.name))
            # The crop channel's pairs must also be within crop_phash_radius of each other's pHash.
            if channel.name == "phash2":
                join = f"SELECT * FROM ({join}) WHERE distance <= {int(crop_phash_radius)}"
            parts.append(join)
        union = " UNION ALL ".join(f"SELECT a, b, distance, capped, '{channel.name}' AS channel FROM ({part})"
                                   for channel, part in zip(channels, parts))  # fmt: skip
        con.execute(f"CREATE OR REPLACE TEMP TABLE _candidate_rows AS {union}")
        found = con.execute("SELECT DISTINCT a, b, distance::INTEGER AS distance FROM _candidate_rows ORDER BY a, b").fetchnumpy()
        capped = dict(con.execute("SELECT channel, count(*) FROM _candidate_rows WHERE capped GROUP BY 1").fetchall())
        ids = con.execute("SELECT id FROM _candidate_keys ORDER BY image_id").fetchnumpy()["id"]
    finally:
        con.execute("DROP TABLE IF EXISTS _candidate_keys")
        con.execute("DROP TABLE IF EXISTS _candidate_rows")
        con.execute("DROP TABLE IF EXISTS _candidate_lowfreq")
    ids = np.asarray(ids, dtype=object)  # one string object per image, shared by all of its pairs
    frame = pd.DataFrame(
        {"a": ids[found["a"]], "b": ids[found["b"]], "distance": np.asarray(found["distance"], dtype=np.int32)}
    )
    if len(parts) > 1:
        frame["crop_only"] = frame["distance"] > radius  # found by the crop or shift channel alone
    # New images that had more partners than a capped channel keeps, by channel: what the caps left out.
    frame.attrs["capped"] = {name: int(capped.get(name, 0)) for name, cap in caps.items() if cap is not None}
    return frame
