"""One warehouse connection factory: settings on every connection, read-only readers, writers in the pool,
and a held lock that is reported (who holds it, while waiting) instead of ~100 s of silent retries."""

import inspect
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from _holder import hold_warehouse
from resources import WarehouseResource
from synthdata.io.warehouse import WarehouseLocked, connect, opened

def settings(con: duckdb.DuckDBPyConnection) -> tuple[str, int]:
    return con.execute("SELECT current_setting('memory_limit'), current_setting('threads')").fetchone()


def test_every_connection_gets_the_configured_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHDATA_DUCKDB_MEMORY", "96MB")
    monkeypatch.setenv("SYNTHDATA_DUCKDB_THREADS", "1")
    warehouse = WarehouseResource(database=str(tmp_path / "home" / "warehouse.duckdb"))
    with warehouse.connect() as con:  # a fresh home: the folder and the schema are created
        memory, threads = settings(con)
        assert threads == 1 and memory.endswith("MiB") and 85 <= float(memory.split()[0]) <= 96
    with warehouse.read() as con:
        assert settings(con) == (memory, threads)
    with dg.build_resources({"warehouse": WarehouseResource(database=warehouse.database, memory_limit="64MB", threads=2)}) as res:
        with res.warehouse.connect() as con:
            assert settings(con)[1] == 2 and float(settings(con)[0].split()[0]) <= 64


def test_readers_cannot_write(tmp_path):
    warehouse = WarehouseResource(database=str(tmp_path / "warehouse.duckdb"))
    with warehouse.connect():
        pass
    with warehouse.read() as con:
        assert con.execute("SELECT count(*) FROM alerts").fetchone() == (0,)
        with pytest.raises(duckdb.InvalidInputException, match="read-only"):
            con.execute("INSERT INTO alerts (alert_id, kind) VALUES ('a', 'check_failed')")


def test_a_reader_in_the_writers_process_shares_its_connection_settings(tmp_path):
    # DuckDB refuses a second configuration of one file per process; the reader falls back instead of failing.
    path = tmp_path / "warehouse.duckdb"
    with opened(path) as writer, opened(path, read_only=True) as reader:
        writer.execute("INSERT INTO alerts (alert_id, kind) VALUES ('a', 'check_failed')")
        assert reader.execute("SELECT count(*) FROM alerts").fetchone() == (1,)


def test_a_held_lock_fails_fast_naming_the_run_that_holds_it(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    holder = hold_warehouse(path, 30)
    heard: list[str] = []
    try:
        start = time.monotonic()
        with pytest.raises(WarehouseLocked, match=r"locked by run abcd1234 \(daily_ingest_job\) \(PID \d+"):
            connect(path, timeout_s=2.5, on_wait=heard.append, wait_log_every_s=1.0)
        assert time.monotonic() - start < 6
        assert len(heard) >= 2 and all("run abcd1234" in m for m in heard)
    finally:
        holder.kill()
        holder.wait()
    # The holder died without removing its note: nobody holds the file now, and the stale note misleads no one.
    assert Path(str(path) + ".holder.json").exists()
    connect(path, timeout_s=5).close()


def test_a_reader_waits_visibly_for_the_writer_then_opens(tmp_path):
    path = tmp_path / "warehouse.duckdb"
    holder = hold_warehouse(path, 3)
    heard: list[str] = []
    try:
        con = connect(path, read_only=True, timeout_s=30, on_wait=heard.append, wait_log_every_s=1.0)
        con.close()
        assert heard and "abcd1234" in heard[0]
    finally:
        holder.wait(timeout=30)


def test_every_warehouse_writer_is_in_the_pool_and_every_check_only_reads():
    from dagster_project.definitions import ALL_ASSETS, ALL_CHECKS

    writers = [a for a in ALL_ASSETS if "warehouse.connect(" in inspect.getsource(a.op.compute_fn.decorated_fn)]
    assert {a.key.to_user_string() for a in writers} >= {"raw_images", "images", "splits", "augmented_images", "generator"}
    assert all(a.op.pool == "duckdb" for a in writers), [a.key for a in writers if a.op.pool != "duckdb"]
    for check in ALL_CHECKS:
        source = inspect.getsource(check.op.compute_fn.decorated_fn)
        assert "warehouse.connect(" not in source, f"check {check.op.name} opens a writer connection"


def test_steps_retry_only_where_a_retry_is_safe_and_dead_runs_are_monitored(tmp_path):
    from dagster_project.definitions import ALL_ASSETS, defs
    from dagster_project.instance import ensure_instance_config

    policies = {a.key.to_user_string(): a.op.retry_policy for a in ALL_ASSETS}
    assert policies["raw_images"].max_retries == 2  # re-ingest replaces the partition in one transaction
    assert all(policies[k] is None for k in ("generator", "synthetic_images", "quality_report"))
    assert defs.resolve_job_def("daily_ingest_job").tags["dagster/max_retries"] == "1"
    config = yaml.safe_load(ensure_instance_config(tmp_path / "dagster").read_text())
    assert config["run_monitoring"]["enabled"] and config["run_retries"] == {
        "enabled": True, "max_retries": 0, "retry_on_asset_or_op_failure": False,
    }  # fmt: skip
    # An older dagster.yaml keeps its settings and gains the sections it lacked.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "dagster.yaml").write_text("telemetry:\n  enabled: true\n")
    config = yaml.safe_load(ensure_instance_config(tmp_path / "old").read_text())
    assert config["telemetry"] == {"enabled": True} and config["run_monitoring"]["enabled"]
