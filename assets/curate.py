"""Stage 2, curate: `images`, one row per unique image across all drops, and `duplicate_groups`."""


import dagster as dg
import numpy as np

from assets._util import md_table
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.curation.curate import curate
from synthdata.curation.gallery import duplicate_gallery, gallery_rows
from synthdata.dedup.candidates import DEFAULT_RADIUS
from synthdata.dedup.confirm import DEFAULT_SIMILARITY
from synthdata.io.imageio import decode_image


class CurateConfig(dg.Config):
    near_duplicates: bool = True
    # pHash Hamming radius for candidates (synthdata.dedup.candidates) and the pixel similarity that confirms
    # one (synthdata.dedup.confirm).
    hamming_radius: int = DEFAULT_RADIUS
    similarity_threshold: float = DEFAULT_SIMILARITY


@dg.asset(
    deps=["raw_images"],
    pool="duckdb",
    group_name="curation",
    kinds={"duckdb", "python"},
    description=(
        "One row per unique image across all drops. Exact duplicates (same decoded pixels, any encoding) and "
        "near-duplicates (pHash within `hamming_radius`, confirmed by an alignment-tolerant pixel similarity) "
        "collapse onto the first file seen (earliest drop, then path); every other copy is recorded in "
        "`duplicate_groups` with its kind. New drops are compared against everything already accepted "
        "without rehashing old images."
    ),
)
def images(
    context: dg.AssetExecutionContext,
    config: CurateConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
) -> dg.MaterializeResult:
    store = image_store.store()

    def load_pixels(blob_key: str) -> np.ndarray:
        return np.asarray(decode_image(store.read(blob_key)).image)

    with warehouse.connect() as con:
        stats = curate(con, load_pixels, config.near_duplicates, config.hamming_radius, config.similarity_threshold)
        per_label = con.execute(
            "SELECT coalesce(label, '(none)') AS label, count(*) AS images FROM images GROUP BY 1 ORDER BY 1"
        ).df()
        per_drop = con.execute(
            """SELECT r.partition_date::VARCHAR AS drop, count(*) AS files,
                      count(*) FILTER (WHERE i.image_id IS NOT NULL AND i.source_path = r.source_path) AS kept,
                      count(*) FILTER (WHERE d.kind = 'exact') AS exact_dups,
                      count(*) FILTER (WHERE d.kind = 'near') AS near_dups
               FROM raw_images r
               LEFT JOIN images i ON i.image_id = r.image_id
               LEFT JOIN duplicate_groups d ON d.member_source = r.source_path
               GROUP BY 1 ORDER BY 1"""
        ).df()
        groups = con.execute("SELECT * FROM duplicate_groups ORDER BY kind DESC, hamming DESC LIMIT 200").df()
        shown = gallery_rows(groups)
        ids = list({i for pair in zip(shown["representative_id"], shown["member_id"]) for i in pair})
        keys = dict(con.execute(
            "SELECT DISTINCT image_id, blob_key FROM raw_images WHERE image_id IN (SELECT unnest(?))", [ids]
        ).fetchall())  # fmt: skip
        conflicts = con.execute("SELECT count(*) FROM images WHERE label_conflict").fetchone()[0]

    context.log.info(
        f"{stats.raw_files} raw files -> {stats.images} images; {stats.exact_duplicates} exact and "
        f"{stats.near_duplicates} near duplicates; {stats.new_compared} new images compared, "
        f"{stats.candidates} candidates, {stats.confirmed} confirmed"
    )
    metadata: dict[str, object] = {
        "dagster/row_count": stats.images,
        "raw_files": stats.raw_files,
        "unique_images": stats.images,
        "exact_duplicates": stats.exact_duplicates,
        "near_duplicates": stats.near_duplicates,
        "new_images_compared": stats.new_compared,
        "near_candidates": stats.candidates,
        "near_confirmed": stats.confirmed,
        "label_conflicts": int(conflicts),
        "seconds": dg.MetadataValue.json({k: round(v, 3) for k, v in stats.seconds.items()}),
        "per_label": dg.MetadataValue.md(md_table(per_label, max_rows=500)),
        "per_drop": dg.MetadataValue.md(md_table(per_drop, max_rows=500)),
    }
    gallery = duplicate_gallery(shown, keys, store)
    if gallery:
        metadata["duplicate_gallery"] = dg.MetadataValue.md(gallery)
    return dg.MaterializeResult(metadata=metadata)


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
