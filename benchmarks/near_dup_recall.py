"""Recall and false-duplicate rate of the near-duplicate pipeline on planted copies of real photographs.

Run: ``python benchmarks/near_dup_recall.py [--radius R] [--threshold T] [--copies N] [--seed S]``

Distinct images: scikit-learn's 1,797 handwritten digits (8x8), the 200 LFW faces/non-faces of
``skimage.data.lfw_subset`` (25x25) and non-overlapping 64..128 px tiles of scikit-image's sample
photographs (near-flat tiles dropped: two patches of clear sky are not meaningfully distinct).
Planted copies of random distinct images: exact, JPEG q75..95, resize x0.5..x2, crop <= 5% (images of at
least 20 px, so one pixel is <= 5%), brightness/contrast +-15%.

Candidates come from two banded channels: pHash within ``--radius`` and, unless ``--phash-only``, the
crop-robust average hash (``phash2``) within ``candidates.CROP_RADIUS`` plus pHash within
``candidates.CROP_PHASH_RADIUS``. Near recall is reported over all planted copies, and also without copies
smaller than 8 px (digits shrunk to 4..7 px) and without any copy of an 8x8 digit.

The pipeline runs in two drops to exercise the incremental path: drop 1 holds half the distinct images,
drop 2 the rest plus all copies (drop-1 images are then old and never recompared among themselves).

Confirmation cost is reported per candidate pair, against ``similarity()`` one pair at a time on a sample
of the candidates in the same run.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import skimage.data
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.candidate_search import band_collisions  # noqa: E402
from synthdata.datasets import load_digits_uint8  # noqa: E402
from synthdata.dedup.candidates import CROP_RADIUS, DEFAULT_RADIUS, candidate_pairs  # noqa: E402
from synthdata.dedup.confirm import DEFAULT_SIMILARITY, confirm_pairs, similarity  # noqa: E402
from synthdata.dedup.groups import group_duplicates  # noqa: E402
from synthdata.dedup.phash import hamming, phash_and_crop_hashes, to_signed  # noqa: E402

PHOTOS = (
    "astronaut", "camera", "coffee", "chelsea", "rocket", "brick", "grass", "gravel", "moon", "coins",
    "clock", "page", "text", "hubble_deep_field", "immunohistochemistry", "retina", "cell", "colorwheel",
)
KINDS = ("exact", "jpeg", "resize", "crop", "brightness")
MIN_TILE_STD = 12.0  # grey levels; flatter tiles are dropped


def distinct_images(rng: np.random.Generator) -> list[np.ndarray]:
    """Several thousand distinct real images as uint8 arrays (gray or RGB, several sizes)."""
    digits, _, _ = load_digits_uint8()
    images = list(digits)
    faces = skimage.data.lfw_subset()
    images += [np.rint(f * 255).astype(np.uint8) for f in faces]
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()
        if photo.ndim == 3:
            photo = photo[..., :3]
        side = int(rng.integers(64, 129))
        for y in range(0, photo.shape[0] - side + 1, side):
            for x in range(0, photo.shape[1] - side + 1, side):
                tile = np.ascontiguousarray(photo[y : y + side, x : x + side])
                gray = tile.mean(axis=2) if tile.ndim == 3 else tile
                if gray.std() >= MIN_TILE_STD:
                    images.append(tile)
    return images


def plant(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of ``image`` modified as ``kind`` describes."""
    pil = Image.fromarray(image)
    if kind == "exact":
        return image.copy()
    if kind == "jpeg":
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(rng.integers(75, 96)))
        return np.asarray(Image.open(buf).convert(pil.mode))
    if kind == "resize":
        factor = float(rng.uniform(0.5, 2.0))
        size = (max(1, round(pil.width * factor)), max(1, round(pil.height * factor)))
        method = [Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS][int(rng.integers(3))]
        return np.asarray(pil.resize(size, method))
    if kind == "crop":
        h, w = image.shape[:2]
        cut_h, cut_w = max(1, int(rng.uniform(0.01, 0.05) * h)), max(1, int(rng.uniform(0.01, 0.05) * w))
        top, left = int(rng.integers(0, cut_h + 1)), int(rng.integers(0, cut_w + 1))
        return np.ascontiguousarray(image[top : h - (cut_h - top), left : w - (cut_w - left)])
    if kind == "brightness":
        gain = 1.0 + float(rng.uniform(-0.15, 0.15))
        offset = float(rng.uniform(-0.15, 0.15)) * 255 * 0.5
        return np.clip(image.astype(np.float64) * gain + offset, 0, 255).round().astype(np.uint8)
    raise ValueError(kind)


def eligible(image: np.ndarray, kind: str) -> bool:
    """Crops need one pixel to be <= 5% of each side."""
    return kind != "crop" or min(image.shape[:2]) >= 20


def content_key(image: np.ndarray) -> str:
    """Byte-level identity (exact duplicates): shape + pixels."""
    return hashlib.sha1(repr(image.shape).encode() + image.tobytes()).hexdigest()


def exact_pairs(ids: list[str], images: dict[str, np.ndarray]) -> pd.DataFrame:
    """Pairs of byte-identical images, each linked to the first one with that content."""
    first: dict[str, str] = {}
    rows = []
    for image_id in ids:
        key = content_key(images[image_id])
        if key in first:
            rows.append((first[key], image_id, 0))
        else:
            first[key] = image_id
    return pd.DataFrame(rows, columns=["a", "b", "distance"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--radius", type=int, default=DEFAULT_RADIUS)
    parser.add_argument("--threshold", type=float, default=DEFAULT_SIMILARITY)
    parser.add_argument("--copies", type=int, default=300, help="planted copies per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-pairs", type=int, default=500,
                        help="candidates scored one at a time for the confirmation-cost baseline")
    parser.add_argument("--phash-only", action="store_true",
                        help="no crop-robust second channel (phash2): the previous candidate search")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    t0 = time.perf_counter()
    distinct = distinct_images(rng)
    images: dict[str, np.ndarray] = {f"d{i:05d}": im for i, im in enumerate(distinct)}
    distinct_ids = list(images)
    truth: dict[str, tuple[str, str]] = {}  # copy id -> (original id, kind)
    for kind in KINDS:
        pool = [i for i in distinct_ids if eligible(images[i], kind)]
        for n, original in enumerate(rng.choice(pool, size=args.copies, replace=False)):
            copy_id = f"c_{kind}_{n:04d}"
            images[copy_id] = plant(images[original], kind, rng)
            truth[copy_id] = (str(original), kind)
    copy_ids = list(truth)
    rng.shuffle(copy_ids)
    half = len(distinct_ids) // 2
    drops = [distinct_ids[:half], distinct_ids[half:] + copy_ids]
    order = drops[0] + drops[1]
    t_build = time.perf_counter() - t0
    print(f"distinct images: {len(distinct_ids)} (digits 1797, lfw 200, photo tiles {len(distinct_ids) - 1997}); "
          f"planted copies: {len(copy_ids)} ({args.copies} per kind); built in {t_build:.1f}s")

    # Hash (drop by drop, as ingestion would), then banded candidates per drop.
    con = duckdb.connect()
    con.execute("CREATE TABLE hashes (image_id VARCHAR, phash BIGINT, phash2 BIGINT, is_new BOOLEAN)")
    crop_radius = None if args.phash_only else CROP_RADIUS
    t_hash = t_cand = 0.0
    candidates, examined = [], 0
    hash_of: dict[str, int] = {}
    for drop in drops:
        t = time.perf_counter()
        hashes, crop_hashes = phash_and_crop_hashes([Image.fromarray(images[i]) for i in drop])
        t_hash += time.perf_counter() - t
        hash_of.update(zip(drop, hashes.tolist()))
        t = time.perf_counter()
        con.execute("UPDATE hashes SET is_new = false")
        frame = pd.DataFrame({"image_id": drop, "phash": to_signed(hashes), "phash2": to_signed(crop_hashes),
                              "is_new": True})
        con.execute("INSERT INTO hashes SELECT * FROM frame")
        candidates.append(candidate_pairs(con, "hashes", args.radius, new_only=True, crop_radius=crop_radius))
        t_cand += time.perf_counter() - t
        examined += band_collisions(con, "hashes", args.radius, new_only=True, crop_radius=crop_radius)
    cand = pd.concat(candidates, ignore_index=True)

    t = time.perf_counter()
    confirmed = confirm_pairs(cand, images.__getitem__, args.threshold)
    t_confirm = time.perf_counter() - t
    t = time.perf_counter()
    exact = exact_pairs(order, images)
    exact_set = set(zip(exact["a"], exact["b"])) | set(zip(exact["b"], exact["a"]))
    near = confirmed[[(a, b) not in exact_set for a, b in zip(confirmed["a"], confirmed["b"])]]
    groups = group_duplicates(order, exact, near)
    t_group = time.perf_counter() - t

    group_of = dict(zip(groups["member"], groups["representative"]))
    kind_of = dict(zip(groups["member"], groups["kind"]))
    rep = lambda i: group_of.get(i, i)  # noqa: E731

    n_all = len(order)
    print(f"\nradius {args.radius}, similarity threshold {args.threshold}")
    print(f"all pairs: {n_all * (n_all - 1) // 2:,}; band collisions examined: {examined:,}; "
          f"candidates within radius: {len(cand):,}; confirmed: {len(confirmed):,}")
    print("\nrecall (copy grouped with its original) and pHash distance copy<->original:")
    for kind in KINDS:
        ids = [c for c, (_, k) in truth.items() if k == kind]
        found = [rep(c) == rep(truth[c][0]) for c in ids]
        dists = np.array([hamming(hash_of[c], hash_of[truth[c][0]]) for c in ids])
        extra = ""
        if kind == "exact":
            extra = f", linked as 'exact': {np.mean([kind_of.get(c) == 'exact' for c in ids]):.1%}"
        big = [f for c, f in zip(ids, found) if min(images[truth[c][0]].shape[:2]) > 8]
        extra_big = f"; without 8x8 digits {np.mean(big):.2%} ({sum(big)}/{len(big)})"
        print(f"  {kind:<10} {np.mean(found):7.2%}  ({sum(found)}/{len(ids)}){extra_big}; within radius "
              f"{np.mean(dists <= args.radius):6.1%}, distance p50/p95/max {np.percentile(dists, 50):.0f}/"
              f"{np.percentile(dists, 95):.0f}/{dists.max()}{extra}")
    near_kinds = [c for c, (_, k) in truth.items() if k != "exact"]
    near_big = [c for c in near_kinds if min(images[truth[c][0]].shape[:2]) > 8]
    # Copies shrunk below 8 px (8x8 digits resized x0.5..x0.94 to 4..7 px) hold 16..49 pixels: often no
    # longer distinguishable from other digits of their class. Reported separately, never dropped.
    near_sub8 = [c for c in near_kinds if min(images[c].shape[:2]) < 8]
    near_rest = [c for c in near_kinds if min(images[c].shape[:2]) >= 8]
    found_sub8 = sum(rep(c) == rep(truth[c][0]) for c in near_sub8)
    print(f"  near (all kinds) {np.mean([rep(c) == rep(truth[c][0]) for c in near_kinds]):.2%} "
          f"({sum(rep(c) == rep(truth[c][0]) for c in near_kinds)}/{len(near_kinds)}); "
          f"without 8x8 digits {np.mean([rep(c) == rep(truth[c][0]) for c in near_big]):.2%}; "
          f"without copies under 8 px {np.mean([rep(c) == rep(truth[c][0]) for c in near_rest]):.2%} "
          f"({len(near_rest)} copies; the {len(near_sub8)} under 8 px: {found_sub8} found)")

    # A distinct image is falsely grouped when it shares a group with another distinct image.
    reps = pd.Series([rep(i) for i in distinct_ids])
    false_dup = int(reps.duplicated(keep=False).sum())
    print(f"\nfalse duplicates: {false_dup}/{len(distinct_ids)} distinct images = {false_dup / len(distinct_ids):.2%}")
    bad = [(a, b, s) for a, b, s in zip(confirmed["a"], confirmed["b"], confirmed["similarity"])
           if a.startswith("d") and b.startswith("d")]
    for a, b, s in bad[:10]:
        print(f"  {a} {images[a].shape} ~ {b} {images[b].shape}: similarity {s:.3f}")
    print(f"\nseconds: build {t_build:.1f}, phash {t_hash:.2f}, candidates (DuckDB) {t_cand:.2f}, "
          f"confirm {t_confirm:.2f}, group {t_group:.2f}")

    # Same-run baseline for the confirmation cost: similarity() one candidate at a time (both images prepared
    # for every pair, nothing batched) on a fixed sample of the candidates.
    sample = cand.sample(min(len(cand), args.baseline_pairs), random_state=args.seed)
    t = time.perf_counter()
    for a, b in zip(sample["a"], sample["b"]):
        similarity(images[a], images[b])
    per_pair_baseline = (time.perf_counter() - t) / max(len(sample), 1)
    per_pair = t_confirm / max(len(cand), 1)
    print(f"confirmation per candidate pair: {per_pair * 1e6:.0f} us batched (confirm_pairs, {len(cand):,} pairs); "
          f"{per_pair_baseline * 1e6:.0f} us one pair at a time (similarity(), {len(sample)} pairs): "
          f"{per_pair_baseline / per_pair:.1f}x")


if __name__ == "__main__":
    main()
