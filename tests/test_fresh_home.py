"""Every documented entry point works on a fresh SYNTHDATA_HOME, and one home is one instance: a run started
from the command line (the README's command) is a run the UI shows."""

import os
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from synthdata.io.landing import export_as_drops

ROOT = Path(__file__).resolve().parents[1]
DAY = "2024-01-01"
pytestmark = pytest.mark.slow

HOLD_UNTIL = """
import sys, time
from pathlib import Path
from synthdata.io.warehouse import opened
with opened(sys.argv[1], holder="run abcd1234 (daily_ingest_job)"):
    print("held", flush=True)
    deadline = time.monotonic() + 120
    while not Path(sys.argv[2]).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
"""


def fresh_env(home: Path, landing: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "SYNTHDATA_HOME", "SYNTHDATA_LANDING")}
    return {**env, "SYNTHDATA_HOME": str(home), "SYNTHDATA_LANDING": str(landing), "GX_ANALYTICS_ENABLED": "false"}


def test_the_cli_wrapper_runs_on_the_homes_instance_and_waits_visibly_for_a_lock(tmp_path, digits):
    images, labels, names = digits
    home, landing = tmp_path / "new" / "home", tmp_path / "drops"  # neither the home nor its parent exists
    export_as_drops(images[:40], labels[:40], names, landing, [DAY], seed=0)
    env = {**fresh_env(home, landing), "SYNTHDATA_LOCK_TIMEOUT_S": "120"}
    warehouse = home / "warehouse.duckdb"
    # Someone else holds the warehouse when the step starts: the run must say so while it waits, then go on.
    release = tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_UNTIL, str(warehouse), str(release)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    log_path = tmp_path / "materialize.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dagster_project.cli", "materialize", "--select", "raw_images", "--partition", DAY],
            env=env, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 240
        while "waiting to write warehouse.duckdb: locked by run abcd1234" not in log_path.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.5)
        release.touch()
        assert proc.wait(timeout=240) == 0, log_path.read_text()[-3000:]
    holder.wait(timeout=30)

    con = duckdb.connect(str(warehouse), read_only=True)
    assert con.execute("SELECT count(*) FROM raw_images WHERE partition_date = ?", [DAY]).fetchone() == (40,)
    con.close()
    config = yaml.safe_load((home / "dagster" / "dagster.yaml").read_text())
    assert config["run_monitoring"]["enabled"] and config["concurrency"]["pools"]["granularity"] == "op"
    # The instance `make ui` opens holds that run and the partition it materialized.
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs()
        assert [r.status for r in runs] == [dg.DagsterRunStatus.SUCCESS]
        assert instance.get_materialized_partitions(dg.AssetKey("raw_images")) == {DAY}


def test_plain_dagster_asset_materialize_creates_the_home_it_needs(tmp_path, digits):
    images, labels, names = digits
    home, landing = tmp_path / "new" / "home", tmp_path / "drops"
    export_as_drops(images[:30], labels[:30], names, landing, [DAY], seed=0)
    start = time.monotonic()
    out = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "dagster_project.definitions",
         "--select", "raw_images", "--partition", DAY],
        env=fresh_env(home, landing), cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    assert "Cannot open file" not in out.stdout + out.stderr
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM raw_images").fetchone() == (30,)
    con.close()
    print(f"plain dagster asset materialize on a fresh home: {time.monotonic() - start:.1f}s")
