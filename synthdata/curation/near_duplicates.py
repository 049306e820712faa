"""The near-duplicate step of curation: which new images are copies of images already seen, and of which.

Candidates come from stored hashes alone (`synthdata.dedup.candidates`): each new image's nearest pHash
partners (2, 4, 8 or 16) and nearest shift-hash partners for 1-2 px crops and shifts (1, 2, 4 or 8), both caps
chosen per run on planted copies of its new images (`synthdata.dedup.partner_cap`), so the work per image
stays bounded as the archive grows, plus the small-image and fragile-pHash channels and the crop channel for
rows ingested before shift hashes existed. Each candidate pair is scored by its copy evidence
(`synthdata.dedup.evidence`) and kept when the rule confirms it; two groups a confirmed pair links have their
representatives compared directly (`synthdata.dedup.groups.join_linked_groups`).

The rule is calibrated on the data set itself (`synthdata.dedup.calibrate`: copy evidence beyond what its
distinct look-alikes reach), once, and stored (`near_duplicate_rules`, one active): later drops use the same
rule, and each is tested on planted copies of its own new images (`near_rule_fits`). A new rule (other
target, seed or radius, a fixed threshold, or ``recalibrate``) is reported in the stats and starts the index
afresh. Search is incremental: images already compared (`near_duplicate_index`) are never compared again with
each other; only new images are compared against everything, and confirmed pairs are kept
(`near_duplicate_pairs`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pandas as pd

from synthdata.dedup.calibrate import (
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_TARGET_FALSE_RATE,
    FIT_IMAGES,
    STATISTIC,
    NearDuplicateRule,
    Positives,
    RuleFit,
    measure_positives,
    nearest_distinct,
    rule_fit,
    rule_from_pairs,
)
from synthdata.dedup.candidates import DEFAULT_RADIUS, candidate_pairs
from synthdata.dedup.codec import Encoding
from synthdata.dedup.evidence import CODEC_VIEW_MAX_SIDE, copy_evidence
from synthdata.dedup.fragile_phash import stored_fragile_pairs
from synthdata.dedup.groups import join_linked_groups
from synthdata.dedup.partner_cap import PROBE_IMAGES, calibrate_partner_cap
from synthdata.dedup.phash import hamming
from synthdata.dedup.small_images import POOL_SIDE, SCREEN_SLACK, merge_pairs, resized_small_pairs
from synthdata.io.warehouse import insert_df

if TYPE_CHECKING:  # (curate imports this module: its stats type is named for the annotations only)
    from synthdata.curation.curate import CurationStats

NO_GROUPS = pd.DataFrame(columns=["representative", "member", "kind", "distance", "evidence"])  # never modified
LIMITING_PAIRS = 6  # closest known-distinct pairs reported when they limit a new rule


@dataclass(frozen=True)
class RuleRequest:
    """What the caller asks of the near-duplicate rule: calibrated for a target false-duplicate rate on a
    seeded sample, or a fixed copy-distance ``threshold``."""

    radius: int = DEFAULT_RADIUS
    threshold: float | None = None
    target_false_rate: float = DEFAULT_TARGET_FALSE_RATE
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES
    seed: int = 0
    recalibrate: bool = False
    fit_images: int = FIT_IMAGES  # new images whose copies test a stored rule (0: no test)
    max_partners: int | None = None  # pHash partners per new image (None: chosen per drop, synthdata.dedup.partner_cap)
    shift_max_partners: int | None = None  # shift-hash partners per new image (None: chosen per drop, likewise)

    def accepts(self, rule: NearDuplicateRule, radius: int) -> bool:
        """Whether a stored rule answers this request (else a new rule replaces it)."""
        if self.recalibrate or radius != self.radius or rule.statistic != STATISTIC:
            return False  # a rule measured with another copy_distance does not apply to today's numbers
        if self.threshold is not None:
            return rule.rule_id == NearDuplicateRule.fixed(self.threshold).rule_id
        return (rule.null_source != "fixed" and rule.seed == self.seed
                and bool(np.isclose(rule.target_false_rate, self.target_false_rate)))  # fmt: skip


def near_duplicate_groups(
    con: duckdb.DuckDBPyConnection,
    load: Callable[[str], np.ndarray] | None,
    request: RuleRequest,
    stats: CurationStats,
    load_encoding: Callable[[str], Encoding | None] | None = None,
) -> pd.DataFrame:
    """The near-duplicate groups of the images in ``_reps`` (curate's temp table of first files), as rows
    ``representative, member, kind, distance, evidence`` (no rows: :data:`NO_GROUPS`): this run's new images
    are searched and confirmed under the rule ``request`` asks for (the stored one, when it answers the
    request), and the pairs confirmed by earlier runs are grouped with them. Writes the rule, the index, the
    confirmed pairs and the rule's test to the warehouse, and this step's figures to ``stats``; ``load`` and
    ``load_encoding`` as :func:`synthdata.curation.curate.curate` takes them."""
    active = active_rule(con)
    rule = active[0] if active is not None and request.accepts(*active) else None
    if rule is None and request.threshold is not None:
        rule = NearDuplicateRule.fixed(request.threshold)
    stale = con.execute(
        "SELECT count(*) FROM near_duplicate_index WHERE rule_id IS DISTINCT FROM ? OR radius <> ?",
        [rule.rule_id if rule else None, request.radius],
    ).fetchone()[0]
    if rule is None or stale:
        con.execute("DELETE FROM near_duplicate_index")
        con.execute("DELETE FROM near_duplicate_pairs")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _hashes AS
           SELECT r.image_id, r.phash, r.phash2, r.shift_hashes, r.lowfreq, r.phash_fragile_bits, r.thumb32, r.label,
                  r.blob_key, r.height, r.width, x.image_id IS NULL AS is_new
           FROM _reps r LEFT JOIN near_duplicate_index x USING (image_id) WHERE r.phash IS NOT NULL"""
    )
    new_ids = [i for (i,) in con.execute("SELECT image_id FROM _hashes WHERE is_new ORDER BY image_id").fetchall()]
    stats.new_compared = len(new_ids)
    keys = dict(con.execute("SELECT image_id, blob_key FROM _hashes").fetchall())

    def load_id(image_id: str) -> np.ndarray:
        if load is None:
            raise ValueError("near-duplicate candidates need a pixel loader to be confirmed")
        return load(keys[image_id])

    codec_views = load_encoding is not None  # else files, and the planted copies judging the rule, are pixels alone
    # Only files a codec view can be taken of: larger ones are compared on frames that average a codec away.
    lossy = {i for (i,) in con.execute(
        "SELECT image_id FROM _reps WHERE format IN ('JPEG', 'WEBP') AND greatest(width, height) <= ?",
        [CODEC_VIEW_MAX_SIDE],
    ).fetchall()} if codec_views else set()  # fmt: skip
    encodings: dict[str, Encoding | None] = {}

    def encoding_id(image_id: str) -> Encoding | None:
        if image_id not in lossy:
            return None
        if image_id not in encodings:
            encodings[image_id] = load_encoding(keys[image_id])
        return encodings[image_id]

    if stats.new_compared:
        t = time.perf_counter()
        positives = None
        if rule is None:  # calibrate: planted copies of a seeded sample of the data set's own images
            sample = _seeded_sample(sorted(keys), request.calibration_images, request.seed)
            positives = measure_positives([load_id(i) for i in sample], request.seed,
                                          [encoding_id(i) for i in sample], codec_views)  # fmt: skip
        stats.seconds["calibrate"] = time.perf_counter() - t
        if positives is None and rule.null_source != "fixed" and request.fit_images:
            t = time.perf_counter()
            stats.rule_fit = _test_rule_fit(con, rule, request, load_id, new_ids, encoding_id, codec_views)
            stats.seconds["rule_fit"] = time.perf_counter() - t
        t = time.perf_counter()
        # Chosen on copies of this run's new images, against everything (unless both are configured).
        sample = _seeded_sample(new_ids, PROBE_IMAGES, request.seed)
        stats.partner_cap = calibrate_partner_cap(con, "_hashes", request.radius, sample, load_id, request.seed,
                                                  request.max_partners, request.shift_max_partners)  # fmt: skip
        stats.seconds["partner_cap"] = time.perf_counter() - t
        pairs = candidate_pairs(con, "_hashes", request.radius, new_only=True, max_partners=stats.partner_cap.max_partners,
                                shift_max_partners=stats.partner_cap.shift_max_partners)  # fmt: skip
        stats.capped_images = dict(pairs.attrs["capped"])
        screen = rule.screen if rule is not None else positives.screen
        t = time.perf_counter()
        hashed = len(pairs)
        pairs = with_small_resizes(con, pairs, load_id, screen - SCREEN_SLACK)
        stats.small_image_candidates = len(pairs) - hashed
        stats.seconds["small_images"] = time.perf_counter() - t
        t, hashed = time.perf_counter(), len(pairs)
        pairs = with_fragile_phashes(con, pairs, screen - SCREEN_SLACK)
        stats.fragile_phash_candidates = len(pairs) - hashed
        stats.seconds["fragile_phash"] = time.perf_counter() - t
        stats.candidates = len(pairs)
        t = time.perf_counter()
        distance, _ = copy_evidence(list(zip(pairs["a"], pairs["b"])), load_id, screen, encoding_id)
        stats.seconds["confirm"] = time.perf_counter() - t
        stats.screened = int(np.isfinite(distance).sum())
        rule = _finish(con, request, rule, positives, pairs, distance, stats, new_ids)
        keep = distance <= rule.threshold
        stats.confirmed = int(keep.sum())
        confirmed = pairs[keep]
        _store_pairs(con, confirmed["a"], confirmed["b"], confirmed["distance"], distance[keep], rule.rule_id)
        con.execute(
            "INSERT INTO near_duplicate_index SELECT image_id, ?, ?, ? FROM _hashes WHERE is_new",
            [request.radius, rule.threshold, rule.rule_id],
        )
    if rule is not None and (active is None or (active[0].rule_id, active[1]) != (rule.rule_id, request.radius)):
        _store_rule(con, rule, request.radius)
        if active is not None:
            stats.rule_change = (
                f"near-duplicate rule changed: {active[0].rule_id} (copy distance <= {active[0].threshold:.4g}, "
                f"radius {active[1]}) -> {rule.rule_id} (<= {rule.threshold:.4g}, radius {request.radius}); "
                "every image was compared again"
            )
    stats.rule = rule or (active[0] if active else None)
    scores = con.execute(
        """SELECT p.a, p.b, p.hamming AS distance, coalesce(p.copy_distance, 1 - p.similarity) AS evidence
           FROM near_duplicate_pairs p
           WHERE p.a IN (SELECT image_id FROM _reps) AND p.b IN (SELECT image_id FROM _reps)"""
    ).df()
    if scores.empty:
        return NO_GROUPS
    order = [i for (i,) in con.execute("SELECT image_id FROM _reps ORDER BY first_seen").fetchall()]
    # Two groups a confirmed pair links have their representatives compared (where one of the two is a new
    # image: groups of earlier runs are not merged after the fact).
    new, t = set(new_ids), time.perf_counter()
    linked = join_linked_groups(order, None, scores,
                                lambda checks: _confirm_representatives(con, checks, stats.rule, load_id, encoding_id),
                                lambda pair: stats.rule is not None and bool(new & set(pair)))  # fmt: skip
    stats.representative_checks, stats.representative_joins = linked.checked, linked.joined
    if linked.checked:
        stats.seconds["representatives"] = time.perf_counter() - t
    return linked.groups


def _confirm_representatives(
    con: duckdb.DuckDBPyConnection,
    checks: list[tuple[str, str]],
    rule: NearDuplicateRule,
    load_id: Callable[[str], np.ndarray],
    encoding_id: Callable[[str], Encoding | None],
) -> pd.DataFrame:
    """The pairs of ``checks`` (two groups' representatives) that ``rule`` confirms, stored in
    `near_duplicate_pairs` like the search's, as ``a, b, distance, evidence`` rows (groups.join_linked_groups)."""
    distance, _ = copy_evidence(checks, load_id, rule.screen, encoding_id)
    keep = distance <= rule.threshold
    found = pd.DataFrame([tuple(sorted(pair)) for pair, yes in zip(checks, keep) if yes], columns=["a", "b"])
    if found.empty:
        return pd.DataFrame(columns=["a", "b", "distance", "evidence"])
    found["evidence"] = distance[keep]
    phash = dict(con.execute("SELECT image_id, phash FROM _hashes WHERE image_id IN (SELECT unnest(?))",
                             [list(set(found["a"]) | set(found["b"]))]).fetchall())  # fmt: skip
    # (BIGINT or UBIGINT columns: the 64 bits as unsigned either way)
    bits = {image_id: value & 0xFFFF_FFFF_FFFF_FFFF for image_id, value in phash.items()}
    found["distance"] = hamming(*(np.array([bits[x] for x in found[side]], np.uint64) for side in ("a", "b")))
    _store_pairs(con, found["a"], found["b"], found["distance"], found["evidence"], rule.rule_id)
    return found[["a", "b", "distance", "evidence"]]


def _store_pairs(
    con: duckdb.DuckDBPyConnection, a: Sequence[str], b: Sequence[str], hamming_bits: Sequence[int],
    copy_distance: Sequence[float], rule_id: str,
) -> None:
    """Confirmed pairs into `near_duplicate_pairs` (the search's and the representatives' alike)."""
    copy_distance = np.asarray(copy_distance, np.float64)
    insert_df(con, "near_duplicate_pairs", pd.DataFrame(
        {"a": np.asarray(a), "b": np.asarray(b), "hamming": np.asarray(hamming_bits),
         "similarity": 1.0 - copy_distance, "copy_distance": copy_distance, "rule_id": rule_id}))  # fmt: skip


def with_small_resizes(
    con: duckdb.DuckDBPyConnection, pairs: pd.DataFrame, load_id: Callable[[str], np.ndarray], min_correlation: float
) -> pd.DataFrame:
    """``pairs`` and the resized copies of small images that pHash cannot pair
    (:mod:`synthdata.dedup.small_images`), marked ``crop_only`` (found beyond pHash's radius), sorted."""
    # Both images of such a pair are at most POOL_SIDE px: these rows hold every hash the merge needs.
    rows = con.execute(
        """SELECT image_id, height, width, is_new, phash FROM _hashes WHERE greatest(height, width) <= ?
           ORDER BY image_id""",
        [POOL_SIDE],
    ).fetchall()
    small = resized_small_pairs([r[0] for r in rows], [(r[1], r[2]) for r in rows], [r[3] for r in rows], load_id,
                                min_correlation=min_correlation)
    return merge_pairs(pairs, small, {r[0]: r[4] for r in rows})


def with_fragile_phashes(con: duckdb.DuckDBPyConnection, pairs: pd.DataFrame, min_correlation: float) -> pd.DataFrame:
    """``pairs`` and the pairs of images whose pHash noise decides (:mod:`synthdata.dedup.fragile_phash`), marked
    ``crop_only`` (found beyond pHash's radius), sorted."""
    rows = con.execute(
        """SELECT image_id, is_new, phash, lowfreq, phash_fragile_bits, thumb32 FROM _hashes
           WHERE lowfreq IS NOT NULL ORDER BY image_id"""
    ).fetchall()
    if not any(r[1] for r in rows):
        return pairs
    ids, new, phash, lowfreq, bits, thumbs = zip(*rows)
    found = stored_fragile_pairs(ids, lowfreq, bits, new, min_correlation, thumbs)
    return merge_pairs(pairs, found, dict(zip(ids, phash)))


def _seeded_sample(ids: list[str], n: int, seed: int) -> list[str]:
    """Up to ``n`` of ``ids``, drawn with ``seed``, in their given order."""
    pick = np.random.default_rng(seed).choice(len(ids), min(n, len(ids)), replace=False)
    return [ids[i] for i in sorted(pick)]


def _test_rule_fit(
    con: duckdb.DuckDBPyConnection,
    rule: NearDuplicateRule,
    request: RuleRequest,
    load_id: Callable[[str], np.ndarray],
    new_ids: list[str],
    encoding_id: Callable[[str], Encoding | None],
    codec_views: bool,
) -> RuleFit:
    """The stored rule judged on planted copies of a seeded sample of this run's new images, recorded in
    `near_rule_fits` (the `images_near_rule_fits` check reads it)."""
    sample = _seeded_sample(new_ids, request.fit_images, request.seed)
    fit = rule_fit(rule, [load_id(i) for i in sample], request.seed, [encoding_id(i) for i in sample], codec_views)
    con.execute(
        "INSERT INTO near_rule_fits (rule_id, new_images, sampled, recall, promised, fits, message) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [fit.rule_id, len(new_ids), fit.sampled, json.dumps(fit.recall), json.dumps(fit.promised), fit.fits, fit.message],
    )
    return fit


def _finish(
    con: duckdb.DuckDBPyConnection,
    request: RuleRequest,
    rule: NearDuplicateRule | None,
    positives: Positives | None,
    pairs: pd.DataFrame,
    distance: np.ndarray,
    stats: CurationStats,
    new_ids: list[str],
) -> NearDuplicateRule:
    """The rule (calibrated here from the scored candidates when there is none yet) and, on a labelled set,
    the share of this run's new images that have a different-label look-alike within it."""
    labels = dict(con.execute("SELECT image_id, label FROM _hashes WHERE label IS NOT NULL").fetchall())
    labelled = len(set(labels.values())) >= 2
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    la, lb = pairs["a"].map(labels).to_numpy(), pairs["b"].map(labels).to_numpy()
    distinct = pd.notna(la) & pd.notna(lb) & (la != lb)
    scope = [i for i in new_ids if i in labels]
    if rule is None:
        rule, known = rule_from_pairs(positives, a, b, distance, distinct, new_ids, request.target_false_rate,
                                      labelled, request.seed)  # fmt: skip
        if rule.limited_by == "null":
            closest = np.flatnonzero(known)[np.argsort(distance[known], kind="stable")[:LIMITING_PAIRS]]
            stats.limiting_pairs = [(str(a[k]), str(b[k]), float(distance[k])) for k in closest]
    if labelled and scope:
        stats.observed_false_rate = float(np.mean(nearest_distinct(a, b, distance, distinct, scope) <= rule.threshold))
    return rule


def active_rule(con: duckdb.DuckDBPyConnection) -> tuple[NearDuplicateRule, int] | None:
    """The near-duplicate rule in force and the Hamming radius it was stored with (None before the first)."""
    row = con.execute(
        "SELECT rule_json, radius FROM near_duplicate_rules WHERE active ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    return (NearDuplicateRule.from_json(row[0]), int(row[1])) if row else None


def _store_rule(con: duckdb.DuckDBPyConnection, rule: NearDuplicateRule, radius: int) -> None:
    """The new active rule; earlier ones stay as history (inactive)."""
    con.execute("UPDATE near_duplicate_rules SET active = false WHERE active")
    con.execute(
        """INSERT INTO near_duplicate_rules (rule_id, active, statistic, threshold, screen, target_false_rate,
               est_false_rate, recall, null_source, null_images, positives, seed, radius, rule_json)
           VALUES (?, true, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [rule.rule_id, rule.statistic, rule.threshold, rule.screen, rule.target_false_rate, rule.est_false_rate,
         json.dumps(rule.recall), rule.null_source, rule.null_images, rule.positives, rule.seed, radius,
         rule.to_json()],
    )  # fmt: skip
