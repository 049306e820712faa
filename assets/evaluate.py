"""Stage 7, evaluate: `quality_report` (fidelity, diversity, utility and privacy of a family's synthetic data, in
the feature_extractor's space, per class and overall) and the stored verdict that `quality_gate` reports and
`training_set` obeys.

Each evaluation writes its metric rows (`quality_metrics`) and its verdict (`evaluations`) in one transaction:
the verdict is data, so the gate holds in any later run, not only in the run that evaluated.
"""

import datetime as dt
import json
import uuid

import dagster as dg
import numpy as np
import pandas as pd

from assets.features import current_feature_extractor, load_split_or_empty
from assets.partitions import model_families
from resources import ImageStoreResource, QualityResource, WarehouseResource
from synthdata.io.arrays import data_fingerprint, load_arrays
from synthdata.io.warehouse import insert_df, transaction
from synthdata.render import markdown_image

# Shown as numbers on the asset page (plotted across materializations); every row is in quality_metrics.
HEADLINE = [
    "tstr_trtr_ratio", "tstr_trtr_ratio_cnn", "trtr_accuracy", "tstr_accuracy", "trts_accuracy", "fid", "kid",
    "precision", "recall", "density", "coverage", "dcr_ratio", "closer_than_holdout_fraction", "mia_auc",
    "mia_advantage", "near_copy_fraction", "feature_val_accuracy",
]  # fmt: skip


class EvaluateConfig(dg.Config):
    # Seeds of every model fit (mean and spread are reported over them).
    seeds: list[int] = [0, 1, 2]
    # Shares of the real train split for the data-scarcity arms (real / +augmented / +synthetic / +both).
    fractions: list[float] = [0.1, 0.25, 1.0]
    scarcity: bool = True
    max_seconds: float | None = None


def synthetic_set(con, family: str) -> tuple[str | None, str]:
    """(checkpoint id, fingerprint of the rows) of `family`'s synthetic_images: what an evaluation covers."""
    rows = con.execute(
        "SELECT synthetic_id, checkpoint_id FROM synthetic_images WHERE family = ? ORDER BY synthetic_id", [family]
    ).fetchall()
    checkpoints = sorted({c for _, c in rows})
    if len(checkpoints) > 1:  # synthetic_images replaces a family's rows at once; more than one is a bug upstream
        raise dg.Failure(f"synthetic_images[{family}] mixes checkpoints {checkpoints}: re-materialize it")
    return (checkpoints[0] if checkpoints else None), data_fingerprint([i for i, _ in rows])


def latest_evaluation(con, family: str) -> dict | None:
    """The family's most recent `evaluations` row (failures decoded), or None when it has none."""
    if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'evaluations'").fetchone()[0]:
        return None  # a warehouse from before verdicts were stored: nothing was ever judged
    df = con.execute(
        "SELECT * FROM evaluations WHERE family = ? ORDER BY created_at DESC, evaluation_id DESC LIMIT 1", [family]
    ).df()
    if df.empty:
        return None
    row = df.iloc[0].to_dict()
    row["failures"] = json.loads(row["failures"] or "[]")
    return row


def _hard_labelled_augmented(con, store, train_ids: list[str], mode: str, size: tuple[int, int]):
    """Augmented rows of labelled train images whose soft label is one class, with each row's parent index in
    `train_ids`. Mixup/cutmix rows mix classes and are left out: the scarcity arms train hard-label
    classifiers. Returns (pixels, labels, parent indices, rows left out for mixing classes)."""
    df = con.execute(
        "SELECT parent_id, label, soft_label, blob_key FROM augmented_images WHERE label IS NOT NULL ORDER BY aug_id"
    ).df()
    position = {image_id: i for i, image_id in enumerate(train_ids)}
    hard = np.array([len(json.loads(s or "{}")) <= 1 for s in df["soft_label"]], dtype=bool)
    known = df["parent_id"].map(position).notna().to_numpy(dtype=bool)
    keep = df[hard & known]
    pixels = load_arrays(store, list(keep["blob_key"]), mode, size)
    parents = keep["parent_id"].map(position).to_numpy(dtype=np.int64)
    return pixels, keep["label"].to_numpy(dtype=object), parents, int((~hard).sum())


@dg.asset(
    partitions_def=model_families,
    deps=["synthetic_images", "splits", "augmented_images", "feature_extractor"],
    pool="duckdb",
    group_name="evaluation",
    kinds={"duckdb", "python"},
    description=(
        "Fidelity and diversity (FID, KID, precision/recall, density/coverage), utility (TSTR/TRTR with a "
        "logistic regression and the CNN over seeds, TRTS, real vs +augmented vs +synthetic at 10/25/100% of "
        "the real train split) and privacy (distance to closest record against a real holdout, membership "
        "inference), per class and overall, in the feature_extractor's space. Metric rows go to "
        "`quality_metrics`, the gate's verdict to `evaluations` (one transaction); the report goes under "
        "$SYNTHDATA_HOME/reports."
    ),
)
def quality_report(
    context: dg.AssetExecutionContext,
    config: EvaluateConfig,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
    quality: QualityResource,
) -> dg.MaterializeResult:
    from synthdata.evaluate.gate import judge
    from synthdata.evaluate.metrics import overall_values
    from synthdata.evaluate.suite import EvaluationInputs, evaluate_synthetic

    family = context.partition_key
    store = image_store.store()
    with warehouse.read() as con:
        checkpoint_id, synthetic_fingerprint = synthetic_set(con, family)
        if checkpoint_id is None:
            raise dg.Failure(f"no synthetic images for {family}: materialize synthetic_images[{family}] first")
        fx_key, fx = current_feature_extractor(con, image_store)
        # Every image set is viewed in the extractor's input format, so all sides compare like for like.
        mode, size = fx.image_mode, tuple(fx.image_size)
        train, val, test = (load_split_or_empty(con, store, s, mode, size) for s in ("train", "val", "test"))
        synth = con.execute("SELECT blob_key, label FROM synthetic_images WHERE family = ? ORDER BY synthetic_id", [family]).df()
        aug_x, aug_y, aug_parent, aug_mixed = _hard_labelled_augmented(con, store, train.ids, mode, size)
    if not len(train.ids) or not len(test.ids):
        raise dg.Failure("the train and test splits need labelled images: materialize `splits` first")
    synth_x, synth_y = load_arrays(store, list(synth["blob_key"]), mode, size), synth["label"].to_numpy(dtype=object)
    inputs = EvaluationInputs(
        train_x=train.pixels, train_y=np.asarray(train.labels, dtype=object),
        val_x=val.pixels, val_y=np.asarray(val.labels, dtype=object),
        test_x=test.pixels, test_y=np.asarray(test.labels, dtype=object),
        synth_x=synth_x, synth_y=synth_y,
        aug_x=aug_x if len(aug_x) else None, aug_y=aug_y if len(aug_x) else None,
        aug_parent=aug_parent if len(aug_x) else None,
    )  # fmt: skip
    result = evaluate_synthetic(inputs, fx, seeds=config.seeds, fractions=config.fractions,
                                scarcity=config.scarcity, max_seconds=config.max_seconds)  # fmt: skip
    floors = quality.floors_for(family)
    verdict = judge(result.rows, floors)
    if aug_mixed:
        result.notes.append(f"{aug_mixed} augmented rows mix classes (mixup/cutmix) and were left out of the scarcity arms")

    evaluation_id = uuid.uuid4().hex[:16]
    created_at = dt.datetime.now(dt.UTC)
    report_path = _publish(image_store, family, evaluation_id, checkpoint_id, result, verdict, floors, created_at,
                           counts={"train": len(train.ids), "val": len(val.ids), "test": len(test.ids), "synthetic": len(synth_x),
                                   "augmented": len(aug_x)})  # fmt: skip
    metrics = pd.DataFrame(
        {"evaluation_id": evaluation_id, "family": family, "checkpoint_id": checkpoint_id,
         "metric": [r.metric for r in result.rows], "value": [float(r.value) for r in result.rows],
         "class_label": [r.class_label for r in result.rows], "spread": [r.spread for r in result.rows],
         "split": [r.split for r in result.rows], "run_id": context.run.run_id}
    )  # fmt: skip
    evaluation = pd.DataFrame([{
        "evaluation_id": evaluation_id, "family": family, "checkpoint_id": checkpoint_id, "run_id": context.run.run_id,
        "passed": bool(verdict.passed), "failures": json.dumps(list(verdict.failures)),
        "floors_json": json.dumps([{"metric": f.metric, "min": f.min, "max": f.max} for f in floors]),
        "report_path": str(report_path), "synthetic_fingerprint": synthetic_fingerprint, "feature_extractor": fx_key,
    }])  # fmt: skip
    with warehouse.connect() as con, transaction(con):
        insert_df(con, "quality_metrics", metrics)
        insert_df(con, "evaluations", evaluation)

    overall = overall_values(result.rows)
    context.log.info(f"{family}: {'PASSED' if verdict.passed else 'FAILED'} {'; '.join(verdict.failures)}; report {report_path}")
    return dg.MaterializeResult(
        metadata={
            **{k: dg.MetadataValue.float(round(overall[k], 4)) for k in HEADLINE if k in overall and np.isfinite(overall[k])},
            "passed": bool(verdict.passed),
            "failures": dg.MetadataValue.json(list(verdict.failures)),
            "evaluation_id": evaluation_id,
            "checkpoint_id": checkpoint_id,
            "feature_extractor": fx_key,
            "metric_rows": len(metrics),
            "augmented_rows_left_out": aug_mixed,
            "findings": dg.MetadataValue.md("\n".join(f"- {n}" for n in result.notes) or "_none_"),
            **{f"figure_{name}": dg.MetadataValue.md(markdown_image(png, name)) for name, png in result.figures.items()},
            "report": dg.MetadataValue.path(str(report_path)),
            "report_url": dg.MetadataValue.url(report_path.as_uri()),
        }
    )


def _publish(image_store, family, evaluation_id, checkpoint_id, result, verdict, floors, created_at, counts):
    """Render and atomically write the report; its path (stored with the verdict)."""
    from synthdata.evaluate.report import publish_report, render_report

    text = render_report(
        family=family, evaluation_id=evaluation_id, checkpoint_id=checkpoint_id, result=result, verdict=verdict,
        floors=floors, counts=counts, created_at=created_at,
    )  # fmt: skip
    return publish_report(image_store.subdir("reports", family), evaluation_id, text)


@dg.asset_check(
    asset=quality_report,
    blocking=True,
    description="Blocking quality gate: the stored verdict of the family's latest evaluation (floors per metric "
    "and family: QualityResource.floors_yaml over gate.default_floors). training_set obeys the same verdict in "
    "any run.",
)
def quality_gate(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    family = context.partition_key if context.has_partition_key else "gan"
    with warehouse.read() as con:
        latest = latest_evaluation(con, family)
    if latest is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description=f"no evaluation of {family} yet")  # fmt: skip
    failures = latest["failures"]
    return dg.AssetCheckResult(
        passed=bool(latest["passed"]),
        severity=dg.AssetCheckSeverity.ERROR,
        description=("passed every floor" if latest["passed"] else "failed floors: " + "; ".join(failures)),
        metadata={
            "evaluation_id": latest["evaluation_id"],
            "checkpoint_id": latest["checkpoint_id"],
            "failures": dg.MetadataValue.json(failures),
            "floors": dg.MetadataValue.json(json.loads(latest["floors_json"] or "[]")),
            "report": dg.MetadataValue.path(latest["report_path"] or ""),
        },
    )
