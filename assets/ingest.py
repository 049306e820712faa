"""Stage 1, ingest: `raw_images`, one partition per daily landing drop."""


import dagster as dg
import numpy as np

from assets._util import md_table
from assets.partitions import daily_drops
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.curation.ingest import IngestBatch, ingest_partition
from synthdata.io.imageio import DecodeLimits
from synthdata.render import image_grid, markdown_image, thumbnail


class IngestConfig(dg.Config):
    max_pixels: int = 40_000_000
    max_aspect: float = 20.0
    max_file_mb: int = 64
    workers: int = 0  # 0 = one worker per core
    chunk_size: int = 256


@dg.asset(
    partitions_def=daily_drops,
    pool="duckdb",
    group_name="curation",
    kinds={"duckdb", "python"},
    description=(
        "Every file of one daily landing drop (`$SYNTHDATA_LANDING/YYYY-MM-DD/`), decoded, identified by the "
        "SHA-256 of its pixels and stored once in the content-addressed store. Unreadable, truncated, empty, "
        "non-image, oversized or absurdly shaped files go to `rejected_images` with a reason. Re-running a "
        "partition replaces its rows in one transaction."
    ),
)
def raw_images(
    context: dg.AssetExecutionContext,
    config: IngestConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
) -> dg.MaterializeResult:
    day = context.partition_key
    drop = image_store.drop_dir(day)
    if not drop.is_dir():
        context.log.warning(f"No drop folder at {drop}: partition {day} is recorded as empty.")
    limits = DecodeLimits(
        max_file_bytes=config.max_file_mb * 1024 * 1024, max_pixels=config.max_pixels, max_aspect=config.max_aspect
    )
    run_id = context.run.run_id
    preview: list[str] = []

    with warehouse.connect() as con:

        def keep_preview(batch: IngestBatch) -> None:
            preview.extend(r["blob_key"] for r in batch.accepted[: max(0, 40 - len(preview))])

        stats = ingest_partition(
            con, day, drop, image_store.landing_root, image_store.store(), limits,
            workers=config.workers or None, chunk_size=config.chunk_size, run_id=run_id, on_batch=keep_preview,
        )  # fmt: skip
        per_label = con.execute(
            "SELECT coalesce(label, '(none)') AS label, count(*) AS count FROM raw_images WHERE partition_date = ? GROUP BY 1 ORDER BY 1",
            [day],
        ).df()
        rejected = con.execute(
            "SELECT source_path, reason FROM rejected_images WHERE partition_date = ? ORDER BY source_path", [day]
        ).df()

    context.log.info(f"{day}: {stats.accepted} accepted, {stats.rejected} rejected in {stats.seconds:.1f}s")
    for row in rejected.head(20).itertuples():
        context.log.warning(f"rejected {row.source_path}: {row.reason}")
    metadata: dict[str, object] = {
        "dagster/row_count": stats.accepted,
        "accepted": stats.accepted,
        "rejected": stats.rejected,
        "seconds": round(stats.seconds, 2),
        "images_per_second": round((stats.accepted + stats.rejected) / max(stats.seconds, 1e-9), 1),
        "drop_folder": dg.MetadataValue.path(str(drop)),
        "per_label": dg.MetadataValue.md(md_table(per_label, max_rows=500)),
        "rejected_files": dg.MetadataValue.md(md_table(rejected)),
        "rejection_reasons": dg.MetadataValue.json(stats.reasons),
    }
    if preview:
        store = image_store.store()
        thumbs = [thumbnail(store.read(k), 32) for k in preview]
        metadata["sample"] = dg.MetadataValue.md(markdown_image(image_grid(np.stack(thumbs), ncol=10, scale=2), "sample"))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=raw_images,
    description="Great Expectations: ids well-formed, sizes within config, one row per file (ERROR); labels present (WARN).",
)
def raw_images_expectations(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, quality: QualityResource
) -> dg.AssetCheckResult:
    from synthdata.expectations import validate

    with warehouse.connect() as con:
        df = con.execute("SELECT image_id, partition_date, source_path, label, width, height FROM raw_images").df()
    summary = validate(
        df,
        [
            ("ExpectColumnValuesToNotBeNull", {"column": "image_id"}),
            ("ExpectColumnValuesToMatchRegex", {"column": "image_id", "regex": "^[0-9a-f]{64}$"}),
            ("ExpectColumnValuesToNotBeNull", {"column": "label"}),
            ("ExpectColumnValuesToBeBetween", {"column": "width", "min_value": quality.min_side, "max_value": quality.max_side}),
            ("ExpectColumnValuesToBeBetween", {"column": "height", "min_value": quality.min_side, "max_value": quality.max_side}),
            ("ExpectCompoundColumnsToBeUnique", {"column_list": ["partition_date", "source_path"]}),
        ],
        name="raw_images",
    )
    # Unlabeled drops are accepted (label NULL) and kept out of class-conditional training: worth a warning,
    # not an error. Anything else failing is an error.
    only_labels = all(o.column == "label" for o in summary.failed)
    return dg.AssetCheckResult(
        passed=summary.success,
        severity=dg.AssetCheckSeverity.WARN if only_labels else dg.AssetCheckSeverity.ERROR,
        metadata={"rows": len(df), "results": dg.MetadataValue.md(summary.as_markdown()), "failed": len(summary.failed)},
    )
