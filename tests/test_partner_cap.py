"""The pHash and shift-hash partner caps chosen per drop from planted copies (synthdata.dedup.partner_cap): the
ranking is the search's own, and the caps follow the data (few partners where copies stand out, the most where
look-alikes crowd their originals)."""

import duckdb
import numpy as np
import pandas as pd
import pytest
import skimage.data
from PIL import Image

from synthdata.dedup.candidates import DEFAULT_SHIFT_MAX_PARTNERS, SHIFT_RADIUS, candidate_pairs
from synthdata.dedup.partner_cap import (
    CAP_CHOICES,
    CAP_TOLERANCE,
    PROBE_KINDS,
    SHIFT_CAP_CHOICES,
    calibrate_partner_cap,
    choose_cap,
    partner_ranks,
    plant_probes,
)
from synthdata.dedup.phash import ImageHashes, image_hashes, lowfreq_bytes
from synthdata.dedup.shift_hash import CENTRE, stored
from tests.test_fragile_phash import CLIPART_SHAPES, clipart_shapes


def lfw_faces() -> list[np.ndarray]:
    return [(x * 255).astype(np.uint8) for x in skimage.data.lfw_subset()]


def hashes_table(images: list[np.ndarray], without_lowfreq: int = 0) -> tuple[duckdb.DuckDBPyConnection, list[str]]:
    """A table of the images' hashes as curation's `_hashes` holds them (UBIGINT pHash and shift hashes, lowfreq
    blobs); every ``without_lowfreq``-th row has no low frequencies, as a row ingested before every image
    stored them."""
    ids = [f"i{k:05d}" for k in range(len(images))]
    h = image_hashes([Image.fromarray(x) for x in images])
    con = duckdb.connect()
    con.register("frame", rows_of(ids, h, False, without_lowfreq))
    con.execute("CREATE TABLE t AS SELECT * FROM frame")
    con.unregister("frame")
    return con, ids


def rows_of(ids: list[str], h: ImageHashes, is_new: bool, without_lowfreq: int = 0) -> pd.DataFrame:
    """Rows of a hashes table for images hashed as ``h`` (see :func:`hashes_table`)."""
    lowfreq = [None if without_lowfreq and k % without_lowfreq == 0 else lowfreq_bytes(r) for k, r in enumerate(h.lowfreq)]
    return pd.DataFrame({"image_id": ids, "phash": h.phash, "is_new": is_new, "lowfreq": lowfreq,
                         "shift_hashes": [np.array(r, np.uint64) for r in stored(h.shifts)]})  # fmt: skip


@pytest.mark.skipif(not CLIPART_SHAPES.is_dir(), reason="needs Debian's openclipart-png")
def test_the_ranking_pairs_exactly_the_originals_that_the_search_pairs():
    """On 1,600 clip-art shapes (a crowd of look-alikes: caps keep different originals), for every pHash cap and
    every shift cap, the copies paired with their original by the replica (pHash ranking or the shift channel's
    places, taken once at the largest shift cap) are those candidate_pairs pairs when the copies are inserted as
    new rows, with and without low frequencies on the partners."""
    shapes = clipart_shapes()
    con, ids = hashes_table(shapes, without_lowfreq=5)
    sample = sorted(np.random.default_rng(3).choice(len(ids), 240, replace=False).tolist())
    copies, of, _ = plant_probes([shapes[i] for i in sample], seed=3)
    originals = [ids[sample[k]] for k in of]
    ranks = partner_ranks(con, "t", 10, originals, copies)

    h = image_hashes([Image.fromarray(c) for c in copies])
    probes = rows_of([f"p{k:04d}" for k in range(len(copies))], h, True)
    # Copies searched together must not be each other's partners: batches of copies pairwise beyond both radii.
    # Copies near many others (plain windows) would each need a search of their own: only batches of at least
    # 16 are searched (about half of the copies; the rest are left out of the comparison).
    shift_near = np.bitwise_count(h.shifts[:, None, :] ^ h.shifts[None, :, CENTRE, None]).min(axis=2) <= SHIFT_RADIUS
    apart = (np.bitwise_count(h.phash[:, None] ^ h.phash[None, :]) > 10) & ~shift_near & ~shift_near.T
    batch = np.full(len(copies), -1)
    for p in range(len(copies)):
        batch[p] = next(b for b in range(len(copies)) if apart[p, batch == b].all())
    searched_batches = np.flatnonzero(np.bincount(batch) >= 16)
    compared = np.isin(batch, searched_batches)
    assert compared.mean() >= 0.4
    paired = {}
    # pHash caps from 2 under the largest shift cap, every shift cap under the largest pHash cap, and both at their
    # smallest: every boundary of both rankings is met.
    largest = DEFAULT_SHIFT_MAX_PARTNERS
    combos = [(cap, largest) for cap in CAP_CHOICES] + [(16, s) for s in SHIFT_CAP_CHOICES[:-1]] + [(2, 1)]
    for cap, shift_cap in combos:
        searched = np.zeros(len(copies), bool)
        for b in searched_batches:
            con.register("part", probes[batch == b])
            con.execute("INSERT INTO t SELECT * FROM part")
            con.unregister("part")
            pairs = candidate_pairs(con, "t", 10, new_only=True, crop_radius=None, max_partners=cap,
                                    shift_max_partners=shift_cap)  # fmt: skip
            found = set(zip(pairs["a"], pairs["b"]))
            searched[batch == b] = [(originals[p], f"p{p:04d}") in found for p in np.flatnonzero(batch == b)]
            con.execute("DELETE FROM t WHERE is_new")
        phash_kept = ranks.phash_kept(cap)
        np.testing.assert_array_equal((phash_kept | ranks.shift_kept(shift_cap))[compared], searched[compared])
        paired[cap, shift_cap] = int(searched.sum())
    # Both parts matter here: fewer partners pair fewer copies, and the shift channel pairs copies that pHash
    # at any cap leaves out (else this test could not tell the rankings apart).
    assert paired[4, largest] < paired[8, largest] < paired[16, largest]
    assert paired[2, 1] < paired[2, largest]
    phash_16 = ranks.phash_kept(16)
    shift = ranks.shift_kept(largest)
    assert (compared & shift & ~phash_16).sum() >= 10 and (compared & ~shift & phash_16).sum() >= 10


def test_few_partners_where_copies_stand_out():
    """LFW's 200 faces and non-faces: every copy's original is among its first partners, so the fewest pHash
    partners (2) and one shift partner are enough."""
    faces = lfw_faces()
    con, ids = hashes_table(faces)
    cap = calibrate_partner_cap(con, "t", 10, ids[::4], lambda i: faces[ids.index(i)], seed=0)
    assert cap.max_partners == 2 and cap.kept[2] == cap.kept[16] >= 0.97
    assert cap.shift_max_partners == 1 and cap.shift_kept[1] == cap.shift_kept[8]
    assert cap.probes == len(PROBE_KINDS) * 50 and cap.beyond_radius <= 100  # crops and shifts move pHash
    assert cap == calibrate_partner_cap(con, "t", 10, ids[::4], lambda i: faces[ids.index(i)], seed=0)  # seeded


@pytest.mark.skipif(not CLIPART_SHAPES.is_dir(), reason="needs Debian's openclipart-png")
def test_the_most_partners_where_look_alikes_crowd_the_originals():
    """Clip-art shapes: jigsaw pieces, stars and circles in many colours outrank a brightened or resized copy's
    original, so 4 or 8 partners lose more copies than the tolerance allows and the cap is 16."""
    shapes = clipart_shapes()
    con, ids = hashes_table(shapes)
    sample = ids[::13]
    cap = calibrate_partner_cap(con, "t", 10, sample, lambda i: shapes[ids.index(i)], seed=0)
    assert cap.max_partners == 16
    assert any(v[8] < v[16] - CAP_TOLERANCE for v in cap.by_kind.values()) and cap.limiting.startswith("8 would leave")
    assert cap.kept[4] <= cap.kept[8] < cap.kept[16]
    assert "16 pHash partners per new image" in cap.describe()


@pytest.mark.skipif(not CLIPART_SHAPES.is_dir(), reason="needs Debian's openclipart-png")
def test_the_cap_is_the_smallest_within_the_tolerance_of_the_largest():
    """On clip-art shapes, with every fifth partner's low frequencies missing and a choice of caps from 1: the
    choice is the smallest cap that pairs the copies as the largest does, less the tolerance; a tolerance of 1
    takes the smallest, and so does a shift channel that pairs every copy."""
    shapes = clipart_shapes()
    con, ids = hashes_table(shapes, without_lowfreq=5)
    sample = ids[::20]
    copies, of, kinds = plant_probes([shapes[ids.index(i)] for i in sample], seed=1)
    ranks = partner_ranks(con, "t", 10, [sample[k] for k in of], copies)
    choices = (1, 2, 4, 16)
    cap = choose_cap(ranks, kinds, choices)
    # Per transform: each kind's share paired under the cap, against 16 (recomputed here from the ranks).
    paired = {c: ranks.phash_kept(c) | ranks.shift_kept(DEFAULT_SHIFT_MAX_PARTNERS) for c in choices}
    kind = np.array(kinds)
    enough = [c for c in choices if all(paired[c][kind == k].mean() >= paired[16][kind == k].mean() - CAP_TOLERANCE
                                         for k in PROBE_KINDS)]  # fmt: skip
    assert cap.max_partners == min(enough)
    assert cap.by_kind["resize"][4] == paired[4][kind == "resize"].mean()
    assert cap.kept[1] < cap.kept[2] < cap.kept[16]  # the choice is not trivially the smallest
    assert cap.limiting.endswith("copies unpaired") and f"{choices[choices.index(cap.max_partners) - 1]} would" in cap.limiting
    assert choose_cap(ranks, kinds, choices, tolerance=1.0).max_partners == 1
    assert choose_cap(ranks._replace(shift_place=np.ones_like(ranks.shift_place)), kinds, choices).max_partners == 1
    # A loss in one transform is not averaged away by the others: at looser tolerances the pooled shares allow
    # a smaller cap than every transform's own, never a larger one.
    per_kind, pooled = [], []
    for tolerance in (0.01, 0.02, 0.03, 0.05, 0.08):
        looser = choose_cap(ranks, kinds, choices, tolerance)
        per_kind.append(looser.max_partners)
        pooled.append(min(c for c in choices if looser.kept[c] >= looser.kept[16] - tolerance))
    assert all(p <= k for p, k in zip(pooled, per_kind)) and pooled != per_kind, (pooled, per_kind)


@pytest.mark.skipif(not CLIPART_SHAPES.is_dir(), reason="needs Debian's openclipart-png")
def test_the_shift_cap_is_chosen_after_the_phash_cap_by_the_same_rule():
    """With the pHash cap chosen, the shift cap is the smallest that pairs each transform's copies as the largest
    shift cap does, less the tolerance: copies pHash already pairs do not hold it up, a few crop copies only the
    shift channel's third partner pairs do, and a tolerance of 1 takes the smallest."""
    shapes = clipart_shapes()
    con, ids = hashes_table(shapes)
    sample = ids[::20]
    copies, of, kinds = plant_probes([shapes[ids.index(i)] for i in sample], seed=1)
    ranks = partner_ranks(con, "t", 10, [sample[k] for k in of], copies)
    kind = np.array(kinds)
    phash_cap = choose_cap(ranks, kinds).max_partners
    by_phash = ranks.phash_kept(phash_cap)
    # Every copy's original first among its shift partners, but for three crop copies pHash leaves unpaired (third)
    # and every copy pHash pairs (eighth: pairs pHash makes anyway say nothing about the shift cap).
    place = np.where(by_phash, SHIFT_CAP_CHOICES[-1], 1)
    third = np.flatnonzero(~by_phash & (kind == "crop"))[:3]
    place[third] = 3
    assert len(third) == 3 and 3 / (kind == "crop").sum() > CAP_TOLERANCE
    crafted = ranks._replace(shift_place=place.astype(np.int32))
    # (The pHash cap as chosen on the real ranks: on crafted ones, where every copy's shift place is within the
    # largest shift cap, any pHash cap would do.)
    cap = choose_cap(crafted, kinds, (phash_cap,))
    assert (cap.max_partners, cap.shift_max_partners) == (phash_cap, 4)
    assert cap.shift_by_kind["crop"][2] == cap.shift_by_kind["crop"][8] - 3 / (kind == "crop").sum()
    assert cap.shift_limiting.startswith("a shift cap of 2 would leave") and "crop copies" in cap.shift_limiting
    assert "4 shift-channel partners, chosen on the same copies" in cap.describe()
    assert choose_cap(crafted, kinds, (phash_cap,), tolerance=1.0).shift_max_partners == 1
    place[third] = 1
    assert choose_cap(ranks._replace(shift_place=place.astype(np.int32)), kinds, (phash_cap,)).shift_max_partners == 1
