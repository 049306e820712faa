"""A run whose worker dies is noticed: marked failed and alerted, with the UI and the daemon running as `make ui`
runs them (the local run launcher's code server sees its child die and fails the run; `quality_alerts` sends it)."""

import os
import re
import signal
import sys

import dagster as dg
import duckdb
import pytest
from _holder import hold_warehouse
from _webserver import graphql, serving, wait_until  # holds the warehouse (the run's ingest waits) until a file appears

from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths

DAY = "2024-03-01"
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""

_PID = re.compile(r"Started process for run \(pid: (\d+)\)")


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid the run's worker reported when it started."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if match := _PID.search(entry.message or ""):
            return int(match.group(1))
    return None


def started_worker(instance_dir: str) -> tuple[str, int] | None:
    """(run id, worker pid) of the started run, once its worker has reported its pid."""
    with dg.DagsterInstance.from_config(instance_dir) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        if runs and (pid := worker_pid(instance, runs[0].run_id)):
            return runs[0].run_id, pid
    return None


def run_status(instance_dir: str, run_id: str) -> dg.DagsterRun:
    with dg.DagsterInstance.from_config(instance_dir) as instance:
        return instance.get_run_by_id(run_id)


@pytest.mark.slow
def test_a_killed_run_worker_is_marked_failed_and_alerted(tmp_path, digits):
    images, labels, names = digits
    home = tmp_path / "home"
    paths = SynthdataPaths(home=home, landing=home / "landing").ensure()
    export_as_drops(images[:40], labels[:40], names, paths.landing, [DAY], seed=0)
    release = tmp_path / "release"
    holder = hold_warehouse(paths.warehouse, 300, release)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(SYNTHDATA_HOME=str(home), GX_ANALYTICS_ENABLED="false", SYNTHDATA_LOCK_TIMEOUT_S="300")
    instance_dir = str(home / "dagster")
    try:
        with serving([sys.executable, "-m", "dagster_project.cli", "dev"], env, tmp_path / "dev.log") as base:
            params = {"partitionNames": [DAY], "assetSelection": [{"path": ["raw_images"]}], "title": "one day"}
            launched = graphql(base, LAUNCH, {"params": params})["data"]["launchPartitionBackfill"]
            assert launched["__typename"] == "LaunchBackfillSuccess", launched
            run_id, pid = wait_until(lambda: started_worker(instance_dir), 240, "no run worker started")
            os.kill(pid, signal.SIGKILL)  # out of memory, a reboot, kill -9: the worker is gone mid-run
            run = wait_until(
                lambda: (r := run_status(instance_dir, run_id)).status == dg.DagsterRunStatus.FAILURE and r,
                180, "the dead run was not marked failed",
            )  # fmt: skip
            assert run.status == dg.DagsterRunStatus.FAILURE
            release.touch()  # the warehouse is free again: the alert can be recorded

            def alerted():
                try:
                    con = duckdb.connect(str(paths.warehouse), read_only=True)
                except duckdb.IOException:
                    return None
                try:
                    return con.execute("SELECT kind, message FROM alerts WHERE run_id = ?", [run_id]).fetchall()
                except duckdb.CatalogException:
                    return None
                finally:
                    con.close()

            rows = wait_until(alerted, 180, "the dead run was not alerted", every_s=2)
            assert [kind for kind, _ in rows] == ["run_failed"] and run_id[:8] in rows[0][1], rows
    finally:
        release.touch()
        holder.wait(timeout=30)
