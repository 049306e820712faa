"""How many pHash partners each new image keeps, chosen per drop from planted copies of its own images.

The pHash channel keeps each new image's ``max_partners`` best partners within the radius
(:func:`synthdata.dedup.candidates.candidate_pairs`: half by Hamming distance, half by low frequencies, of a
shortlist twice as long), because a homogeneous set's distinct look-alikes within a fixed radius grow with
the set while a copy's original stays among the first. How many are enough depends on the data: on
Fashion-MNIST 4 keep every re-encoded, brightness-changed and resized copy's original at 10,000 and at
100,000 images, while desktop icons need 16 (a brightened white icon clips toward a crowd of look-alikes).
A fixed 16 pays for the icons on every set: Fashion-MNIST's candidates per image grew from 4.9 at 10,000 to
8.6 at 100,000 images, where 4 give 2.2 and 3.2 with the same recall (docs/benchmarks.md).

So each drop plants copies of a seeded sample of its new images under every supported transform
(:data:`PROBE_KINDS`), hashes them as ingestion does, and asks where each copy's original ranks among the
copy's partners in the whole archive, exactly as the search would rank them (:func:`partner_ranks`, in SQL
over the same table): among its pHash partners, and whether the shift channel (capped on its own) keeps it.
The cap is the smallest of :data:`CAP_CHOICES` under which pHash or the shift channel pairs each
transform's copies with their originals as well as under the largest, less :data:`CAP_TOLERANCE`
(:func:`choose_cap`). Measured against the whole archive, the choice grows with it when look-alikes crowd the
originals out, and never silently: the shares paired at each cap go into the ``images`` materialization.

What it does not see: pairs of single-colour images, whose hashes say nothing, so that any cap keeps or
drops them by id; a sample of 128 images rarely holds one (docs/curation.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import duckdb
import numpy as np
import pandas as pd
from PIL import Image

from synthdata.dedup.calibrate import TRANSFORMS, applies, plant_copy
from synthdata.dedup.candidates import DEFAULT_SHIFT_MAX_PARTNERS, LOWFREQ_SHORTLIST, SHIFT_RADIUS, shift_partners
from synthdata.dedup.phash import image_hashes, lowfreq_array, to_signed
from synthdata.dedup.shift_hash import stored

# The caps a drop may choose, smallest first; the last is candidates.DEFAULT_MAX_PARTNERS, kept when no copy
# says less is enough.
CAP_CHOICES = (4, 8, 16)

# Every supported transform: a cap must not lose any kind of copy. Crops and shifts move pHash and are mostly
# the shift channel's, so its ranking is asked too; a copy either channel pairs counts as paired.
PROBE_KINDS = tuple(TRANSFORMS)

# New images per drop whose copies choose the cap (one copy per kind that applies to each: up to 768 copies).
PROBE_IMAGES = 128

# A cap is enough when, for every transform, it pairs all but this share of the copies the largest cap pairs.
# Per transform, because each transform's recall is a target of its own: pooled over all six, Fashion-MNIST +
# MNIST 140k chose 4 with 1 copy of 768 lost, while 4 partners pair 0.47% fewer resized copies than 16 (1,500
# of them, offline) and the benchmark lost 4 of its 300. With 128 copies of a transform, 0.5% allows none
# lost: a transform that loses ~0.5% passes about half the time, and the next cap is tried.
CAP_TOLERANCE = 0.005

@dataclass(frozen=True)
class PartnerCap:
    """The chosen cap and the evidence for it."""

    max_partners: int
    probes: int  # planted copies
    beyond_radius: int  # of which the original lies beyond the pHash radius
    kept: dict[int, float] = field(default_factory=dict)  # cap -> share of the copies paired with their original
    fixed: bool = False  # set by the caller's configuration, not chosen
    limiting: str = ""  # why the next smaller cap was not enough
    by_kind: dict[str, dict[int, float]] = field(default_factory=dict)  # transform -> cap -> share paired

    def describe(self) -> str:
        if self.fixed:
            return f"{self.max_partners} pHash partners per new image (fixed by configuration)"
        shares = ", ".join(f"{k}: {v:.1%}" for k, v in sorted(self.kept.items()))
        why = f"; {self.limiting}" if self.limiting else ""
        return (f"{self.max_partners} pHash partners per new image, chosen on {self.probes} planted copies of new "
                f"images (paired with their original by pHash or the shift channel, per cap: "
                f"{shares or 'none measured'}; {self.beyond_radius} originals beyond the pHash radius{why})")  # fmt: skip


def plant_probes(images: Sequence[np.ndarray], seed: int) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Copies of each image under every :data:`PROBE_KINDS` transform that applies to it (seeded), the index of
    each copy's image, and each copy's transform."""
    rng = np.random.default_rng(seed)
    copies, of, kinds = [], [], []
    for k, image in enumerate(images):
        for kind in PROBE_KINDS:
            if applies(image, kind):
                copies.append(plant_copy(image, kind, rng))
                of.append(k)
                kinds.append(kind)
    return copies, of, kinds


class ProbeRanks(NamedTuple):
    """Where planted copies' originals rank (:func:`partner_ranks`)."""

    ranked: pd.DataFrame  # pHash partners: probe, image_id, distance, by_distance, similarity, original
    within: np.ndarray  # per copy: its original lies within the pHash radius
    shift_kept: np.ndarray  # per copy: the shift channel keeps its original among its partners


def partner_ranks(
    con: duckdb.DuckDBPyConnection, table: str, radius: int, originals: Sequence[str], copies: Sequence[np.ndarray],
    max_cap: int = CAP_CHOICES[-1], shift_radius: int = SHIFT_RADIUS, shift_max_partners: int = DEFAULT_SHIFT_MAX_PARTNERS,
) -> ProbeRanks:  # fmt: skip
    """For each planted copy (a pixel array) of an image of ``table`` (``originals``: its image_id), the
    partners the pHash search would rank for it (``ranked``: its ``2 * max_cap`` nearest rows within
    ``radius``, by Hamming distance then image_id, as :func:`synthdata.dedup.candidates.candidate_pairs` orders
    them, ``similarity`` the inner product of the low frequencies, NaN where either has none, ``original``
    whether the row is the copy's original), whether its original lies within ``radius`` at all (it may be
    beyond the shortlist), and whether the shift channel keeps it
    (:func:`synthdata.dedup.candidates.shift_partners`). ``table`` has ``image_id``, ``phash`` (BIGINT or
    UBIGINT), ``lowfreq`` (BLOB, may be NULL) and optionally ``shift_hashes``."""
    hashes = image_hashes([Image.fromarray(c) for c in copies])
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {table})").fetchall())
    signed = types["phash"] != "UBIGINT"
    probes = pd.DataFrame({"probe": np.arange(len(copies), dtype=np.int32),
                           "phash": to_signed(hashes.phash) if signed else hashes.phash,
                           "original_id": pd.Series(list(originals), dtype=object)})  # fmt: skip
    con.register("_partner_probes", probes)
    try:
        reach = con.execute(
            f"""SELECT p.probe, bit_count(xor(h.phash, p.phash)) AS distance
                FROM _partner_probes p JOIN {table} h ON h.image_id = p.original_id ORDER BY p.probe"""
        ).df()
        ranked = con.execute(
            f"""SELECT p.probe, h.image_id, bit_count(xor(h.phash, p.phash)) AS distance,
                       row_number() OVER (PARTITION BY p.probe ORDER BY bit_count(xor(h.phash, p.phash)), h.image_id)
                           AS by_distance,
                       h.lowfreq
                FROM _partner_probes p JOIN {table} h ON bit_count(xor(h.phash, p.phash)) <= {int(radius)}
                QUALIFY by_distance <= {LOWFREQ_SHORTLIST * int(max_cap)}
                ORDER BY p.probe, by_distance"""
        ).df()
    finally:
        con.unregister("_partner_probes")
    have = ranked["lowfreq"].notna().to_numpy()
    rows = np.full((len(ranked), 64), np.nan, np.float32)
    if have.any():
        rows[have] = lowfreq_array([bytes(b) for b in ranked["lowfreq"][have]])
    own = hashes.lowfreq.astype(np.float32)[ranked["probe"].to_numpy()]
    ranked["similarity"] = np.sum(rows * own, axis=1)  # NaN where either has no low frequencies
    ranked["original"] = ranked["image_id"].to_numpy() == np.asarray(originals, dtype=object)[ranked["probe"].to_numpy()]
    within = np.zeros(len(copies), bool)
    within[reach["probe"].to_numpy()] = reach["distance"].to_numpy() <= radius
    shift_kept = np.zeros(len(copies), bool)
    if "shift_hashes" in types:
        shifts = [to_signed(np.array(row, np.uint64)) if signed else np.array(row, np.uint64) for row in stored(hashes.shifts)]
        ids = [f"~probe/{k:06d}" for k in range(len(copies))]  # never an image_id (SHA-256 hex)
        frame = pd.DataFrame({"image_id": ids, "phash": probes["phash"], "shift_hashes": shifts})
        con.register("_partner_shift_probes", frame)
        try:
            kept = shift_partners(con, table, f"SELECT image_id, phash::{types['phash']} AS phash, "
                                  f"shift_hashes::{types['shift_hashes']} AS shift_hashes FROM _partner_shift_probes",
                                  shift_radius, shift_max_partners)  # fmt: skip
        finally:
            con.unregister("_partner_shift_probes")
        owner = kept["owner"].map({i: k for k, i in enumerate(ids)}).to_numpy()
        shift_kept[owner[kept["partner"].to_numpy() == np.asarray(originals, dtype=object)[owner]]] = True
    return ProbeRanks(ranked.drop(columns="lowfreq"), within, shift_kept)


def kept_at(ranked: pd.DataFrame, cap: int) -> pd.Series:
    """Per probe of :func:`partner_ranks` whose original is ranked: whether a cap of ``cap`` keeps it, by the
    rule of :func:`synthdata.dedup.candidates._by_lowfreq`: among the ``2 * cap`` nearest, the ``cap // 2``
    nearest, the ``cap // 2`` best by low frequencies, and, without low frequencies, the ``cap`` nearest."""
    half = max(1, cap // 2)
    short = ranked[ranked["by_distance"] <= LOWFREQ_SHORTLIST * cap].copy()
    known = short["similarity"].notna()
    # Within each probe, rows with low frequencies rank by them (then image_id), as the search's window does.
    short["by_lowfreq"] = np.inf
    if known.any():
        with_sim = short[known].sort_values(["probe", "similarity", "image_id"], ascending=[True, False, True])
        short.loc[with_sim.index, "by_lowfreq"] = with_sim.groupby("probe").cumcount().to_numpy() + 1
    keep = (short["by_distance"] <= half) | (known & (short["by_lowfreq"] <= half)) | (~known & (short["by_distance"] <= cap))
    originals = short["original"].to_numpy()
    return keep[originals].groupby(short["probe"][originals]).any()


def choose_cap(
    ranks: ProbeRanks, kinds: Sequence[str], choices: Sequence[int] = CAP_CHOICES, tolerance: float = CAP_TOLERANCE
) -> PartnerCap:
    """The smallest cap of ``choices`` under which pHash or the shift channel pairs the copies of every
    transform (``kinds``, per copy) with their originals as under the largest, less ``tolerance`` of that
    transform's copies (each transform's recall is a target of its own: a loss in one is not averaged away
    by the others); the largest when there are no copies."""
    n = len(ranks.within)
    kinds = np.asarray(kinds, dtype=object)
    paired = {cap: kept_at(ranks.ranked, cap).reindex(range(n), fill_value=False).to_numpy() | ranks.shift_kept
              for cap in choices}  # fmt: skip
    kept = {cap: float(paired[cap].mean()) if n else 1.0 for cap in choices}
    by_kind = {str(k): {cap: float(paired[cap][kinds == k].mean()) for cap in choices} for k in dict.fromkeys(kinds)}
    largest = max(choices)
    chosen, limiting = largest, ""
    for cap in sorted(choices):
        short = {k: v[largest] - v[cap] for k, v in by_kind.items() if v[cap] < v[largest] - tolerance}
        if not short:
            chosen = cap
            break
        worst = max(short, key=short.get)
        limiting = f"{cap} would leave {short[worst]:.1%} more of the {worst} copies unpaired"
    return PartnerCap(chosen, n, int(n - ranks.within.sum()), kept, limiting=limiting if n else "", by_kind=by_kind)


def calibrate_partner_cap(
    con: duckdb.DuckDBPyConnection, table: str, radius: int, sample: Sequence[str],
    load: Callable[[str], np.ndarray], seed: int,
) -> PartnerCap:  # fmt: skip
    """:func:`choose_cap` on copies (:func:`plant_probes`) of the images ``sample`` (image_ids of ``table``,
    which already holds this drop's new images), ranked against everything in ``table``."""
    images = [np.asarray(load(i)) for i in sample]
    copies, of, kinds = plant_probes(images, seed)
    if not copies:
        return PartnerCap(CAP_CHOICES[-1], 0, 0, {})
    return choose_cap(partner_ranks(con, table, radius, [sample[k] for k in of], copies), kinds)
