"""The quality gate: floors on named metrics, and the verdict of one evaluation against them.

A floor names an overall metric (a `MetricRow` with no class label) and a minimum and/or maximum. A metric
the evaluation did not produce fails its floor, as does a NaN: the gate never passes on missing evidence.

The defaults were calibrated by `benchmarks/evaluation.py` (figures in docs/evaluation.md and
docs/benchmarks.md) on three stand-in generators built from real data, on the digits, on 10,000 Fashion-MNIST
images and on the LFW faces (face / not face):
- ideal: held-out real images (val) with their labels, i.e. a generator as good as the data itself;
- collapsed: 1 or 3 real train images per class, repeated to the synthetic set's size;
- memorizing: real train images returned as they are, JPEG-recompressed (q75) or with 1 px shifts.
Each floor sits between what the ideal generator measured and what the failure it guards against measured,
nearer the ideal side only where the ideal's spread allows (see the per-floor comments for the figures).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from synthdata.evaluate.metrics import MetricRow


@dataclass(frozen=True)
class Floor:
    metric: str
    min: float | None = None
    max: float | None = None


@dataclass(frozen=True)
class Verdict:
    passed: bool
    failures: list[str]  # e.g. "coverage 0.12 < min 0.50"
    checked: dict[str, float] = field(default_factory=dict)


# Calibration figures (overall rows; ideal / collapsed 1 per class / collapsed 3 per class / memorizing), from
# `python -m benchmarks evaluation`; docs/evaluation.md holds the full table.
DEFAULT_FLOORS: tuple[Floor, ...] = (
    # Utility. Ideal 0.98-1.02 on every set; the floor is the one the pipeline has used since the first gate.
    # A collapsed generator can pass it (TSTR of 3 images per class on digits: ~0.8-0.9), hence the next two.
    Floor("tstr_trtr_ratio", min=0.90),
    # Diversity (Naeem et al. 2020, k=5). Ideal coverage ~0.9-0.97, recall ~0.7-0.95; one image per class
    # repeated: coverage <= 0.01 and recall <= 0.01; three per class: coverage <= 0.05, recall <= 0.05.
    Floor("coverage", min=0.50),
    Floor("recall", min=0.30),
    # Privacy. Ideal: ~5% of synthetic images fall below the 5th percentile of holdout distances by
    # construction, MIA AUC ~0.5, near-copies ~1%. Memorizing (exact, JPEG'd or shifted copies): >= 0.5 closer
    # than holdout, MIA AUC near 1 when the copies are the members, near-copies far above 5%.
    Floor("closer_than_holdout_fraction", max=0.10),
    Floor("mia_auc", max=0.60),
    Floor("near_copy_fraction", max=0.05),
)


def default_floors(family: str) -> list[Floor]:
    """The floors every family is held to unless configuration overrides them (the same for every family today:
    the calibration measured the data, not a family; `family` is the key per-family overrides hang on)."""
    del family
    return list(DEFAULT_FLOORS)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e-2 and v != 0 else f"{v:.2f}" if abs(v) < 1e3 else f"{v:.4g}"


def judge(rows: Sequence[MetricRow], floors: Sequence[Floor]) -> Verdict:
    """Check each floor against the overall row of its metric; a missing or NaN metric is a failure."""
    overall: dict[str, float] = {}
    for row in rows:
        if row.class_label is None and row.metric not in overall:
            overall[row.metric] = float(row.value)
    failures: list[str] = []
    checked: dict[str, float] = {}
    for floor in floors:
        if floor.metric not in overall:
            failures.append(f"{floor.metric} missing (the evaluation did not produce it)")
            continue
        value = overall[floor.metric]
        checked[floor.metric] = value
        if math.isnan(value):
            failures.append(f"{floor.metric} is NaN")
            continue
        if floor.min is not None and value < floor.min:
            failures.append(f"{floor.metric} {_fmt(value)} < min {_fmt(floor.min)}")
        if floor.max is not None and value > floor.max:
            failures.append(f"{floor.metric} {_fmt(value)} > max {_fmt(floor.max)}")
    return Verdict(passed=not failures, failures=failures, checked=checked)
