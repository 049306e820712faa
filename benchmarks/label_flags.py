"""Mislabel flags on real 10-class sets: flip 3% of the labels, report precision and recall (goal >= 0.7 each).

    python benchmarks/label_flags.py                           # digits + Fashion-MNIST test (10,000)
    python benchmarks/label_flags.py --sets fashion-all --seeds 0

Sets: scikit-learn's 1,797 8x8 digits ("digits"), and Fashion-MNIST from the Debian package
`dataset-fashion-mnist` ("fashion": the 10,000 test images; "fashion-all": all 70,000). `--rate` of each set's
labels move to a uniformly drawn other class (seeded); the flags of `synthdata.curation.label_issues` are scored
against them. Baselines in the same run: the pixel view alone (PCA + logistic regression, the classifier before
the HOG view was added) under the same calibrated cutoff, and, on our out-of-fold probabilities, cleanlab's
default `find_label_issues` (when cleanlab is installed; it is not a dependency). Also timed: the image-quality
scores of `synthdata.curation.image_issues` on the same images.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from synthdata.curation.image_issues import flag_images, score_images
from synthdata.curation.label_issues import (
    calibrated_cutoff,
    features,
    find_mislabels,
    out_of_fold_probabilities,
    plant_label_flips,
)
from synthdata.datasets import load_digits_uint8, load_fashion_mnist

SETS = {
    "digits": load_digits_uint8,
    "fashion": lambda: load_fashion_mnist(split="test"),
    "fashion-all": lambda: load_fashion_mnist(split="all"),
}


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    hits = int((flagged & truth).sum())
    return hits / max(1, int(flagged.sum())), hits / max(1, int(truth.sum()))


def cleanlab_flags(labels: np.ndarray, probs: np.ndarray) -> np.ndarray | None:
    try:
        from cleanlab.filter import find_label_issues
    except ImportError:
        return None
    return find_label_issues(labels, probs)


def run(name: str, seed: int, rate: float, target: float) -> None:
    images, labels, names = SETS[name]()
    noisy, moved = plant_label_flips(labels, rate, len(names), seed)
    t0, c0 = time.perf_counter(), time.process_time()
    result = find_mislabels(images, noisy, len(names), seed=seed, target_precision=target)
    t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0  # CPU time: what an idle core would take
    probs, ours = result.probabilities, result.flagged
    cutoff, noise, est = result.cutoff, result.noise_rate, result.estimated_precision
    p, r = precision_recall(ours, moved)
    agree = float((probs.argmax(1) == labels).mean())
    print(
        f"{name:12s} seed {seed}  n={len(labels):6d} flipped={int(moved.sum()):5d}  classifier vs true labels {agree:.3f}  "
        f"flags {t_fit:6.1f}s ({1e6 * t_fit / len(labels):.0f} us/image, CPU {c_fit:.1f}s)\n"
        f"  ours      flagged {int(ours.sum()):5d}  precision {p:.3f}  recall {r:.3f}  "
        f"(estimated noise {noise:.4f}, estimated precision {est:.3f}, cutoff {cutoff:.4f})"
    )
    c0 = time.process_time()
    pixel = out_of_fold_probabilities(features(images), noisy, len(names), seed=seed)
    c_pixel = time.process_time() - c0
    pixel_cutoff, _, _ = calibrated_cutoff(pixel, noisy, target)
    pixel_flags = (pixel[np.arange(len(noisy)), noisy] <= pixel_cutoff) & (pixel.argmax(1) != noisy)
    pp, pr = precision_recall(pixel_flags, moved)
    print(
        f"  pixels    flagged {int(pixel_flags.sum()):5d}  precision {pp:.3f}  recall {pr:.3f}  (pixel view alone, vs "
        f"true labels {float((pixel.argmax(1) == labels).mean()):.3f}, CPU {c_pixel:.1f}s: ours takes {c_fit / c_pixel:.1f}x)"
    )
    base = cleanlab_flags(noisy, probs)
    if base is None:
        print("  cleanlab  not installed (pip install cleanlab to print the baseline)")
    else:
        bp, br = precision_recall(base, moved)
        print(f"  cleanlab  flagged {int(base.sum()):5d}  precision {bp:.3f}  recall {br:.3f}  (find_label_issues defaults)")
    t0 = time.perf_counter()
    scores = score_images(images, [images.shape[2]] * len(images), [images.shape[1]] * len(images))
    flags, _ = flag_images(scores)
    t_img = time.perf_counter() - t0
    print(f"  image issues: {len(flags)} flags ({flags['row'].nunique()} images) in {t_img:.1f}s "
          f"({1e6 * t_img / len(images):.0f} us/image)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["digits", "fashion"], choices=sorted(SETS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--rate", type=float, default=0.03)
    ap.add_argument("--target-precision", type=float, default=0.8)
    args = ap.parse_args()
    for name in args.sets:
        for seed in args.seeds:
            run(name, seed, args.rate, args.target_precision)


if __name__ == "__main__":
    main()
