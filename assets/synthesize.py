"""Stage 6, synthesize: `synthetic_images`, sampled per class from the family's latest checkpoint."""


import json

import dagster as dg
import numpy as np
import pandas as pd

from assets.partitions import model_families
from resources import ImageStoreResource, TorchDevice, WarehouseResource
from synthdata.io.arrays import store_pngs
from synthdata.io.warehouse import replace_where
from synthdata.render import image_grid, markdown_image


class SynthesisConfig(dg.Config):
    per_class: int = 200
    seed: int = 1234


def latest_checkpoint(con, family: str) -> dict:
    row = con.execute(
        "SELECT * FROM generator_checkpoints WHERE family = ? ORDER BY created_at DESC LIMIT 1", [family]
    ).df()
    if row.empty:
        raise dg.Failure(f"no {family} checkpoint yet: materialize generator[{family}] first")
    return row.iloc[0].to_dict()


@dg.asset(
    partitions_def=model_families,
    deps=["generator"],
    pool="duckdb",
    group_name="synthesis",
    kinds={"duckdb", "pytorch"},
    description="`per_class` synthetic images for every class from the family's latest checkpoint, with the "
    "checkpoint and seed that made each row.",
)
def synthetic_images(
    context: dg.AssetExecutionContext,
    config: SynthesisConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
    torch_device: TorchDevice,
) -> dg.MaterializeResult:
    from synthdata.training.sample import load_generator

    family = context.partition_key
    with warehouse.connect() as con:
        ckpt = latest_checkpoint(con, family)
    classes = json.loads(ckpt["class_names"])
    gen = load_generator(ckpt["path"], torch_device.resolve())
    labels = np.repeat(np.arange(len(classes)), config.per_class)
    samples = gen.sample(labels, seed=config.seed)
    stored = store_pngs(image_store.store(), samples, "synthetic")
    df = pd.DataFrame(
        {
            "synthetic_id": [f"{family}-{cid[:24]}-{i}" for i, (cid, _) in enumerate(stored)],
            "family": family,
            "label": [classes[i] for i in labels],
            "checkpoint_id": ckpt["checkpoint_id"],
            "checkpoint_path": ckpt["path"],
            "seed": config.seed,
            "blob_key": [k for _, k in stored],
        }
    )
    with warehouse.connect() as con:
        replace_where(con, "synthetic_images", "family = ?", [family], df)
    show = np.concatenate([samples[labels == c][:10] for c in range(len(classes))])
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(df),
            "family": family,
            "checkpoint_id": ckpt["checkpoint_id"],
            "per_class": config.per_class,
            "classes": len(classes),
            "samples": dg.MetadataValue.md(markdown_image(image_grid(show, ncol=10, scale=4), "one row per class")),
        }
    )


@dg.asset_check(asset=synthetic_images, blocking=True, description="Blocking. Every class has exactly `per_class` rows, "
                "labels are known classes, each row names its checkpoint.")  # fmt: skip
def synthetic_images_complete(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from synthdata.expectations import validate

    family = context.partition_key if context.has_partition_key else None
    with warehouse.read() as con:
        df = con.execute("SELECT * FROM synthetic_images WHERE family = coalesce(?, family)", [family]).df()
        classes = con.execute("SELECT DISTINCT label FROM splits WHERE split = 'train' AND label IS NOT NULL").df()["label"].tolist()
    per_class = df.groupby("label").size()
    summary = validate(
        df,
        [
            ("ExpectTableRowCountToBeBetween", {"min_value": 1}),
            ("ExpectColumnValuesToBeInSet", {"column": "label", "value_set": classes}),
            ("ExpectColumnValuesToNotBeNull", {"column": "checkpoint_id"}),
            ("ExpectColumnValuesToBeUnique", {"column": "synthetic_id"}),
        ],
        name="synthetic_images",
    )
    balanced = per_class.nunique() == 1 and set(per_class.index) == set(classes)
    return dg.AssetCheckResult(
        passed=summary.success and bool(balanced),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"per_class": dg.MetadataValue.json({k: int(v) for k, v in per_class.items()}),
                  "results": dg.MetadataValue.md(summary.as_markdown())},  # fmt: skip
    )
