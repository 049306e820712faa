"""The Dagster instance under SYNTHDATA_HOME: its dagster.yaml, written once with the settings we rely on."""

import logging
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)

# DuckDB allows one writing process per file: every warehouse-writing asset is in the `duckdb` pool and the
# instance runs one step of a pool at a time, so a backfill's parallel runs queue instead of colliding. The
# pool is held per step (`granularity: op`), not per run: a run's checks and reads overlap the next run's write,
# and up to 4 runs may start while their writing step waits for the slot (the default, 0, launched one at a time).
# Run monitoring fails runs that never start or never finish cancelling and frees the pool slots of failed
# runs (a run whose worker died is failed by the code server that launched it, then `quality_alerts` reports
# it); run retries re-launch such a run once when its job opts in (`dagster/max_retries` tag) but never
# re-run a step that failed on its own (asset retry policies decide that, where a retry is safe).
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


def missing_settings(current: dict, ours: dict, leave_out: Collection[str] = (), prefix: str = "") -> tuple[dict, list[str]]:
    """`current` with every key of `ours` that it lacks added, at any depth, but for the dotted names in
    `leave_out`; and the dotted names of the keys added.

    A value already in `current` always wins, even one of another type (a team that wrote `run_monitoring:
    {enabled: false}` keeps it off); an empty section (`concurrency:` with nothing under it) gains our keys.
    """
    merged = dict(current)
    added: list[str] = []
    for key, value in ours.items():
        name = f"{prefix}{key}"
        if name in leave_out:
            continue
        if key not in current or (current[key] is None and isinstance(value, dict)):
            merged[key] = value
            added.append(name)
        elif isinstance(value, dict) and isinstance(current[key], dict):
            merged[key], deeper = missing_settings(current[key], value, leave_out, prefix=f"{name}.")
            added += deeper
    return merged, added


def conflicting_settings(current: dict) -> dict[str, str]:
    """Our sections that Dagster refuses beside an older style of the same setting still in `current` (the
    instance would not load at all), each with what the team has to change by hand before it can be added."""
    conflicts: dict[str, str] = {}
    queue = current.get("run_queue") or {}
    coordinator = current.get("run_coordinator") or {}
    if coordinator.get("class") == "QueuedRunCoordinator":
        queue = {**queue, **(coordinator.get("config") or {})}
    if {"max_concurrent_runs", "tag_concurrency_limits", "block_op_concurrency_limited_runs"} & set(queue):
        conflicts["concurrency"] = (
            "run limits are set under run_queue/run_coordinator: move them to concurrency.runs, then add "
            "concurrency.pools (default_limit: 1, granularity: op)"
        )
    if "default_op_concurrency_limit" in (current.get("concurrency") or {}):
        conflicts["concurrency.pools"] = (
            "replace concurrency.default_op_concurrency_limit by concurrency.pools (default_limit: 1, granularity: op)"
        )
    return conflicts


def ensure_instance_config(dagster_home: Path) -> Path:
    """Write dagster.yaml, or add to an existing one the settings a newer release relies on.

    A home written by an older release lacks nested keys as well as whole sections (`concurrency.pools` without
    `granularity: op` serialises whole runs): every missing key is added at any depth, and nothing the team set
    is changed. What was added is logged as a warning, and the file as it was is kept beside it as
    `dagster.yaml.bak` (PyYAML rewrites it without its comments). A section that Dagster would refuse beside an
    older style the file still uses is not added: the warning says what to change by hand.
    """
    import yaml

    from synthdata.io.atomic import write_atomic

    dagster_home.mkdir(parents=True, exist_ok=True)
    path = dagster_home / "dagster.yaml"
    if not path.exists():
        write_atomic(path, DAGSTER_YAML.encode())
        return path
    before = path.read_text()
    current = yaml.safe_load(before) or {}
    conflicts = conflicting_settings(current)
    merged, added = missing_settings(current, yaml.safe_load(DAGSTER_YAML), leave_out=conflicts)
    if added:
        write_atomic(path.with_name("dagster.yaml.bak"), before.encode())
        write_atomic(path, yaml.safe_dump(merged, sort_keys=False).encode())
        log.warning("%s: added %s (the previous file is dagster.yaml.bak)", path, ", ".join(added))
    for section, by_hand in conflicts.items():
        log.warning("%s: %s not added: %s", path, section, by_hand)
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
