"""Stage 7a, evaluate: `feature_extractor`, the pipeline's own feature space (a small CNN on the real train split).

Every evaluation metric (fidelity, diversity, utility, privacy) is computed in this one feature space, made here
from our own data, offline. The checkpoint is keyed by the labelled train + val rows and the training config:
an unchanged key reuses the file instead of retraining. `latest.json` beside the checkpoints names the current
one; `quality_report` refuses a feature extractor fit on rows other than today's train/val splits.
"""

import json
import time
from pathlib import Path

import dagster as dg
import numpy as np

from assets._util import SplitArrays, load_split
from resources import ImageStoreResource, WarehouseResource
from synthdata.io.arrays import data_fingerprint
from synthdata.io.atomic import write_atomic

POINTER = "latest.json"


class FeatureExtractorConfig(dg.Config):
    seed: int = 0
    max_seconds: float = 60.0
    max_epochs: int = 30
    # Input format: "" / 0 = what most train images have (the generator's default too).
    image_mode: str = ""
    image_size: int = 0


def split_fingerprint(con) -> str:
    """Identity of the labelled train and val rows (split, id, label, in order): what the extractor is fit on."""
    rows = con.execute(
        """SELECT split, image_id, label FROM splits WHERE split IN ('train', 'val') AND label IS NOT NULL
           ORDER BY split, image_id"""
    ).fetchall()
    return data_fingerprint([f"{s}/{i}/{lab}" for s, i, lab in rows])


def load_split_or_empty(con, store, split: str, mode: str, size: tuple[int, int]) -> SplitArrays:
    """Like load_split, but an empty split (e.g. no val images yet) gives empty arrays instead of failing."""
    try:
        return load_split(con, store, split, mode, size)
    except dg.Failure:
        shape = (0, size[1], size[0]) + ((3,) if mode == "RGB" else ())
        return SplitArrays([], [], np.zeros(shape, dtype=np.uint8), mode, size)


def current_feature_extractor(con, image_store: ImageStoreResource):
    """The feature extractor `feature_extractor` last published, checked against today's train/val rows."""
    from synthdata.evaluate.features import load_feature_extractor

    pointer = image_store.subdir("checkpoints", "feature_extractor") / POINTER
    if not pointer.exists():
        raise dg.Failure("no feature extractor yet: materialize feature_extractor first")
    info = json.loads(pointer.read_text())
    if info["data_fingerprint"] != split_fingerprint(con):
        raise dg.Failure(
            f"the feature extractor {info['key']} was fit on other train/val rows than the current splits: "
            "materialize feature_extractor (held-out baselines would otherwise include its own training images)"
        )
    return info["key"], load_feature_extractor(Path(info["path"]))


@dg.asset(
    deps=["splits"],
    group_name="evaluation",
    kinds={"pytorch"},
    description=(
        "A small CNN classifier trained on the real train split and validated on val: its penultimate layer is "
        "the feature space every quality metric is computed in. Checkpointed under "
        "$SYNTHDATA_HOME/checkpoints/feature_extractor, keyed by the train/val rows and config (reused, not "
        "retrained, while they are unchanged)."
    ),
)
def feature_extractor(
    context: dg.AssetExecutionContext,
    config: FeatureExtractorConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
) -> dg.MaterializeResult:
    from synthdata.evaluate.features import load_feature_extractor, save_feature_extractor, train_feature_extractor

    start = time.perf_counter()
    out_dir = image_store.subdir("checkpoints", "feature_extractor")
    with warehouse.read() as con:
        fingerprint = split_fingerprint(con)
        key = data_fingerprint([fingerprint], config.model_dump_json())[:16]
        path = out_dir / f"{key}.pt"
        reused = path.exists()
        if not reused:
            train = load_split(con, image_store.store(), "train", config.image_mode, config.image_size)
            val = load_split_or_empty(con, image_store.store(), "val", train.mode, train.size)
    if reused:
        fx = load_feature_extractor(path)
        context.log.info(f"train/val rows unchanged: reusing feature extractor {key}")
    else:
        fx = train_feature_extractor(
            train.pixels, train.labels, val.pixels, val.labels, seed=config.seed,
            max_seconds=config.max_seconds, max_epochs=config.max_epochs, data_fingerprint=fingerprint,
        )  # fmt: skip
        save_feature_extractor(fx, path)
    info = {"key": key, "path": str(path), "data_fingerprint": fingerprint, "val_accuracy": fx.val_accuracy,
            "feature_dim": fx.feature_dim, "image_mode": fx.image_mode, "image_size": list(fx.image_size)}  # fmt: skip
    write_atomic(out_dir / POINTER, json.dumps(info, indent=2) + "\n")
    seconds = time.perf_counter() - start
    return dg.MaterializeResult(
        metadata={
            "key": key,
            "reused": reused,
            "val_accuracy": dg.MetadataValue.float(round(float(fx.val_accuracy), 4)),
            "feature_dim": int(fx.feature_dim),
            "data_fingerprint": fingerprint,
            "classes": len(fx.classes),
            "image_format": f"{fx.image_mode} {fx.image_size[0]}x{fx.image_size[1]}",
            "seconds": round(seconds, 1),
            "checkpoint": dg.MetadataValue.path(str(path)),
        },
        data_version=dg.DataVersion(key),
    )
