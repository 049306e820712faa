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
