"""Conditional GAN on scikit-learn's 8x8 digits: train under a CPU time budget, then TSTR / TRTR.

    python benchmarks/digits_gan.py                 # 60 s budget, target TSTR/TRTR >= 0.97
    python benchmarks/digits_gan.py --seconds 30 --config '{"gan": {"loss": "nonsaturating"}}'

Split: 70 % train / 30 % test, stratified by class, random_state=0. The GAN sees only the train split; TRTR is
the reference classifier (synthdata.evaluate, logistic regression on pixels) trained on that split, TSTR the
same classifier trained on 200 EMA samples per class; both are tested on the held-out 30 %.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from synthdata.datasets import load_digits_uint8
from synthdata.evaluate.privacy import memorization
from synthdata.evaluate.utility import tstr_trtr
from synthdata.training.loop import TrainConfig, train_generator
from synthdata.training.sample import load_generator


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--per-class", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="{}", help="extra TrainConfig fields as JSON")
    p.add_argument("--run-dir", type=Path, default=None)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads; 1 is fastest for these tiny MLPs, esp. on a shared/loaded machine")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    images, labels, names = load_digits_uint8()
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=0.3, stratify=labels, random_state=0)
    overrides = json.loads(args.config)
    config = TrainConfig.model_validate(
        {"family": "gan", "max_steps": 10**9, "max_seconds": args.seconds, "seed": args.seed, "sample_every": 0, "log_every": 500, **overrides}
    )
    run_dir = args.run_dir or Path(tempfile.mkdtemp(prefix="digits_gan_"))
    t0 = time.perf_counter()
    result = train_generator(x_tr, y_tr, len(names), config, "cuda" if torch.cuda.is_available() else "cpu", run_dir, log=print)
    train_s = time.perf_counter() - t0

    gen = load_generator(result.checkpoint_path)
    synth_y = np.repeat(np.arange(len(names)), args.per_class)
    synth_x = gen.sample(synth_y, seed=args.seed + 1)
    util = tstr_trtr(x_tr, y_tr, synth_x, synth_y, x_te, y_te)
    mem = memorization(x_tr, synth_x, x_te)
    (run_dir / "samples.png").write_bytes(result.sample_grid_png)
    print(json.dumps({
        "benchmark": "digits_gan", "train_images": len(x_tr), "test_images": len(x_te),
        "steps": result.steps, "train_seconds": round(result.seconds, 1), "wall_seconds_incl_setup": round(train_s, 1),
        "steps_per_second": round(result.steps_per_second, 1), "final_losses": result.final_losses,
        "trtr": round(util.trtr, 4), "tstr": round(util.tstr, 4), "ratio": round(util.ratio, 4),
        "target_ratio": 0.97, "pass": util.ratio >= 0.97,
        "memorization_ratio": round(mem.ratio, 3), "copies": mem.copies,
        "run_dir": str(run_dir),
    }, indent=1))


if __name__ == "__main__":
    main()
