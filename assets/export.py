"""Stage 8, export: `training_set`, the published real + synthetic training data (behind the quality gate)."""


from pathlib import Path

import dagster as dg

from assets.partitions import model_families
from resources import ImageStoreResource, WarehouseResource
from synthdata.io.atomic import replacing, write_atomic


@dg.asset(
    partitions_def=model_families,
    deps=["quality_report"],
    group_name="evaluation",
    kinds={"parquet"},
    description="Real train split plus the family's synthetic images as one Parquet file in the Hugging Face "
    "image layout (`image` {bytes, path}, `label`, `source`). Only written when the quality gate passes.",
)
def training_set(context: dg.AssetExecutionContext, warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    family = context.partition_key
    store = image_store.store()
    with warehouse.connect() as con:
        rows = con.execute(
            """SELECT i.blob_key, s.label, 'real' AS source, s.image_id AS row_id FROM splits s JOIN images i USING (image_id)
               WHERE s.split = 'train'
               UNION ALL
               SELECT blob_key, label, 'synthetic', synthetic_id FROM synthetic_images WHERE family = ?
               ORDER BY source, row_id""",
            [family],
        ).df()
    classes = sorted(rows["label"].dropna().unique())
    table = pa.table(
        {
            "image": [{"bytes": store.read(k), "path": Path(k).name} for k in rows["blob_key"]],
            "label": [classes.index(v) for v in rows["label"]],
            "label_name": rows["label"].tolist(),
            "source": rows["source"].tolist(),
        }
    ).replace_schema_metadata({"synthdata_classes": ",".join(classes)})
    out_dir = image_store.subdir("exports", family)
    target = out_dir / "training_set.parquet"
    with replacing(target) as f:
        pq.write_table(table, f)
    write_atomic(out_dir / "labels.txt", "\n".join(classes) + "\n")
    counts = rows["source"].value_counts().to_dict()
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "real_rows": int(counts.get("real", 0)),
            "synthetic_rows": int(counts.get("synthetic", 0)),
            "path": dg.MetadataValue.path(str(target)),
        }
    )
