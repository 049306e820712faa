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


# ---------------------------------------------------------------------------------------------------------------
# Seeded utility: the reference logistic regression and the CNN over several seeds, with spread

LR_SUBSAMPLE = 0.8  # share of the training rows each seed draws (without replacement): the LR's source of variation
# Batches of 512 at lr 1e-2 for max(8 epochs, 150 steps) matched smaller batches' accuracy (digits 0.967,
# Fashion-MNIST 0.817 on 70/30 splits) in a third of the steps; on small sets the per-step overhead dominates.
LR_MIN_EPOCHS, LR_MIN_STEPS, LR_BATCH, LR_RATE = 8, 150, 512, 1e-2


@dataclass(frozen=True)
class Seeded:
    """One accuracy-like figure over seeds."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.values)) if self.values else float("nan")


def fit_logistic_regression(x, y, num_classes: int, seed: int, subsample: float = LR_SUBSAMPLE):
    """Multinomial logistic regression on flattened pixels (float tensor (N, ...), int64 labels), seeded.

    Trained by minibatch Adam for max(8 epochs, 150 steps) from zero weights with a small L2 penalty: on
    Fashion-MNIST it scores what scikit-learn's converged lbfgs fit scores (0.82 on 7,000 rows), at a fraction
    of the cost, which lets the scarcity study afford 36 fits. `seed` draws the subsample of rows and the
    batch order, so seeds differ for a reason the data explains: which real rows a team happened to have.
    Returns a function from a float tensor to predicted class indices.
    """
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    flat = x.reshape(len(x), -1)
    if subsample < 1.0:
        keep = torch.randperm(len(flat), generator=gen)[: max(2, int(round(subsample * len(flat))))]
        flat, y = flat[keep], y[keep]
    w = torch.zeros(flat.shape[1], num_classes, requires_grad=True)
    b = torch.zeros(num_classes, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=LR_RATE)
    steps_per_epoch = -(-len(flat) // LR_BATCH)
    epochs = max(LR_MIN_EPOCHS, -(-LR_MIN_STEPS // steps_per_epoch))
    for _ in range(epochs):
        order = torch.randperm(len(flat), generator=gen)
        for s in range(0, len(flat), LR_BATCH):
            idx = order[s : s + LR_BATCH]
            loss = F.cross_entropy(flat[idx] @ w + b, y[idx]) + 1e-4 * (w * w).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    w, b = w.detach(), b.detach()

    def predict(q) -> np.ndarray:
        with torch.no_grad():
            return (q.reshape(len(q), -1) @ w + b).argmax(1).numpy()

    return predict


@dataclass(frozen=True)
class SeededUtility:
    trtr: Seeded
    tstr: Seeded
    ratio: Seeded  # per-seed TSTR / TRTR
    trts: Seeded  # real-trained model tested on the synthetic set
    tstr_per_class: dict[int, Seeded]  # class index -> TSTR accuracy on that class's real test rows
    ratio_val: Seeded | None = None  # the same models' TSTR / TRTR on real val: what floors are chosen on


def _acc(pred: np.ndarray, y: np.ndarray) -> float:
    return float((pred == y).mean()) if len(y) else float("nan")


def seeded_utility(real_x, real_y, synth_x, synth_y, test_x, test_y, num_classes: int, seeds,
                   val_x=None, val_y=None) -> SeededUtility:  # fmt: skip
    """TRTR / TSTR / TRTS of the reference logistic regression over `seeds` (tensors in, one format); with a
    non-empty real val split, also the TSTR/TRTR ratio of the same fits on val (`ratio_val`)."""
    from synthdata.evaluate.features import torch_threads

    test_np, synth_np = test_y.numpy(), synth_y.numpy()
    on_val = val_x is not None and len(val_x) > 0
    val_np = val_y.numpy() if on_val else None
    trtr, tstr, ratio, trts, ratio_val = [], [], [], [], []
    per_class: dict[int, list[float]] = {c: [] for c in np.unique(test_np).tolist()}
    with torch_threads():
        for seed in seeds:
            real_model = fit_logistic_regression(real_x, real_y, num_classes, seed)
            synth_model = fit_logistic_regression(synth_x, synth_y, num_classes, seed)
            a_real, pred_synth = _acc(real_model(test_x), test_np), synth_model(test_x)
            a_synth = _acc(pred_synth, test_np)
            trtr.append(a_real)
            tstr.append(a_synth)
            ratio.append(a_synth / a_real if a_real > 0 else float("nan"))
            trts.append(_acc(real_model(synth_x), synth_np))
            if on_val:
                v_real, v_synth = _acc(real_model(val_x), val_np), _acc(synth_model(val_x), val_np)
                ratio_val.append(v_synth / v_real if v_real > 0 else float("nan"))
            for c in per_class:
                per_class[c].append(_acc(pred_synth[test_np == c], test_np[test_np == c]))
    return SeededUtility(Seeded(tuple(trtr)), Seeded(tuple(tstr)), Seeded(tuple(ratio)), Seeded(tuple(trts)),
                         {c: Seeded(tuple(v)) for c, v in per_class.items()},
                         Seeded(tuple(ratio_val)) if on_val else None)  # fmt: skip


CNN_MAX_ROWS = 5000  # training rows per utility CNN (seeded subsample): 6 fits must fit a 2-3 minute evaluation


def cnn_utility(real_x, real_y, synth_x, synth_y, val_x, val_y, test_x, test_y, num_classes: int, seeds,
                *, seconds_per_fit: float, max_epochs: int = 5, max_rows: int = CNN_MAX_ROWS,
                ) -> tuple[Seeded, Seeded, Seeded]:  # fmt: skip
    """(TRTR, TSTR, ratio) of a fresh SmallCNN per seed (seed = initial weights, batch order and which
    `max_rows` training rows it sees when a set is larger).

    Both CNNs are selected on the real val split (early stopping) and scored on real test; each fit gets the
    same rows, epoch and time budget, so the ratio compares data, not training time.
    """
    import torch

    from synthdata.evaluate.features import _accuracy, torch_threads, train_cnn

    trtr, tstr, ratio = [], [], []
    for seed in seeds:
        accs = []
        for x, y in ((real_x, real_y), (synth_x, synth_y)):
            if len(x) > max_rows:
                keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:max_rows]
                x, y = x[keep], y[keep]
            with torch_threads():
                fit = train_cnn(x, y, val_x, val_y, num_classes, seed=seed, max_seconds=seconds_per_fit,
                                max_epochs=max_epochs, patience=2)  # fmt: skip
                accs.append(_accuracy(fit.model, test_x, test_y))
        trtr.append(accs[0])
        tstr.append(accs[1])
        ratio.append(accs[1] / accs[0] if accs[0] > 0 else float("nan"))
    return Seeded(tuple(trtr)), Seeded(tuple(tstr)), Seeded(tuple(ratio))
