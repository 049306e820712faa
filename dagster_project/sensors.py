"""Sensors: retrain when the curated data changes; alert when a check or a run fails."""


import datetime
import json
import os
import uuid

import dagster as dg
import pandas as pd

from dagster_project.jobs import synthesis_job
from resources import AlertingResource, WarehouseResource
from synthdata.alerts import Alert
from synthdata.io.warehouse import insert_df

FAMILIES_ENV = "SYNTHDATA_FAMILIES"  # which families to retrain automatically, comma-separated (default: gan)


@dg.asset_sensor(
    asset_key=dg.AssetKey("augmented_images"),
    job=synthesis_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When the train data (augmented_images, the last curated asset) changes, retrain each configured family.",
)
def retrain_on_new_data(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    families = [f.strip() for f in os.environ.get(FAMILIES_ENV, "gan").split(",") if f.strip()]
    for family in families:
        yield dg.RunRequest(run_key=f"{asset_event.run_id}:{family}", partition_key=family)


def failures_in_run(instance: dg.DagsterInstance, run_id: str) -> list[Alert]:
    """Alerts for one finished run: each failed check evaluation, and the run's own failure."""
    alerts = []
    for entry in instance.all_logs(
        run_id, of_type={dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.RUN_FAILURE}
    ):
        event = entry.dagster_event
        if event.event_type == dg.DagsterEventType.RUN_FAILURE:
            alerts.append(Alert(
                alert_id=uuid.uuid4().hex, kind="run_failed", run_id=run_id,
                message=f"run {run_id[:8]} ({entry.job_name}) failed: {entry.message or entry.user_message}",
            ))  # fmt: skip
            continue
        evaluation = event.event_specific_data
        if evaluation.passed:
            continue
        key = evaluation.asset_key.to_user_string()
        alerts.append(Alert(
            alert_id=uuid.uuid4().hex, kind="check_failed", asset_key=key, check_name=evaluation.check_name,
            run_id=run_id,
            message=f"check {key}:{evaluation.check_name} failed ({evaluation.severity.value})"
            + (f": {evaluation.description}" if evaluation.description else ""),
        ))  # fmt: skip
    return alerts


def finished_runs_since(instance: dg.DagsterInstance, cursor: dict) -> tuple[list[str], dict]:
    """Runs that finished after the cursor (a timestamp plus the run ids already seen at that timestamp)."""
    after = cursor.get("ts", 0.0)
    seen = set(cursor.get("ids", []))
    records = instance.get_run_records(
        filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
            updated_after=datetime.datetime.fromtimestamp(after, datetime.timezone.utc) if after else None,
        ),
        ascending=True,
        order_by="update_timestamp",
        limit=200,
    )
    new = [r for r in records if r.dagster_run.run_id not in seen and r.update_timestamp.timestamp() >= after]
    if not new:
        return [], cursor
    newest = max(r.update_timestamp.timestamp() for r in new)
    at_newest = [r.dagster_run.run_id for r in records if r.update_timestamp.timestamp() == newest]
    return [r.dagster_run.run_id for r in new], {"ts": newest, "ids": at_newest}


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Records every failed asset check and failed run in the `alerts` table and the log, and posts it "
    "to SYNTHDATA_ALERT_WEBHOOK when set.",
)
def quality_alerts(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, alerting: AlertingResource
) -> dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    run_ids, new_cursor = finished_runs_since(context.instance, cursor)
    alerts = [a for run_id in run_ids for a in failures_in_run(context.instance, run_id)]
    if not alerts:
        context.update_cursor(json.dumps(new_cursor))
        return dg.SkipReason(f"{len(run_ids)} finished run(s), no failed checks or runs")
    rows = []
    for alert in alerts:
        delivered = alerting.deliver(alert)
        context.log.warning(f"ALERT {alert.message} [{delivered}]")
        rows.append({**alert.__dict__, "delivered": delivered})
    with warehouse.connect() as con:
        insert_df(con, "alerts", pd.DataFrame(rows))
    # Advance only after the rows are stored, so a lock timeout retries the same alerts next tick.
    context.update_cursor(json.dumps(new_cursor))
    return dg.SkipReason(f"recorded {len(alerts)} alert(s)")
