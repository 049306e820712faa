"""TSTR / TRTR of every family on a 28x28, 10-class set that needs no download (fixed widths, no planning).

Superseded by `families` (real data sets, planned defaults, 3 seeds); kept for its "digits28" set, which
`cuda_checks` trains on.

    python benchmarks/families_28x28.py                  # 5 min per family
    python benchmarks/families_28x28.py --seconds 60 --families gan vae

The data set ("digits28"): scikit-learn's 1,797 8x8 digits, each upscaled to 28x28 (cubic spline) and given
one random elastic distortion (Simard et al. 2003: a Gaussian-smoothed random displacement field, alpha=34,
sigma=4), seeded, so it is the same every run. Split 70/30 stratified (random_state=0); each family trains on
the 70 % under the time budget, then the reference logistic regression is trained on `--per-class` EMA samples
per class (TSTR) or on the real 70 % (TRTR) and tested on the real 30 %.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from scipy import ndimage
from sklearn.model_selection import train_test_split

from synthdata.datasets import load_digits_uint8
from synthdata.evaluate.utility import tstr_trtr
from synthdata.training.loop import TrainConfig, train_generator
from synthdata.training.sample import load_generator


def digits28(seed: int = 0, alpha: float = 34.0, sigma: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = load_digits_uint8()
    rng = np.random.default_rng(seed)
    out = np.empty((len(images), 28, 28), np.uint8)
    yy, xx = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    for i, img in enumerate(images.astype(np.float64)):
        big = ndimage.zoom(img, 24 / 8, order=3)  # 24x24 digit inside a 2-pixel border, like MNIST's margin
        canvas = np.zeros((28, 28))
        canvas[2:26, 2:26] = big
        dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (28, 28)), sigma) * alpha
        dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (28, 28)), sigma) * alpha
        warped = ndimage.map_coordinates(canvas, [yy + dy, xx + dx], order=1, mode="constant")
        out[i] = np.clip(np.rint(warped), 0, 255)
    return out, labels


def family_overrides(family: str, width: int) -> dict:
    """CPU-sized nets (the library default width 64 is meant for a GPU); 25 DDIM steps keep sampling quick."""
    extra = {"sampling_steps": 25} if family == "diffusion" else {}
    return {family: {"width": width, **extra}}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=300.0, help="training budget per family")
    p.add_argument("--families", nargs="+", default=["gan", "vae", "diffusion"])
    p.add_argument("--per-class", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--width", type=int, default=32, help="base channel width of every family's nets")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    images, labels = digits28()
    x_tr, x_te, y_tr, y_te = train_test_split(images, labels, test_size=0.3, stratify=labels, random_state=0)
    results = []
    for family in args.families:
        cfg = TrainConfig.model_validate({"family": family, "max_steps": 10**9, "max_seconds": args.seconds,
                                          "batch_size": args.batch_size, "sample_every": 0, "log_every": 200,
                                          **family_overrides(family, args.width)})
        run_dir = Path(tempfile.mkdtemp(prefix=f"digits28_{family}_"))
        res = train_generator(x_tr, y_tr, 10, cfg, device, run_dir, log=print)
        t0 = time.perf_counter()
        synth_y = np.repeat(np.arange(10), args.per_class)
        synth_x = load_generator(res.checkpoint_path, device).sample(synth_y, seed=1, batch_size=250)
        sample_s = time.perf_counter() - t0
        util = tstr_trtr(x_tr, y_tr, synth_x, synth_y, x_te, y_te)
        (run_dir / "samples.png").write_bytes(res.sample_grid_png)
        row = {"family": family, "steps": res.steps, "train_seconds": round(res.seconds, 1),
               "steps_per_second": round(res.steps_per_second, 2), "sample_seconds": round(sample_s, 1),
               "trtr": round(util.trtr, 4), "tstr": round(util.tstr, 4), "ratio": round(util.ratio, 4),
               "run_dir": str(run_dir)}
        print(json.dumps(row), flush=True)
        results.append(row)
    print(json.dumps({"benchmark": "families_28x28", "device": device, "seconds_per_family": args.seconds,
                      "batch_size": args.batch_size, "width": args.width, "results": results}, indent=1))


if __name__ == "__main__":
    main()
