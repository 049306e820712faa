"""Stage 5, train: `generator`, one class-conditional generator checkpoint per model family (partition)."""


import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import yaml

from assets._util import load_split
from assets.features import load_split_or_empty
from assets.partitions import model_families
from resources import ImageStoreResource, TorchDevice, WarehouseResource
from synthdata.io.arrays import data_fingerprint, load_arrays
from synthdata.io.warehouse import insert_df
from synthdata.render import markdown_image


class GeneratorConfig(dg.Config):
    max_steps: int = 20_000
    max_seconds: float | None = 60.0
    # None: planned for the device and budget (synthdata/training/plan.py), like the family's arch and width.
    batch_size: int | None = None
    seed: int = 0
    checkpoint_every: int = 500
    # Augmented rows join the training input, except mixup / cutmix blends (synthdata/training/inputs.py).
    include_augmented: bool = False
    # Training format: "" / 0 = what most train images have. Originals are never changed.
    image_mode: str = ""
    image_size: int = 0
    # Further TrainConfig fields as YAML, validated by TrainConfig, e.g. "lr: 0.0001", "vae: {width: 16}" (an
    # explicit width / arch / batch size wins over the plan) or "plan: {auto: false}" (library defaults).
    hyperparameters_yaml: str = ""


@dataclass
class TrainingSet:
    x: np.ndarray  # uint8 train images (+ augmented rows if asked)
    y: np.ndarray  # class ids
    classes: list[str]
    ids: list[str]  # row ids (image_id / aug_id)
    mode: str
    val_x: np.ndarray | None  # the val split in the same format (quality probes), None if it has no labelled rows
    val_y: np.ndarray | None
    mixed_left_out: int  # augmented mixup / cutmix rows not used (see synthdata/training/inputs.py)


def load_training_set(con, store, mode: str, size: int, include_augmented: bool) -> TrainingSet:
    """Train split (plus augmented rows if asked, never mixing rows) and the val split, as arrays."""
    from synthdata.training.inputs import generator_rows

    train = load_split(con, store, "train", mode, size)
    x, labels, ids, left_out = train.pixels, train.labels, train.ids, 0
    if include_augmented:
        aug = con.execute(
            "SELECT aug_id, label, ops, blob_key FROM augmented_images WHERE label IS NOT NULL ORDER BY aug_id"
        ).df()
        keep = np.array(generator_rows(aug["ops"]), dtype=bool)
        left_out, aug = int((~keep).sum()), aug[keep]
        if len(aug):
            x = np.concatenate([x, load_arrays(store, list(aug["blob_key"]), train.mode, train.size)])
            labels, ids = labels + list(aug["label"]), ids + list(aug["aug_id"])
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in labels], dtype=np.int64)
    val_x = val_y = None
    val = load_split_or_empty(con, store, "val", train.mode, train.size)
    known = [i for i, label in enumerate(val.labels) if label in index]  # a class absent from train can't be probed
    if known:
        val_x, val_y = val.pixels[known], np.array([index[val.labels[i]] for i in known], dtype=np.int64)
    return TrainingSet(x, y, classes, ids, train.mode, val_x, val_y, left_out)


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
        data = load_training_set(con, image_store.store(), config.image_mode, config.image_size, config.include_augmented)
    budget = {"batch_size": config.batch_size} if config.batch_size is not None else {}  # unset: planned
    train_config = TrainConfig(
        family=family,
        max_steps=config.max_steps,
        max_seconds=config.max_seconds,
        seed=config.seed,
        checkpoint_every=config.checkpoint_every,
        **budget,
        **(yaml.safe_load(config.hyperparameters_yaml) or {}),
    )
    # The run folder is keyed by what determines each step as asked (data + trajectory config, not the budget), so
    # a materialization after a crash, or with a larger budget, resumes the unfinished run found there (and reuses
    # the plan it was started with).
    fingerprint = data_fingerprint(data.ids, data.classes, json.dumps(train_config.request_dict(), sort_keys=True))
    run_dir = image_store.subdir("checkpoints", family, "runs", fingerprint[:16])
    x = data.x
    context.log.info(f"training {family} on {len(x)} images {x.shape[1:]} x {len(data.classes)} classes on {device}; "
                     f"run dir {run_dir}" + (f"; {data.mixed_left_out} mixup/cutmix rows left out" if data.mixed_left_out else ""))
    result = train_generator(x, data.y, len(data.classes), train_config, device, Path(run_dir), log=context.log.info,
                             val_images=data.val_x, val_labels=data.val_y, warn=context.log.warning)

    checkpoint_id, published = publish_checkpoint(result.checkpoint_path, image_store.subdir("checkpoints", family))
    row = {
        "checkpoint_id": checkpoint_id,
        "family": family,
        "path": str(published),
        "steps": result.steps,
        "seconds": result.seconds,
        "config": result.config.model_dump_json(),
        "class_names": json.dumps(data.classes),
        "image_mode": data.mode,
        "image_width": int(x.shape[2]),
        "image_height": int(x.shape[1]),
        "data_fingerprint": fingerprint,
        "run_id": context.run.run_id,
    }
    with warehouse.connect() as con:
        con.execute("DELETE FROM generator_checkpoints WHERE checkpoint_id = ?", [checkpoint_id])
        insert_df(con, "generator_checkpoints", pd.DataFrame([row]))
    return dg.MaterializeResult(metadata=run_metadata(result, family, device, published, run_dir, checkpoint_id, data))


def run_metadata(result, family: str, device: str, published, run_dir, checkpoint_id: str, data: TrainingSet) -> dict:
    """What a training run reports: the plan and why, warnings, speed, losses, the quality probe and its curve."""
    plan = result.plan
    probe = result.probes[-1] if result.probes else None
    unreadable = [e for e in result.events if e.get("event") == "unreadable checkpoint"]
    return {
        "family": family,
        "device": device,
        "checkpoint": dg.MetadataValue.path(str(published)),
        "run_dir": dg.MetadataValue.path(str(run_dir)),
        "checkpoint_id": checkpoint_id,
        "train_images": len(data.x),
        "val_images": len(data.val_x) if data.val_x is not None else 0,
        "mixing_rows_left_out": data.mixed_left_out,
        "image_shape": str(tuple(data.x.shape[1:])),
        "plan": f"{plan['source']}{' (reused)' if plan.get('reused') else ''}: {plan['arch']} width {plan['width']} "
                f"batch {plan['batch_size']}",
        "plan_reason": plan["reason"],
        "plan_record": dg.MetadataValue.json(plan),
        "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in result.warnings) or "_none_"),
        "warning_count": len(result.warnings),
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "warmup_seconds": round(float(plan.get("warmup_seconds") or 0.0), 1),
        "eval_seconds": round(result.eval_seconds, 1),
        "steps_per_second": round(result.steps_per_second, 1),
        "resumed_from_step": result.resumed_from_step if result.resumed_from_step is not None else -1,
        "unreadable_checkpoint": dg.MetadataValue.json(unreadable[-1]) if unreadable else "none",
        **{f"final_{k}": round(float(v), 4) for k, v in result.final_losses.items()},
        "probe_ratio": probe["probe_ratio"] if probe else -1.0,
        "probes": dg.MetadataValue.json(result.probes),
        "samples": dg.MetadataValue.md(markdown_image(result.sample_grid_png, "EMA samples, one row per class")),
        "loss_curves": dg.MetadataValue.md(markdown_image(result.loss_curve_png, "loss curves")),
        "training_curves": dg.MetadataValue.md(
            markdown_image(result.curves_png, "losses, steps/s and the val quality probe against step")
        ),
    }
