"""Stage 3, split: `splits`, a stable, leak-free train/val/test assignment of `images`."""


import dagster as dg

from assets._util import md_table
from resources import QualityResource, WarehouseResource
from synthdata.curation.split import SPLITS, assign_splits
from synthdata.io.warehouse import replace_table


class SplitConfig(dg.Config):
    seed: int = 0
    train: float = 0.7
    val: float = 0.1
    test: float = 0.2


@dg.asset(
    deps=["images"],
    pool="duckdb",
    group_name="curation",
    kinds={"duckdb", "python"},
    description=(
        "train/val/test for every unique image. A group's split is a hash of (seed, duplicate group): adding "
        "a drop never moves an existing image, and a whole duplicate group always shares one split."
    ),
)
def splits(context: dg.AssetExecutionContext, config: SplitConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    fractions = {"train": config.train, "val": config.val, "test": config.test}
    with warehouse.connect() as con:
        imgs = con.execute("SELECT image_id, label FROM images ORDER BY image_id").df()
        # Near-duplicate members were folded into representatives, so a group is keyed by its representative.
        assigned = assign_splits(imgs, config.seed, fractions)
        replace_table(con, "splits", assigned[["image_id", "label", "split", "group_id"]])
    table = assigned.pivot_table(index="label", columns="split", values="image_id", aggfunc="count", fill_value=0)
    table = table.reindex(columns=list(SPLITS), fill_value=0).reset_index()
    counts = assigned["split"].value_counts().to_dict()
    context.log.info(f"splits: {counts}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(assigned),
            **{f"{s}_images": int(counts.get(s, 0)) for s in SPLITS},
            "per_label": dg.MetadataValue.md(md_table(table, max_rows=500)),
        }
    )


@dg.asset_check(
    asset=splits,
    blocking=True,
    description="Blocking. Great Expectations: every split non-empty, no image in two splits, no duplicate group "
    "across splits (no leak), every image of `images` assigned.",
)
def splits_no_leak(warehouse: WarehouseResource, quality: QualityResource) -> dg.AssetCheckResult:
    from synthdata.expectations import validate

    with warehouse.connect() as con:
        df = con.execute("SELECT image_id, split, group_id FROM splits").df()
        unassigned = con.execute("SELECT count(*) FROM images WHERE image_id NOT IN (SELECT image_id FROM splits)").fetchone()[0]
        # A duplicate (exact or near) must never get its own split row: it lives and dies with its representative.
        leaking_members = con.execute(
            """SELECT count(DISTINCT d.member_id) FROM duplicate_groups d JOIN splits s ON s.image_id = d.member_id
               WHERE d.member_id <> d.representative_id"""
        ).fetchone()[0]
        split_groups = con.execute("SELECT count(*) FROM (SELECT group_id FROM splits GROUP BY 1 HAVING count(DISTINCT split) > 1)").fetchone()[0]
        leaking_groups = leaking_members + split_groups
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
    passed = summary.success and not small and unassigned == 0 and leaking_groups == 0
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "per_split": dg.MetadataValue.json({s: int(n) for s, n in per_split.items()}),
            "splits_below_minimum": dg.MetadataValue.json(small),
            "unassigned_images": int(unassigned),
            "duplicates_with_own_split": int(leaking_members),
            "groups_across_splits": int(split_groups),
            "results": dg.MetadataValue.md(summary.as_markdown()),
        },
    )
