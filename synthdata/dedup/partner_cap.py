"""How many pHash and shift-hash partners each new image keeps, chosen per drop from planted copies of its
own images.

The pHash channel keeps each new image's ``max_partners`` best partners within the radius
(:func:`synthdata.dedup.candidates.candidate_pairs`: half by Hamming distance, half by low frequencies, of
its 32 nearest), because a homogeneous set's distinct look-alikes within a fixed radius grow with the set
while a copy's original stays among the first. How many are enough depends on the data: on Fashion-MNIST 2
keep the originals of all but about one in 2,000 re-encoded, brightness-changed and resized copies from
10,000 to 140,000 images, while desktop icons need 8 or 16 (a brightened white icon clips toward a crowd of
look-alikes). A fixed 16 pays for the icons on every set: Fashion-MNIST's candidates per image grew from 4.9
at 10,000 to 8.6 at 100,000 images; chosen per drop, they are 1.8 to 2.7 from 10,000 to 140,000
(docs/benchmarks.md).

So each drop plants copies of a seeded sample of its new images under every supported transform
(:data:`PROBE_KINDS`), hashes them as ingestion does, and asks where each copy's original ranks among the
copy's partners in the whole archive, exactly as the search would rank them (:func:`partner_ranks`, in SQL
over the same table): among its pHash partners, and whether the shift channel (capped on its own) keeps it.
The cap is the smallest of :data:`CAP_CHOICES` under which pHash or the shift channel pairs each
transform's copies with their originals as well as under the largest, less :data:`CAP_TOLERANCE`
(:func:`choose_cap`). Then, with that pHash cap, the shift channel's cap: the smallest of
:data:`SHIFT_CAP_CHOICES` by the same rule (one partner where pHash pairs the copies or their windows stand
apart; more where small images crowd each other's windows). Measured against the whole archive, the choices
grow with it when look-alikes crowd the originals out, and never silently: the shares paired at each cap go
into the ``images`` materialization.

What it does not see: pairs of single-colour images, whose hashes say nothing, so that any cap keeps or
drops them by id; a sample of 128 images rarely holds one (docs/curation.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import duckdb
import numpy as np
import pandas as pd
from PIL import Image

from synthdata.dedup.calibrate import TRANSFORMS, applies, plant_copy
from synthdata.dedup.candidates import DEFAULT_SHIFT_MAX_PARTNERS, SHIFT_RADIUS, lowfreq_shortlist, shift_partners
from synthdata.dedup.phash import image_hashes, lowfreq_array, to_signed
from synthdata.dedup.shift_hash import stored

# The caps a drop may choose, smallest first; the last is candidates.DEFAULT_MAX_PARTNERS, kept when no copy
# says less is enough.
CAP_CHOICES = (2, 4, 8, 16)

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

# The shift channel's caps a drop may choose, smallest first; the last is candidates.DEFAULT_SHIFT_MAX_PARTNERS.
# Chosen after the pHash cap, on the same copies: on photo crops of 24-64 px (benchmarks/ingest_speed.py) one
# shift partner pairs every copy that eight pair, and the channel's candidates halve; on 28 px Fashion-MNIST one
# pairs 93% of 1-2 px crops and shifts, where eight pair all (docs/benchmarks.md).
SHIFT_CAP_CHOICES = (1, 2, 4, DEFAULT_SHIFT_MAX_PARTNERS)


@dataclass(frozen=True)
class PartnerCap:
    """The chosen caps (pHash, then the shift channel's) and the evidence for them."""

    max_partners: int
    probes: int  # planted copies
    beyond_radius: int  # of which the original lies beyond the pHash radius
    kept: dict[int, float] = field(default_factory=dict)  # cap -> share of the copies paired with their original
    fixed: bool = False  # set by the caller's configuration, not chosen
    limiting: str = ""  # why the next smaller cap was not enough
    by_kind: dict[str, dict[int, float]] = field(default_factory=dict)  # transform -> cap -> share paired
    # The shift channel's cap, chosen with the pHash cap above: the same fields for it.
    shift_max_partners: int = DEFAULT_SHIFT_MAX_PARTNERS
    shift_kept: dict[int, float] = field(default_factory=dict)
    shift_fixed: bool = False
    shift_limiting: str = ""
    shift_by_kind: dict[str, dict[int, float]] = field(default_factory=dict)

    def describe(self) -> str:
        if self.fixed:
            phash = f"{self.max_partners} pHash partners per new image (fixed by configuration)"
        else:
            shares = ", ".join(f"{k}: {v:.1%}" for k, v in sorted(self.kept.items()))
            why = f"; {self.limiting}" if self.limiting else ""
            phash = (f"{self.max_partners} pHash partners per new image, chosen on {self.probes} planted copies of new "
                     f"images (paired with their original by pHash or the shift channel, per cap: "
                     f"{shares or 'none measured'}; {self.beyond_radius} originals beyond the pHash radius{why})")  # fmt: skip
        if self.shift_fixed:
            return f"{phash}; {self.shift_max_partners} shift-channel partners (fixed by configuration)"
        shares = ", ".join(f"{k}: {v:.1%}" for k, v in sorted(self.shift_kept.items()))
        why = f"; {self.shift_limiting}" if self.shift_limiting else ""
        copies = f"{self.probes} planted copies of new images" if self.fixed else "the same copies"
        return (f"{phash}; {self.shift_max_partners} shift-channel partners, chosen on {copies} (paired with "
                f"{self.max_partners} pHash partners, per shift cap: {shares or 'none measured'}{why})")


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
    shift_place: np.ndarray  # per copy: its original's place among its shift-channel partners (1 = nearest; 0 = none)

    def phash_kept(self, cap: int) -> np.ndarray:
        """Per copy: whether a pHash channel keeping ``cap`` partners keeps its original (:func:`kept_at`)."""
        return kept_at(self.ranked, cap).reindex(range(len(self.within)), fill_value=False).to_numpy()

    def shift_kept(self, cap: int) -> np.ndarray:
        """Per copy: whether a shift channel keeping ``cap`` partners keeps its original (``cap`` at most the
        ``shift_max_partners`` these ranks were taken with)."""
        return (self.shift_place >= 1) & (self.shift_place <= cap)


def partner_ranks(
    con: duckdb.DuckDBPyConnection, table: str, radius: int, originals: Sequence[str], copies: Sequence[np.ndarray],
    max_cap: int = CAP_CHOICES[-1], shift_radius: int = SHIFT_RADIUS, shift_max_partners: int = DEFAULT_SHIFT_MAX_PARTNERS,
) -> ProbeRanks:  # fmt: skip
    """For each planted copy (a pixel array) of an image of ``table`` (``originals``: its image_id), the
    partners the pHash search would rank for it (``ranked``: its ``lowfreq_shortlist(max_cap)`` nearest rows
    within ``radius``, by Hamming distance then image_id, as :func:`synthdata.dedup.candidates.candidate_pairs` orders
    them, ``similarity`` the inner product of the low frequencies, NaN where either has none, ``original``
    whether the row is the copy's original), whether its original lies within ``radius`` at all (it may be
    beyond the shortlist), and its place among the shift channel's ``shift_max_partners`` nearest partners
    (:func:`synthdata.dedup.candidates.shift_partners`). ``table`` has ``image_id``, ``phash`` (BIGINT or
    UBIGINT), ``lowfreq`` (BLOB, may be NULL) and optionally ``shift_hashes``."""
    hashes = image_hashes([Image.fromarray(c) for c in copies])
    originals = np.asarray(originals, dtype=object)
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
                QUALIFY by_distance <= {lowfreq_shortlist(max_cap)}
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
    ranked["original"] = ranked["image_id"].to_numpy() == originals[ranked["probe"].to_numpy()]
    within = np.zeros(len(copies), bool)
    within[reach["probe"].to_numpy()] = reach["distance"].to_numpy() <= radius
    shift_place = np.zeros(len(copies), np.int32)
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
        found = kept["partner"].to_numpy() == originals[owner]
        shift_place[owner[found]] = kept["place"].to_numpy()[found]
    return ProbeRanks(ranked.drop(columns="lowfreq"), within, shift_place)


def kept_at(ranked: pd.DataFrame, cap: int) -> pd.Series:
    """Per probe of :func:`partner_ranks` whose original is ranked: whether a cap of ``cap`` keeps it, by the
    rule of :func:`synthdata.dedup.candidates._by_lowfreq`: among the ``lowfreq_shortlist(cap)`` nearest, the
    ``cap // 2`` nearest, the ``cap // 2`` best by low frequencies, and, without low frequencies, the ``cap``
    nearest."""
    half = max(1, cap // 2)
    short = ranked[ranked["by_distance"] <= lowfreq_shortlist(cap)].copy()
    known = short["similarity"].notna()
    # Within each probe, rows with low frequencies rank by them (then image_id), as the search's window does.
    short["by_lowfreq"] = np.inf
    if known.any():
        with_sim = short[known].sort_values(["probe", "similarity", "image_id"], ascending=[True, False, True])
        short.loc[with_sim.index, "by_lowfreq"] = with_sim.groupby("probe").cumcount().to_numpy() + 1
    keep = (short["by_distance"] <= half) | (known & (short["by_lowfreq"] <= half)) | (~known & (short["by_distance"] <= cap))
    originals = short["original"].to_numpy()
    return keep[originals].groupby(short["probe"][originals]).any()


def _smallest_enough(
    paired: dict[int, np.ndarray], kinds: np.ndarray, tolerance: float, name: str
) -> tuple[int, str, dict[str, dict[int, float]]]:
    """The smallest cap of ``paired`` (cap -> per copy, paired with its original) that pairs each transform's
    copies as the largest does, less ``tolerance``; why the next smaller one was not enough; the shares per
    transform and cap."""
    by_kind = {str(k): {cap: float(v[kinds == k].mean()) for cap, v in paired.items()} for k in dict.fromkeys(kinds)}
    largest = max(paired)
    limiting = ""
    for cap in sorted(paired):
        short = {k: v[largest] - v[cap] for k, v in by_kind.items() if v[cap] < v[largest] - tolerance}
        if not short:
            return cap, limiting, by_kind
        worst = max(short, key=short.get)
        limiting = f"{name}{cap} would leave {short[worst]:.1%} more of the {worst} copies unpaired"
    return largest, limiting, by_kind


def choose_cap(
    ranks: ProbeRanks, kinds: Sequence[str], choices: Sequence[int] = CAP_CHOICES, tolerance: float = CAP_TOLERANCE,
    shift_choices: Sequence[int] = SHIFT_CAP_CHOICES,
) -> PartnerCap:  # fmt: skip
    """The smallest pHash cap of ``choices`` under which pHash or the shift channel (at the largest of
    ``shift_choices``) pairs the copies of every transform (``kinds``, per copy) with their originals as under
    the largest, less ``tolerance`` of that transform's copies (each transform's recall is a target of its
    own: a loss in one is not averaged away by the others); then, with that pHash cap, the smallest shift cap
    of ``shift_choices`` by the same rule. The largest of each when there are no copies."""
    n = len(ranks.within)
    kinds = np.asarray(kinds, dtype=object)
    shift_largest = max(shift_choices)
    if not n:
        return PartnerCap(max(choices), 0, 0, {}, shift_max_partners=shift_largest)
    phash = {cap: ranks.phash_kept(cap) for cap in choices}
    paired = {cap: phash[cap] | ranks.shift_kept(shift_largest) for cap in choices}
    chosen, limiting, by_kind = _smallest_enough(paired, kinds, tolerance, "")
    shift_paired = {cap: phash[chosen] | ranks.shift_kept(cap) for cap in shift_choices}
    shift_chosen, shift_limiting, shift_by_kind = _smallest_enough(shift_paired, kinds, tolerance, "a shift cap of ")
    return PartnerCap(chosen, n, int(n - ranks.within.sum()), {cap: float(v.mean()) for cap, v in paired.items()},
                      limiting=limiting, by_kind=by_kind, shift_max_partners=shift_chosen,
                      shift_kept={cap: float(v.mean()) for cap, v in shift_paired.items()},
                      shift_limiting=shift_limiting, shift_by_kind=shift_by_kind)  # fmt: skip


def calibrate_partner_cap(
    con: duckdb.DuckDBPyConnection, table: str, radius: int, sample: Sequence[str],
    load: Callable[[str], np.ndarray], seed: int, max_partners: int | None = None, shift_max_partners: int | None = None,
) -> PartnerCap:  # fmt: skip
    """:func:`choose_cap` on copies (:func:`plant_probes`) of the images ``sample`` (image_ids of ``table``,
    which already holds this drop's new images), ranked against everything in ``table``. ``max_partners`` or
    ``shift_max_partners`` fixes that cap (the other is still chosen; both fixed, nothing is planted)."""
    choices = CAP_CHOICES if max_partners is None else (max_partners,)
    shift_choices = SHIFT_CAP_CHOICES if shift_max_partners is None else (shift_max_partners,)
    fixed = {"fixed": max_partners is not None, "shift_fixed": shift_max_partners is not None}
    if max_partners is not None and shift_max_partners is not None:
        return PartnerCap(max_partners, 0, 0, {}, shift_max_partners=shift_max_partners, **fixed)
    images = [np.asarray(load(i)) for i in sample]
    copies, of, kinds = plant_probes(images, seed)
    if not copies:
        return PartnerCap(max(choices), 0, 0, {}, shift_max_partners=max(shift_choices), **fixed)
    ranks = partner_ranks(con, table, radius, [sample[k] for k in of], copies, max(choices),
                          shift_max_partners=max(shift_choices))  # fmt: skip
    return replace(choose_cap(ranks, kinds, choices, shift_choices=shift_choices), **fixed)
