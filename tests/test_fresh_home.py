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
from _holder import hold_warehouse

from synthdata.io.landing import export_as_drops

ROOT = Path(__file__).resolve().parents[1]
DAY = "2024-01-01"
pytestmark = pytest.mark.slow

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
    holder = hold_warehouse(warehouse, 120, release)
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


OLD_STYLE = """\
# written by an older synthdata
concurrency:
  pools:
    default_limit: 1
run_monitoring:
  enabled: true
  poll_interval_seconds: 60
telemetry:
  enabled: true
"""


def test_an_older_dagster_yaml_gains_the_missing_nested_keys_and_keeps_the_teams_values(tmp_path, caplog):
    from dagster_project.instance import ensure_instance_config

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(OLD_STYLE)
    with caplog.at_level("WARNING", logger="dagster_project.instance"):
        path = ensure_instance_config(home)
    config = yaml.safe_load(path.read_text())
    assert config["concurrency"] == {
        "pools": {"default_limit": 1, "granularity": "op", "op_granularity_run_buffer": 4},
        "runs": {"max_concurrent_runs": 4},
    }  # fmt: skip
    assert config["run_monitoring"]["enabled"] is True and config["run_monitoring"]["poll_interval_seconds"] == 60
    assert config["run_monitoring"]["free_slots_after_run_end_seconds"] == 30
    assert config["telemetry"] == {"enabled": True} and config["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert (home / "dagster.yaml.bak").read_text() == OLD_STYLE
    (said,) = [r.getMessage() for r in caplog.records]
    assert "concurrency.pools.granularity" in said and "run_monitoring.start_timeout_seconds" in said
    assert "poll_interval_seconds" not in said and "telemetry" not in said
    # The instance Dagster opens over it holds the pool per step and monitors runs at the team's interval.
    with dg.DagsterInstance.from_config(str(home)) as instance:
        pools = instance.get_concurrency_config().pool_config
        assert (pools.pool_granularity.value, pools.default_pool_limit, pools.op_granularity_run_buffer) == ("op", 1, 4)
        assert instance.run_monitoring_enabled and instance.run_monitoring_poll_interval_seconds == 60
    # Once complete, the file is left alone.
    caplog.clear()
    written = path.read_bytes()
    ensure_instance_config(home)
    assert path.read_bytes() == written and caplog.records == []


def test_an_older_run_queue_limit_is_left_for_the_team_to_move_and_the_instance_still_loads(tmp_path, caplog):
    """Dagster refuses `concurrency` beside `run_queue: max_concurrent_runs`: adding it would break the home."""
    from dagster_project.instance import ensure_instance_config

    home = tmp_path / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("run_queue:\n  max_concurrent_runs: 2\n")
    with caplog.at_level("WARNING", logger="dagster_project.instance"):
        config = yaml.safe_load(ensure_instance_config(home).read_text())
    assert "concurrency" not in config and config["run_queue"] == {"max_concurrent_runs": 2}
    assert config["run_monitoring"]["enabled"] is True
    assert any("concurrency not added" in r.getMessage() and "concurrency.runs" in r.getMessage() for r in caplog.records)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs(limit=1) == [] and instance.run_monitoring_enabled
