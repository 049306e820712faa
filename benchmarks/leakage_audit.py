"""Cross-split leakage audit: planted copies found vs distinct held-out images flagged, on real look-alikes.

    python benchmarks/leakage_audit.py [--n 10000] [--copies 40] [--seed 0]

Images: Fashion-MNIST's test set (real 28x28 photos of ten kinds of clothing; `apt-get install
dataset-fashion-mnist`), split 70/10/20 by the `splits` hash. `--copies` held-out images get a copy planted in
train, cycling through JPEG q85, brightness x1.12, a 1 px shift and a 2x resize. The audit
(`synthdata.curation.leakage.audit_leakage`, default settings) should find the copies and flag few of the
distinct held-out images, whose nearest train look-alikes are other garments photographed the same way.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image, ImageEnhance  # noqa: E402

from synthdata.curation.leakage import audit_leakage  # noqa: E402
from synthdata.curation.split import split_of  # noqa: E402
from synthdata.datasets import load_fashion_mnist  # noqa: E402
from synthdata.dedup.phash import phash_and_crop_hashes  # noqa: E402


def jpeg(a: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "JPEG", quality=85)
    return np.asarray(Image.open(buf).convert("L"))


def bright(a: np.ndarray) -> np.ndarray:
    return np.asarray(ImageEnhance.Brightness(Image.fromarray(a)).enhance(1.12))


def shift(a: np.ndarray) -> np.ndarray:
    return np.pad(a, ((0, 0), (1, 0)), mode="edge")[:, :-1]


def resize(a: np.ndarray) -> np.ndarray:
    h, w = a.shape
    return np.asarray(Image.fromarray(a).resize((w * 2, h * 2), Image.Resampling.BICUBIC))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--copies", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    images, _, _ = load_fashion_mnist(split="test")
    pixels = list(images[: args.n])
    ids = [f"{i:06d}" for i in range(len(pixels))]
    split = [split_of(i, 0, {"train": 0.7, "val": 0.1, "test": 0.2}) for i in ids]
    held = [i for i, s in enumerate(split) if s != "train"]
    planted: dict[str, tuple[str, str]] = {}
    rng = np.random.default_rng(args.seed)
    for j, idx in enumerate(rng.choice(held, args.copies, replace=False)):
        transform = (jpeg, bright, shift, resize)[j % 4]
        pixels.append(transform(pixels[idx]))
        ids.append(f"copy{j:05d}")
        split.append("train")
        planted[ids[idx]] = (ids[-1], transform.__name__)

    hashes, crop_hashes = phash_and_crop_hashes([Image.fromarray(a) for a in pixels])
    table = pd.DataFrame({"image_id": ids, "split": split, "phash": hashes, "phash2": crop_hashes})
    start = time.perf_counter()
    result = audit_leakage(table, dict(zip(ids, pixels)).__getitem__)
    seconds = time.perf_counter() - start

    found = dict(zip(result.flagged.other_id, result.flagged.kept_id))
    for name in ("jpeg", "bright", "shift", "resize"):
        copies = [o for o, (_, n) in planted.items() if n == name]
        print(f"{name:7s} copies found {sum(found.get(o) == planted[o][0] for o in copies)}/{len(copies)}")
    false = [o for o in found if o not in planted]
    distinct = sum(result.searched.values()) - len(planted)
    print(f"n={args.n} searched={result.searched} candidates={result.candidates} compared={result.compared}")
    print(f"distinct held-out images flagged: {len(false)}/{distinct} ({len(false) / max(distinct, 1):.3%}); {seconds:.1f} s")


if __name__ == "__main__":
    main()
