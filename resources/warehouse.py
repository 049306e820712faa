import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
from pydantic import Field, PrivateAttr

from synthdata.io.warehouse import connection_config, opened

LOCK_TIMEOUT_ENV = "SYNTHDATA_LOCK_TIMEOUT_S"


class WarehouseResource(dg.ConfigurableResource):
    """`warehouse.duckdb` under SYNTHDATA_HOME: the one place warehouse connections are made.

    `connect()` is for writers, which must run in the `duckdb` pool (one at a time); `read()` is for readers
    (checks, exports, sensors). Both get the same settings (memory limit, threads) and never wait in silence:
    while another process holds the file they log who holds it, and give up after `lock_timeout_s` saying so.
    """

    database: str
    memory_limit: str | None = Field(default=None, description="DuckDB memory_limit; default SYNTHDATA_DUCKDB_MEMORY or 512MB.")
    threads: int | None = Field(default=None, description="DuckDB threads; default SYNTHDATA_DUCKDB_THREADS or one per core.")
    lock_timeout_s: float | None = Field(
        default=None, description="How long to wait for another process's lock before failing; default "
        "SYNTHDATA_LOCK_TIMEOUT_S or 300 (writers queue in the pool, so a long wait means something else holds it).",
    )  # fmt: skip

    _holder: str = PrivateAttr(default="a Dagster process")
    _log: object = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run = context.dagster_run
        # Named in the note a writer leaves beside the file, so a waiting process can say which run holds it.
        self._holder = f"run {run.run_id[:8]} ({run.job_name})" if run is not None else "a Dagster process"
        self._log = context.log

    def _on_wait(self, message: str) -> None:
        if self._log is not None:
            self._log.warning(message)
        else:
            dg.get_dagster_logger().warning(message)

    @contextmanager
    def connect(self, timeout_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-write connection (creates the folder and migrates the schema on a fresh home)."""
        with opened(
            self.database, holder=self._holder, config=self.config(), timeout_s=self._timeout(timeout_s),
            on_wait=self._on_wait,
        ) as con:  # fmt: skip
            yield con

    @contextmanager
    def read(self, timeout_s: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection: it can open only while no writer holds the file, so it waits for one."""
        with opened(
            self.database, read_only=True, config=self.config(), timeout_s=self._timeout(timeout_s),
            on_wait=self._on_wait,
        ) as con:  # fmt: skip
            yield con

    def _timeout(self, timeout_s: float | None) -> float:
        """The caller's wait, else the configured one, else SYNTHDATA_LOCK_TIMEOUT_S, else 300 s."""
        if timeout_s is not None:
            return timeout_s
        return self.lock_timeout_s if self.lock_timeout_s is not None else float(os.environ.get(LOCK_TIMEOUT_ENV, "300"))

    def config(self) -> dict[str, object]:
        return connection_config(self.memory_limit, self.threads)
