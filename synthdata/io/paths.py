"""Where things live. One root (`SYNTHDATA_HOME`) holds everything the platform writes.

Layout under the home (a contract that users' scripts rely on):

    <home>/dagster/            DAGSTER_HOME: runs, event log, schedules
    <home>/warehouse.duckdb    every table
    <home>/store/images/       content-addressed originals, <id[:2]>/<id>.<ext>
    <home>/store/augmented/    augmented rows as PNG, content-addressed
    <home>/store/synthetic/    synthetic rows as PNG, content-addressed
    <home>/checkpoints/        generator checkpoints, <family>/<run>/...
    <home>/reports/            quality reports
    <home>/exports/            published training sets
    <home>/landing/            default landing area (SYNTHDATA_LANDING overrides it)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HOME_ENV = "SYNTHDATA_HOME"
LANDING_ENV = "SYNTHDATA_LANDING"
DEFAULT_HOME = ".synthdata"


class PathEscapeError(ValueError):
    """A path resolved outside the root it must stay in."""


@dataclass(frozen=True)
class SynthdataPaths:
    home: Path
    landing: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SynthdataPaths:
        env = os.environ if environ is None else environ
        home = Path(env.get(HOME_ENV) or DEFAULT_HOME).absolute()
        landing = Path(env.get(LANDING_ENV) or home / "landing").absolute()
        return cls(home=home, landing=landing)

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def store(self) -> Path:
        return self.home / "store"

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def exports(self) -> Path:
        return self.home / "exports"

    def ensure(self) -> SynthdataPaths:
        for p in (self.home, self.dagster_home, self.store, self.checkpoints, self.reports, self.exports, self.landing):
            p.mkdir(parents=True, exist_ok=True)
        return self


def resolve_within(root: Path, *parts: str | os.PathLike[str]) -> Path:
    """Join `parts` under `root` and refuse any result (after resolving symlinks and `..`) outside it."""
    root_resolved = Path(root).resolve()
    candidate = Path(root_resolved, *parts).resolve()
    if candidate != root_resolved and root_resolved not in candidate.parents:
        raise PathEscapeError(f"{Path(*parts)} resolves to {candidate}, outside {root_resolved}")
    return candidate
