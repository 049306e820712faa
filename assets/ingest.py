"""Stage 1, ingest: `raw_images`, one partition per daily landing drop."""


import dagster as dg
import numpy as np
from pydantic import Field

from assets._util import md_table
from assets.partitions import daily_drops
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.curation.ingest import IngestBatch, ingest_partition
from synthdata.io.imageio import DecodeLimits
from synthdata.render import image_grid, markdown_image, thumbnail


class IngestConfig(dg.Config):
    """Limits on what a file may be; every rejection for size or shape names the field to raise here."""

    max_pixels: int = Field(
        default=DecodeLimits.max_pixels,
        description="Hard ceiling on an image's declared pixels (the largest real drawing seen is 623 MP). "
        "A format that cannot be decoded reduced (all but JPEG) is decoded once in full, ~4 bytes per pixel.",
    )
    max_pixels_per_byte: float = Field(
        default=DecodeLimits.max_pixels_per_byte,
        description="Decompression bomb: images above decode_pixels with more pixels per compressed byte than "
        "this are rejected. Real images reach ~2,100 at most, flat bombs 5,300-23,600 (docs/curation.md).",
    )
    decode_pixels: int = Field(
        default=DecodeLimits.decode_pixels,
        description="Images with more pixels are decoded reduced by an integer factor to at most this many, for "
        "hashing and training (JPEG in DCT draft mode); the stored original is untouched.",
    )
    max_aspect: float = Field(
        default=DecodeLimits.max_aspect,
        description="Longer side / shorter side. Real banners reach ~25:1; beyond this an image is a line.",
    )
    min_side: int = Field(default=DecodeLimits.min_side, description="Smallest side accepted, in pixels.")
    max_file_mb: int = Field(
        default=DecodeLimits.max_file_bytes // 2**20,
        description="Largest file accepted, judged before it is read (an uncompressed 48 MP TIFF is 144 MB).",
    )
    workers: int = Field(default=0, description="Decoding processes; 0 = one per core.")
    chunk_size: int = Field(default=256, description="Files per worker task.")

    def limits(self) -> DecodeLimits:
        return DecodeLimits(
            max_file_bytes=self.max_file_mb * 2**20, max_pixels=self.max_pixels,
            max_pixels_per_byte=self.max_pixels_per_byte, max_aspect=self.max_aspect, min_side=self.min_side,
            decode_pixels=self.decode_pixels,
        )  # fmt: skip


@dg.asset(
    partitions_def=daily_drops,
    pool="duckdb",
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
    limits = config.limits()
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
        "decoded_reduced": stats.reduced,
    }
    if preview:
        store = image_store.store()
        thumbs = [thumbnail(store.read(k), 32) for k in preview]
        metadata["sample"] = dg.MetadataValue.md(markdown_image(image_grid(np.stack(thumbs), ncol=10, scale=2), "sample"))
    return dg.MaterializeResult(metadata=metadata)


@dg.asset_check(
    asset=raw_images,
    description="Great Expectations: ids well-formed, one row per file (ERROR); labels present, sides within the "
    "quality resource's min_side..max_side (WARN: large and tiny images are data the ingest accepted on purpose).",
)
def raw_images_expectations(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, quality: QualityResource
) -> dg.AssetCheckResult:
    from synthdata.expectations import validate

    with warehouse.connect() as con:
        df = con.execute("SELECT image_id, partition_date, source_path, label, width, height FROM raw_images").df()
    side = {"min_value": quality.min_side, "max_value": quality.max_side}
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
    summary = validate(df, errors + warnings, name="raw_images")
    structure_ok = all(o.success for o in summary.outcomes[: len(errors)])
    return dg.AssetCheckResult(
        passed=summary.success,
        severity=dg.AssetCheckSeverity.WARN if structure_ok else dg.AssetCheckSeverity.ERROR,
        metadata={"rows": len(df), "results": dg.MetadataValue.md(summary.as_markdown()), "failed": len(summary.failed)},
    )
