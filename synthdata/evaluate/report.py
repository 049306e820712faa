"""The human-readable quality report of one evaluation: a markdown page with the metrics and a sample grid."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from synthdata.io.atomic import write_atomic
from synthdata.render import markdown_image


def render_report(
    family: str,
    evaluation_id: str,
    checkpoint_id: str,
    metrics: Mapping[str, float],
    n_train: int,
    n_test: int,
    n_synth: int,
    grid_png: bytes,
    created_at: dt.datetime,
) -> str:
    """Markdown for one evaluation: what was compared, every metric, how to read them, and the samples."""
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


def publish_report(report_dir: Path, evaluation_id: str, text: str) -> Path:
    """Write `quality_<evaluation_id>.md` and `latest.md` (both atomically); the path of the first."""
    path = Path(report_dir) / f"quality_{evaluation_id}.md"
    write_atomic(path, text)
    write_atomic(path.parent / "latest.md", text)
    return path
