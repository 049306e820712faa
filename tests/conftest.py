import io
import os

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def png(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="session")
def digits():
    from synthdata.datasets import load_digits_uint8

    return load_digits_uint8()


@pytest.fixture
def landing(tmp_path):
    root = tmp_path / "landing"
    root.mkdir()
    return root


def query(paths, sql, params=()):
    """Rows of `sql` from a test's warehouse, read-only (a test never writes behind the pipeline's back)."""
    import duckdb

    con = duckdb.connect(str(paths.warehouse), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models on a shared 2-core box: one intra-op thread is several times faster than two fighting."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
