"""Run BLAS on one thread for a block of code.

Our matrix products (pHash resizes, near-duplicate correlations) are small and memory-bound: OpenBLAS's
second thread only adds synchronisation, and on shared cores its spinning made them up to 10x slower
(measured). Parallelism comes from processes and batches instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache


@lru_cache(maxsize=1)
def _controller():  # -> threadpoolctl.ThreadpoolController
    # Built once: threadpoolctl's `threadpool_limits` rescans every loaded library on each call (~0.25 ms,
    # ~1 us per image of an ingest chunk). numpy's BLAS, the one these products use, is loaded by then.
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    with _controller().limit(limits=1, user_api="blas"):
        yield
