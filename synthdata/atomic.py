"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path | str, data: bytes | str, make_parent: bool = True) -> Path:
    """Write to a temporary file beside `path`, then rename it over `path`.

    ``make_parent=False`` skips creating the folder when the caller knows it exists (the content store
    writes thousands of small objects a second); a folder that turns out to be missing is made anyway.
    """
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    if make_parent:
        os.makedirs(folder, exist_ok=True)
    suffix = os.path.splitext(target)[1]
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    except FileNotFoundError:  # the caller's folder was removed (a cleanup between runs): make it again
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return Path(target)
