"""Memorization: how close synthetic images sit to the training set, against held-out real images.

`memorization` measures it in pixel space (the first gate's figure); `feature_privacy` in the shared feature space,
with a membership-inference attack.
"""

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


# ---------------------------------------------------------------------------------------------------------------
# In the shared feature space (synthdata.evaluate.features): distance to closest record and membership inference


@dataclass(frozen=True)
class Privacy:
    """How close synthetic images sit to the training set, measured against real images it never saw.

    dcr_*: distance to the closest training record (feature space). `closer_than_holdout_fraction`: share of
    synthetic images closer to a training image than the 5th percentile of holdout distances (about 0.05 for a
    generator that is as far from its training data as fresh real data is). `near_copy_fraction`: the same below
    the 1st percentile (about 0.01). `mia_*`: a distance attack (score = -distance to the nearest synthetic
    image) telling train members from holdout non-members: AUC 0.5 and advantage 0 = nothing leaks.
    """

    synth_dcr: np.ndarray  # per synthetic image
    synth_nn: np.ndarray  # index of its closest training image
    holdout_dcr: np.ndarray  # per holdout image
    dcr_synth_median: float
    dcr_holdout_median: float
    dcr_ratio: float
    closer_than_holdout_fraction: float
    near_copy_fraction: float
    mia_auc: float
    mia_advantage: float


def membership_attack(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> tuple[float, float]:
    """(ROC AUC, max TPR - FPR) of telling members (higher score) from non-members."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if len(member_scores) == 0 or len(nonmember_scores) == 0:
        return float("nan"), float("nan")
    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(nonmember_scores))]
    scores = np.r_[member_scores, nonmember_scores]
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(roc_auc_score(labels, scores)), float(np.max(tpr - fpr))


def feature_privacy(train_f: np.ndarray, holdout_f: np.ndarray, synth_f: np.ndarray, seed: int = 0) -> Privacy:
    """Every privacy figure from features of real train, a real holdout (val or test) and the synthetic set.

    The attack's members are a seeded sample of train as large as the holdout, so AUC 0.5 is chance whatever
    the sizes. Its reference is the synthetic set: a generator that memorizes puts synthetic images on top of
    the members it copied.
    """
    from synthdata.evaluate.fidelity import nearest

    synth_dcr, synth_nn = nearest(synth_f, train_f)
    holdout_dcr, _ = nearest(holdout_f, train_f)
    rng = np.random.default_rng(seed)
    members = train_f[rng.choice(len(train_f), min(len(holdout_f), len(train_f)), replace=False)]
    member_d, _ = nearest(members, synth_f)
    nonmember_d, _ = nearest(holdout_f, synth_f)
    auc, advantage = membership_attack(-member_d, -nonmember_d)
    h_med = float(np.median(holdout_dcr))
    s_med = float(np.median(synth_dcr))
    p5, p1 = np.percentile(holdout_dcr, [5, 1])
    return Privacy(
        synth_dcr=synth_dcr,
        synth_nn=synth_nn,
        holdout_dcr=holdout_dcr,
        dcr_synth_median=s_med,
        dcr_holdout_median=h_med,
        dcr_ratio=s_med / h_med if h_med > 0 else float("nan"),
        closer_than_holdout_fraction=float((synth_dcr < p5).mean()),
        near_copy_fraction=float((synth_dcr < p1).mean()),
        mia_auc=auc,
        mia_advantage=advantage,
    )
