"""Run BLAS on one thread for a block of code.

Our matrix products (pHash resizes, near-duplicate correlations) are small and memory-bound: OpenBLAS's
second thread only adds synchronisation, and on shared cores its spinning makes them several times slower
(docs/benchmarks.md). Parallelism comes from processes and batches instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache


@lru_cache(maxsize=1)
def _controller():  # -> threadpoolctl.ThreadpoolController
    # Built once: threadpoolctl's `threadpool_limits` rescans every loaded library on each call, and this is
    # entered once per ingest chunk. numpy's BLAS, the one these products use, is loaded by then.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    with _controller().limit(limits=1, user_api="blas"):
        yield
