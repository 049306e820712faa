
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
from dagster_duckdb import DuckDBResource

from synthdata.io.warehouse import ensure_schema


class WarehouseResource(DuckDBResource):
    """`warehouse.duckdb` under SYNTHDATA_HOME. Writers must run in the `duckdb` pool (one at a time)."""

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self.get_connection() as con:
            ensure_schema(con)
            yield con
