"""Memorization: how close synthetic images sit to the training set, against held-out real images."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthdata.evaluate.utility import flatten_unit


@dataclass(frozen=True)
class Memorization:
    """Nearest-training-image distances of synthetic vs held-out real images.

    `ratio` = median synthetic distance / median test distance. Near 1: synthetic images sit as far from the
    training set as unseen real images do. Well below 1: the generator is copying training images.
    `copies` counts synthetic images closer to a training image than the 1st percentile of test distances.
    """

    synth_median: float
    test_median: float
    ratio: float
    copies: int
    copy_fraction: float


def nearest_distances(queries: np.ndarray, reference: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Euclidean distance from each query row to its nearest reference row (chunked to bound memory)."""
    q = flatten_unit(queries).astype(np.float64)
    r = flatten_unit(reference).astype(np.float64)
    r_sq = (r**2).sum(1)
    out = np.empty(len(q))
    for s in range(0, len(q), chunk):
        block = q[s : s + chunk]
        d2 = (block**2).sum(1)[:, None] + r_sq[None, :] - 2.0 * block @ r.T
        out[s : s + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def memorization(train_x: np.ndarray, synth_x: np.ndarray, test_x: np.ndarray) -> Memorization:
    synth_d = nearest_distances(synth_x, train_x)
    test_d = nearest_distances(test_x, train_x)
    test_med = float(np.median(test_d))
    synth_med = float(np.median(synth_d))
    threshold = float(np.percentile(test_d, 1))
    copies = int((synth_d < threshold).sum())
    return Memorization(
        synth_median=synth_med,
        test_median=test_med,
        ratio=synth_med / test_med if test_med > 0 else 0.0,
        copies=copies,
        copy_fraction=copies / max(len(synth_d), 1),
    )
