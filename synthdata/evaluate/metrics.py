"""The metrics registry: small named functions over feature sets extracted once (stylegan2-ada's `metric_main`).

Each registered function takes a `FeatureSets` (features of real train, a real holdout and the synthetic set,
with labels) and returns `MetricRow`s: overall rows (class_label None) and per-class rows. `compute` runs a
selection by name; the suite extracts features once and calls it, so adding a metric is one function here.

Fidelity and diversity compare the synthetic set with real train (the distribution the generator was fit to),
both subsampled to the same size: precision/recall/density/coverage depend on the sample sizes, and equal
sizes make them comparable across evaluations. Privacy compares distances to train with the holdout's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from synthdata.blas import single_threaded_blas
from synthdata.evaluate import fidelity, privacy


@dataclass
class MetricRow:
    metric: str
    value: float
    class_label: str | None = None  # None = overall
    spread: float | None = None  # std over seeds / subsets where the metric has one
    split: str = "test"  # which real split it was measured against ("train" | "val" | "test" | "val+test")


@dataclass
class FeatureSets:
    train: np.ndarray  # (N, D) features of real train
    train_y: np.ndarray  # str labels
    holdout: np.ndarray  # real images the generator never saw (val and test)
    holdout_y: np.ndarray
    holdout_split: str  # "val+test" | "test"
    synth: np.ndarray
    synth_y: np.ndarray
    classes: list[str]
    seed: int = 0
    max_rows: int = 10_000  # cap per set for the quadratic metrics (PRDC, KID subsets draw from these)
    k: int = 5
    cache: dict | None = None  # results shared between metrics (the privacy distances feed the report)


def overall_values(rows: Sequence[MetricRow]) -> dict[str, float]:
    """metric -> value of its first overall row (class_label None), as the gate reads it."""
    overall: dict[str, float] = {}
    for row in rows:
        if row.class_label is None:
            overall.setdefault(row.metric, float(row.value))
    return overall


def per_class_values(rows: Sequence[MetricRow]) -> dict[str, dict[str, float]]:
    """class -> metric -> value of the per-class rows."""
    out: dict[str, dict[str, float]] = {}
    for row in rows:
        if row.class_label is not None:
            out.setdefault(row.class_label, {})[row.metric] = row.value
    return out


MetricFn = Callable[[FeatureSets], list[MetricRow]]
METRICS: dict[str, MetricFn] = {}


def register(name: str) -> Callable[[MetricFn], MetricFn]:
    def deco(fn: MetricFn) -> MetricFn:
        METRICS[name] = fn
        return fn

    return deco


def compute(fs: FeatureSets, names: Sequence[str] | None = None) -> list[MetricRow]:
    """Rows of the named metrics (all registered ones by default), in registry order."""
    unknown = sorted(set(names or ()) - set(METRICS))
    if unknown:
        raise KeyError(f"unknown metrics {unknown}; registered: {sorted(METRICS)}")
    if fs.cache is None:
        fs.cache = {}
    rows: list[MetricRow] = []
    # One BLAS thread: on shared cores OpenBLAS's second thread made these products and eigendecompositions
    # several times slower (KID 5.7 s vs 1.5 s, FID 1.5 s vs 0.15 s on digits under load; docs/benchmarks.md).
    with single_threaded_blas():
        for name, fn in METRICS.items():
            if names is None or name in names:
                rows.extend(fn(fs))
    return rows


def _matched(fs: FeatureSets, real: np.ndarray, fake: np.ndarray, salt: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded subsamples of both sets to one size (the smaller set's, at most `max_rows`)."""
    n = min(len(real), len(fake), fs.max_rows)
    rng = np.random.default_rng([fs.seed, salt])
    pick = lambda x: x if len(x) == n else x[np.sort(rng.choice(len(x), n, replace=False))]  # noqa: E731
    return pick(real), pick(fake)


def _per_class(fs: FeatureSets):
    for i, c in enumerate(fs.classes):
        real, fake = fs.train[fs.train_y == c], fs.synth[fs.synth_y == c]
        yield i, c, real, fake


@register("fid")
def _fid(fs: FeatureSets) -> list[MetricRow]:
    rows = [MetricRow("fid", fidelity.frechet_distance(fs.train, fs.synth), split="train")]
    for _, c, real, fake in _per_class(fs):
        if len(real) >= 2 and len(fake) >= 2:
            rows.append(MetricRow("fid", fidelity.frechet_distance(real, fake), class_label=c, split="train"))
    return rows


@register("kid")
def _kid(fs: FeatureSets) -> list[MetricRow]:
    mean, std = fidelity.kernel_inception_distance(fs.train, fs.synth, seed=fs.seed)
    return [MetricRow("kid", mean, spread=std, split="train")]


@register("prdc")
def _prdc(fs: FeatureSets) -> list[MetricRow]:
    def rows_of(result: fidelity.PRDC, label: str | None) -> list[MetricRow]:
        return [MetricRow(name, float(getattr(result, name)), class_label=label, split="train")
                for name in ("precision", "recall", "density", "coverage")]  # fmt: skip

    rows = rows_of(fidelity.prdc(*_matched(fs, fs.train, fs.synth, 0), k=fs.k), None)
    for i, c, real, fake in _per_class(fs):
        if len(real) > fs.k and len(fake) > fs.k:
            rows += rows_of(fidelity.prdc(*_matched(fs, real, fake, 1 + i), k=fs.k), c)
    return rows


@register("privacy")
def _privacy(fs: FeatureSets) -> list[MetricRow]:
    p = privacy.feature_privacy(fs.train, fs.holdout, fs.synth, seed=fs.seed)
    if fs.cache is not None:
        fs.cache["privacy"] = p
    split = fs.holdout_split
    rows = [MetricRow(name, float(getattr(p, name)), split=split) for name in (
        "dcr_synth_median", "dcr_holdout_median", "dcr_ratio", "closer_than_holdout_fraction",
        "near_copy_fraction", "mia_auc", "mia_advantage")]  # fmt: skip
    for c in fs.classes:
        s, h = p.synth_dcr[fs.synth_y == c], p.holdout_dcr[fs.holdout_y == c]
        if len(s) and len(h) and np.median(h) > 0:
            rows.append(MetricRow("dcr_ratio", float(np.median(s) / np.median(h)), class_label=c, split=split))
    return rows
