"""The human-readable quality report of one evaluation: a markdown page people read.

With an `EvaluationResult` (the suite's output) it holds the verdict against the floors, the overall metrics
with their spread and split, a per-class table, the scarcity table, the findings, the figures and sample grid
(PNG data URIs, so the page and the Dagster UI show them inline) and the closest synthetic/training pairs.
The older call with a flat `metrics` mapping still renders the short page it always did.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from synthdata.evaluate.gate import judged_metric
from synthdata.evaluate.metrics import per_class_values
from synthdata.io.atomic import write_atomic
from synthdata.render import markdown_image

if TYPE_CHECKING:
    from synthdata.evaluate.gate import Floor, Verdict
    from synthdata.evaluate.suite import EvaluationResult

PER_CLASS_COLUMNS = ("fid", "precision", "recall", "density", "coverage", "tstr_class_accuracy", "dcr_ratio")
FIGURES = (
    ("per_class", "Fidelity and diversity per class"),
    ("utility_vs_fraction", "Utility against the share of real train (scarcity study)"),
    ("dcr_histogram", "Distance to the closest training image: synthetic vs unseen real"),
    ("closest_pairs", "Closest pairs: synthetic (top) and its nearest training image (bottom)"),
)
GLOSSARY = """- **TRTR / TSTR / TRTS**: accuracy of the reference logistic regression (pixels, 3+ seeds, each on a seeded
  80% of its training rows) trained on real / on synthetic and tested on real test; TRTS tests the real-trained
  model on the synthetic set. `tstr_trtr_ratio` is how much of the real data's usefulness the synthetic set
  carries; `_cnn` rows repeat it with a fresh small CNN per seed.
- **FID / KID**: distance between the real-train and synthetic feature distributions (lower is better; KID is
  unbiased, its spread is over subsets). **Precision / density**: synthetic images fall where real ones are
  (fidelity). **Recall / coverage**: real images have synthetic ones nearby (diversity; a collapsed generator
  fails these whatever its TSTR).
- **Privacy**: `dcr_*` is the feature distance to the closest training image, synthetic vs a real holdout;
  `closer_than_holdout_fraction` is the share of synthetic images closer than the holdout's 5th percentile
  (~0.05 when nothing is copied); `mia_auc` is a membership attack's AUC (0.5 = nothing leaks).
- Features come from the pipeline's own CNN trained on real train (`feature_val_accuracy`); docs/evaluation.md
  explains each metric and how the floors were calibrated."""


def _num(v: float | None, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}"


def _legacy(family, evaluation_id, checkpoint_id, metrics, n_train, n_test, n_synth, grid_png, created_at) -> str:
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    return f"""# Synthetic data quality: {family}

Evaluation `{evaluation_id}` of checkpoint `{checkpoint_id}`, {created_at:%Y-%m-%d %H:%M UTC}.

Real train images: {n_train}; real test images: {n_test}; synthetic images: {n_synth}.

| metric | value |
|---|---|
{rows}

- **TRTR / TSTR**: accuracy on the real test split of the same logistic-regression classifier trained on real
  train images / on synthetic images. The ratio is how much of the real data's usefulness the synthetic set carries.
- **Memorization**: median distance from each synthetic (resp. real test) image to its nearest real training
  image. A ratio well below 1 means the generator copies training images; `near_copy_fraction` counts synthetic
  images closer to a training image than 99% of real test images are.

## Samples (one row per class)

{markdown_image(grid_png, "samples")}
"""


def _verdict_section(verdict: Verdict | None, floors: Sequence[Floor] | None, overall: Mapping[str, float]) -> str:
    if verdict is None:
        return ""
    head = "## Verdict: PASSED\n" if verdict.passed else "## Verdict: FAILED\n\n" + "\n".join(f"- {f}" for f in verdict.failures) + "\n"
    if not floors:
        return head
    lines = ["| floor | value | min | max | |", "|---|---|---|---|---|"]
    for f in floors:
        # The value the gate judged: the val row where the evaluation has one, else the overall row.
        judged = judged_metric(f.metric, overall)
        on_val = judged != f.metric
        v = verdict.checked.get(f.metric, overall.get(judged))
        ok = v is not None and not math.isnan(v) and (f.min is None or v >= f.min) and (f.max is None or v <= f.max)
        lines.append(f"| {f.metric}{' (val)' if on_val else ''} | {_num(v)} | {_num(f.min, 2) if f.min is not None else ''} | "
                     f"{_num(f.max, 2) if f.max is not None else ''} | {'ok' if ok else '**fail**'} |")  # fmt: skip
    return head + "\n" + "\n".join(lines) + "\n"


def _scarcity_table(overall_rows) -> str:
    cells: dict[str, dict[str, str]] = {}
    for r in overall_rows:
        if r.metric.startswith("scarcity_") and not r.metric.endswith("_val"):
            arm, frac = r.metric[len("scarcity_") :].rsplit("_f", 1)
            cells.setdefault(arm, {})[frac] = f"{r.value:.3f} +/- {r.spread or 0:.3f}"
    if not cells:
        return ""
    fracs = sorted({f for c in cells.values() for f in c}, key=float)
    lines = ["| arm | " + " | ".join(f"{float(f):.0%} real" for f in fracs) + " |", "|---|" + "---|" * len(fracs)]
    lines += [f"| {arm} | " + " | ".join(c.get(f, "-") for f in fracs) + " |" for arm, c in cells.items()]
    return "## Scarcity study (real test accuracy, mean +/- std over seeds)\n\n" + "\n".join(lines) + "\n"


def render_report(
    family: str,
    evaluation_id: str,
    checkpoint_id: str,
    metrics: Mapping[str, float] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    n_synth: int | None = None,
    grid_png: bytes | None = None,
    created_at: dt.datetime | None = None,
    *,
    result: EvaluationResult | None = None,
    verdict: Verdict | None = None,
    floors: Sequence[Floor] | None = None,
    counts: Mapping[str, int] | None = None,
) -> str:
    """Markdown for one evaluation. Pass `result` (and `verdict`, `floors`, `counts`) for the full report; the
    positional `metrics`, `n_*`, `grid_png` form renders the short page of the first gate."""
    created_at = created_at or dt.datetime.now(dt.UTC)
    if result is None:
        return _legacy(family, evaluation_id, checkpoint_id, metrics or {}, n_train, n_test, n_synth, grid_png, created_at)
    overall_rows = [r for r in result.rows if r.class_label is None]
    overall = {r.metric: float(r.value) for r in overall_rows}
    counts = dict(counts or {})
    count_line = "; ".join(f"{k}: {v}" for k, v in counts.items())
    main = [r for r in overall_rows if not r.metric.startswith("scarcity_")]
    table = "\n".join(f"| {r.metric} | {_num(r.value)} | {_num(r.spread) if r.spread is not None else ''} | {r.split} |" for r in main)
    classes = per_class_values(result.rows)
    per_class = "\n".join(
        f"| {c} | " + " | ".join(_num(v.get(m), 3) for m in PER_CLASS_COLUMNS) + " |" for c, v in classes.items()
    )
    figures = "\n\n".join(f"### {title}\n\n{markdown_image(result.figures[name], name)}"
                          for name, title in FIGURES if name in result.figures)  # fmt: skip
    grid = grid_png or result.figures.get("samples")
    pairs = "\n".join(f"| {s} | {t} | {d:.4f} |" for s, t, d in result.closest_pairs[:10])
    notes = "\n".join(f"- {n}" for n in result.notes) or "- none"
    return f"""# Synthetic data quality: {family}

Evaluation `{evaluation_id}` of checkpoint `{checkpoint_id}`, {created_at:%Y-%m-%d %H:%M UTC}.

Images: {count_line or "-"}.

{_verdict_section(verdict, floors, overall)}
## Findings

{notes}

## Overall metrics

| metric | value | spread | measured against |
|---|---|---|---|
{table}

## Per class

| class | {" | ".join(PER_CLASS_COLUMNS)} |
|---|{"---|" * len(PER_CLASS_COLUMNS)}
{per_class}

{_scarcity_table(overall_rows)}
## Figures

{figures}

## Samples (one row per class)

{markdown_image(grid, "samples") if grid else "-"}

## Closest synthetic / training pairs (feature distance)

| synthetic index | training index | distance |
|---|---|---|
{pairs}

## How to read this

{GLOSSARY}
"""


def publish_report(report_dir: Path, evaluation_id: str, text: str) -> Path:
    """Write `quality_<evaluation_id>.md` and `latest.md` (both atomically); the path of the first."""
    path = Path(report_dir) / f"quality_{evaluation_id}.md"
    write_atomic(path, text)
    write_atomic(path.parent / "latest.md", text)
    return path
