"""Content-addressed blob store: each object is stored once under its content id, whatever drop it came in.

Local disk today; the interface (put / read / exists by key) is the seam for object storage. Keys have one
strict shape, `<namespace>/<id[:2]>/<id>.<ext>`, checked on every access: a key read back from the
warehouse can never point outside the store (and the check is far cheaper than resolving paths).

The store carries the decode limits its images were accepted under (`DecodeLimits`, set once on the
`image_store` resource): every stage that decodes a stored image goes through `decode`, so a limit raised to
accept a large image at ingest holds for curation, splits, training views, flags and galleries as well.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from synthdata.io.atomic import write_atomic
from synthdata.io.imageio import DecodedImage, DecodeLimits, ImageRejected, decode_image

KEY_PATTERN = re.compile(r"^[a-z]+/[0-9a-f]{2}/[0-9a-f]{16,64}\.[a-z0-9]{1,5}$")


class InvalidKeyError(ValueError):
    pass


class BlobStore:
    def __init__(self, root: Path | str, limits: DecodeLimits = DecodeLimits()):
        self.root = Path(root).absolute()
        self.limits = limits
        self._root = str(self.root)
        self._made_dirs: set[str] = set()  # fan-out folders this instance has already created

    @staticmethod
    def key_for(content_id: str, ext: str, namespace: str = "images") -> str:
        return f"{namespace}/{content_id[:2]}/{content_id}.{ext.lstrip('.')}"

    def _file(self, key: str) -> str:
        # Plain strings: this runs once per stored object, where pathlib's parsing costs more than the join.
        if not KEY_PATTERN.match(key):
            raise InvalidKeyError(f"not a store key: {key!r}")
        return os.path.join(self._root, key)

    def path(self, key: str) -> Path:
        return Path(self._file(key))

    def exists(self, key: str) -> bool:
        return os.path.exists(self._file(key))

    def put(self, key: str, data: bytes) -> str:
        """Write `data` under `key` unless it is already there; atomic (temp file, then rename).

        No fsync per object: readers can never see half an object (the rename is atomic), and an fsync per
        small image would cost more than decoding it. A crash may lose the newest objects, which the next
        run of the partition writes again.
        """
        target = self._file(key)
        if os.path.exists(target):
            return key
        folder = os.path.dirname(target)
        write_atomic(target, data, make_parent=folder not in self._made_dirs)
        self._made_dirs.add(folder)
        return key

    def read(self, key: str) -> bytes:
        with open(self._file(key), "rb") as f:
            return f.read()

    def decode(self, key: str) -> DecodedImage:
        """The stored image under `key`, decoded under the store's limits (reduced when it is large).

        Ingest accepted the image under the same setting, so a rejection here means the limits were tightened
        since: the reason names the image and the setting.
        """
        try:
            return decode_image(self.read(key), self.limits)
        except ImageRejected as e:
            raise ImageRejected(f"stored image {key} (limits tightened since ingest?): {e.reason}") from None
