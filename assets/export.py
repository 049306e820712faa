"""Stage 8, export: `training_set`, the published real + synthetic training data (behind the quality gate)."""

import dagster as dg

from assets.partitions import model_families
from resources import ImageStoreResource, WarehouseResource
from synthdata.export import write_training_set


@dg.asset(
    partitions_def=model_families,
    deps=["quality_report"],
    group_name="evaluation",
    kinds={"parquet"},
    description="Real train split plus the family's synthetic images as one Parquet file in the Hugging Face "
    "image layout (`image` {bytes, path}, `label`, `source`). Only written when the quality gate passes.",
)
def training_set(context: dg.AssetExecutionContext, warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    family = context.partition_key
    with warehouse.connect() as con:
        rows = con.execute(
            """SELECT i.blob_key, s.label, 'real' AS source, s.image_id AS row_id FROM splits s JOIN images i USING (image_id)
               WHERE s.split = 'train'
               UNION ALL
               SELECT blob_key, label, 'synthetic', synthetic_id FROM synthetic_images WHERE family = ?
               ORDER BY source, row_id""",
            [family],
        ).df()
    exported = write_training_set(rows, image_store.store().read, image_store.subdir("exports", family))
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "real_rows": exported.rows_by_source.get("real", 0),
            "synthetic_rows": exported.rows_by_source.get("synthetic", 0),
            "path": dg.MetadataValue.path(str(exported.path)),
        }
    )
