"""Stand-in generators made of real images, to calibrate and test the gate against known answers.

Each returns (images, labels) of the requested size, seeded:
- `ideal`: real images the generator never saw (a held-out pool) with their labels: as good as the data;
- `collapsed`: k real train images per class, repeated (mode collapse); `class_means`: each class's mean image,
  repeated (collapse to the average, which a linear classifier still learns from);
- `memorizing`: real train images returned as they are, JPEG-recompressed, or shifted by up to one pixel;
- `noisy`: held-out images with Gaussian pixel noise (sigma in grey levels).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def ideal(pool_x: np.ndarray, pool_y: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).choice(len(pool_x), min(n, len(pool_x)), replace=False)
    return pool_x[idx], pool_y[idx]


def collapsed(train_x: np.ndarray, train_y: np.ndarray, n: int, per_class: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(train_y == c), per_class, replace=False)
                          for c in sorted(set(train_y))])  # fmt: skip
    rep = np.resize(idx, n)
    return train_x[rep], train_y[rep]


def class_means(train_x: np.ndarray, train_y: np.ndarray, n: int):
    classes = sorted(set(train_y))
    means = np.stack([train_x[train_y == c].astype(np.float64).mean(0) for c in classes]).round().astype(np.uint8)
    rep = np.resize(np.arange(len(classes)), n)
    return means[rep], np.array(classes, dtype=object)[rep]


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())))


def memorizing(train_x: np.ndarray, train_y: np.ndarray, n: int, how: str = "exact", seed: int = 0):
    """`how`: "exact", "jpeg" (quality 75) or "shift" (each image moved by -1, 0 or 1 px per axis, edge-padded)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(train_x), min(n, len(train_x)), replace=False)
    x = train_x[idx]
    if how == "jpeg":
        x = np.stack([_jpeg(im, 75) for im in x])
    elif how == "shift":
        pad = [(0, 0), (1, 1), (1, 1)] + [(0, 0)] * (x.ndim - 3)
        padded = np.pad(x, pad, mode="edge")
        h, w = x.shape[1:3]
        offsets = rng.integers(0, 3, size=(len(x), 2))
        x = np.stack([padded[i, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])
    elif how != "exact":
        raise ValueError(f"how must be exact, jpeg or shift, got {how!r}")
    return x, train_y[idx]


def noisy(pool_x: np.ndarray, pool_y: np.ndarray, n: int, sigma: float, seed: int = 0):
    x, y = ideal(pool_x, pool_y, n, seed)
    noise = np.random.default_rng(seed + 1).normal(0.0, sigma, x.shape)
    return np.clip(x.astype(np.float64) + noise, 0, 255).round().astype(np.uint8), y
