"""Stage 3, split: `splits`, a stable, leak-free train/val/test assignment of `images`, and its checks."""


import dagster as dg
import numpy as np

from assets._util import md_table
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.curation.leakage import LeakageSettings, audit_leakage, leakage_gallery
from synthdata.curation.split import SPLITS, refresh_splits

_LEAK_DEFAULTS = LeakageSettings()


class SplitConfig(dg.Config):
    # Seed and fractions place new duplicate groups only: an image once assigned keeps its split.
    seed: int = 0
    train: float = 0.7
    val: float = 0.1
    test: float = 0.2


class LeakageConfig(dg.Config):
    """The cross-split audit's search (synthdata.curation.leakage.LeakageSettings) and when it warns."""

    radius: int = _LEAK_DEFAULTS.radius
    min_similarity: float = _LEAK_DEFAULTS.min_similarity
    max_ratio: float = _LEAK_DEFAULTS.max_ratio
    max_partners: int = _LEAK_DEFAULTS.max_partners
    small_side: int = _LEAK_DEFAULTS.small_side
    small_min_similarity: float = _LEAK_DEFAULTS.small_min_similarity
    # WARN when more than this fraction of a held-out split has a flagged train copy: one flagged image in a
    # split of 50 already warns. Of the bundled sets, no digit is flagged, and one pair of near-identical edge
    # patches in lfw_subset's 200 images is (docs/curation.md).
    warn_rate: float = 0.02
    gallery_pairs: int = 12


@dg.asset(
    deps=["images"],
    pool="duckdb",
    group_name="curation",
    kinds={"duckdb", "python"},
    description=(
        "train/val/test for every unique image. A duplicate group (`duplicate_groups`, exact and near) shares a "
        "split; an image once assigned never moves (`split_assignments`), even when a backfill makes another "
        "member the representative; groups merged across splits are recorded in `split_conflicts`."
    ),
)
def splits(context: dg.AssetExecutionContext, config: SplitConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    fractions = {"train": config.train, "val": config.val, "test": config.test}
    with warehouse.connect() as con:
        stats = refresh_splits(con, config.seed, fractions, context.run_id)
    plan = stats.plan
    table = plan.splits.pivot_table(index="label", columns="split", values="image_id", aggfunc="count", fill_value=0)
    table = table.reindex(columns=list(SPLITS), fill_value=0).reset_index()
    counts = plan.splits["split"].value_counts().to_dict()
    context.log.info(f"splits: {counts}; {len(plan.assignments)} new assignments")
    if len(plan.conflicts):
        context.log.warning(
            f"{plan.conflicts['group_id'].nunique()} duplicate group(s) now span splits; nothing moved, new members "
            f"follow each group's earliest assignment; see split_conflicts: {plan.conflicts.head(10).to_dict('records')}"
        )
    metadata = {
        "dagster/row_count": len(plan.splits),
        **{f"{s}_images": int(counts.get(s, 0)) for s in SPLITS},
        "new_assignments": dg.MetadataValue.json(plan.assignments["rule"].value_counts().to_dict()),
        "new_conflicts": len(plan.conflicts),
        "recorded_conflicts": stats.recorded_conflicts,
        "kept_from_other_seed": stats.other_seed,
        "per_label": dg.MetadataValue.md(md_table(table, max_rows=500)),
    }
    if len(plan.conflicts):
        metadata["conflicts"] = dg.MetadataValue.md(md_table(plan.conflicts, max_rows=50))
    return dg.MaterializeResult(metadata=metadata)


# Images of a group whose persisted splits differ, unless every one of them is recorded in split_conflicts.
_UNRECORDED_SPREAD = """
    WITH g AS (SELECT representative_id AS group_id, member_id AS image_id FROM duplicate_groups
               UNION SELECT image_id, image_id FROM images),
         a AS (SELECT g.group_id, g.image_id, s.split FROM g JOIN split_assignments s USING (image_id)),
         spread AS (SELECT group_id FROM a GROUP BY 1 HAVING count(DISTINCT split) > 1)
    SELECT count(*) FROM a WHERE group_id IN (SELECT group_id FROM spread)
      AND (group_id, image_id) NOT IN (SELECT (group_id, image_id) FROM split_conflicts)"""


@dg.asset_check(
    asset=splits,
    blocking=True,
    description="Blocking. Great Expectations: every split non-empty, no image in two splits, every image of "
    "`images` assigned; no folded duplicate with its own split, no image moved from its recorded split, no "
    "duplicate group across splits that `split_conflicts` does not record.",
)
def splits_no_leak(warehouse: WarehouseResource, quality: QualityResource) -> dg.AssetCheckResult:
    from synthdata.expectations import validate

    with warehouse.read() as con:
        df = con.execute("SELECT image_id, split, group_id FROM splits").df()
        unassigned = con.execute("SELECT count(*) FROM images WHERE image_id NOT IN (SELECT image_id FROM splits)").fetchone()[0]
        # A duplicate (exact or near) must never get its own split row: it lives and dies with its representative.
        own_split = con.execute(
            """SELECT count(DISTINCT d.member_id) FROM duplicate_groups d JOIN splits s ON s.image_id = d.member_id
               WHERE d.member_id <> d.representative_id"""
        ).fetchone()[0]
        moved = con.execute(
            """SELECT count(*) FROM splits s LEFT JOIN split_assignments a USING (image_id)
               WHERE a.split IS DISTINCT FROM s.split"""
        ).fetchone()[0]
        unrecorded = con.execute(_UNRECORDED_SPREAD).fetchone()[0]
        recorded = con.execute("SELECT count(DISTINCT group_id) FROM split_conflicts").fetchone()[0]
    per_split = df.groupby("split").size().reindex(list(SPLITS), fill_value=0)
    summary = validate(
        df,
        [
            ("ExpectColumnValuesToBeUnique", {"column": "image_id"}),
            ("ExpectColumnValuesToBeInSet", {"column": "split", "value_set": list(SPLITS)}),
            ("ExpectColumnDistinctValuesToEqualSet", {"column": "split", "value_set": list(SPLITS)}),
        ],
        name="splits",
    )
    small = {s: int(n) for s, n in per_split.items() if n < quality.min_images_per_split}
    passed = summary.success and not small and unassigned == 0 and own_split == 0 and moved == 0 and unrecorded == 0
    return dg.AssetCheckResult(
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "per_split": dg.MetadataValue.json({s: int(n) for s, n in per_split.items()}),
            "splits_below_minimum": dg.MetadataValue.json(small),
            "unassigned_images": int(unassigned),
            "duplicates_with_own_split": int(own_split),
            "images_moved": int(moved),
            "groups_across_splits_unrecorded": int(unrecorded),
            "recorded_conflict_groups": int(recorded),
            "results": dg.MetadataValue.md(summary.as_markdown()),
        },
    )


@dg.asset_check(
    asset=splits,
    description="Non-blocking WARN: near-copies of val/test images in train, searched more loosely than dedup "
    "(pHash radius, fragile-pHash partners, similarity floor, ratio to the second-best match); the rate per split "
    "and a gallery.",
)
def splits_leakage_audit(
    config: LeakageConfig, warehouse: WarehouseResource, image_store: ImageStoreResource
) -> dg.AssetCheckResult:
    settings = LeakageSettings(**{name: getattr(config, name) for name in LeakageSettings.__dataclass_fields__})
    store = image_store.store()
    with warehouse.read() as con:
        images = con.execute(
            """SELECT s.image_id, s.split, i.phash, i.phash2, i.blob_key, r.lowfreq, r.phash_fragile_bits, r.thumb32
               FROM splits s JOIN images i USING (image_id)
               LEFT JOIN (SELECT image_id, any_value(lowfreq) AS lowfreq,
                                 any_value(phash_fragile_bits) AS phash_fragile_bits, any_value(thumb32) AS thumb32
                          FROM raw_images GROUP BY image_id) r USING (image_id)"""
        ).df()
    key_of = dict(zip(images["image_id"], images["blob_key"]))
    report = audit_leakage(images, lambda i: np.asarray(store.decode(key_of[i]).image), settings)
    rates = report.rates()
    metadata = {
        "flagged_pairs": len(report.flagged),
        **{f"{s}_leak_rate": float(r) for s, r in rates.items()},
        "searched": dg.MetadataValue.json(report.searched),
        "candidates": report.candidates,
        "compared": report.compared,
        "settings": dg.MetadataValue.json({**settings.__dict__, "warn_rate": config.warn_rate}),
    }
    gallery = leakage_gallery(report.closest, lambda i: store.decode(key_of[i]).image, config.gallery_pairs)
    if gallery:
        metadata["closest_pairs"] = dg.MetadataValue.md(gallery)
    return dg.AssetCheckResult(
        passed=all(r <= config.warn_rate for r in rates.values()),
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )
