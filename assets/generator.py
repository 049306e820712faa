"""Stage 5, train: `generator`, one class-conditional generator checkpoint per model family (partition)."""


import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import yaml

from assets._util import load_split
from assets.partitions import model_families
from resources import ImageStoreResource, TorchDevice, WarehouseResource
from synthdata.io.arrays import data_fingerprint, load_arrays
from synthdata.io.warehouse import insert_df
from synthdata.render import markdown_image


class GeneratorConfig(dg.Config):
    max_steps: int = 20_000
    max_seconds: float | None = 60.0
    batch_size: int = 128
    seed: int = 0
    checkpoint_every: int = 500
    include_augmented: bool = False
    # Training format: "" / 0 = what most train images have. Originals are never changed.
    image_mode: str = ""
    image_size: int = 0
    # Further TrainConfig fields as YAML (family hyperparameters), e.g. "lr: 0.0001"; validated by TrainConfig.
    hyperparameters_yaml: str = ""


def load_training_set(
    con, store, mode: str, size: int, include_augmented: bool
) -> tuple[np.ndarray, np.ndarray, list[str], list[str], str]:
    """Train split (plus augmented rows if asked) as arrays: (images, class ids, class names, row ids, mode)."""
    train = load_split(con, store, "train", mode, size)
    x, labels, ids = train.pixels, train.labels, train.ids
    if include_augmented:
        aug = con.execute(
            "SELECT aug_id, label, blob_key FROM augmented_images WHERE label IS NOT NULL ORDER BY aug_id"
        ).df()
        x = np.concatenate([x, load_arrays(store, list(aug["blob_key"]), train.mode, train.size)])
        labels, ids = labels + list(aug["label"]), ids + list(aug["aug_id"])
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in labels], dtype=np.int64)
    return x, y, classes, ids, train.mode


@dg.asset(
    partitions_def=model_families,
    deps=["splits", "augmented_images"],
    pool="duckdb",
    group_name="synthesis",
    kinds={"pytorch"},
    description=(
        "A class-conditional generator trained on the train split, one partition per model family "
        "(gan, vae, diffusion). Runs on the TorchDevice; checkpoints are written atomically under "
        "$SYNTHDATA_HOME/checkpoints and an interrupted run resumes from its last checkpoint."
    ),
)
def generator(
    context: dg.AssetExecutionContext,
    config: GeneratorConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
    torch_device: TorchDevice,
) -> dg.MaterializeResult:
    from synthdata.training.checkpoint import publish_checkpoint
    from synthdata.training.loop import TrainConfig, train_generator

    family = context.partition_key
    device = torch_device.resolve()
    with warehouse.connect() as con:
        x, y, classes, ids, mode = load_training_set(
            con, image_store.store(), config.image_mode, config.image_size, config.include_augmented
        )
    train_config = TrainConfig(
        family=family,
        max_steps=config.max_steps,
        max_seconds=config.max_seconds,
        batch_size=config.batch_size,
        seed=config.seed,
        checkpoint_every=config.checkpoint_every,
        **(yaml.safe_load(config.hyperparameters_yaml) or {}),
    )
    # The run folder is keyed by what determines each step (data + trajectory config, not the budget), so a
    # materialization after a crash, or with a larger budget, resumes the unfinished run found there.
    fingerprint = data_fingerprint(ids, classes, json.dumps(train_config.trajectory_dict(), sort_keys=True))
    run_dir = image_store.subdir("checkpoints", family, "runs", fingerprint[:16])
    context.log.info(f"training {family} on {len(x)} images {x.shape[1:]} x {len(classes)} classes on {device}; run dir {run_dir}")
    result = train_generator(x, y, len(classes), train_config, device, Path(run_dir), log=context.log.info)

    checkpoint_id, published = publish_checkpoint(result.checkpoint_path, image_store.subdir("checkpoints", family))
    row = {
        "checkpoint_id": checkpoint_id,
        "family": family,
        "path": str(published),
        "steps": result.steps,
        "seconds": result.seconds,
        "config": train_config.model_dump_json(),
        "class_names": json.dumps(classes),
        "image_mode": mode,
        "image_width": int(x.shape[2]),
        "image_height": int(x.shape[1]),
        "data_fingerprint": fingerprint,
        "run_id": context.run.run_id,
    }
    with warehouse.connect() as con:
        con.execute("DELETE FROM generator_checkpoints WHERE checkpoint_id = ?", [checkpoint_id])
        insert_df(con, "generator_checkpoints", pd.DataFrame([row]))
    return dg.MaterializeResult(
        metadata={
            "family": family,
            "device": device,
            "checkpoint": dg.MetadataValue.path(str(published)),
            "run_dir": dg.MetadataValue.path(str(run_dir)),
            "checkpoint_id": checkpoint_id,
            "train_images": len(x),
            "image_shape": str(tuple(x.shape[1:])),
            "steps": result.steps,
            "seconds": round(result.seconds, 1),
            "steps_per_second": round(result.steps_per_second, 1),
            "resumed_from_step": result.resumed_from_step if result.resumed_from_step is not None else -1,
            **{f"final_{k}": round(float(v), 4) for k, v in result.final_losses.items()},
            "samples": dg.MetadataValue.md(markdown_image(result.sample_grid_png, "EMA samples, one row per class")),
            "loss_curves": dg.MetadataValue.md(markdown_image(result.loss_curve_png, "loss curves")),
        }
    )
