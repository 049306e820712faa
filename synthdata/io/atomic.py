"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_TOKEN = os.urandom(6).hex()  # distinguishes processes that share a pid (containers on one shared volume)
_COUNTER = itertools.count()  # next() on it is atomic under the GIL


@contextmanager
def replacing(path: Path | str, make_parent: bool = True) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new contents into; it becomes ``path`` (one rename) when the block ends,
    and is removed if the block raises, so readers see the old file or the whole new one, never half of one.

    ``make_parent=False`` skips creating the folder when the caller knows it exists (the content store
    writes thousands of small objects a second); a folder that turns out to be missing is made anyway.
    """
    target = os.fspath(path)
    folder = os.path.dirname(target) or "."
    if make_parent:
        os.makedirs(folder, exist_ok=True)
    # A fresh temp name per write without tempfile's random-name loop (~10 us a file, which the content store
    # pays thousands of times a second): this process's id and random token plus a counter, opened O_EXCL so
    # that no two writers (threads, processes, hosts sharing the folder) can ever share one. Hidden (scans skip
    # dot files), and at most the target name's last 64 characters so that it stays a valid file name.
    tmp = os.path.join(folder, f".tmp-{os.getpid()}-{_TOKEN}-{next(_COUNTER)}-{os.path.basename(target)[-64:]}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o644)
    except FileNotFoundError:  # the caller's folder was removed (a cleanup between runs): make it again
        os.makedirs(folder, exist_ok=True)
        fd = os.open(tmp, flags, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path: Path | str, data: bytes | str, make_parent: bool = True) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically, see :func:`replacing`."""
    with replacing(path, make_parent) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return Path(path)
