"""A backfill runs partitions in parallel processes: no DuckDB lock error, no duplicate rows."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dagster_project.instance import ensure_instance
from synthdata.io.landing import export_as_drops
from synthdata.io.paths import SynthdataPaths

ROOT = Path(__file__).resolve().parents[1]
DATES = ["2024-02-01", "2024-02-02", "2024-02-03"]

pytestmark = pytest.mark.slow


def materialize_concurrently(env: dict, logs: Path) -> list[str]:
    dagster = str(Path(sys.executable).parent / "dagster")
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    for day in DATES:
        # Log to files, not pipes: a run waiting for the pool slot must never wait on a full pipe too.
        with open(logs / f"{day}.log", "w") as log:
            procs.append(subprocess.Popen(
                [dagster, "asset", "materialize", "-m", "dagster_project.definitions", "--select", "raw_images", "--partition", day],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            ))  # fmt: skip
    for p in procs:
        p.wait(timeout=600)
    outputs = [(logs / f"{day}.log").read_text() for day in DATES]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]
    return outputs


def test_parallel_partitions_neither_collide_nor_duplicate(tmp_path, digits):
    images, labels, names = digits
    paths = SynthdataPaths(home=tmp_path / "home", landing=tmp_path / "home" / "landing").ensure()
    manifest = export_as_drops(images[:300], labels[:300], names, paths.landing, DATES, seed=1, corrupt_files=3)
    ensure_instance(paths.dagster_home)
    env = {**os.environ, "SYNTHDATA_HOME": str(paths.home), "DAGSTER_HOME": str(paths.dagster_home),
           "GX_ANALYTICS_ENABLED": "false"}  # fmt: skip

    for attempt in range(1):
        outputs = materialize_concurrently(env, tmp_path / f"logs{attempt}")
        assert not any("Could not set lock" in out or "Conflicting lock" in out for out in outputs)
        con = duckdb.connect(str(paths.warehouse), read_only=True)
        try:
            per_day = dict(con.execute("SELECT partition_date::VARCHAR, count(*) FROM raw_images GROUP BY 1").fetchall())
            dupes = con.execute(
                "SELECT count(*) FROM (SELECT source_path FROM raw_images GROUP BY 1 HAVING count(*) > 1)"
            ).fetchone()[0]
            rejected = con.execute("SELECT count(*) FROM rejected_images").fetchone()[0]
        finally:
            con.close()
        expected = {d: len([f for f in manifest.files[d] if f not in manifest.corrupt]) for d in DATES}
        assert per_day == expected and dupes == 0 and rejected == 3
