"""The Dagster instance under SYNTHDATA_HOME: its dagster.yaml, written once with the settings we rely on."""

from pathlib import Path

# DuckDB allows one writing process per file: every warehouse-writing asset is in the `duckdb` pool and the
# instance runs one step of a pool at a time, so a backfill's parallel runs queue instead of colliding.
DAGSTER_YAML = """\
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
telemetry:
  enabled: false
"""


def ensure_instance_config(dagster_home: Path) -> Path:
    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    if not path.exists():
        path.write_text(DAGSTER_YAML)
    return path


def ensure_instance(dagster_home: Path) -> Path:
    """Write dagster.yaml and create the instance's storage once.

    Creating a fresh SQLite instance from several processes at once races on its schema migrations; doing it
    here first means a backfill's parallel runs only ever open an existing instance.
    """
    import dagster as dg

    path = ensure_instance_config(dagster_home)
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        instance.get_runs(limit=1)
    return path
