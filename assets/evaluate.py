"""Stage 7, evaluate: `quality_report`, utility (TRTR/TSTR) and memorization of each family's synthetic data."""


import datetime as dt
import uuid

import dagster as dg
import numpy as np
import pandas as pd

from assets._util import load_split
from assets.partitions import model_families
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.evaluate.privacy import memorization
from synthdata.evaluate.report import publish_report, render_report
from synthdata.evaluate.utility import tstr_trtr
from synthdata.io.arrays import load_arrays
from synthdata.io.warehouse import insert_df
from synthdata.render import image_grid


class EvaluateConfig(dg.Config):
    seed: int = 0


@dg.asset(
    partitions_def=model_families,
    deps=["synthetic_images", "splits"],
    pool="duckdb",
    group_name="evaluation",
    kinds={"duckdb", "python"},
    description=(
        "TRTR (train real, test real) and TSTR (train synthetic, test real) accuracy of one reference "
        "classifier on the real test split, plus a memorization figure (nearest-training-image distance of "
        "synthetic vs test images). Rows go to `quality_metrics`; a markdown report is written under "
        "$SYNTHDATA_HOME/reports."
    ),
)
def quality_report(
    context: dg.AssetExecutionContext,
    config: EvaluateConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
) -> dg.MaterializeResult:
    family = context.partition_key
    store = image_store.store()
    with warehouse.connect() as con:
        checkpoint_id = con.execute("SELECT any_value(checkpoint_id) FROM synthetic_images WHERE family = ?", [family]).fetchone()[0]
        if checkpoint_id is None:
            raise dg.Failure(f"no synthetic images for {family}: materialize synthetic_images[{family}] first")
        # Real images are viewed in the format the generator was trained on, so both sides compare like for like.
        mode, width, height = con.execute(
            "SELECT image_mode, image_width, image_height FROM generator_checkpoints WHERE checkpoint_id = ?", [checkpoint_id]
        ).fetchone()
        size = (int(width), int(height))
        train, test = (load_split(con, store, split, mode, size) for split in ("train", "test"))
        synth = con.execute("SELECT blob_key, label FROM synthetic_images WHERE family = ? ORDER BY synthetic_id", [family]).df()
    train_x, train_y = train.pixels, np.asarray(train.labels)
    test_x, test_y = test.pixels, np.asarray(test.labels)
    synth_x, synth_y = load_arrays(store, list(synth["blob_key"]), mode, size), synth["label"].to_numpy()

    utility = tstr_trtr(train_x, train_y, synth_x, synth_y, test_x, test_y, seed=config.seed)
    memo = memorization(train_x, synth_x, test_x)
    metrics = {
        "trtr_accuracy": utility.trtr,
        "tstr_accuracy": utility.tstr,
        "tstr_trtr_ratio": utility.ratio,
        "nn_distance_synthetic_median": memo.synth_median,
        "nn_distance_test_median": memo.test_median,
        "memorization_ratio": memo.ratio,
        "near_copy_fraction": memo.copy_fraction,
    }
    evaluation_id = uuid.uuid4().hex[:16]
    with warehouse.connect() as con:
        insert_df(
            con,
            "quality_metrics",
            pd.DataFrame(
                {"evaluation_id": evaluation_id, "family": family, "checkpoint_id": checkpoint_id,
                 "metric": list(metrics), "value": list(metrics.values()), "run_id": context.run.run_id}
            ),
        )  # fmt: skip

    grid = image_grid(np.concatenate([synth_x[synth_y == c][:10] for c in sorted(set(synth_y))]), ncol=10, scale=4)
    report = render_report(
        family, evaluation_id, checkpoint_id, metrics, len(train_x), len(test_x), len(synth_x), grid, dt.datetime.now(dt.UTC)
    )
    report_path = publish_report(image_store.subdir("reports", family), evaluation_id, report)
    context.log.info(f"{family}: TRTR {utility.trtr:.3f} TSTR {utility.tstr:.3f} ratio {utility.ratio:.3f}; report {report_path}")
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.float(round(float(v), 4)) for k, v in metrics.items()},
            "evaluation_id": evaluation_id,
            "checkpoint_id": checkpoint_id or "",
            "report": dg.MetadataValue.path(str(report_path)),
            "report_url": dg.MetadataValue.url(report_path.as_uri()),
        }
    )


@dg.asset_check(
    asset=quality_report,
    blocking=True,
    description="Blocking quality gate: TSTR/TRTR at or above the configured floor and few near-copies of "
    "training images. Publishing (training_set) is skipped when it fails.",
)
def quality_gate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, quality: QualityResource) -> dg.AssetCheckResult:
    family = context.partition_key if context.has_partition_key else "gan"
    with warehouse.connect() as con:
        latest = con.execute(
            """SELECT metric, value FROM quality_metrics WHERE evaluation_id = (
                   SELECT evaluation_id FROM quality_metrics WHERE family = ? ORDER BY created_at DESC LIMIT 1)""",
            [family],
        ).df()
    m = dict(zip(latest["metric"], latest["value"]))
    ratio, copies = m.get("tstr_trtr_ratio", 0.0), m.get("near_copy_fraction", 1.0)
    passed = ratio >= quality.min_tstr_trtr_ratio and copies <= quality.max_copy_fraction
    return dg.AssetCheckResult(
        passed=bool(passed),
        severity=dg.AssetCheckSeverity.ERROR,
        description=f"TSTR/TRTR {ratio:.3f} (floor {quality.min_tstr_trtr_ratio}); near-copies {copies:.3%} (max {quality.max_copy_fraction:.0%})",
        metadata={
            "tstr_trtr_ratio": float(ratio),
            "floor": quality.min_tstr_trtr_ratio,
            "near_copy_fraction": float(copies),
            "max_copy_fraction": quality.max_copy_fraction,
        },
    )
