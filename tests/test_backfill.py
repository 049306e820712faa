"""Backfills at the size teams use, through the daemon and the API the UI calls; what follows a drop runs by
declarative automation; retraining waits for really new data."""

import os
import sys
from datetime import date, timedelta

import dagster as dg
import duckdb
import pytest

from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths
from _webserver import graphql, serving, wait_until

DAYS = [str(date(2024, 2, 1) + timedelta(days=i)) for i in range(30)]
BROKEN = DAYS[14]
PER_DAY = 8

LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
RETRY = """mutation($id: String!) { reexecutePartitionBackfill(reexecutionParams: {parentRunId: $id, strategy: FROM_FAILURE}) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
  status assetBackfillData { assetBackfillStatuses { ... on AssetPartitionsStatusCounts {
    assetKey { path } numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed } } } } } }"""


def data(base: str, query: str, variables: dict) -> dict:
    body = graphql(base, query, variables)
    assert "errors" not in body, body
    return body["data"]


def wait_for_backfill(base: str, backfill_id: str, timeout_s: float) -> dict:
    def finished() -> dict | None:
        backfill = data(base, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
        return None if backfill["status"] in ("REQUESTED", "CANCELING", "FAILING") else backfill

    return wait_until(finished, timeout_s, f"backfill {backfill_id} did not finish", every_s=2)


@pytest.mark.slow
def test_a_30_day_backfill_through_the_daemon_queues_on_the_pool_and_reruns_a_failed_day_alone(tmp_path, digits):
    images, labels, names = digits
    home = tmp_path / "home"
    paths = SynthdataPaths(home=home, landing=home / "landing").ensure()
    export_as_drops(images[: PER_DAY * 30], labels[: PER_DAY * 30], names, paths.landing, DAYS, seed=3)
    expected = {d: len(list((paths.landing / d).rglob("*.png"))) for d in DAYS}
    # One day's folder points outside the landing area: its ingest refuses it and the partition fails.
    (paths.landing / BROKEN).rename(tmp_path / "outside")
    (paths.landing / BROKEN).symlink_to(tmp_path / "outside")

    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(SYNTHDATA_HOME=str(home), GX_ANALYTICS_ENABLED="false")
    # What `make ui` runs: the webserver and the daemon over this home's instance.
    with serving([sys.executable, "-m", "dagster_project.cli", "dev"], env, tmp_path / "dev.log") as base:
        params = {"partitionNames": DAYS, "assetSelection": [{"path": ["raw_images"]}], "title": "30 days"}
        launched = data(base, LAUNCH, {"params": params})["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        backfill = wait_for_backfill(base, launched["backfillId"], 1500)
        (counts,) = backfill["assetBackfillData"]["assetBackfillStatuses"]
        assert backfill["status"] == "COMPLETED_FAILED"
        assert (counts["numPartitionsTargeted"], counts["numPartitionsMaterialized"], counts["numPartitionsFailed"]) == (30, 29, 1)

        # Fix the day, then re-run only what failed (the UI's "Re-execute" of the backfill, from failure).
        (paths.landing / BROKEN).unlink()
        (tmp_path / "outside").rename(paths.landing / BROKEN)
        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            runs_before = len(instance.get_runs())
        retried = data(base, RETRY, {"id": launched["backfillId"]})["reexecutePartitionBackfill"]
        assert retried["__typename"] == "LaunchBackfillSuccess", retried
        backfill = wait_for_backfill(base, retried["backfillId"], 300)
        (counts,) = backfill["assetBackfillData"]["assetBackfillStatuses"]
        assert backfill["status"] == "COMPLETED_SUCCESS" and counts["numPartitionsTargeted"] == 1

        with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
            new_runs = instance.get_runs()[: len(instance.get_runs()) - runs_before]
            ingest_runs = [r for r in new_runs if r.tags.get("dagster/backfill") == retried["backfillId"]]
            assert [r.tags.get("dagster/partition") for r in ingest_runs] == [BROKEN]
            assert instance.get_materialized_partitions(dg.AssetKey("raw_images")) >= set(DAYS)
            messages = [e.message or "" for r in instance.get_runs() for e in instance.all_logs(r.run_id)]
        locks = [m for m in messages if "Could not set lock" in m or "Conflicting lock" in m or "waiting to write" in m]
        assert locks == []  # the pool queued the writers: not one waited on DuckDB's lock

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    per_day = dict(con.execute("SELECT partition_date::VARCHAR, count(*) FROM raw_images GROUP BY 1").fetchall())
    dupes = con.execute("SELECT count(*) FROM (SELECT source_path FROM raw_images GROUP BY 1 HAVING count(*) > 1)").fetchone()[0]
    con.close()
    assert per_day == expected and dupes == 0 and sum(per_day.values()) == PER_DAY * 30


@pytest.mark.slow
def test_what_follows_a_drop_is_automated_and_retraining_waits_for_really_new_data(tmp_path, digits, monkeypatch):
    """After a full ingest (what `make demo` leaves), automation requests nothing and the retrain sensor only
    takes its baseline; a new day's raw_images brings images..augmented_images by AutomationCondition; the
    changed train split retrains once, and not again within the interval or for the same data."""
    import dagster as dg

    from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, FRESHNESS_CHECKS, build_resources
    from dagster_project.jobs import daily_ingest_job
    from dagster_project.schedules import FOLLOWS_A_DROP, automation_sensor, with_automation
    from dagster_project.sensors import retrain_on_new_data
    from synthdata.io.paths import SynthdataPaths

    images, labels, names = digits
    paths = SynthdataPaths(home=tmp_path / "home", landing=tmp_path / "home" / "landing").ensure()
    export_as_drops(images[:300], labels[:300], names, paths.landing, ["2024-03-01", "2024-03-02"], seed=0)
    resources = build_resources(paths)
    defs = dg.Definitions(
        assets=with_automation(ALL_ASSETS), asset_checks=[*ALL_CHECKS, *FRESHNESS_CHECKS], jobs=[daily_ingest_job],
        sensors=[automation_sensor], resources=resources,
    )  # fmt: skip
    monkeypatch.setenv("SYNTHDATA_FAMILIES", "gan,vae")
    monkeypatch.setenv("SYNTHDATA_RETRAIN_INTERVAL_HOURS", "0")

    def requested(result) -> set[str]:
        return {r.key.to_user_string() for r in result.results if r.true_subset.size and isinstance(r.key, dg.AssetKey)}

    def retrain_tick(cursor):
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
            result = retrain_on_new_data(ctx)
        return [r.partition_key for r in result.run_requests], result.cursor, result.skip_reason.skip_message if result.skip_reason else ""

    with dg.instance_for_test() as instance:
        assert defs.resolve_job_def("daily_ingest_job").execute_in_process(instance=instance, partition_key="2024-03-01").success
        auto = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert requested(auto) == set()  # up to date: opening the UI after the demo runs nothing
        families, cursor, why = retrain_tick(None)
        assert families == [] and "gan: baseline" in why
        families, cursor, why = retrain_tick(cursor)
        assert families == [] and "gan: train data unchanged" in why

        # The next day's drop arrives through any entry point that materializes raw_images alone.
        ingest = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key="2024-03-02", asset_selection=[dg.AssetKey("raw_images")]
        )
        assert ingest.success
        auto = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=auto.cursor)
        assert requested(auto) == set(FOLLOWS_A_DROP)
        follow = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey(k) for k in FOLLOWS_A_DROP]
        )
        assert follow.success
        auto = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=auto.cursor)
        assert requested(auto) == set()  # followed once, not again

        families, cursor, _ = retrain_tick(cursor)
        assert families == ["gan", "vae"]  # new train images: each family retrains once
        monkeypatch.setenv("SYNTHDATA_RETRAIN_INTERVAL_HOURS", "6")
        # Splits re-materialized over the same data (e.g. by automation): same fingerprint, no retrain.
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[dg.AssetKey("splits")]
        ).success
        families, cursor, why = retrain_tick(cursor)
        assert families == [] and "gan: train data unchanged" in why


def test_retraining_is_debounced_per_family():
    from dagster_project.sensors import retrain_decisions

    hour = 3600.0
    due, state, _ = retrain_decisions({}, ["gan"], "fp0", 100, now=0.0, interval_s=6 * hour, min_new=10)
    assert due == [] and state["gan"]["fp"] == "fp0"  # the first sight is the baseline
    due, state, why = retrain_decisions(state, ["gan"], "fp1", 105, now=7 * hour, interval_s=6 * hour, min_new=10)
    assert due == [] and why == ["gan: 5 new train images (< 10)"]
    due, state, _ = retrain_decisions(state, ["gan"], "fp2", 130, now=8 * hour, interval_s=6 * hour, min_new=10)
    assert due == ["gan"]
    due, state, why = retrain_decisions(state, ["gan"], "fp3", 200, now=9 * hour, interval_s=6 * hour, min_new=10)
    assert due == [] and why == ["gan: retrained 1.0 h ago (interval 6 h)"]
    due, _, _ = retrain_decisions(state, ["gan"], "fp3", 200, now=14.5 * hour, interval_s=6 * hour, min_new=10)
    assert due == ["gan"]  # the change waited out the interval, then retrains once
