"""Turn stored images into the arrays models train on, and arrays back into stored PNGs."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from synthdata.io.imageio import to_training_array
from synthdata.io.store import BlobStore


def load_arrays(store: BlobStore, keys: Sequence[str], mode: str, size: tuple[int, int] | None) -> np.ndarray:
    """Decode stored originals (under the store's limits) into one uint8 array (N, H, W) for L or (N, H, W, 3)
    for RGB."""
    if mode not in ("L", "RGB"):
        raise ValueError(f"training mode must be 'L' or 'RGB', got {mode!r}")
    if not keys:
        raise ValueError("no images to load")
    arrays = [to_training_array(store.decode(k).image, mode, size) for k in keys]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images differ in size {sorted(shapes)[:3]}...; set an image size to normalise them")
    return np.stack(arrays)


def training_format(
    modes: Sequence[str], widths: Sequence[int], heights: Sequence[int], mode: str = "", size: int = 0
) -> tuple[str, tuple[int, int]]:
    """The (mode, (width, height)) models train on: configured values win, else what most images have.

    Originals keep their own mode and size in the store; this is only the normalised view for training.
    """
    if not mode:
        values, counts = np.unique(np.asarray(modes), return_counts=True)
        mode = str(values[int(np.argmax(counts))])
    return mode, ((size, size) if size > 0 else most_common_size(widths, heights))


def most_common_size(widths: Sequence[int], heights: Sequence[int]) -> tuple[int, int]:
    pairs, counts = np.unique(np.stack([np.asarray(widths), np.asarray(heights)], 1), axis=0, return_counts=True)
    w, h = pairs[int(np.argmax(counts))]
    return int(w), int(h)


def png_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def store_pngs(store: BlobStore, arrays: np.ndarray, namespace: str) -> list[tuple[str, str]]:
    """Store each array as a PNG under its content hash; return (content id, key) per row."""
    out = []
    for arr in arrays:
        data = png_bytes(arr)
        cid = hashlib.sha256(data).hexdigest()
        out.append((cid, store.put(BlobStore.key_for(cid, "png", namespace), data)))
    return out


def data_fingerprint(ids: Sequence[str], *extra: object) -> str:
    """Identity of a training set (which images, in which order) plus anything else that changes the result."""
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode())
        h.update(b"\n")
    for e in extra:
        h.update(repr(e).encode())
    return h.hexdigest()
