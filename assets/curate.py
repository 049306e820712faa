"""Stage 2, curate: `images`, one row per unique image across all drops, and `duplicate_groups`."""


import dagster as dg
import numpy as np
import pandas as pd

from assets._util import counts_md, md_table
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.curate import exact_dedup
from synthdata.imageio import decode_image
from synthdata.render import image_grid, markdown_image
from synthdata.warehouse import replace_tables

IMAGE_COLUMNS = [
    "image_id", "label", "width", "height", "mode", "format", "blob_key", "phash",
    "first_partition_date", "source_path", "n_files", "n_near_duplicates", "label_conflict",
]  # fmt: skip


class CurateConfig(dg.Config):
    near_duplicates: bool = True


@dg.asset(
    deps=["raw_images"],
    pool="duckdb",
    group_name="curation",
    kinds={"duckdb", "python"},
    description=(
        "One row per unique image across all drops. Exact duplicates (same decoded pixels, any encoding) "
        "collapse onto the first file seen (earliest drop, then path); every other copy is recorded in "
        "`duplicate_groups` with its kind."
    ),
)
def images(
    context: dg.AssetExecutionContext,
    config: CurateConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        raw = con.execute("SELECT * FROM raw_images").df()
        unique, groups = exact_dedup(raw)
        unique = unique.rename(columns={"partition_date": "first_partition_date"})
        unique["n_near_duplicates"] = 0
        replace_tables(con, {"images": unique[IMAGE_COLUMNS], "duplicate_groups": groups})
        per_drop = con.execute(
            "SELECT first_partition_date AS drop, count(*) AS new_unique_images FROM images GROUP BY 1 ORDER BY 1"
        ).df()

    kinds = groups["kind"].value_counts().to_dict() if not groups.empty else {}
    context.log.info(f"{len(raw)} raw files -> {len(unique)} unique images; duplicates by kind: {kinds}")
    metadata: dict[str, object] = {
        "dagster/row_count": len(unique),
        "raw_files": len(raw),
        "unique_images": len(unique),
        "exact_duplicates": int(kinds.get("exact", 0)),
        "near_duplicates": int(kinds.get("near", 0)),
        "label_conflicts": int(unique["label_conflict"].sum()) if len(unique) else 0,
        "per_label": dg.MetadataValue.md(counts_md(unique["label"], "label")),
        "per_drop": dg.MetadataValue.md(md_table(per_drop)),
    }
    gallery = duplicate_gallery(raw, groups, image_store)
    if gallery:
        metadata["duplicate_gallery"] = dg.MetadataValue.md(gallery)
    return dg.MaterializeResult(metadata=metadata)


def duplicate_gallery(raw: pd.DataFrame, groups: pd.DataFrame, image_store: ImageStoreResource, n: int = 8) -> str:
    """Representative and duplicate side by side, one row per group (the originals from the store)."""
    if groups.empty:
        return ""
    store = image_store.store()
    key_of = dict(zip(raw["image_id"], raw["blob_key"]))
    tiles, lines = [], []
    for row in groups.drop_duplicates("representative_id").head(n).itertuples():
        pair = [key_of.get(row.representative_id), key_of.get(row.member_id)]
        if None in pair:
            continue
        tiles += [np.asarray(decode_image(store.read(k)).image.convert("RGB").resize((48, 48))) for k in pair]
        lines.append(f"- {row.kind} (hamming {row.hamming}, similarity {row.similarity:.3f}): `{row.member_source}`")
    if not tiles:
        return ""
    return "Kept (left) and duplicate (right):\n\n" + markdown_image(image_grid(np.stack(tiles), ncol=2, scale=2)) + "\n\n" + "\n".join(lines)


@dg.asset_check(asset=images, description="Great Expectations: unique ids, labels present, every image stored.")
def images_expectations(warehouse: WarehouseResource, quality: QualityResource) -> dg.AssetCheckResult:
    from synthdata.expectations import validate

    with warehouse.connect() as con:
        df = con.execute("SELECT image_id, label, width, height, blob_key, n_files FROM images").df()
    summary = validate(
        df,
        [
            ("ExpectTableRowCountToBeBetween", {"min_value": 1}),
            ("ExpectColumnValuesToBeUnique", {"column": "image_id"}),
            ("ExpectColumnValuesToNotBeNull", {"column": "label"}),
            ("ExpectColumnValuesToNotBeNull", {"column": "blob_key"}),
            ("ExpectColumnValuesToBeBetween", {"column": "n_files", "min_value": 1}),
            ("ExpectColumnValuesToBeBetween", {"column": "width", "min_value": quality.min_side, "max_value": quality.max_side}),
        ],
        name="images",
    )
    return dg.AssetCheckResult(
        passed=summary.success,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"rows": len(df), "results": dg.MetadataValue.md(summary.as_markdown()), "failed": len(summary.failed)},
    )
