"""Curation: collapse the raw files of all drops into one row per unique image.

Exact duplicates share an `image_id` (same decoded pixels, whatever the encoding); near-duplicates
(re-encoded, resized, cropped, shifted, brightness-changed copies) are found and decided in
`synthdata.curation.near_duplicates`, by a rule calibrated on the data set itself. The first file seen wins:
earliest drop, then source path order. A near-duplicate joins a group only when confirmed against the group's
representative (no chaining, `synthdata.dedup.groups`). Both kinds land in one `duplicate_groups` table, and
`images` holds one representative per group; all of it is rewritten in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from synthdata.curation.near_duplicates import NO_GROUPS, RuleRequest, near_duplicate_groups
from synthdata.dedup.calibrate import (
    DEFAULT_CALIBRATION_IMAGES,
    DEFAULT_TARGET_FALSE_RATE,
    FIT_IMAGES,
    NearDuplicateRule,
    RuleFit,
)
from synthdata.dedup.candidates import DEFAULT_RADIUS
from synthdata.dedup.codec import Encoding
from synthdata.dedup.groups import group_sizes
from synthdata.dedup.partner_cap import PartnerCap
from synthdata.io.warehouse import transaction


@dataclass
class CurationStats:
    raw_files: int = 0
    images: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    new_compared: int = 0
    candidates: int = 0
    small_image_candidates: int = 0  # of which only the small-image channel found (synthdata.dedup.small_images)
    fragile_phash_candidates: int = 0  # of which only the fragile-pHash channel found (synthdata.dedup.fragile_phash)
    # New images that had more pHash / shift-hash partners than the caps keep (candidate_pairs' attrs["capped"])
    capped_images: dict[str, int] = field(default_factory=dict)
    # How many pHash and shift-hash partners each new image kept, and the planted copies that chose them
    # (synthdata.dedup.partner_cap)
    partner_cap: PartnerCap | None = None
    screened: int = 0  # candidates scored in full (the rest fell below the rule's correlation screen)
    confirmed: int = 0
    # Representatives of two groups a confirmed pair links, compared directly (groups.representative_checks)
    representative_checks: int = 0
    representative_joins: int = 0
    rule: NearDuplicateRule | None = None
    rule_change: str | None = None  # set when this run replaced the active rule
    rule_fit: RuleFit | None = None  # how a stored rule did on copies of this run's new images
    observed_false_rate: float | None = None  # new images with a different-label near-duplicate
    # Calibrated here and limited by the null: the closest pairs taken as known distinct (a, b, copy distance).
    # They set the threshold; a person can see whether they really are distinct (one artwork filed under two
    # labels is not, and then pins the rule below its copies: fix the labels and recalibrate).
    limiting_pairs: list[tuple[str, str, float]] = field(default_factory=list)
    group_sizes: dict[int, int] = field(default_factory=dict)
    largest_group: int = 1
    seconds: dict[str, float] = field(default_factory=dict)


def curate(
    con: duckdb.DuckDBPyConnection,
    load_gray: Callable[[str], np.ndarray] | None,
    near_duplicates: bool = True,
    radius: int | None = None,
    threshold: float | None = None,
    *,
    target_false_rate: float = DEFAULT_TARGET_FALSE_RATE,
    calibration_images: int = DEFAULT_CALIBRATION_IMAGES,
    seed: int = 0,
    recalibrate: bool = False,
    fit_images: int = FIT_IMAGES,
    load_encoding: Callable[[str], Encoding | None] | None = None,
    max_partners: int | None = None,
    shift_max_partners: int | None = None,
) -> CurationStats:
    """Rebuild `images` and `duplicate_groups` from `raw_images` in one transaction.

    `load_gray(blob_key)` returns an image's pixels (grey or colour; used only for near-duplicates);
    `load_encoding(blob_key)` how a lossy file was encoded (``encoding_of(store.read(key))``; asked for JPEG
    and WebP files only), so a re-encoded copy is also compared with its partner encoded the same way
    (:mod:`synthdata.dedup.codec`). Without it, every file is scored on its pixels alone, and so are the
    planted copies that calibrate and test the rule.
    ``threshold`` fixes the copy-distance threshold instead of calibrating one; the calibration targets
    ``target_false_rate`` with ``calibration_images`` seeded images (see synthdata.dedup.calibrate). A stored
    calibrated rule is tested on planted copies of ``fit_images`` of the run's new images (`near_rule_fits`).
    ``max_partners`` and ``shift_max_partners`` fix how many pHash and shift-hash partners each new image
    keeps; None chooses that cap per run from planted copies of its new images (:mod:`synthdata.dedup.partner_cap`).
    """
    for name, cap in (("max_partners", max_partners), ("shift_max_partners", shift_max_partners)):
        if cap is not None and cap < 1:
            raise ValueError(f"{name}={cap}: each new image needs at least 1 partner (None: chosen per run)")
    request = RuleRequest(
        DEFAULT_RADIUS if radius is None else radius, threshold, target_false_rate, calibration_images, seed,
        recalibrate, fit_images, max_partners, shift_max_partners,
    )  # fmt: skip
    stats = CurationStats()
    t0 = time.perf_counter()
    # Exact: the first file seen for every image_id, plus how many files and labels it came with.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _ranked AS
           SELECT *, row_number() OVER (PARTITION BY image_id ORDER BY partition_date, source_path) AS _rn
           FROM raw_images"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _reps AS
           SELECT r.*, s.n_files, s.n_labels > 1 AS label_conflict,
                  row_number() OVER (ORDER BY r.partition_date, r.source_path) AS first_seen
           FROM (SELECT * EXCLUDE (_rn) FROM _ranked WHERE _rn = 1) r
           JOIN (SELECT image_id, count(*) AS n_files, count(DISTINCT coalesce(label, '\0')) AS n_labels
                 FROM raw_images GROUP BY image_id) s USING (image_id)"""
    )
    stats.raw_files = con.execute("SELECT count(*) FROM raw_images").fetchone()[0]
    stats.seconds["exact"] = time.perf_counter() - t0

    near = NO_GROUPS
    try:
        with transaction(con):
            if near_duplicates:
                t1 = time.perf_counter()
                near = near_duplicate_groups(con, load_gray, request, stats, load_encoding)
                stats.seconds["near"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            con.register("_near", near)
            con.execute("DELETE FROM images")
            con.execute("DELETE FROM duplicate_groups")
            con.execute(
                """INSERT INTO images
                   SELECT r.image_id, r.label, r.width, r.height, r.mode, r.format, r.blob_key, r.phash,
                          r.phash2, r.partition_date, r.source_path, r.n_files,
                          (SELECT count(*) FROM _near n WHERE n.representative = r.image_id),
                          r.label_conflict
                   FROM _reps r WHERE r.image_id NOT IN (SELECT member FROM _near)
                   ORDER BY r.first_seen"""
            )
            # Every extra file of an image, pointing at the representative that is finally kept.
            con.execute(
                """INSERT INTO duplicate_groups
                   SELECT coalesce(n.representative, k.image_id), k.image_id, k.source_path, 'exact', 0, 1.0
                   FROM _ranked k LEFT JOIN _near n ON n.member = k.image_id
                   WHERE k._rn > 1 ORDER BY k.partition_date, k.source_path"""
            )
            con.execute(
                """INSERT INTO duplicate_groups
                   SELECT n.representative, n.member, r.source_path, 'near', n.distance, 1 - n.evidence
                   FROM _near n JOIN _reps r ON r.image_id = n.member
                   ORDER BY r.first_seen"""
            )
    finally:
        with suppress(Exception):  # not registered if the near-duplicate step failed
            con.unregister("_near")

    stats.images = con.execute("SELECT count(*) FROM images").fetchone()[0]
    counts = dict(con.execute("SELECT kind, count(*) FROM duplicate_groups GROUP BY 1").fetchall())
    stats.exact_duplicates, stats.near_duplicates = counts.get("exact", 0), counts.get("near", 0)
    stats.seconds["write"] = time.perf_counter() - t2
    stats.group_sizes, stats.largest_group = group_sizes(near)
    return stats


def class_retention(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Per label: distinct images that arrived (label of the first file seen), images kept in `images`, and
    the retained fraction. Dedup that removes a class's distinct images unevenly shows here."""
    return con.execute(
        """WITH firsts AS (
               SELECT image_id, min_by(label, partition_date::VARCHAR || '/' || source_path) AS label
               FROM raw_images GROUP BY image_id)
           SELECT coalesce(f.label, '(none)') AS label, count(*) AS distinct_images,
                  count(i.image_id) AS kept, count(i.image_id) / count(*) AS retained_fraction
           FROM firsts f LEFT JOIN images i USING (image_id)
           GROUP BY 1 ORDER BY 1"""
    ).df()
