"""Content-addressed blob store: each object is stored once under its content id, whatever drop it came in.

Local disk today; the interface (put / open / exists by relative key) is the seam for object storage.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from synthdata.paths import resolve_within


class BlobStore:
    def __init__(self, root: Path | str):
        self.root = Path(root).absolute()

    @staticmethod
    def key_for(content_id: str, ext: str, namespace: str = "images") -> str:
        return f"{namespace}/{content_id[:2]}/{content_id}.{ext.lstrip('.')}"

    def path(self, key: str) -> Path:
        return resolve_within(self.root, key)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def put(self, key: str, data: bytes) -> str:
        """Write `data` under `key` unless it is already there; atomic (temp file, fsync, rename)."""
        target = self.path(key)
        if target.exists():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()
