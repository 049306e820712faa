"""`make ui` serves the same instance: the webserver shows the graph, the partitions and the check results."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.instance import ensure_instance
from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

QUERY = """
{
  assetNodes { assetKey { path } }
  raw: assetOrError(assetKey: {path: ["raw_images"]}) {
    ... on Asset {
      assetMaterializations(limit: 10) { partition runId }
      definition { partitionKeysByDimension { name } }
    }
  }
  checks: assetNodeOrError(assetKey: {path: ["splits"]}) {
    ... on AssetNode {
      assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { status } } } }
    }
  }
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def test_webserver_shows_what_the_pipeline_materialized(tmp_path, digits, monkeypatch):
    images, labels, names = digits
    paths = SynthdataPaths(home=tmp_path / "home", landing=tmp_path / "home" / "landing").ensure()
    export_as_drops(images[:150], labels[:150], names, paths.landing, ["2024-01-01"], seed=0)
    ensure_instance(paths.dagster_home)
    from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS, build_resources
    from dagster_project.jobs import daily_ingest_job

    defs = dg.Definitions(assets=ALL_ASSETS, asset_checks=ALL_CHECKS, jobs=[daily_ingest_job], resources=build_resources(paths))
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        run = defs.resolve_job_def("daily_ingest_job").execute_in_process(instance=instance, partition_key="2024-01-01")
    assert run.success

    port = free_port()
    env = {**os.environ, "SYNTHDATA_HOME": str(paths.home), "DAGSTER_HOME": str(paths.dagster_home)}
    log = open(tmp_path / "webserver.log", "w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
         "-m", "dagster_project.definitions"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "webserver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "webserver did not start"
                time.sleep(0.5)
        data = graphql(port, QUERY)["data"]
        keys = {"/".join(n["assetKey"]["path"]) for n in data["assetNodes"]}
        assert {"raw_images", "images", "splits", "augmented_images", "generator", "synthetic_images",
                "quality_report", "training_set"} <= keys  # fmt: skip
        mats = data["raw"]["assetMaterializations"]
        assert [(m["partition"], m["runId"]) for m in mats] == [("2024-01-01", run.run_id)]
        checks = {c["name"]: c["executionForLatestMaterialization"]["status"]
                  for c in data["checks"]["assetChecksOrError"]["checks"]}  # fmt: skip
        assert checks == {"splits_no_leak": "SUCCEEDED", "splits_leakage_audit": "SUCCEEDED"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
