"""Utility of synthetic data: TRTR / TSTR accuracy of one reference classifier.

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
