"""The pictures a training run reports: a grid of samples (one row per class), the loss curves, and the training
curves (losses, steps/s, quality probe)."""

from __future__ import annotations

import torch

from synthdata import render
from synthdata.models import GenerativeModel
from synthdata.training.tensors import to_uint8


def sample_grid(
    model: GenerativeModel, num_classes: int, per_class: int, seed: int, device: torch.device, input_rank: int
) -> bytes:
    """`per_class` samples of every class, one row per class, drawn from a generator seeded with `seed`."""
    labels = torch.arange(num_classes, device=device).repeat_interleave(per_class)
    images = model.sample(labels, torch.Generator(device).manual_seed(seed))
    return render.image_grid(to_uint8(images, input_rank), ncol=per_class)


# History-row keys that are not losses (the rest of a row is the model's losses at that step).
NOT_LOSSES = ("step", "steps_per_second")


def loss_names(row: dict[str, float]) -> list[str]:
    """The loss names of one history row."""
    return [k for k in row if k not in NOT_LOSSES]


def loss_curve(history: list[dict[str, float]], family: str) -> bytes:
    names = loss_names(history[0]) if history else []
    series = {k: [row[k] for row in history] for k in names}
    return render.line_plot(series, x=[row["step"] for row in history], title=f"{family} training losses")


def training_curves(history: list[dict[str, float]], probes: list[dict[str, float]], family: str) -> bytes:
    """One figure, three panels against step: the losses, steps/s, and the quality probe (TSTR/TRTR in
    miniature on the val split). A probe still rising at the last step says more budget would help."""
    steps = [row["step"] for row in history]
    plt, fig, axes = render.figure(12, 3.2, ncols=3)
    for name in loss_names(history[0]) if history else []:
        axes[0].plot(steps, [row[name] for row in history], label=name, linewidth=1.2)
    axes[0].set_title(f"{family} losses")
    axes[0].legend(loc="best", fontsize=7)
    rates = [(row["step"], row["steps_per_second"]) for row in history if "steps_per_second" in row]
    axes[1].plot([s for s, _ in rates], [r for _, r in rates], linewidth=1.2)
    axes[1].set_title("steps/s")
    axes[1].set_ylim(bottom=0)
    if probes:
        axes[2].plot([p["step"] for p in probes], [p["probe_ratio"] for p in probes], marker="o", linewidth=1.2)
    axes[2].set_title("quality probe on val (TSTR/TRTR)")
    axes[2].set_ylim(bottom=0)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return render.figure_png(plt, fig)
