"""`training_set` retries a failed write (the export is idempotent) and never retries a refusal by the gate.

Real materializations on an instance stored on disk (so a second thread can read its event log while the run goes
on), a temporary SYNTHDATA_HOME, 500 digits, a real small GAN and evaluation, as in test_quality_gate."""

import threading
import time

import dagster as dg
import pyarrow.parquet as pq
import pytest

from conftest import query
from dagster_project.instance import ensure_instance
from synthdata.io.paths import SynthdataPaths
from test_quality_gate import (
    STRICT,
    ingested_and_synthesized,
    loose_floors,
    materialize,
    materialized,
    step_error,
)

pytestmark = pytest.mark.slow
STEP = "training_set"


def attempts(result) -> int:
    """How many times the step ran: its first start plus every restart by the retry policy."""
    starts = (dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_RESTARTED)
    return sum(e.event_type in starts and e.step_key == STEP for e in result.all_events)


def retries(result) -> list[str]:
    """The error of every attempt that the retry policy took up again (Dagster's wrapper and its causes)."""
    errors = [e.event_specific_data.error for e in result.all_events
              if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY and e.step_key == STEP]  # fmt: skip
    messages = []
    for error in errors:
        chain = []
        while error is not None:
            chain.append(error.message)
            error = error.cause
        messages.append("\n".join(chain))
    return messages


@pytest.fixture(scope="module")
def env(tmp_path_factory, digits):
    """One drop of 500 digits, ingested; synthesis_job run once with loose floors (a training set is published)."""
    home = tmp_path_factory.mktemp("home")
    paths = SynthdataPaths(home=home, landing=home / "landing").ensure()
    ensure_instance(paths.dagster_home)
    with dg.DagsterInstance.from_config(str(paths.dagster_home)) as instance:
        first = ingested_and_synthesized(paths, digits, instance)
        assert STEP in materialized(first)
        yield paths, instance


def test_a_failed_export_write_is_retried_and_the_retry_publishes(env):
    paths, instance = env
    assert materialize(env, ["quality_report"], loose_floors()).success
    (evaluation_id,), = query(paths, "SELECT evaluation_id FROM evaluations ORDER BY created_at DESC LIMIT 1")
    # A directory where the Parquet file goes: the rename that publishes it fails (IsADirectoryError, even as root).
    target = paths.exports / "gan" / "training_set.parquet"
    target.unlink()
    (target / "in-the-way").mkdir(parents=True)
    runs_before = {r.run_id for r in instance.get_runs()}

    def clear_once_the_step_is_up_for_retry(stop: threading.Event) -> None:
        """The disk "recovers" only after the first attempt failed, so the test sees both attempts."""
        while not stop.wait(0.2):
            for run in instance.get_runs(limit=3):
                if run.run_id not in runs_before and instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY):
                    (target / "in-the-way").rmdir()
                    target.rmdir()
                    return

    stop = threading.Event()
    fixer = threading.Thread(target=clear_once_the_step_is_up_for_retry, args=(stop,), daemon=True)
    fixer.start()
    try:
        start = time.monotonic()
        result = materialize(env, [STEP])
    finally:
        stop.set()
        fixer.join(timeout=10)

    assert result.success and materialized(result) == {STEP}, retries(result)
    assert attempts(result) == 2
    (error,) = retries(result)
    assert "IsADirectoryError" in error and "training_set.parquet" in error, error
    assert time.monotonic() - start >= 10  # the policy's delay was waited before the second attempt
    manifest = (paths.exports / "gan" / "manifest.json").read_text()
    assert evaluation_id in manifest
    assert pq.read_metadata(target).num_rows > 0
    assert not [p.name for p in target.parent.iterdir() if p.name.startswith(".tmp-")]  # the failed attempt left nothing


def test_a_refusal_by_the_gate_makes_exactly_one_attempt(env):
    assert not materialize(env, ["quality_report"], STRICT).success  # a stored verdict that failed
    refused = materialize(env, [STEP])
    assert not refused.success and STEP not in materialized(refused)
    assert "quality gate failed" in step_error(refused, STEP)
    assert attempts(refused) == 1 and retries(refused) == []  # failed at once: no retry delay before the alert
