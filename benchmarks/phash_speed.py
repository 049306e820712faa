"""Throughput of the batched pHash against ``imagehash.phash`` on the same decoded images.

Run: ``python benchmarks/phash_speed.py [--n 10000] [--sizes 28 64] [--repeats 3]``

Images are real photographs (random crops of scikit-image's sample photos, resized to the target size),
half grayscale ("L") and half RGB, already decoded into PIL images so only hashing is timed. Ours runs three
ways on those same images:

* ``ours(PIL)``: ``phash_images`` on the whole list;
* ``ours(ingest)``: ``phash_and_crop_hashes`` once per ingest batch (``synthdata.curation.ingest.ingest_items``'
  ``chunk_size``), computing the crop-robust hash too (ingestion itself calls ``image_hashes``, which also
  computes the shift hashes: 16-24 us more per image, see docs/benchmarks.md; they have no imagehash twin);
* ``ours(array)``: ``phash_arrays`` on a ready uint8 (N, H, W) batch.

Every hash must equal imagehash's bit for bit; the script fails loudly if a single one differs. The machine
is shared, so every hasher is timed ``--repeats`` times, interleaved, and its best run is kept; CPU time is
reported next to wall time because wall time also measures the neighbours.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from collections.abc import Callable
from pathlib import Path

import imagehash
import numpy as np
import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthdata.curation.ingest import ingest_items
from synthdata.dedup.phash import (
    crop_robust_hashes,
    phash_and_crop_hashes,
    phash_arrays,
    phash_images,
)

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass", "moon", "coins", "clock")
INGEST_BATCH = inspect.signature(ingest_items).parameters["chunk_size"].default


def make_images(n: int, size: int, seed: int) -> list[Image.Image]:
    """``n`` size x size crops of real photos, alternating L and RGB."""
    rng = np.random.default_rng(seed)
    photos = [getattr(skimage.data, name)() for name in PHOTOS]
    images = []
    for i in range(n):
        photo = photos[i % len(photos)]
        side = int(rng.integers(size, min(photo.shape[:2]) + 1))
        y = int(rng.integers(0, photo.shape[0] - side + 1))
        x = int(rng.integers(0, photo.shape[1] - side + 1))
        im = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size), Image.Resampling.BILINEAR)
        images.append(im.convert("L" if i % 2 == 0 else "RGB"))
    return images


def _timed(fn: Callable[[], object]) -> tuple[object, float, float]:
    """(result, wall seconds, CPU seconds of this process)."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - w0, time.process_time() - c0


def _reference(images: list[Image.Image]) -> np.ndarray:
    return np.array([int(str(imagehash.phash(im)), 16) for im in images], dtype=np.uint64)


def _ingest_like(images: list[Image.Image]) -> tuple[np.ndarray, np.ndarray]:
    """What ``synthdata.curation.ingest.process_items`` does with each batch's decoded images."""
    parts = [phash_and_crop_hashes(images[s : s + INGEST_BATCH]) for s in range(0, len(images), INGEST_BATCH)]
    return np.concatenate([p for p, _ in parts]), np.concatenate([c for _, c in parts])


def bench(n: int, size: int, repeats: int) -> dict[str, tuple[float, float]]:
    """images/second (wall, CPU), best of ``repeats``, for imagehash and the three ways of running ours."""
    images = make_images(n, size, seed=size)
    gray = np.stack([np.asarray(im.convert("L")) for im in images])  # what a uint8 batch loader yields
    phash_images(images[:8])  # warm caches (filter matrices, Pillow pass-order probe) outside the timing
    hashers: dict[str, Callable[[], object]] = {
        "imagehash": lambda: _reference(images),
        "ours(PIL)": lambda: phash_images(images),
        "ours(ingest)": lambda: _ingest_like(images),
        "ours(array)": lambda: phash_arrays(gray),
    }
    best = {name: (np.inf, np.inf) for name in hashers}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in hashers.items():
            results[name], wall, cpu = _timed(fn)
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    reference = results["imagehash"]
    ingest_phash, ingest_crop = results["ours(ingest)"]
    mismatches = sum(int((reference != h).sum()) for h in (results["ours(PIL)"], ingest_phash, results["ours(array)"]))
    if mismatches:
        raise SystemExit(f"{size}x{size}: {mismatches} hashes differ from imagehash.phash")
    if not np.array_equal(ingest_crop, crop_robust_hashes(images)):
        raise SystemExit(f"{size}x{size}: crop-robust hashes depend on how the images are batched")
    return {name: (n / wall, n / cpu) for name, (wall, cpu) in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 64])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per hasher; the best is kept")
    args = parser.parse_args()
    print(f"{'size':>7} {'n':>6} {'hasher':>12} {'wall img/s':>11} {'x':>6} {'CPU img/s':>10} {'x':>6}")
    for size in args.sizes:
        rates = bench(args.n, size, args.repeats)
        ref_wall, ref_cpu = rates["imagehash"]
        for name, (wall, cpu) in rates.items():
            print(f"{size:>3}x{size:<3} {args.n:>6} {name:>12} {wall:>11,.0f} {wall / ref_wall:>5.1f}x "
                  f"{cpu:>10,.0f} {cpu / ref_cpu:>5.1f}x")
        print(f"{'':>7} all {args.n} hashes bit-identical to imagehash.phash "
              f"(ingest: batches of {INGEST_BATCH}, pHash + crop-robust hash)")


if __name__ == "__main__":
    main()
