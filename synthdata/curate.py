"""Curation: collapse the raw files of all drops into one row per unique image.

Exact duplicates share an `image_id` (same decoded pixels, whatever the encoding). The first file seen wins:
earliest drop, then source path order. Near-duplicates (`synthdata.near_dup`) fold further images into a
representative; both kinds land in one `duplicate_groups` table.
"""

from __future__ import annotations

import pandas as pd

FIRST_SEEN_ORDER = ["partition_date", "source_path"]


def exact_dedup(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (unique images, exact duplicate rows) from raw_images rows."""
    if raw.empty:
        return raw.iloc[0:0].assign(n_files=pd.Series(dtype="int64"), label_conflict=pd.Series(dtype=bool)), pd.DataFrame(
            columns=["representative_id", "member_id", "member_source", "kind", "hamming", "similarity"]
        )
    ordered = raw.sort_values(FIRST_SEEN_ORDER, kind="stable").reset_index(drop=True)
    first = ordered.drop_duplicates("image_id", keep="first")
    stats = ordered.groupby("image_id").agg(
        n_files=("source_path", "size"), n_labels=("label", lambda s: s.fillna("\0").nunique())
    )
    unique = first.merge(stats, left_on="image_id", right_index=True, how="left")
    unique["label_conflict"] = unique.pop("n_labels") > 1
    dups = ordered[ordered.duplicated("image_id", keep="first")]
    groups = pd.DataFrame(
        {
            "representative_id": dups["image_id"].to_numpy(),
            "member_id": dups["image_id"].to_numpy(),
            "member_source": dups["source_path"].to_numpy(),
            "kind": "exact",
            "hamming": 0,
            "similarity": 1.0,
        }
    )
    return unique.reset_index(drop=True), groups
