"""One evaluation of a synthetic set: features once, every metric from them, utility, scarcity, figures, notes.

`evaluate_synthetic` is the entry point. Features of real train, val, test and the synthetic set are extracted
once (`features.extract_features`) and the metrics registry (`metrics.METRICS`) computes fidelity, diversity
and privacy from them. Utility needs the images themselves: the reference logistic regression over seeds
(TRTR, TSTR, TRTS), a fresh CNN per seed, and the scarcity study. Model selection (the CNNs' early stopping,
the scarcity `_val` rows) uses val, and so does the gate (`tstr_trtr_ratio_val`, see `gate.judge`); reported
accuracies are on test.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from synthdata.evaluate import figures, metrics
from synthdata.evaluate.features import FeatureExtractor, extract_features, to_tensor, torch_threads
from synthdata.evaluate.metrics import MetricRow, per_class_values
from synthdata.evaluate.scarcity import format_fraction, scarcity_notes, scarcity_study
from synthdata.evaluate.utility import cnn_utility, seeded_utility

__all__ = ["EvaluationInputs", "EvaluationResult", "MetricRow", "evaluate_synthetic"]

CNN_SECONDS_PER_FIT = 20.0  # without a budget; with one, the CNNs share half of what is left after the rest


@dataclass
class EvaluationInputs:
    train_x: np.ndarray
    train_y: np.ndarray  # real train (labels: str)
    val_x: np.ndarray
    val_y: np.ndarray  # real val (may be empty)
    test_x: np.ndarray
    test_y: np.ndarray  # real test: reporting only
    synth_x: np.ndarray
    synth_y: np.ndarray  # synthetic
    aug_x: np.ndarray | None = None
    aug_y: np.ndarray | None = None  # augmented train rows (hard labels)
    # Optional: index into train_x of each augmented row's parent. With it, the scarcity study keeps only the
    # augmented copies of the real rows a fraction holds; without it, it takes the same share of all of them.
    aug_parent: np.ndarray | None = None


@dataclass
class EvaluationResult:
    rows: list[MetricRow]
    figures: dict[str, bytes]  # name -> PNG bytes
    closest_pairs: list[tuple[int, int, float]]  # (synth index, train index, feature distance), closest first
    notes: list[str]  # human-readable findings
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage

    def value(self, metric: str, class_label: str | None = None) -> float:
        """The first row's value for `metric` (overall by default); NaN when absent."""
        for row in self.rows:
            if row.metric == metric and row.class_label == class_label:
                return row.value
        return float("nan")


def _labels(y: np.ndarray | None) -> np.ndarray:
    return np.array([] if y is None else [str(v) for v in y], dtype=object)


def _uint8(t) -> np.ndarray:
    """Back from `to_tensor`'s (N, C, H, W) in [-1, 1] to uint8 (N, H, W[, 3]) for pictures."""
    arr = ((t.numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
    return arr[:, 0] if arr.shape[1] == 1 else arr.transpose(0, 2, 3, 1)


def evaluate_synthetic(
    inputs: EvaluationInputs,
    fx: FeatureExtractor,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    fractions: Sequence[float] = (0.1, 0.25, 1.0),
    scarcity: bool = True,
    max_seconds: float | None = None,
    cnn_max_epochs: int = 5,
) -> EvaluationResult:
    """Every metric of one synthetic set against the real splits, in `fx`'s feature space.

    `max_seconds` bounds the optional, costly parts: the CNN utility shares half of the time left after the
    features, metrics and logistic regressions (skipped, with a note, when under 2 s per fit remains), and
    the scarcity study runs its first seed in full and further seeds only while time remains. Within the
    budget, the same seeds give the same rows. `cnn_max_epochs` caps each utility CNN's training (0: no CNN
    utility rows).
    """
    import torch

    start = time.perf_counter()
    deadline = start + max_seconds if max_seconds else math.inf
    seconds: dict[str, float] = {}
    notes: list[str] = []
    classes = list(fx.classes)
    index = {c: i for i, c in enumerate(classes)}
    train_y, val_y, test_y = _labels(inputs.train_y), _labels(inputs.val_y), _labels(inputs.test_y)
    synth_y, aug_y = _labels(inputs.synth_y), _labels(inputs.aug_y)
    if len(inputs.test_x) == 0:
        raise ValueError("the evaluation reports on the real test split, which is empty")
    if len(inputs.synth_x) == 0:
        raise ValueError("no synthetic images to evaluate")
    unknown = sorted(set(synth_y) - set(classes))
    if unknown:
        notes.append(f"{int(np.isin(synth_y, unknown).sum())} synthetic images carry labels the real train split "
                     f"lacks ({', '.join(unknown[:5])}): counted in fidelity and privacy, left out of utility")  # fmt: skip

    # ---- features, once per image set -> fidelity, diversity, privacy
    t0 = time.perf_counter()
    feats = {name: extract_features(fx, x) for name, x in
             (("train", inputs.train_x), ("val", inputs.val_x), ("test", inputs.test_x), ("synth", inputs.synth_x))}  # fmt: skip
    seconds["features"] = time.perf_counter() - t0
    # The privacy holdout is every real image the generator never saw (val and test): its distance
    # percentiles are the thresholds, and on small sets (a 180-image val split) more images make them steadier.
    holdout_split = "val+test" if len(inputs.val_x) else "test"
    fs = metrics.FeatureSets(
        train=feats["train"], train_y=train_y, holdout=np.concatenate([feats["val"], feats["test"]]),
        holdout_y=np.concatenate([val_y, test_y]), holdout_split=holdout_split,
        synth=feats["synth"], synth_y=synth_y, classes=classes, seed=int(seeds[0]) if seeds else 0,
    )  # fmt: skip
    t0 = time.perf_counter()
    rows = metrics.compute(fs)
    rows.append(MetricRow("feature_val_accuracy", float(fx.val_accuracy), split="val"))
    seconds["metrics"] = time.perf_counter() - t0
    priv = fs.cache["privacy"]

    with torch_threads():
        # ---- one tensor format for every classifier: the extractor's mode and size
        def tensors(x: np.ndarray, y: np.ndarray):
            keep = np.array([v in index for v in y], dtype=bool)
            return (to_tensor(np.asarray(x)[keep], fx.image_mode, fx.image_size),
                    torch.tensor([index[v] for v in y[keep]], dtype=torch.int64))  # fmt: skip

        tr_x, tr_y = tensors(inputs.train_x, train_y)
        va_x, va_y = tensors(inputs.val_x, val_y) if len(inputs.val_x) else (tr_x[:0], tr_y[:0])
        te_x, te_y = tensors(inputs.test_x, test_y)
        sy_x, sy_y = tensors(inputs.synth_x, synth_y)
        k = len(classes)

        # ---- utility: logistic regression over seeds, TRTS
        t0 = time.perf_counter()
        u = seeded_utility(tr_x, tr_y, sy_x, sy_y, te_x, te_y, k, seeds, va_x, va_y)
        rows += [
            MetricRow("trtr_accuracy", u.trtr.mean, spread=u.trtr.std),
            MetricRow("tstr_accuracy", u.tstr.mean, spread=u.tstr.std),
            MetricRow("tstr_trtr_ratio", u.ratio.mean, spread=u.ratio.std),
            MetricRow("trts_accuracy", u.trts.mean, spread=u.trts.std, split="synthetic"),
        ]
        if u.ratio_val is not None:  # the gate judges this one where it exists (gate.judge); the report also shows test
            rows.append(MetricRow("tstr_trtr_ratio_val", u.ratio_val.mean, spread=u.ratio_val.std, split="val"))
        rows += [MetricRow("tstr_class_accuracy", s.mean, class_label=classes[c], spread=s.std)
                 for c, s in sorted(u.tstr_per_class.items())]  # fmt: skip
        seconds["utility_lr"] = time.perf_counter() - t0

        # ---- utility: a fresh CNN per seed, trained on real vs on synthetic
        t0 = time.perf_counter()
        per_fit = CNN_SECONDS_PER_FIT
        if math.isfinite(deadline):
            per_fit = min(per_fit, 0.5 * (deadline - time.perf_counter()) / max(1, 2 * len(seeds)))
        wanted = cnn_max_epochs > 0 and len(seeds) > 0
        if wanted and per_fit >= 2.0:
            trtr_c, tstr_c, ratio_c = cnn_utility(tr_x, tr_y, sy_x, sy_y, va_x, va_y, te_x, te_y, k, seeds,
                                                  seconds_per_fit=per_fit, max_epochs=cnn_max_epochs)  # fmt: skip
            rows += [
                MetricRow("trtr_accuracy_cnn", trtr_c.mean, spread=trtr_c.std),
                MetricRow("tstr_accuracy_cnn", tstr_c.mean, spread=tstr_c.std),
                MetricRow("tstr_trtr_ratio_cnn", ratio_c.mean, spread=ratio_c.std),
            ]
        elif wanted:
            notes.append(f"CNN utility skipped: {per_fit:.1f} s per fit was left of the {max_seconds:.0f} s budget")
        seconds["utility_cnn"] = time.perf_counter() - t0

        # ---- scarcity study
        cells = []
        if scarcity and fractions:
            t0 = time.perf_counter()
            ag_x, ag_y = tensors(inputs.aug_x, aug_y) if inputs.aug_x is not None and len(inputs.aug_x) else (None, None)
            parent = None
            if inputs.aug_parent is not None and ag_x is not None:
                parent = np.asarray(inputs.aug_parent)[np.array([v in index for v in aug_y], dtype=bool)]
            cells = scarcity_study(tr_x, tr_y, sy_x, sy_y, ag_x, ag_y, parent, va_x, va_y, te_x, te_y, k,
                                   seeds=seeds, fractions=fractions, deadline=deadline)  # fmt: skip
            for c in cells:
                name = f"scarcity_{c.arm}_f{format_fraction(c.fraction)}"
                rows.append(MetricRow(name, c.test.mean, spread=c.test.std))
                if c.val.values:
                    rows.append(MetricRow(f"{name}_val", c.val.mean, spread=c.val.std, split="val"))
            notes += scarcity_notes(cells, aug_parents_known=parent is not None)
            if cells and len(cells[0].test.values) < len(seeds):
                notes.append(f"scarcity study ran {len(cells[0].test.values)} of {len(seeds)} seeds within the budget")
            seconds["scarcity"] = time.perf_counter() - t0

        # ---- pictures and findings
        t0 = time.perf_counter()
        order = np.argsort(priv.synth_dcr, kind="stable")
        closest = [(int(i), int(priv.synth_nn[i]), float(priv.synth_dcr[i])) for i in order[:50]]
        pair_synth = _uint8(to_tensor(np.asarray(inputs.synth_x)[[p[0] for p in closest[:12]]], fx.image_mode, fx.image_size))
        pair_train = _uint8(to_tensor(np.asarray(inputs.train_x)[[p[1] for p in closest[:12]]], fx.image_mode, fx.image_size))
        local = [(i, i, d) for i, (_, _, d) in enumerate(closest[:12])]
        figs = {
            "per_class": figures.per_class_bars(classes, per_class_values(rows)),
            "dcr_histogram": figures.dcr_histograms(priv.synth_dcr, priv.holdout_dcr, holdout_split),
            "closest_pairs": figures.pairs_grid(pair_synth, pair_train, local),
            "samples": figures.sample_grid(_uint8(sy_x), synth_y[np.isin(synth_y, classes)], classes),
        }
        if cells:
            series: dict[str, list[tuple[float, float, float]]] = {}
            for c in cells:
                series.setdefault(c.arm, []).append((c.fraction, c.test.mean, c.test.std))
            figs["utility_vs_fraction"] = figures.utility_vs_fraction(series)
        seconds["figures"] = time.perf_counter() - t0
    seconds["total"] = time.perf_counter() - start
    return EvaluationResult(rows=rows, figures=figs, closest_pairs=closest, notes=_findings(rows, classes) + notes,
                            seconds=seconds)  # fmt: skip


def _findings(rows: Sequence[MetricRow], classes: Sequence[str]) -> list[str]:
    """Plain-language readings of the overall and per-class rows (the gate's verdict is separate)."""
    v = {r.metric: r.value for r in rows if r.class_label is None}
    notes = []
    if v.get("coverage", 1) < 0.5 and v.get("tstr_trtr_ratio", 0) >= 0.9:
        notes.append(f"high utility (TSTR/TRTR {v['tstr_trtr_ratio']:.2f}) with low coverage ({v['coverage']:.2f}): "
                     "the synthetic set covers few of the real modes (collapse)")  # fmt: skip
    if v.get("closer_than_holdout_fraction", 0) > 0.10:
        notes.append(f"{v['closer_than_holdout_fraction']:.0%} of synthetic images are closer to a training image than "
                     "95% of unseen real images are: likely copies (see the closest pairs)")  # fmt: skip
    per = per_class_values(rows)
    cov = {c: per[c]["coverage"] for c in classes if "coverage" in per.get(c, {})}
    if cov:
        worst = min(cov, key=cov.get)
        notes.append(f"lowest per-class coverage: {worst} ({cov[worst]:.2f}); highest: "
                     f"{max(cov, key=cov.get)} ({max(cov.values()):.2f})")  # fmt: skip
    if v.get("feature_val_accuracy", 1) < 0.8:
        notes.append(f"the feature space classifies real val images at only {v['feature_val_accuracy']:.2f}: "
                     "distances in it separate classes less than a person would")  # fmt: skip
    return notes
