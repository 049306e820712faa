"""Run Dagster's command line on the instance of a SYNTHDATA_HOME, so every run lands where `make ui` looks.

    python -m dagster_project.cli materialize --select raw_images --partition 2024-01-01
    python -m dagster_project.cli dev [-p 3000]          # the UI and the daemon (what `make ui` runs)
    python -m dagster_project.cli <any dagster command>   # e.g. `job launch -j daily_ingest_job ...`

Plain `dagster asset materialize` without DAGSTER_HOME runs on a throwaway instance: its rows reach the
warehouse but the UI never sees the run. This wrapper sets DAGSTER_HOME=$SYNTHDATA_HOME/dagster, creates the
home and the instance (dagster.yaml with the pools and run monitoring) if they are missing, then hands over
to `dagster` with the code location named.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CODE_LOCATION = ["-m", "dagster_project.definitions"]
# Shortcuts: the commands the README shows, with the code location filled in.
SHORTCUTS = {
    "materialize": ["asset", "materialize", *CODE_LOCATION],
    "dev": ["dev", *CODE_LOCATION],
}


def prepare_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a Dagster process over this SYNTHDATA_HOME, with home and instance created."""
    from dagster_project.instance import ensure_instance
    from synthdata.io.paths import HOME_ENV, LANDING_ENV, SynthdataPaths

    env = dict(os.environ if environ is None else environ)
    paths = SynthdataPaths.from_env(env).ensure()
    # Absolute paths: the code server and run workers may start in another working directory.
    env[HOME_ENV] = str(paths.home)
    env[LANDING_ENV] = str(paths.landing)
    env["DAGSTER_HOME"] = str(paths.dagster_home)
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    ensure_instance(paths.dagster_home)
    return env


def dagster_argv(args: list[str]) -> list[str]:
    """`dagster` plus the arguments, with a shortcut expanded (a code location given explicitly wins)."""
    if args and args[0] in SHORTCUTS:
        rest = args[1:]
        expanded = SHORTCUTS[args[0]]
        if any(a in ("-m", "--module-name", "-f", "--python-file", "-w", "--workspace") for a in rest):
            expanded = [a for a in expanded if a not in CODE_LOCATION]
        args = [*expanded, *rest]
    return [str(Path(sys.executable).parent / "dagster"), *args]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    env = prepare_environment()
    print(f"SYNTHDATA_HOME={env['SYNTHDATA_HOME']}  DAGSTER_HOME={env['DAGSTER_HOME']}", file=sys.stderr, flush=True)
    command = dagster_argv(args)
    os.execve(command[0], command, env)
    return 0  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main())
