"""Sensors: retrain when the curated data really changed; alert once per failure and again when it is fixed."""


import datetime
import json
import os
import time
from pathlib import Path

import dagster as dg

from dagster_project.jobs import synthesis_job
from resources import AlertingResource, WarehouseResource
from synthdata.alerts import Alert, deliver_due, new_id, next_due, open_alerts, record_failure, record_pass
from synthdata.io.warehouse import WarehouseLocked, transaction

FAMILIES_ENV = "SYNTHDATA_FAMILIES"  # which families to retrain automatically, comma-separated (default: gan)
RETRAIN_INTERVAL_ENV = "SYNTHDATA_RETRAIN_INTERVAL_HOURS"  # at most one retrain per family per interval (6)
RETRAIN_MIN_NEW_ENV = "SYNTHDATA_RETRAIN_MIN_NEW_IMAGES"  # train images added since the last retrain (1)
# A sensor tick must end well inside Dagster's 60 s tick timeout: waits on the warehouse lock are short, and
# a busy warehouse means "try again next tick", never a long wait.
LOCK_WAIT_S = 5.0

# ---------------------------------------------------------------------------------------------------------
# Retraining
# ---------------------------------------------------------------------------------------------------------

# What the generator trains on by default: the train split's images and labels. A re-materialization of the
# same data (e.g. automation after `make demo`) leaves this fingerprint unchanged and so never retrains.
TRAIN_DATA_SQL = """
SELECT count(*), coalesce(md5(string_agg(image_id || ':' || coalesce(label, ''), ',' ORDER BY image_id)), '')
FROM splits WHERE split = 'train'
"""


def retrain_decisions(
    state: dict, families: list[str], fingerprint: str, n_train: int, now: float, interval_s: float, min_new: int
) -> tuple[list[str], dict, list[str]]:
    """Which families to retrain now: (families, new state, reasons for the rest).

    A family's first sight of the data is its baseline (the data present when the sensor starts, e.g. what
    `make demo` trained on); later, it retrains when the fingerprint changed, at least `min_new` train images
    were added since its last retrain, and `interval_s` has passed since then.
    """
    state, due, notes = dict(state), [], []
    for family in families:
        last = state.get(family)
        if last is None:
            state[family] = {"fp": fingerprint, "n": n_train, "at": 0.0}
            notes.append(f"{family}: baseline {n_train} train images")
        elif last["fp"] == fingerprint:
            notes.append(f"{family}: train data unchanged")
        elif n_train - last["n"] < min_new:
            notes.append(f"{family}: {n_train - last['n']} new train images (< {min_new})")
        elif now - last["at"] < interval_s:
            notes.append(f"{family}: retrained {(now - last['at']) / 3600:.1f} h ago (interval {interval_s / 3600:g} h)")
        else:
            state[family] = {"fp": fingerprint, "n": n_train, "at": now}
            due.append(family)
    return due, state, notes


@dg.sensor(
    job=synthesis_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Retrains each family in SYNTHDATA_FAMILIES when the train split really changed (new fingerprint, "
    "at least SYNTHDATA_RETRAIN_MIN_NEW_IMAGES more images), at most once per SYNTHDATA_RETRAIN_INTERVAL_HOURS.",
)
def retrain_on_new_data(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    families = [f.strip() for f in os.environ.get(FAMILIES_ENV, "gan").split(",") if f.strip()]
    if not Path(warehouse.database).exists():
        return dg.SkipReason("no warehouse yet")
    try:
        with warehouse.read(timeout_s=LOCK_WAIT_S) as con:
            if not con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'splits'").fetchone()[0]:
                return dg.SkipReason("no splits yet")
            n_train, fingerprint = con.execute(TRAIN_DATA_SQL).fetchone()
    except WarehouseLocked:
        return dg.SkipReason("warehouse busy; will look again next tick")
    due, state, notes = retrain_decisions(
        json.loads(context.cursor) if context.cursor else {}, families, fingerprint, int(n_train), time.time(),
        float(os.environ.get(RETRAIN_INTERVAL_ENV, "6")) * 3600, int(os.environ.get(RETRAIN_MIN_NEW_ENV, "1")),
    )  # fmt: skip
    requests = [
        dg.RunRequest(run_key=f"{family}:{fingerprint[:16]}", partition_key=family,
                      tags={"synthdata/train_data": fingerprint[:16], "synthdata/train_images": str(n_train)})
        for family in due
    ]  # fmt: skip
    return dg.SensorResult(
        run_requests=requests, cursor=json.dumps(state), skip_reason=None if requests else "; ".join(notes)
    )


# ---------------------------------------------------------------------------------------------------------
# Alerts
# ---------------------------------------------------------------------------------------------------------


def _key_part(partition: str | None) -> str:
    """A partition's part of an alert's dedup key (one alert per job or check and partition)."""
    return f":{partition}" if partition else ""


def _shown_part(partition: str | None) -> str:
    """A partition as alert messages show it."""
    return f" [{partition}]" if partition else ""


def outcomes_in_run(instance: dg.DagsterInstance, run_id: str) -> tuple[list[Alert], list[tuple[str, str]]]:
    """A finished run's failures (failed checks, the run's own failure) and passes ((dedup_key, what) of each
    passing check, and of the run when it succeeded): passes resolve open alerts of the same key."""
    run = instance.get_run_by_id(run_id)
    partition = run.tags.get("dagster/partition") if run else None
    job_key = f"run:{run.job_name}{_key_part(partition)}" if run else f"run:{run_id}"
    failures: list[Alert] = []
    passes: list[tuple[str, str]] = []
    for entry in instance.all_logs(
        run_id, of_type={dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.RUN_FAILURE}
    ):
        event = entry.dagster_event
        if event.event_type == dg.DagsterEventType.RUN_FAILURE:
            failures.append(Alert(
                alert_id=new_id(), kind="run_failed", run_id=run_id, dedup_key=job_key,
                message=f"run {run_id[:8]} ({entry.job_name}{_shown_part(partition)}) failed: "
                f"{entry.message or entry.user_message}",
            ))  # fmt: skip
            continue
        evaluation = event.event_specific_data
        key = evaluation.asset_key.to_user_string()
        check_partition = getattr(evaluation, "partition", None)
        dedup = f"check:{key}:{evaluation.check_name}{_key_part(check_partition)}"
        what = f"check {key}:{evaluation.check_name}{_shown_part(check_partition)}"
        if evaluation.passed:
            passes.append((dedup, what))
            continue
        failures.append(Alert(
            alert_id=new_id(), kind="check_failed", asset_key=key, check_name=evaluation.check_name,
            run_id=run_id, dedup_key=dedup,
            message=f"{what} failed ({evaluation.severity.value})"
            + (f": {evaluation.description}" if evaluation.description else ""),
        ))  # fmt: skip
    if run is not None and run.status == dg.DagsterRunStatus.SUCCESS:
        passes.append((job_key, f"job {run.job_name}{_shown_part(partition)}"))
    return failures, passes


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
        return [], {**cursor}
    newest = max(r.update_timestamp.timestamp() for r in new)
    at_newest = [r.dagster_run.run_id for r in records if r.update_timestamp.timestamp() == newest]
    return [r.dagster_run.run_id for r in new], {**cursor, "ts": newest, "ids": at_newest}


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="One alert per failed check or run (dedup key in `alerts`), a resolved message when it passes again; "
    "delivered to SYNTHDATA_ALERT_WEBHOOK and/or SMTP email with retries, within a per-tick time budget.",
)
def quality_alerts(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource, alerting: AlertingResource
) -> dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    run_ids, new_cursor = finished_runs_since(context.instance, cursor)
    failures: list[Alert] = []
    passes: list[tuple[str, str, str]] = []
    for run_id in run_ids:
        run_failures, run_passes = outcomes_in_run(context.instance, run_id)
        failures += run_failures
        passes += [(key, run_id, what) for key, what in run_passes]
    known_open = cursor.get("open")  # None: not known yet, ask the warehouse
    passes = [p for p in passes if known_open is None or p[0] in known_open]
    retry_due = cursor.get("next_due") is not None and cursor["next_due"] <= time.time()
    if not failures and not passes and not retry_due and known_open is not None:
        context.update_cursor(json.dumps(new_cursor))
        return dg.SkipReason(f"{len(run_ids)} finished run(s): no new failures, nothing resolved or to retry")
    try:
        with warehouse.connect(timeout_s=LOCK_WAIT_S) as con:
            with transaction(con):
                opened = [a for a in failures if record_failure(con, a)]
                resolved = [r for key, run_id, what in passes if (r := record_pass(con, key, run_id, what))]
            # Stored: advance past these runs now, so a later delivery problem never records them twice.
            for alert in opened:
                context.log.warning(f"ALERT {alert.message}")
            for alert in resolved:
                context.log.info(f"RESOLVED {alert.message}")
            report = deliver_due(
                con, alerting.channels(), alerting.tick_budget_s, alerting.timeout_s, alerting.retry_policy()
            )
            for alert, outcome in report.sent:
                context.log.info(f"{alert.kind} {alert.dedup_key}: {outcome}")
            upcoming = next_due(con)
            new_cursor["open"] = sorted(k for k, _ in open_alerts(con) if k)
    except WarehouseLocked as e:
        return dg.SkipReason(f"warehouse busy, nothing recorded; will retry next tick ({e})")
    new_cursor["next_due"] = upcoming.replace(tzinfo=datetime.timezone.utc).timestamp() if upcoming else None
    context.update_cursor(json.dumps(new_cursor))
    folded = len(failures) - len(opened)
    return dg.SkipReason(
        f"{len(opened)} new alert(s), {folded} repeat(s) of open ones, {len(resolved)} resolved, "
        f"{len(report.sent)} delivery attempt(s), {report.deferred} deferred to the next tick"
    )
