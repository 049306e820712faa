"""Curation: collapse the raw files of all drops into one row per unique image.

Exact duplicates share an `image_id` (same decoded pixels, whatever the encoding); near-duplicates
(re-encoded, resized, cropped, brightness-shifted copies) are found by `synthdata.dedup.candidates` and
confirmed on pixels by `synthdata.dedup.confirm`. The first file seen wins: earliest drop, then source path
order. Both kinds land in one `duplicate_groups` table, and `images` holds one representative per group.

Near-duplicate search is incremental: images already compared (`near_duplicate_index`) are never rehashed or
compared again with each other; only new images are compared against everything, and confirmed pairs are
kept (`near_duplicate_pairs`). Changing the radius or threshold starts the index afresh.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd

from synthdata.dedup.candidates import DEFAULT_RADIUS, candidate_pairs
from synthdata.dedup.confirm import DEFAULT_SIMILARITY, confirm_pairs
from synthdata.dedup.groups import group_duplicates
from synthdata.io.warehouse import insert_df, transaction

_NO_GROUPS = pd.DataFrame(columns=["representative", "member", "kind", "distance"])  # never modified


@dataclass
class CurationStats:
    raw_files: int = 0
    images: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    new_compared: int = 0
    candidates: int = 0
    confirmed: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def curate(
    con: duckdb.DuckDBPyConnection,
    load_gray: Callable[[str], np.ndarray] | None,
    near_duplicates: bool = True,
    radius: int | None = None,
    threshold: float | None = None,
) -> CurationStats:
    """Rebuild `images` and `duplicate_groups` from `raw_images` in one transaction.

    `load_gray(blob_key)` returns an image's pixels (used only for near-duplicate candidates).
    """
    radius = DEFAULT_RADIUS if radius is None else radius
    threshold = DEFAULT_SIMILARITY if threshold is None else threshold
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

    near = _NO_GROUPS
    pair_scores = pd.DataFrame(columns=["a", "b", "hamming", "similarity"])
    try:
        with transaction(con):
            if near_duplicates:
                t1 = time.perf_counter()
                near, pair_scores = _near_duplicates(con, load_gray, radius, threshold, stats)
                stats.seconds["near"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            con.register("_near", near)
            con.register("_scores", pair_scores)
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
                """WITH best AS (
                       SELECT id, max(similarity) AS similarity
                       FROM (SELECT a AS id, similarity FROM _scores UNION ALL SELECT b, similarity FROM _scores)
                       GROUP BY id)
                   INSERT INTO duplicate_groups
                   SELECT n.representative, n.member, r.source_path, 'near', n.distance, best.similarity
                   FROM _near n JOIN _reps r ON r.image_id = n.member LEFT JOIN best ON best.id = n.member
                   ORDER BY r.first_seen"""
            )
    finally:
        for view in ("_near", "_scores"):
            with suppress(Exception):  # not registered if the near-duplicate step failed
                con.unregister(view)

    stats.images = con.execute("SELECT count(*) FROM images").fetchone()[0]
    counts = dict(con.execute("SELECT kind, count(*) FROM duplicate_groups GROUP BY 1").fetchall())
    stats.exact_duplicates, stats.near_duplicates = counts.get("exact", 0), counts.get("near", 0)
    stats.seconds["write"] = time.perf_counter() - t2
    return stats


def _near_duplicates(
    con: duckdb.DuckDBPyConnection,
    load_gray: Callable[[str], np.ndarray] | None,
    radius: int,
    threshold: float,
    stats: CurationStats,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    stale = con.execute(
        "SELECT count(*) FROM near_duplicate_index WHERE radius <> ? OR threshold <> ?", [radius, threshold]
    ).fetchone()[0]
    if stale:
        con.execute("DELETE FROM near_duplicate_index")
        con.execute("DELETE FROM near_duplicate_pairs")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _hashes AS
           SELECT r.image_id, r.phash, r.phash2, x.image_id IS NULL AS is_new
           FROM _reps r LEFT JOIN near_duplicate_index x USING (image_id) WHERE r.phash IS NOT NULL"""
    )
    stats.new_compared = con.execute("SELECT count(*) FROM _hashes WHERE is_new").fetchone()[0]
    if stats.new_compared:
        pairs = candidate_pairs(con, "_hashes", radius, new_only=True)
        stats.candidates = len(pairs)
        if len(pairs):
            if load_gray is None:
                raise ValueError("near-duplicate candidates need a pixel loader to be confirmed")
            ids = pd.unique(pd.concat([pairs["a"], pairs["b"]]))
            keys = dict(
                con.execute("SELECT image_id, blob_key FROM _reps WHERE image_id IN (SELECT unnest(?))", [list(ids)]).fetchall()
            )
            confirmed = confirm_pairs(pairs, lambda i: load_gray(keys[i]), threshold)
            stats.confirmed = len(confirmed)
            insert_df(
                con,
                "near_duplicate_pairs",
                confirmed.rename(columns={"distance": "hamming"})[["a", "b", "hamming", "similarity"]],
            )
        con.execute(
            "INSERT INTO near_duplicate_index SELECT image_id, ?, ? FROM _hashes WHERE is_new", [radius, threshold]
        )
    scores = con.execute(
        """SELECT p.* FROM near_duplicate_pairs p
           WHERE p.a IN (SELECT image_id FROM _reps) AND p.b IN (SELECT image_id FROM _reps)"""
    ).df()
    if scores.empty:
        return _NO_GROUPS, scores
    linked = con.execute(
        """SELECT image_id FROM _reps
           WHERE image_id IN (SELECT a FROM near_duplicate_pairs UNION SELECT b FROM near_duplicate_pairs)
           ORDER BY first_seen"""
    ).fetchall()
    order = [i for (i,) in linked]
    groups = group_duplicates(order, None, scores.rename(columns={"hamming": "distance"}))
    return groups, scores
