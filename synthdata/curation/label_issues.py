"""Label quality: likely mislabeled images, labels that disagree among duplicates, and rare classes. Flags only:
nothing here deletes or relabels an image.

Mislabels (confident learning). A small classifier gives every image out-of-fold class probabilities: two
linear views, PCA + logistic regression on the pixels and on histograms of oriented gradients (HOG: edge
directions per cell, robust to small shifts and contrast), combined as the normalised geometric mean of their
probabilities (each view's vote counts equally). The fold that predicts an image never trained on it, so its
probability for the image's *given* label (self-confidence) does not depend on that label. That makes the cutoff calibratable
on the data itself: P[i, j] for every wrong class j is exactly the self-confidence image i would have had had
it been labelled j, so these values are the distribution of self-confidence under (uniform) label noise.
Comparing it with the observed self-confidences estimates the noise rate, and the flag cutoff is the largest
self-confidence at which the estimated precision still meets `target_precision`. A fixed rule such as
cleanlab's default counts every confusion of the classifier (shirt vs T-shirt) as label noise; on a set the
classifier finds hard that flags several times more clean images than mislabels (docs/benchmarks.md).
The estimate assumes a wrong label is any other class with equal chance. Real annotators err toward similar
classes, where a flip is harder to see, so expect lower recall on such errors; and where the classifier
confidently confuses two classes the noise rate is overestimated, so the real precision falls below the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from synthdata.blas import single_threaded_blas
from synthdata.io.arrays import load_arrays, training_format
from synthdata.io.store import BlobStore

LABEL_ISSUE_COLUMNS = ["image_id", "label", "suggested_label", "kind", "score", "detail"]
# cleanlab's class-imbalance rule: a class is rare below this fraction of the mean class size.
RARE_CLASS_FRACTION = 0.1
# The classifier's input: images larger than this per side are shrunk to it (what a class looks like is
# visible at 32 px; pixel features beyond it cost time, not accuracy, for a linear model).
FEATURE_SIDE = 32
# PCA components per view: the pixel view loses accuracy on digits when whitened or widened; the HOG view
# (~1,300 dimensions on 28x28) needs more. Measured on Fashion-MNIST and digits (docs/benchmarks.md).
PIXEL_COMPONENTS, HOG_COMPONENTS = 64, 128
HOG_BINS = 9  # unsigned orientations, 20 degrees each (Dalal and Triggs)


@dataclass
class MislabelResult:
    flagged: np.ndarray  # bool per image
    self_confidence: np.ndarray  # probability of the given label, per image
    suggested: np.ndarray  # class index the classifier prefers, per image
    cutoff: float  # flagged: self-confidence <= cutoff (and another class preferred)
    noise_rate: float  # estimated share of mislabeled images
    estimated_precision: float  # at the cutoff, under uniform label noise
    accuracy: float  # out-of-fold agreement with the given labels
    skipped: str = ""  # why mislabel detection did not run ("" when it did)
    probabilities: np.ndarray | None = None  # out-of-fold (N, classes) when every class was usable, else None


def features(pixels: np.ndarray) -> np.ndarray:
    """float32 (N, D) pixel features in [0, 1] from uint8 (N, H, W[, C]) images."""
    return pixels.reshape(len(pixels), -1).astype(np.float32) / 255.0


def hog_features(pixels: np.ndarray) -> np.ndarray:
    """float32 (N, D) histograms of oriented gradients of uint8 (N, H, W[, C]) images (colour averaged).

    Central-difference gradients; each pixel's magnitude split between its two nearest of `HOG_BINS`
    unsigned orientations; summed over square cells of ~1/7 of the side (at least 2 px); 2x2-cell blocks
    L2-normalised, clipped at 0.2 and normalised again (L2-Hys), so a block's shape counts, not its contrast.
    """
    x = pixels.astype(np.float32)
    if x.ndim == 4:
        x = x.mean(-1)
    n, h, w = x.shape
    cell = max(2, min(h, w) // 7)
    ch, cw = h // cell, w // cell
    if ch < 2 or cw < 2:  # too small for one block: the pixel view alone speaks for such images
        return np.zeros((n, 0), np.float32)
    gx, gy = np.zeros_like(x), np.zeros_like(x)
    gx[:, :, 1:-1] = x[:, :, 2:] - x[:, :, :-2]
    gy[:, 1:-1, :] = x[:, 2:, :] - x[:, :-2, :]
    crop = (slice(None), slice(0, ch * cell), slice(0, cw * cell))
    magnitude = np.hypot(gx, gy)[crop]
    position = (np.arctan2(gy, gx)[crop] % np.pi) * (HOG_BINS / np.pi) - 0.5  # bin centres at k + 0.5
    lower = np.floor(position)
    upper_share = (position - lower) * magnitude
    lower_share = magnitude - upper_share
    lower = (lower.astype(np.int16) % HOG_BINS).astype(np.int8)
    upper = (lower + 1) % HOG_BINS
    cells = np.empty((n, ch, cw, HOG_BINS), np.float32)
    for k in range(HOG_BINS):  # one bin at a time: a full-size temporary per bin would be 9x the images
        share = np.where(lower == k, lower_share, 0) + np.where(upper == k, upper_share, 0)
        cells[..., k] = share.reshape(n, ch, cell, cw, cell).sum((2, 4))
    blocks = np.concatenate([cells[:, :-1, :-1], cells[:, 1:, :-1], cells[:, :-1, 1:], cells[:, 1:, 1:]], axis=-1)
    for clip in (0.2, None):
        blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + 1e-6)
        if clip is not None:
            blocks = np.minimum(blocks, clip)
    return blocks.reshape(n, -1).astype(np.float32)


def out_of_fold_probabilities(
    x: np.ndarray, y: np.ndarray, n_classes: int, n_folds: int = 5, seed: int = 0, components: int = PIXEL_COMPONENTS
) -> np.ndarray:
    """(N, n_classes) probabilities, each row from a model fitted on the other folds (stratified, seeded).

    PCA (at most `components`, not whitened: whitening lifts the noisy low-variance components to the same
    weight as the shape ones and cost accuracy on digits) then multinomial logistic regression: deterministic
    on CPU, and seconds on a few thousand small images. BLAS runs on one thread: these products are small,
    and a second BLAS thread on shared cores made the fit many times slower (docs/benchmarks.md).
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline

    probs = np.zeros((len(y), n_classes))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with single_threaded_blas():
        for train, test in folds.split(x, y):
            k = int(min(components, x.shape[1], len(train) - 1))
            # Exact SVD for narrow inputs; a seeded randomized one for the wide HOG view (several times faster).
            pca = PCA(k, svd_solver="full") if x.shape[1] <= 256 else PCA(k, svd_solver="randomized", random_state=seed)
            model = make_pipeline(pca, LogisticRegression(C=1.0, max_iter=1000))
            model.fit(x[train], y[train])
            probs[np.ix_(test, model.classes_)] = model.predict_proba(x[test])
    return probs


def two_view_probabilities(
    pixels: np.ndarray, y: np.ndarray, n_classes: int, n_folds: int = 5, seed: int = 0
) -> np.ndarray:
    """Out-of-fold probabilities of the pixel view and the HOG view (same folds), combined as their
    normalised geometric mean. On Fashion-MNIST (10k, 3% flips, 3 seeds) it raised agreement with the true
    labels from 0.81-0.82 to 0.87, the flags' precision from 0.69-0.74 to 0.79-0.81 and their recall from
    0.74-0.75 to 0.82-0.84 (docs/benchmarks.md). The arithmetic mean, where one confident view outvotes the
    other, reached 0.76-0.80 precision there."""
    views = [out_of_fold_probabilities(features(pixels), y, n_classes, n_folds, seed, PIXEL_COMPONENTS)]
    hog = hog_features(pixels)
    if hog.shape[1]:
        views.append(out_of_fold_probabilities(hog, y, n_classes, n_folds, seed, HOG_COMPONENTS))
    log_mean = np.mean([np.log(np.clip(v, 1e-12, 1.0)) for v in views], axis=0)
    combined = np.exp(log_mean - log_mean.max(axis=1, keepdims=True))
    return combined / combined.sum(axis=1, keepdims=True)


def calibrated_cutoff(probs: np.ndarray, y: np.ndarray, target_precision: float) -> tuple[float, float, float]:
    """(cutoff, noise rate, estimated precision at the cutoff) from out-of-fold probabilities; see the module doc."""
    n = len(y)
    observed = np.sort(probs[np.arange(n), y])
    wrong = np.ones(probs.shape, dtype=bool)
    wrong[np.arange(n), y] = False
    simulated = np.sort(probs[wrong])
    f_obs = np.arange(1, n + 1) / n  # share of images at or below each observed self-confidence
    f_noise = np.searchsorted(simulated, observed, side="right") / len(simulated)
    # Each F_obs/F_noise bounds the noise rate from above (clean images only add to F_obs); where at least half
    # of the simulated mislabels fall below, the bound rests on many images and is tight.
    solid = f_noise >= 0.5
    noise_rate = float(min(1.0, np.min(f_obs[solid] / f_noise[solid]))) if solid.any() else 0.0
    precision = noise_rate * f_noise / f_obs
    ok = np.flatnonzero(precision >= target_precision)
    if noise_rate == 0.0 or len(ok) == 0:
        return -1.0, noise_rate, 1.0
    last = int(ok.max())
    return float(observed[last]), noise_rate, float(precision[last])


def find_mislabels(
    pixels: np.ndarray, y: np.ndarray, n_classes: int, n_folds: int = 5, seed: int = 0, target_precision: float = 0.8
) -> MislabelResult:
    """Mislabel flags for uint8 images with integer labels 0..n_classes-1.

    Images of classes with fewer than `n_folds` members are never flagged (no fold could learn their class);
    they are what the rare-class flag is for.
    """
    if not 0.0 < target_precision < 1.0:
        raise ValueError(f"target_precision must be in (0, 1), got {target_precision}")
    n = len(y)
    sizes = np.bincount(y, minlength=n_classes)
    usable = sizes[y] >= n_folds
    empty = MislabelResult(np.zeros(n, bool), np.full(n, np.nan), y.copy(), -1.0, 0.0, 1.0, float("nan"))
    if len(np.unique(y[usable])) < 2:
        empty.skipped = f"needs at least 2 classes with {n_folds}+ labelled images each"
        return empty
    idx = np.flatnonzero(usable)
    # Classes that remain, renumbered 0..k-1 so the classifier sees no empty columns.
    kept, yk = np.unique(y[idx], return_inverse=True)
    probs = two_view_probabilities(pixels[idx], yk, len(kept), n_folds, seed)
    cutoff, noise_rate, precision = calibrated_cutoff(probs, yk, target_precision)
    conf = probs[np.arange(len(yk)), yk]
    best = probs.argmax(axis=1)
    flagged = (conf <= cutoff) & (best != yk)
    out = MislabelResult(np.zeros(n, bool), np.full(n, np.nan), y.copy(), cutoff, noise_rate, precision,
                         float((best == yk).mean()))  # fmt: skip
    out.flagged[idx], out.self_confidence[idx], out.suggested[idx] = flagged, conf, kept[best]
    if len(idx) == n and len(kept) == n_classes:
        out.probabilities = probs
    return out


def rare_classes(labels: pd.Series, fraction: float = RARE_CLASS_FRACTION) -> dict[str, float]:
    """Classes whose size is below `fraction` of the mean class size: {label: size / mean size}."""
    counts = labels.value_counts()
    if len(counts) < 2:
        return {}
    ratio = counts / counts.mean()
    return {str(k): float(v) for k, v in ratio.items() if v < fraction}


def mislabel_rows(ids: list[str], labels: list[str], classes: list[str], result: MislabelResult) -> pd.DataFrame:
    """`label_issues` rows of kind `mislabel`, most confident first."""
    rows = [
        (ids[i], labels[i], classes[result.suggested[i]], "mislabel", float(result.self_confidence[i]),
         f"classifier prefers {classes[result.suggested[i]]!r}; p(given label) {result.self_confidence[i]:.4f}"
         f" <= cutoff {result.cutoff:.4f}")
        for i in np.flatnonzero(result.flagged)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=LABEL_ISSUE_COLUMNS).sort_values("score", kind="stable")


def rare_class_rows(ids: list[str], labels: list[str], rare: dict[str, float]) -> pd.DataFrame:
    """`label_issues` rows of kind `class_imbalance`: every image of a rare class (score: its class's size ratio)."""
    rows = [
        (i, lab, None, "class_imbalance", rare[lab], f"class {lab!r} has {rare[lab]:.3f}x the mean class size")
        for i, lab in zip(ids, labels)
        if lab in rare
    ]
    return pd.DataFrame(rows, columns=LABEL_ISSUE_COLUMNS)


def conflict_rows(con) -> pd.DataFrame:
    """`label_issues` rows of kind `conflict`: kept images whose copies (exact files, and the files of
    near-duplicates folded into them) arrived under more than one label.

    score: the share of copies that carry the kept label; suggested: the most common label among the copies
    (the kept label on a tie).
    """
    copies = con.execute(
        """WITH files AS (
               SELECT i.image_id, i.label AS kept, r.label FROM images i JOIN raw_images r USING (image_id)
               UNION ALL
               SELECT i.image_id, i.label, r.label
               FROM images i
               JOIN (SELECT DISTINCT representative_id, member_id FROM duplicate_groups
                     WHERE kind = 'near' AND member_id <> representative_id) d ON d.representative_id = i.image_id
               JOIN raw_images r ON r.image_id = d.member_id
           )
           SELECT image_id, kept, coalesce(label, '(none)') AS label, count(*) AS n FROM files
           WHERE image_id IN (SELECT image_id FROM files GROUP BY 1
                              HAVING count(DISTINCT coalesce(label, '(none)')) > 1)
           GROUP BY ALL ORDER BY image_id, n DESC, label"""
    ).df()
    rows = []
    for image_id, g in copies.groupby("image_id", sort=True):
        kept = g["kept"].iloc[0]
        agree = int(g.loc[g["label"] == (kept if kept is not None else "(none)"), "n"].sum())
        top = g.iloc[0]
        suggested = kept if agree == int(top["n"]) else top["label"]
        detail = "copies labelled " + ", ".join(f"{lab} x{n}" for lab, n in zip(g["label"], g["n"]))
        rows.append((image_id, kept, suggested, "conflict", agree / int(g["n"].sum()), detail))
    return pd.DataFrame(rows, columns=LABEL_ISSUE_COLUMNS)


def load_labelled(con, store: BlobStore) -> tuple[list[str], list[str], np.ndarray]:
    """(image ids, labels, uint8 pixels) of every labelled image in `images`, in the classifier's format:
    the most common mode, and the most common size shrunk to at most FEATURE_SIDE per side."""
    df = con.execute(
        "SELECT image_id, label, blob_key, width, height, mode FROM images WHERE label IS NOT NULL ORDER BY image_id"
    ).df()
    if df.empty:
        return [], [], np.zeros((0, 0, 0), np.uint8)
    mode, (w, h) = training_format(df["mode"], df["width"], df["height"])
    shrink = min(1.0, FEATURE_SIDE / max(w, h))
    size = (max(1, round(w * shrink)), max(1, round(h * shrink)))
    return list(df["image_id"]), list(df["label"]), load_arrays(store, list(df["blob_key"]), mode, size)


def find_label_issues(
    con, store: BlobStore, seed: int = 0, n_folds: int = 5, target_precision: float = 0.8,
    rare_fraction: float = RARE_CLASS_FRACTION,
) -> tuple[pd.DataFrame, dict[str, object]]:  # fmt: skip
    """All `label_issues` rows for the warehouse's images (mislabel, conflict, class_imbalance) and a summary."""
    ids, labels, pixels = load_labelled(con, store)
    classes = sorted(set(labels))
    y = np.searchsorted(classes, labels).astype(np.int64)
    mis = find_mislabels(pixels, y, len(classes), n_folds, seed, target_precision) if ids else None
    rare = rare_classes(pd.Series(labels, dtype=object), rare_fraction)
    frames = [
        mislabel_rows(ids, labels, classes, mis) if mis is not None else pd.DataFrame(columns=LABEL_ISSUE_COLUMNS),
        conflict_rows(con),
        rare_class_rows(ids, labels, rare),
    ]
    rows = pd.concat([f for f in frames if not f.empty] or frames[:1], ignore_index=True)
    per_class = pd.DataFrame({"label": classes, "images": np.bincount(y, minlength=len(classes)) if ids else []})
    for kind in ("mislabel", "conflict", "class_imbalance"):
        flagged = rows.loc[rows["kind"] == kind, "label"].value_counts()
        per_class[kind] = per_class["label"].map(flagged).fillna(0).astype(int)
    summary: dict[str, object] = {
        "labelled_images": len(ids),
        "classes": len(classes),
        "per_class": per_class,
        "rare_classes": rare,
        "counts": rows["kind"].value_counts().to_dict(),
    }
    if mis is not None:
        summary.update(
            mislabel_cutoff=mis.cutoff, estimated_noise_rate=mis.noise_rate,
            estimated_precision=mis.estimated_precision,
            classifier_agreement=mis.accuracy, mislabel_skipped=mis.skipped,
        )  # fmt: skip
    return rows, summary


def plant_label_flips(labels: np.ndarray, rate: float, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with `rate` of them moved to a uniformly drawn other class (seeded), and the mask of moved ones:
    the planted problem tests and benchmarks measure mislabel flags against."""
    rng = np.random.default_rng(seed)
    moved = np.zeros(len(labels), bool)
    moved[rng.choice(len(labels), int(round(rate * len(labels))), replace=False)] = True
    noisy = labels.copy()
    noisy[moved] = (labels[moved] + rng.integers(1, n_classes, moved.sum())) % n_classes
    return noisy, moved
