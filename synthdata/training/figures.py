"""The pictures a training run reports: a grid of samples (one row per class) and the loss curves."""

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


def loss_curve(history: list[dict[str, float]], family: str) -> bytes:
    names = [k for k in history[0] if k != "step"] if history else []
    series = {k: [row[k] for row in history] for k in names}
    return render.line_plot(series, x=[row["step"] for row in history], title=f"{family} training losses")
