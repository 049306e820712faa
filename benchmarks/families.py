"""TSTR/TRTR of every generator family with the default (planned) config, on real data sets that need no download.

    python -m benchmarks families                      # everything below, 3 seeds (about 2 h on 2 CPU cores)
    python -m benchmarks families --quick              # fashion28 at 60 s, 1 seed (about 6 min)
    python -m benchmarks families --sets fashion28 --budgets 60 300 --families vae diffusion --seeds 0 1 2
    python -m benchmarks families --ddim-steps 5 10 20 50   # + diffusion sample quality / speed against DDIM steps

Data sets (real pixels, all on local disk):
  fashion28  Fashion-MNIST (Debian `dataset-fashion-mnist`): 28x28 grayscale, 10 classes. Per seed, 5,000 train
             and 1,000 val images drawn from its train split, and 2,000 test images from its test split.
  photos32   32x32 RGB, 9 classes: crops of the nine colour photographs that ship with scikit-image and
             scikit-learn (astronaut, cat, coffee, rocket, immunohistochemistry, Hubble deep field, retina,
             China, flower), each scaled to a short side of 128; a class is its photograph. Train / val crops come
             from the top 3/4 of each photo, test crops from the bottom 1/4 (no overlap). No CIFAR-like set is
             packaged offline (Debian has only Fashion-MNIST; the PyPI loaders download at run time), so this is
             the best available real RGB set: it tests colour and texture, not object shape.
  photos64   the same at 64x64 crops from photos scaled to a short side of 256.

Per (set, family, budget, seed): `train_generator` with the default config (the plan sizes the model for this
machine; the val split feeds the quality probes), then 100 EMA samples per class; the project's evaluation
classifier (synthdata.evaluate.utility: logistic regression on pixels) is trained on them (TSTR) or on the real
train images (TRTR) and tested on the test images. Prints one JSON line per run, then a table of mean and spread
(sample std over seeds) per set, family and budget, with the machine load (1-minute load average) around it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from synthdata.evaluate.utility import classifier_accuracy
from synthdata.training.loop import TrainConfig, train_generator
from synthdata.training.sample import load_generator

SETS = ("fashion28", "photos32", "photos64")
PER_CLASS = 100


def fashion28(seed: int) -> dict[str, np.ndarray]:
    from synthdata.datasets import load_fashion_mnist

    x, y, _ = load_fashion_mnist(split="train")
    xt, yt, _ = load_fashion_mnist(split="test")
    rng = np.random.default_rng(seed)
    idx, test = rng.permutation(len(x)), rng.permutation(len(xt))[:2000]
    tr, va = idx[:5000], idx[5000:6000]
    return {"train": x[tr], "train_y": y[tr], "val": x[va], "val_y": y[va], "test": xt[test], "test_y": yt[test]}


def photographs() -> list[np.ndarray]:
    import skimage.data
    from sklearn.datasets import load_sample_images

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina"]
    return [getattr(skimage.data, n)()[..., :3] for n in names] + list(load_sample_images().images)


def photo_patches(side: int, short: int, seed: int, per_class: tuple[int, int, int] = (400, 50, 100)) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    parts: dict[str, list] = {k: [] for k in ("train", "train_y", "val", "val_y", "test", "test_y")}
    for c, photo in enumerate(photographs()):
        h, w = photo.shape[:2]
        scale = short / min(h, w)
        img = np.asarray(Image.fromarray(photo).resize((round(w * scale), round(h * scale)), Image.LANCZOS))
        cut = img.shape[0] * 3 // 4  # train / val above this row, test below: no crop shares a pixel across them
        for name, n, (y0, y1) in zip(("train", "val", "test"), per_class, ((0, cut), (0, cut), (cut, img.shape[0]))):
            ys = rng.integers(y0, y1 - side + 1, n)
            xs = rng.integers(0, img.shape[1] - side + 1, n)
            parts[name] += [img[a : a + side, b : b + side] for a, b in zip(ys, xs)]
            parts[f"{name}_y"] += [c] * n
    return {k: np.asarray(v, dtype=np.uint8 if not k.endswith("_y") else np.int64) for k, v in parts.items()}


def load_set(name: str, seed: int) -> dict[str, np.ndarray]:
    if name == "fashion28":
        return fashion28(seed)
    return photo_patches(32, 128, seed) if name == "photos32" else photo_patches(64, 256, seed)


def run_one(data: dict, family: str, seconds: float, seed: int, trtr: float, ddim_steps: list[int], device: str) -> dict:
    num_classes = int(data["train_y"].max()) + 1
    cfg = TrainConfig.model_validate({"family": family, "max_steps": 10**9, "max_seconds": seconds, "seed": seed,
                                      "sample_every": 0, "checkpoint_every": 0, "log_every": 100})
    run_dir = Path(tempfile.mkdtemp(prefix=f"families_{family}_"))
    load_before = os.getloadavg()[0]
    res = train_generator(data["train"], data["train_y"], num_classes, cfg, device, run_dir,
                          val_images=data["val"], val_labels=data["val_y"])
    gen = load_generator(res.checkpoint_path, device)
    synth_y = np.repeat(np.arange(num_classes), PER_CLASS)
    t0 = time.perf_counter()
    synth_x = gen.sample(synth_y, seed=seed + 1, batch_size=250)
    sample_s = time.perf_counter() - t0
    tstr = classifier_accuracy(synth_x, synth_y, data["test"], data["test_y"])
    plan = res.plan
    row = {"family": family, "budget_s": seconds, "seed": seed, "ratio": round(tstr / trtr, 4), "tstr": round(tstr, 4),
           "trtr": round(trtr, 4), "steps": res.steps, "steps_per_s": round(res.steps_per_second, 2),
           "plan": f"{plan['arch']}-w{plan['width']}-b{plan['batch_size']}", "warmup_s": plan["warmup_seconds"],
           "probe_ratio": res.probes[-1]["probe_ratio"] if res.probes else None,
           "sample_s_per_1000": round(sample_s * 1000 / len(synth_y), 2), "warnings": res.warnings,
           "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2), "run_dir": str(run_dir)}
    if family == "diffusion" and ddim_steps:
        row["ddim"] = ddim_sweep(res.checkpoint_path, device, synth_y, seed, data, trtr, ddim_steps)
    (run_dir / "samples.png").write_bytes(res.sample_grid_png)
    (run_dir / "curves.png").write_bytes(res.curves_png)
    return row


def ddim_sweep(ckpt: Path, device: str, synth_y: np.ndarray, seed: int, data: dict, trtr: float, steps: list[int]) -> list[dict]:
    """Sample quality and time of 1,000 images against the number of DDIM steps, from one checkpoint."""
    out = []
    gen = load_generator(ckpt, device)
    y = np.resize(synth_y, 1000)
    for n in steps:
        gen.config.sampling_steps = n  # read at sampling time only: the trained network is the same
        t0 = time.perf_counter()
        x = gen.sample(y, seed=seed + 1, batch_size=250)
        seconds = time.perf_counter() - t0
        acc = classifier_accuracy(x, y, data["test"], data["test_y"])
        out.append({"ddim_steps": n, "seconds_per_1000": round(seconds, 2), "ratio": round(acc / trtr, 4)})
        print(json.dumps({"ddim": out[-1]}), flush=True)
    return out


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    p.add_argument("--families", nargs="+", default=["gan", "vae", "diffusion"])
    p.add_argument("--budgets", nargs="+", type=float, default=None,
                   help="seconds per run (default: 60 and 300 at 28x28, 300 for the RGB sets)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--ddim-steps", nargs="*", type=int, default=[], help="DDIM steps to sweep for diffusion")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads; 1 is fastest for these small nets on a "
                   "shared box (2 threads against other load spin-wait: 0.6 GAN steps/s against 10)")
    p.add_argument("--quick", action="store_true", help="fashion28, 60 s, seed 0")
    args = p.parse_args()
    if args.quick:
        args.sets, args.budgets, args.seeds = ["fashion28"], [60.0], [0]
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(json.dumps({"benchmark": "families", "device": device, "threads": args.threads, "cpus": os.cpu_count(),
                      "load_average": [round(v, 2) for v in os.getloadavg()]}), flush=True)

    rows = []
    for name in args.sets:
        budgets = args.budgets or ([60.0, 300.0] if name == "fashion28" else [300.0])
        for seed in args.seeds:
            data = load_set(name, seed)
            trtr = classifier_accuracy(data["train"], data["train_y"], data["test"], data["test_y"])
            for seconds in budgets:
                for family in args.families:
                    row = {"set": name, **run_one(data, family, seconds, seed, trtr, args.ddim_steps, device)}
                    print(json.dumps(row), flush=True)
                    rows.append(row)

    print(f"\nfamilies on {device} ({args.threads} threads, {os.cpu_count()} CPUs), load average now "
          f"{os.getloadavg()[0]:.2f}; TSTR/TRTR mean ± std over seeds {args.seeds}")
    print("| set | family | budget s | TSTR/TRTR | steps | plan | probe (val) | load |")
    print("|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["set"], r["family"], r["budget_s"]) for r in rows}, key=lambda k: (SETS.index(k[0]), k[2], k[1]))
    for key in keys:
        group = [r for r in rows if (r["set"], r["family"], r["budget_s"]) == key]
        plans = sorted({r["plan"] for r in group})
        probes = [r["probe_ratio"] for r in group if r["probe_ratio"] is not None]
        loads = [r["load_before"] for r in group] + [r["load_after"] for r in group]
        print(f"| {key[0]} | {key[1]} | {key[2]:.0f} | {spread([r['ratio'] for r in group])} | "
              f"{statistics.fmean(r['steps'] for r in group):.0f} | {', '.join(plans)} | "
              f"{spread(probes) if probes else '-'} | {min(loads):.1f}-{max(loads):.1f} |")
    best = {}
    for key in keys:
        if key[0] == "fashion28":
            mean = statistics.fmean(r["ratio"] for r in rows if (r["set"], r["family"], r["budget_s"]) == key)
            best[key[2]] = max(best.get(key[2], (0.0, "")), (mean, key[1]))
    targets = {60.0: 0.85, 300.0: 0.90}
    for budget, (mean, family) in sorted(best.items()):
        goal = targets.get(budget)
        verdict = f" (target {goal}: {'pass' if mean >= goal else 'FAIL'})" if goal else ""
        print(f"fashion28 best family at {budget:.0f} s: {family} {mean:.3f}{verdict}")


if __name__ == "__main__":
    main()
