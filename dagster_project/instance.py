"""The Dagster instance under SYNTHDATA_HOME: its dagster.yaml, written once with the settings we rely on."""

from pathlib import Path

# DuckDB allows one writing process per file: every warehouse-writing asset is in the `duckdb` pool and the
# instance runs one step of a pool at a time, so a backfill's parallel runs queue instead of colliding. The
# pool is held per step (`granularity: op`), not per run: a run's checks and reads overlap the next run's write,
# and up to 4 runs may start while their writing step waits for the slot (the default, 0, launched one at a time).
# Run monitoring marks a run whose worker died as failed (so `quality_alerts` reports it) and frees the pool
# slot it held; run retries re-launch such a run once when its job opts in (`dagster/max_retries` tag) but
# never re-run a step that failed on its own (asset retry policies decide that, where a retry is safe).
DAGSTER_YAML = """\
concurrency:
  pools:
    default_limit: 1
    granularity: op
    op_granularity_run_buffer: 4
  runs:
    max_concurrent_runs: 4
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  poll_interval_seconds: 30
  free_slots_after_run_end_seconds: 30
run_retries:
  enabled: true
  max_retries: 0
  retry_on_asset_or_op_failure: false
telemetry:
  enabled: false
"""


def ensure_instance_config(dagster_home: Path) -> Path:
    """Write dagster.yaml, or add the sections a newer release relies on to an existing one (a team's own
    settings are kept: only top-level sections it lacks are added)."""
    import yaml

    from synthdata.io.atomic import write_atomic

    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    if not path.exists():
        write_atomic(path, DAGSTER_YAML.encode())
        return path
    current = yaml.safe_load(path.read_text()) or {}
    missing = {k: v for k, v in yaml.safe_load(DAGSTER_YAML).items() if k not in current}
    if missing:
        write_atomic(path, yaml.safe_dump({**current, **missing}, sort_keys=False).encode())
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
