"""Train a class-conditional generator from the command line (works under torchrun too).

    python -m synthdata.training --data digits --run-dir runs/digits-gan --config '{"family": "gan"}'
    torchrun --standalone --nproc_per_node 4 -m synthdata.training --data digits --run-dir runs/ddp

Prints one JSON line (rank 0) with the checkpoint path, steps, steps/s, final losses, the step it resumed from,
the plan (what was chosen for this device and budget, and why) and any warnings.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch

from synthdata.training.loop import TrainConfig, train_generator


def load_images(spec: str) -> tuple[np.ndarray, np.ndarray, int]:
    """"digits" (scikit-learn's 8x8 digits) or a .npz file with uint8 `images` and int `labels`."""
    if spec == "digits":
        from synthdata.datasets import load_digits_uint8

        images, labels, names = load_digits_uint8()
        return images, labels, len(names)
    with np.load(spec) as f:
        images, labels = f["images"], f["labels"]
    return images, labels, int(labels.max()) + 1


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m synthdata.training", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits", help='"digits" or an .npz with images (uint8) and labels')
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--config", default="{}", help="TrainConfig fields as JSON, e.g. '{\"family\": \"vae\"}'")
    args = p.parse_args(argv)
    images, labels, num_classes = load_images(args.data)
    config = TrainConfig.model_validate(json.loads(args.config))
    result = train_generator(images, labels, num_classes, config, args.device, args.run_dir, log=print)
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({"checkpoint": str(result.checkpoint_path), "steps": result.steps,
                          "steps_per_second": round(result.steps_per_second, 2), "final_losses": result.final_losses,
                          "resumed_from_step": result.resumed_from_step,
                          "plan": {k: result.plan[k] for k in ("source", "arch", "width", "batch_size", "reason")},
                          "warnings": result.warnings}))


if __name__ == "__main__":
    main()
