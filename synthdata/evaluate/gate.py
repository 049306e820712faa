"""The quality gate: floors on named metrics, and the verdict of one evaluation against them.

A floor names an overall metric (a `MetricRow` with no class label) and a minimum and/or maximum. A metric
the evaluation did not produce fails its floor, as does a NaN: the gate never passes on missing evidence.
Where the evaluation measured the metric on val as well (`<metric>_val`), the floor judges val (`judge`).

The defaults were calibrated by `benchmarks/evaluation.py` (figures in docs/evaluation.md) on stand-in
generators made of real images (`standins.py`) on the digits, 10,000 Fashion-MNIST images and the 200 LFW
subset images (face / not face):
- ideal: real images held out of train, val and test, with their labels: as good as the data itself;
- collapsed: 1 or 3 real train images per class, or each class's mean image, repeated;
- memorizing: real train images returned as they are, JPEG-recompressed (q75) or shifted by up to 1 px.
Each floor sits between what the ideal generator measured and what the failure it guards against measured
(the per-floor comments give the figures). The contract's proposed values held: every ideal set passed them
all, and every collapsed or memorizing stand-in failed at least one diversity or privacy floor on every set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from synthdata.evaluate.metrics import MetricRow, overall_values


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


# Calibration figures: `python -m benchmarks evaluation` (seed 0), overall rows, digits / Fashion-MNIST 10k / LFW
# (200 images: 40 synthetic, 60 holdout); docs/evaluation.md holds the full table.
DEFAULT_FLOORS: tuple[Floor, ...] = (
    # Utility. Ideal 0.99 / 1.00 / 0.97. The floor the pipeline has used since the first gate; a collapse can pass
    # it (class means on digits: 0.93), hence the diversity floors.
    Floor("tstr_trtr_ratio", min=0.90),
    # Diversity (Naeem et al. 2020, k=5). Ideal coverage 0.97 / 0.97 / 1.00 and recall 0.98 / 0.95 / 0.95.
    # Collapsed (1 or 3 images per class, class means): coverage at most 0.39 on digits and 0.02 on Fashion (LFW's
    # two classes, 3 images each: 0.60, caught by recall), recall at most 0.04 / 0.003 / 0.15.
    Floor("coverage", min=0.50),
    Floor("recall", min=0.30),
    # Privacy. The fractions are holdout quantiles by construction (about 0.05 and 0.01 when nothing is copied):
    # ideal closer-than-holdout 0.064 / 0.053 / 0.075, near-copies 0.007 / 0.012 / 0.025, MIA AUC 0.49 / 0.50 /
    # 0.56. Memorizing: exact or JPEG'd copies >= 0.85 closer and >= 0.68 near-copies everywhere; copies shifted
    # by up to 1 px 0.14 / 0.14 / 0.53 and 0.14 / 0.13 / 0.30; MIA AUC 0.67 / 1.00 / 0.73 for exact copies (a
    # third of digits' train copied, all of Fashion's) and 0.61 for Fashion's shifted copies.
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


def judged_metric(metric: str, overall: Mapping[str, float]) -> str:
    """The row a floor on ``metric`` judges among ``overall``'s: ``<metric>_val`` where the evaluation measured
    it on val (see :func:`judge`), else ``metric``."""
    return f"{metric}_val" if f"{metric}_val" in overall else metric


def judge(rows: Sequence[MetricRow], floors: Sequence[Floor]) -> Verdict:
    """Check each floor against the overall row of its metric; a missing or NaN metric is a failure.

    Where the evaluation also measured the metric on the real val split (a ``<metric>_val`` row, today the
    utility ratio), the floor judges that one: publishing is a selection (a team retrains until the gate
    passes), and selection reads val so that test stays a clean report. Without a val split the test row is
    judged, and the failure says which split it read."""
    overall = overall_values(rows)
    failures: list[str] = []
    checked: dict[str, float] = {}
    for floor in floors:
        name = judged_metric(floor.metric, overall)
        shown = f"{floor.metric} (val)" if name != floor.metric else floor.metric
        if name not in overall:
            failures.append(f"{floor.metric} missing (the evaluation did not produce it)")
            continue
        value = overall[name]
        checked[floor.metric] = value  # the value judged (val where measured)
        if math.isnan(value):
            failures.append(f"{shown} is NaN")
            continue
        if floor.min is not None and value < floor.min:
            failures.append(f"{shown} {_fmt(value)} < min {_fmt(floor.min)}")
        if floor.max is not None and value > floor.max:
            failures.append(f"{shown} {_fmt(value)} > max {_fmt(floor.max)}")
    return Verdict(passed=not failures, failures=failures, checked=checked)
