"""Stage 1, ingest: `raw_images`, one partition per daily landing drop."""


import dagster as dg
import numpy as np
from pydantic import Field

from assets._util import expectations_check, md_table
from assets.partitions import daily_drops
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.curation.ingest import IngestBatch, ingest_partition
from synthdata.render import image_grid, markdown_image, thumbnail


# The decode limits moved to the image_store resource (ImageStoreResource), so that one setting governs every
# stage that decodes an image. A run config that still sets one here fails, naming the new place, rather than
# loosening ingest alone (later stages would then reject what ingest accepted).
MOVED_TO_IMAGE_STORE = ("max_pixels", "max_pixels_per_byte", "decode_pixels", "max_aspect", "min_side", "max_file_mb")
_MOVED = "Moved: set `{}` on the image_store resource (ImageStoreResource); setting it here fails the run."


class IngestConfig(dg.Config):
    """How the drop is processed. What a file may be (the decode limits) is set on the image_store resource."""

    workers: int = Field(
        default=0,
        description="Decoding processes; 0 = one per core. Every file is decoded in a worker process (a decoder "
        "crash costs only its file), small drops in one.",
    )
    chunk_size: int = Field(default=256, description="Files per worker task.")
    max_pixels: int | None = Field(default=None, description=_MOVED.format("max_pixels"))
    max_pixels_per_byte: float | None = Field(default=None, description=_MOVED.format("max_pixels_per_byte"))
    decode_pixels: int | None = Field(default=None, description=_MOVED.format("decode_pixels"))
    max_aspect: float | None = Field(default=None, description=_MOVED.format("max_aspect"))
    min_side: int | None = Field(default=None, description=_MOVED.format("min_side"))
    max_file_mb: int | None = Field(default=None, description=_MOVED.format("max_file_mb"))

    def moved_settings_error(self) -> str:
        """Why this config cannot run ("" when it can): it sets limits that now live on the image_store resource."""
        moved = {name: getattr(self, name) for name in MOVED_TO_IMAGE_STORE if getattr(self, name) is not None}
        if not moved:
            return ""
        return (
            f"raw_images config sets {moved}: the decode limits moved to the image_store resource so that every "
            f"stage decodes under the same ones. Set them there instead: run config `resources: image_store: "
            f"config: {moved}` (with home and landing), or ImageStoreResource(...) in build_resources."
        )


@dg.asset(
    partitions_def=daily_drops,
    pool="duckdb",
    # Safe to retry: a re-run writes under a new ingest id and switches the partition in one transaction.
    retry_policy=dg.RetryPolicy(max_retries=2, delay=15, backoff=dg.Backoff.EXPONENTIAL),
    group_name="curation",
    kinds={"duckdb", "python"},
    description=(
        "Every file of one daily landing drop (`$SYNTHDATA_LANDING/YYYY-MM-DD/`), decoded, identified by the "
        "SHA-256 of its pixels and stored once in the content-addressed store. Large images are decoded "
        "reduced (originals kept as they are). Any file that cannot be read or decoded (truncated, damaged, "
        "empty, non-image, beyond the size limits, or crashing its worker) goes to `rejected_images` with a "
        "reason; no file can stop the drop. Re-running a partition replaces its rows in one transaction."
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
    if moved := config.moved_settings_error():
        raise dg.Failure(description=moved, allow_retries=False)  # a config error: retrying cannot help
    store = image_store.store()
    run_id = context.run.run_id
    preview: list[str] = []

    with warehouse.connect() as con:

        def keep_preview(batch: IngestBatch) -> None:
            preview.extend(r["blob_key"] for r in batch.accepted[: max(0, 40 - len(preview))])

        stats = ingest_partition(
            con, day, drop, image_store.landing_root, store,  # decodes under the store's (the resource's) limits
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
        "decoded_reduced": stats.reduced,
    }
    if preview:
        thumbs = [thumbnail(store.decode(k).image, 32) for k in preview]
        metadata["sample"] = dg.MetadataValue.md(markdown_image(image_grid(np.stack(thumbs), ncol=10, scale=2), "sample"))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=raw_images,
    description="Great Expectations: ids well-formed, one row per file (ERROR); labels present, sides within the "
    "quality resource's min_side..max_side (no upper bound by default) (WARN: large and tiny images are data the ingest accepted on purpose).",
)
def raw_images_expectations(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, quality: QualityResource
) -> dg.AssetCheckResult:
    with warehouse.read() as con:
        df = con.execute("SELECT image_id, partition_date, source_path, label, width, height FROM raw_images").df()
    side = quality.side_bounds()
    errors = [
        ("ExpectColumnValuesToNotBeNull", {"column": "image_id"}),
        ("ExpectColumnValuesToMatchRegex", {"column": "image_id", "regex": "^[0-9a-f]{64}$"}),
        ("ExpectCompoundColumnsToBeUnique", {"column_list": ["partition_date", "source_path"]}),
    ]
    # Unlabeled drops are accepted (label NULL) and kept out of class-conditional training, and odd sizes are
    # accepted within the ingest's limits: worth a warning, not an error.
    warnings = [
        ("ExpectColumnValuesToNotBeNull", {"column": "label"}),
        ("ExpectColumnValuesToBeBetween", {"column": "width", **side}),
        ("ExpectColumnValuesToBeBetween", {"column": "height", **side}),
    ]
    return expectations_check(df, errors, warnings, name="raw_images")
