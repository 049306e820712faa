"""Another process holding the warehouse's writer lock, as a running step would (tests of lock waits)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """
import sys, time
from pathlib import Path
from synthdata.io.warehouse import opened
release, deadline = sys.argv[2], time.monotonic() + float(sys.argv[3])
with opened(sys.argv[1], holder="run abcd1234 (daily_ingest_job)"):
    print("held", flush=True)
    while not (release and Path(release).exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
"""


def hold_warehouse(path: Path, seconds: float, release: Path | None = None) -> subprocess.Popen:
    """A process that opens the warehouse at ``path`` as a writer (creating it when there is none, as a writer
    does) with a holder note naming a run, and keeps it for ``seconds`` or until ``release`` exists. Returns
    once the lock is held."""
    proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, str(path), str(release or ""), str(seconds)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc
