"""Throughput of the batched pHash against ``imagehash.phash`` on the same decoded images.

Run: ``python benchmarks/phash_speed.py [--n 10000]``

Images are real photographs (random crops of scikit-image's sample photos, resized to the target size),
half grayscale ("L") and half RGB, already decoded into PIL images so only hashing is timed. The two
hashers must agree bit for bit; the script fails loudly if a single hash differs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import imagehash
import numpy as np
import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthdata.phash import phash_arrays, phash_images  # noqa: E402

PHOTOS = ("astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass", "moon", "coins", "clock")


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


def _timed(fn, *args):
    """(result, wall seconds, CPU seconds of this process). CPU time is reported too because the
    benchmark machine is often shared: wall time then measures the neighbours as much as the code."""
    w0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, time.perf_counter() - w0, time.process_time() - c0


def _reference(images: list[Image.Image]) -> np.ndarray:
    return np.array([int(str(imagehash.phash(im)), 16) for im in images], dtype=np.uint64)


def bench(n: int, size: int) -> dict[str, tuple[float, float]]:
    """images/second (wall, CPU) for imagehash, ours on PIL images, and ours on a ready uint8 array."""
    images = make_images(n, size, seed=size)
    gray = np.stack([np.asarray(im.convert("L")) for im in images])  # what a uint8 batch loader yields
    phash_images(images[:8])  # warm caches (filter matrices, Pillow pass-order probe) outside the timing
    reference, ref_wall, ref_cpu = _timed(_reference, images)
    ours, ours_wall, ours_cpu = _timed(phash_images, images)
    ours_arr, arr_wall, arr_cpu = _timed(phash_arrays, gray)
    mismatches = int((reference != ours).sum()) + int((reference != ours_arr).sum())
    if mismatches:
        raise SystemExit(f"{size}x{size}: {mismatches} hashes differ from imagehash.phash")
    return {
        "imagehash": (n / ref_wall, n / ref_cpu),
        "ours(PIL)": (n / ours_wall, n / ours_cpu),
        "ours(array)": (n / arr_wall, n / arr_cpu),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="images per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[28, 64])
    args = parser.parse_args()
    print(f"{'size':>7} {'n':>6} {'hasher':>12} {'wall img/s':>11} {'x':>6} {'CPU img/s':>10} {'x':>6}")
    for size in args.sizes:
        rates = bench(args.n, size)
        ref_wall, ref_cpu = rates["imagehash"]
        for name, (wall, cpu) in rates.items():
            print(f"{size:>3}x{size:<3} {args.n:>6} {name:>12} {wall:>11,.0f} {wall / ref_wall:>5.1f}x "
                  f"{cpu:>10,.0f} {cpu / ref_cpu:>5.1f}x")
        print(f"{'':>7} all {args.n} hashes bit-identical to imagehash.phash")


if __name__ == "__main__":
    main()
