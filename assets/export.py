"""Stage 8, export: `training_set`, the published real + synthetic training data (behind the quality gate).

The gate is enforced here, in the asset body, from the verdict stored in `evaluations`: the blocking
`quality_gate` check only stops the run that evaluated, while this holds however `training_set` is started
(same run, alone from the UI or CLI, a backfill, a schedule or sensor).

A blocked export writes nothing: the previous export stays where it is, because it is the last data set that
did pass, and its `manifest.json` names the checkpoint and evaluation it was published from, so it never
passes for the current checkpoint. The failed materialization is the signal that it is not current.

Retries: a failed write (a full or briefly unavailable disk, a store read that failed) is retried, because the
export is idempotent: every file goes to a temporary name and is renamed into place, so a reader never sees half
of one, and a retry checks the gate again and rewrites every file from a fresh snapshot. A refusal (`refuse`) is
never retried: it follows from what is stored, so a second attempt would refuse again and only delay the alert.
"""

import math

import dagster as dg

from assets.evaluate import latest_evaluation, synthetic_set
from assets.partitions import model_families
from resources import ImageStoreResource, WarehouseResource


def refuse(description: str, metadata: dict | None = None) -> dg.Failure:
    """A refusal to publish: it depends only on what is stored, so the step's retry policy must not repeat it."""
    return dg.Failure(description=description, metadata=metadata, allow_retries=False)


def publishable(con, family: str) -> dict:
    """The evaluation that allows publishing `family`'s synthetic_images now; a refusal (`refuse`) naming why not."""
    try:
        checkpoint_id, fingerprint = synthetic_set(con, family)
    except dg.Failure as e:  # rows that mix checkpoints: stored state again, which no retry changes
        raise refuse(e.description or "synthetic_images cannot be published", dict(e.metadata)) from e
    if checkpoint_id is None:
        raise refuse(f"no synthetic images for {family}: materialize synthetic_images[{family}] first")
    latest = latest_evaluation(con, family)
    if latest is None or latest["checkpoint_id"] != checkpoint_id:
        raise refuse(
            f"no evaluation of checkpoint {checkpoint_id} yet: materialize quality_report[{family}] "
            f"(latest evaluation: {latest['evaluation_id'] + ' of ' + latest['checkpoint_id'] if latest else 'none'})"
        )
    if latest["synthetic_fingerprint"] != fingerprint:
        raise refuse(
            f"synthetic_images[{family}] changed since evaluation {latest['evaluation_id']}: materialize quality_report[{family}]"
        )
    if not latest["passed"]:
        raise refuse(
            f"quality gate failed for checkpoint {checkpoint_id} (evaluation {latest['evaluation_id']}): "
            + "; ".join(latest["failures"]),
            metadata={"failures": dg.MetadataValue.json(latest["failures"]), "evaluation_id": latest["evaluation_id"]},
        )
    return latest


@dg.asset(
    partitions_def=model_families,
    deps=["quality_report"],
    # Safe to retry a failed write: temp names then renames, from one read-only snapshot (see the module doc).
    # Refusals by the gate are raised with allow_retries=False and make exactly one attempt.
    retry_policy=dg.RetryPolicy(max_retries=2, delay=10, backoff=dg.Backoff.EXPONENTIAL),
    group_name="evaluation",
    kinds={"parquet"},
    description="Real train split (unlabeled rows with a null label) plus the family's synthetic images as one "
    "Parquet file in the Hugging Face image layout (`image` {bytes, path}, `label`, `label_name`, `source`), with "
    "labels.txt and a manifest naming the checkpoint and evaluation. Published only when the family's latest "
    "evaluation is of the current checkpoint and passed; otherwise fails naming the failed floors.",
)
def training_set(context: dg.AssetExecutionContext, warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    from synthdata.export import write_training_set

    family = context.partition_key
    # A read-only connection opens only while no process writes: the verdict and the rows are one snapshot.
    with warehouse.read() as con:
        evaluation = publishable(con, family)
        rows = con.execute(
            """SELECT i.blob_key, s.label, 'real' AS source, s.image_id AS row_id FROM splits s JOIN images i USING (image_id)
               WHERE s.split = 'train'
               UNION ALL
               SELECT blob_key, label, 'synthetic', synthetic_id FROM synthetic_images WHERE family = ?
               ORDER BY source, row_id""",
            [family],
        ).df()
        metrics = con.execute(
            "SELECT metric, value FROM quality_metrics WHERE evaluation_id = ? AND class_label IS NULL",
            [evaluation["evaluation_id"]],
        ).fetchall()
    provenance = {
        "family": family,
        "checkpoint_id": evaluation["checkpoint_id"],
        "evaluation_id": evaluation["evaluation_id"],
        "evaluated_at": str(evaluation["created_at"]),
        "metrics": {m: (v if v is not None and math.isfinite(v) else None) for m, v in metrics},
        "run_id": context.run.run_id,
    }
    exported = write_training_set(rows, image_store.store().read, image_store.subdir("exports", family), provenance)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": len(rows),
            "real_rows": exported.rows_by_source.get("real", 0),
            "synthetic_rows": exported.rows_by_source.get("synthetic", 0),
            "unlabeled_rows": exported.unlabeled,
            "checkpoint_id": evaluation["checkpoint_id"],
            "evaluation_id": evaluation["evaluation_id"],
            "path": dg.MetadataValue.path(str(exported.path)),
            "manifest": dg.MetadataValue.path(str(exported.manifest_path)),
        }
    )
