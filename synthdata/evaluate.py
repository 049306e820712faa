"""Quality of synthetic data: utility (TRTR / TSTR) and a memorization figure.

TRTR = train on real, test on real; TSTR = train on synthetic, test on real. Their ratio says how much of the
real data's usefulness the synthetic set carries, independent of how hard the task is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def flatten_unit(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W[, C]) -> float32 rows in [0, 1]."""
    arr = np.asarray(images)
    return arr.reshape(len(arr), -1).astype(np.float32) / 255.0


def classifier_accuracy(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seed: int = 0,
) -> float:
    """Fit the reference classifier (multinomial logistic regression on pixels) and return test accuracy.

    A deliberately simple, deterministic classifier: the figure should measure the data, not the classifier.
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(train_y)) < 2:
        raise ValueError("the classifier needs at least two classes in its training data")
    clf = LogisticRegression(max_iter=300, C=1.0, random_state=seed)
    clf.fit(flatten_unit(train_x), np.asarray(train_y))
    return float((clf.predict(flatten_unit(test_x)) == np.asarray(test_y)).mean())


@dataclass(frozen=True)
class Utility:
    trtr: float
    tstr: float

    @property
    def ratio(self) -> float:
        return self.tstr / self.trtr if self.trtr > 0 else 0.0


def tstr_trtr(
    real_train_x: np.ndarray,
    real_train_y: np.ndarray,
    synth_x: np.ndarray,
    synth_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    seed: int = 0,
) -> Utility:
    trtr = classifier_accuracy(real_train_x, real_train_y, test_x, test_y, seed)
    tstr = classifier_accuracy(synth_x, synth_y, test_x, test_y, seed)
    return Utility(trtr=trtr, tstr=tstr)


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
