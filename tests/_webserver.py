"""A Dagster webserver (or `dagster dev`) for a test: started in its own process group, ready once /server_info
answers, stopped with its children; and the polling and GraphQL helpers the UI tests share."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from synthdata.io.paths import SynthdataPaths

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")


@dataclass(frozen=True)
class ServedHome:
    url: str  # the webserver's base URL
    paths: SynthdataPaths  # the home it serves
    day: str  # the one partition of raw_images materialized there
    run_id: str  # the daily_ingest_job run that materialized it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(probe: Callable[[], T | None], timeout_s: float, what: str, every_s: float = 0.5,
               alive: Callable[[], str | None] = lambda: None) -> T:  # fmt: skip
    """The first truthy result of `probe()`, polled every `every_s`; fails naming `what` after `timeout_s`, or at
    once when `alive()` returns a reason (the process being waited on died: its log tail)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result:
            return result
        dead = alive()
        assert dead is None, f"{what}: {dead}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(every_s)


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False


def graphql(base: str, query: str, variables: dict | None = None, timeout_s: float = 60) -> dict:
    """The whole GraphQL response (`data`, and `errors` when the server reports any)."""
    req = urllib.request.Request(
        f"{base}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return json.loads(resp.read())


def stop_group(proc: subprocess.Popen, grace_s: float = 10) -> None:
    """SIGTERM the process group, then SIGKILL it after `grace_s`: the webserver's code server child can outlive
    a polite signal (seen: a `dagster dev` group still running 10 s after SIGTERM)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        pass
    try:  # the leader may be gone while a child of the group is not: kill the group either way
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def venv_command(name: str) -> str:
    """A console script installed beside this interpreter (`dagster`, `dagster-webserver`)."""
    return str(Path(sys.executable).parent / name)


@contextmanager
def serving(command: Sequence[str], env: dict[str, str], log_path: Path, start_timeout_s: float = 120) -> Iterator[str]:
    """Run `command` with `-h 127.0.0.1 -p PORT` appended, in its own process group, from the repo root; yield its
    base URL once /server_info answers; stop the whole group on the way out, whatever happened."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*command, "-h", "127.0.0.1", "-p", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            wait_until(
                lambda: answers(f"{base}/server_info"), start_timeout_s, f"{' '.join(command)} did not start",
                alive=lambda: None if proc.poll() is None else log_path.read_text()[-3000:],
            )  # fmt: skip
            yield base
        finally:
            stop_group(proc)
