"""Evaluation and gate calibration: ideal / collapsed / memorizing / noisy stand-in generators, their metrics,
verdicts and the evaluation's runtime.

    python benchmarks/evaluation.py                       # digits, Fashion-MNIST 10k, LFW faces
    python benchmarks/evaluation.py --sets fashion --n 10000

Sets: scikit-learn's 1,797 8x8 digits (train 900 / val 300 / test 300 / held-out pool 297); Fashion-MNIST
(`--n` train images from its train part, 2,000 val, the `--n` held-out pool from the rest, and the official
10,000 test images); skimage's `lfw_subset` (200 25x25 images, labels face / not face: train 100, val 30,
test 30, pool 40). The feature extractor's training is timed separately. Each stand-in generator
(`synthdata.evaluate.standins`) makes as many images as the pool holds (at most `--n`). The ideal generator's
evaluation is the full default one (LR and CNN utility over 3 seeds, scarcity study); the others skip the
scarcity study. Wall and CPU seconds are both printed: the evaluation runs torch and BLAS on one thread, so
on a shared machine its CPU seconds are what it costs on a free core. Baselines in the same run, which ours must
match to 1e-3 relative: FID from the same features through scipy's general `sqrtm` (pytorch-fid's route), and
torchmetrics' `FrechetInceptionDistance` handed our feature extractor as its `feature` module (the dev extra).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from synthdata.datasets import load_digits_uint8, load_fashion_mnist
from synthdata.evaluate import standins
from synthdata.evaluate.features import extract_features, train_feature_extractor
from synthdata.evaluate.fidelity import frechet_distance
from synthdata.evaluate.gate import default_floors, judge
from synthdata.evaluate.suite import EvaluationInputs, evaluate_synthetic

SHOWN = ("tstr_trtr_ratio", "tstr_trtr_ratio_val", "tstr_trtr_ratio_cnn", "fid", "kid", "precision", "recall", "density", "coverage",
         "dcr_ratio", "closer_than_holdout_fraction", "near_copy_fraction", "mia_auc")  # fmt: skip


def named(labels: np.ndarray, names: list[str]) -> np.ndarray:
    return np.array([names[i] for i in labels], dtype=object)


def load(name: str, n: int, seed: int):
    """(train, val, test, pool) as (x, y) pairs with string labels."""
    rng = np.random.default_rng(seed)
    if name == "digits":
        x, y, names = load_digits_uint8()
        y, p = named(y, names), rng.permutation(len(x))
        cuts = [p[:900], p[900:1200], p[1200:1500], p[1500:]]
        return [(x[c], y[c]) for c in cuts]
    if name == "fashion":
        x, y, names = load_fashion_mnist(split="train")
        tx, ty, _ = load_fashion_mnist(split="test")
        y, p = named(y, names), rng.permutation(len(x))
        cuts = [p[:n], p[n : n + 2000], p[n + 2000 : 2 * n + 2000]]
        train, val, pool = [(x[c], y[c]) for c in cuts]
        return [train, val, (tx, named(ty, names)), pool]
    if name == "lfw":
        from skimage import data

        x = np.rint(data.lfw_subset() * 255).astype(np.uint8)
        y = np.array(["face"] * 100 + ["not face"] * 100, dtype=object)
        p = rng.permutation(len(x))
        cuts = [p[:100], p[100:130], p[130:160], p[160:]]
        return [(x[c], y[c]) for c in cuts]
    raise SystemExit(f"unknown set {name!r}")


def scipy_fid(a: np.ndarray, b: np.ndarray) -> float:
    import warnings

    from scipy import linalg

    warnings.filterwarnings("ignore", message="Matrix is singular")  # low-rank ReLU features: sqrtm still converges
    a, b = a.astype(np.float64), b.astype(np.float64)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s_a @ s_b).real
    d = a.mean(0) - b.mean(0)
    return float(d @ d + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def torchmetrics_fid(fx, real: np.ndarray, fake: np.ndarray) -> float:
    """torchmetrics' FID over the same images, with our extractor as its feature network (nothing downloaded)."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance

    class OurFeatures(torch.nn.Module):
        num_features = fx.feature_dim  # read by torchmetrics instead of probing with a 299x299 dummy image

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(extract_features(fx, images.numpy()))

    metric = FrechetInceptionDistance(feature=OurFeatures())
    for images, is_real in ((real, True), (fake, False)):
        for s in range(0, len(images), 1024):
            metric.update(torch.from_numpy(np.ascontiguousarray(images[s : s + 1024])), real=is_real)
    return float(metric.compute())


def run(name: str, n: int, seed: int) -> None:
    (trx, try_), (vx, vy), (tex, tey), (px, py) = load(name, n, seed)
    t0, c0 = time.perf_counter(), time.process_time()
    fx = train_feature_extractor(trx, try_, vx, vy, seed=seed, max_seconds=60.0)
    print(f"\n== {name}: train {len(trx)} val {len(vx)} test {len(tex)} pool {len(px)}; feature extractor "
          f"val accuracy {fx.val_accuracy:.3f} in {time.perf_counter() - t0:.1f} s "
          f"({time.process_time() - c0:.1f} CPU-s)")  # fmt: skip
    m = min(n, len(px))
    gens = {
        "ideal": standins.ideal(px, py, m, seed),
        "collapsed_1": standins.collapsed(trx, try_, m, 1, seed),
        "collapsed_3": standins.collapsed(trx, try_, m, 3, seed),
        "class_means": standins.class_means(trx, try_, m),
        "memorizing": standins.memorizing(trx, try_, m, "exact", seed),
        "memorizing_jpeg": standins.memorizing(trx, try_, m, "jpeg", seed),
        "memorizing_shift": standins.memorizing(trx, try_, m, "shift", seed),
        "noisy_sigma40": standins.noisy(px, py, m, 40.0, seed),
    }
    floors = default_floors("any")
    # The gate judges the utility ratio on val (gate.judge); the floors are chosen on that. For comparison, the
    # verdict the test ratio would give (fidelity and privacy are measured against the val + test holdout).
    print(f"{'generator':17s} {'wall s':>7s} {'CPU s':>7s}  " + " ".join(f"{k[:12]:>12s}" for k in SHOWN) + "  verdict")
    for gname, (sx, sy) in gens.items():
        inputs = EvaluationInputs(trx, try_, vx, vy, tex, tey, sx, sy)
        t0, c0 = time.perf_counter(), time.process_time()
        result = evaluate_synthetic(inputs, fx, scarcity=gname == "ideal")
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        verdict = judge(result.rows, floors)
        on_test = judge([r for r in result.rows if not r.metric.endswith("_val")], floors)
        print(f"{gname:17s} {secs:7.1f} {cpu:7.1f}  " + " ".join(f"{result.value(k):12.4f}" for k in SHOWN)
              + ("  PASS" if verdict.passed else "  FAIL: " + "; ".join(verdict.failures))
              + f"  (utility on test: {'PASS' if on_test.passed else 'FAIL'})")  # fmt: skip
        if gname == "ideal":
            stages = ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items())
            print(f"{'':17s} stages (s): {stages}")
            for note in result.notes:
                print(f"{'':17s} - {note}")
            f_train, f_synth = extract_features(fx, trx), extract_features(fx, sx)
            ours, ref = frechet_distance(f_train, f_synth), scipy_fid(f_train, f_synth)
            print(f"{'':17s} FID ours {ours:.6f} vs scipy sqrtm {ref:.6f}: relative difference "
                  f"{abs(ours - ref) / max(abs(ref), 1e-12):.2e}")  # fmt: skip
            tm = torchmetrics_fid(fx, trx, sx)
            print(f"{'':17s} FID ours vs torchmetrics: relative difference {abs(ours - tm) / max(abs(tm), 1e-12):.2e} "
                  f"(ours {ours:.6f}, torchmetrics {tm:.6f})")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="digits,fashion,lfw")
    ap.add_argument("--n", type=int, default=10_000, help="Fashion-MNIST train and pool size")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for name in args.sets.split(","):
        run(name, args.n, args.seed)


if __name__ == "__main__":
    main()
