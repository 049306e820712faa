"""The evaluation's pictures, as PNG bytes: per-class fidelity/diversity bars, utility against the real fraction,
distance-to-closest-record histograms, the closest synthetic/training pairs and a sample grid.

Drawn with matplotlib's Agg backend (`synthdata.render.figure`), as the training curves are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synthdata import render


def per_class_bars(classes: Sequence[str], values: dict[str, dict[str, float]]) -> bytes:
    """Grouped bars: for each class, precision / recall / density (capped at 1.5) / coverage."""
    names = ["precision", "recall", "density", "coverage"]
    plt, fig, ax = render.figure(max(6.0, 0.7 * len(classes) + 2), 3.4)
    x = np.arange(len(classes))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        ys = [min(values.get(c, {}).get(name, np.nan), 1.5) for c in classes]
        ax.bar(x + (i - 1.5) * width, ys, width, label=name)
    ax.axhline(1.0, color="grey", linewidth=0.6)
    ax.set_xticks(x, [c[:12] for c in classes], rotation=30 if len(classes) > 6 else 0, fontsize=8)
    ax.set_ylabel("value (density capped at 1.5)")
    ax.set_title("fidelity (precision, density) and diversity (recall, coverage) per class")
    ax.set_ylim(0, 1.8)  # bars stop at 1.5: the band above holds the legend
    ax.legend(fontsize=7, ncol=4, loc="upper center")
    return render.figure_png(plt, fig)


def utility_vs_fraction(series: dict[str, list[tuple[float, float, float]]]) -> bytes:
    """One line per arm: (fraction, mean test accuracy, std over seeds) points with error bars."""
    plt, fig, ax = render.figure(6.0, 3.4)
    for arm, points in series.items():
        pts = sorted(points)
        ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                    capsize=3, linewidth=1.2, label=arm)  # fmt: skip
    ax.set_xscale("log")
    fracs = sorted({p[0] for pts in series.values() for p in pts})
    ax.set_xticks(fracs, [f"{f:.0%}" for f in fracs])
    ax.set_xlabel("share of real train used")
    ax.set_ylabel("real test accuracy")
    ax.set_title("scarcity study (logistic regression, mean +/- std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return render.figure_png(plt, fig)


def dcr_histograms(synth_dcr: np.ndarray, holdout_dcr: np.ndarray, holdout_split: str) -> bytes:
    """Distance to the closest training image: synthetic vs real holdout, with the 5th-percentile line."""
    plt, fig, ax = render.figure(6.0, 3.2)
    hi = float(np.percentile(np.r_[synth_dcr, holdout_dcr], 99.5)) if len(synth_dcr) + len(holdout_dcr) else 1.0
    bins = np.linspace(0.0, max(hi, 1e-6), 50)
    ax.hist(holdout_dcr, bins=bins, density=True, alpha=0.55, label=f"real {holdout_split} (never trained on)")
    ax.hist(synth_dcr, bins=bins, density=True, alpha=0.55, label="synthetic")
    if len(holdout_dcr):
        ax.axvline(float(np.percentile(holdout_dcr, 5)), color="black", linestyle="--", linewidth=0.8,
                   label=f"5th percentile of {holdout_split}")  # fmt: skip
    ax.set_xlabel("feature distance to the closest training image")
    ax.set_ylabel("density")
    ax.set_title("distance to the closest training image")
    ax.legend(fontsize=8)
    return render.figure_png(plt, fig)


def pairs_grid(synth: np.ndarray, train: np.ndarray, pairs: Sequence[tuple[int, int, float]], n: int = 12) -> bytes:
    """Top row: the synthetic images closest to a training image; bottom row: that training image."""
    top = pairs[:n]
    images = np.concatenate([synth[[p[0] for p in top]], train[[p[1] for p in top]]])
    return render.image_grid(images, ncol=len(top), scale=max(1, 96 // max(images.shape[1], 1)))


def sample_grid(images: np.ndarray, labels: np.ndarray, classes: Sequence[str], per_class: int = 10) -> bytes:
    """Up to `per_class` synthetic images of each class, one row per class (classes without images skipped)."""
    rows = [images[labels == c][:per_class] for c in classes]
    rows = [r for r in rows if len(r)]
    padded = []
    for r in rows:  # a short row is padded with white so every class starts a new grid row
        pad = np.full((per_class - len(r), *r.shape[1:]), 255, dtype=np.uint8)
        padded.append(np.concatenate([r, pad]))
    return render.image_grid(np.concatenate(padded), ncol=per_class, scale=max(1, 96 // max(images.shape[1], 1) // 2))
