"""Near-duplicate candidate search: the planned multi-index layout against classic radius + 1 banding, same run.

    python benchmarks/candidate_search.py                    # 20k and 100k hashes, radius 10
    python benchmarks/candidate_search.py --n 20000 300000 --skip-classic-above 100000
    python benchmarks/candidate_search.py --channels --n 10000   # which hash pairs 1-2 px shifts and crops

Hashes: uniform random 64-bit values (distinct images) plus 10% planted copies, each a random earlier hash
with 1..10 bits flipped, all new (the first drop). Both layouts must return the same pairs (checked); the
printed figures are the row pairs each join examines (:func:`band_collisions`, which the tests use
too) and the seconds of ``candidate_pairs``, best of --repeats. Real pHashes cluster more than uniform ones,
so real collisions are higher for both layouts (see docs/curation.md for the figures on the ingest
benchmark's photo crops).

``--channels``: on ``--n`` real Fashion-MNIST images (28x28) with 300 planted 1-2 px shifts and 300 crops,
each candidate hash that was tried for small shifts and crops: the share of copies it pairs with their
original and the distinct partners per image it adds (all pairs counted exactly, no banding): pHash, the
crop channel (phash2), a pHash and an average hash of the image re-centred on its intensity centroid, a hash
of the magnitude of its 2-D DFT (shift-invariant), and the shift hashes (synthdata.dedup.shift_hash).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthdata.dedup.candidates import (
    CROP_RADIUS,
    SHIFT_RADIUS,
    _channels,
    _keyed_sql,
    _plan_for,
    candidate_pairs,
    search_plan,
)
from synthdata.dedup.phash import to_signed


def band_collisions(
    con: duckdb.DuckDBPyConnection,
    hashes_table: str,
    radius: int,
    new_only: bool = True,
    crop_radius: int | None = CROP_RADIUS,
    bands: int | None = None,
    shift_radius: int | None = SHIFT_RADIUS,
) -> int:
    """Row pairs the band joins of :func:`candidate_pairs` examine before the distance filters (a pair meeting
    on several bands or flips counts once for each), summed over the channels the table has: the joins' real
    work, to compare with the all-pairs count. Same channels, plans and keyed rows as :func:`candidate_pairs`."""
    total = 0
    for channel in _channels(con, hashes_table, radius, crop_radius, shift_radius):
        layout, flip_radius = _plan_for(con, channel, bands)
        keyed = _keyed_sql(channel, layout, flip_radius, new_only)
        # A symmetric channel's probing row meets itself once (flip 0); in all-pairs mode such a channel meets
        # every pair from both sides.
        self_filter = "k.is_new" if new_only else "true"
        own = f"(SELECT count(*) FROM keyed k WHERE {self_filter})" if channel.symmetric else "0"
        sql = f"""
            WITH {keyed}, counts AS (SELECT band, v, count(*) AS n FROM keyed GROUP BY band, v)
            SELECT coalesce(sum(c.n), 0)::HUGEINT - {own}
            FROM probes p JOIN counts c ON c.band = p.band AND c.v = p.v"""
        examined = int(con.execute(sql).fetchone()[0])
        total += examined if new_only or not channel.symmetric else examined // 2
    return total


def make_hashes(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 2**64, n, dtype=np.uint64, endpoint=False)
    copies = rng.choice(n, n // 10, replace=False)
    for i in copies:
        source = hashes[rng.integers(n)]
        bits = rng.choice(64, int(rng.integers(1, 11)), replace=False)
        hashes[i] = source ^ np.uint64(sum(1 << int(b) for b in bits))
    return hashes


def _recentred(image: np.ndarray) -> np.ndarray:
    """The image moved (bilinear, edge repeated) so that its intensity centroid above the border level is central."""
    from scipy import ndimage

    f = image.astype(np.float64)
    weight = np.abs(f - np.median(np.concatenate([f[0], f[-1], f[:, 0], f[:, -1]])))
    total = max(weight.sum(), 1e-9)
    cy = (weight.sum(axis=1) * np.arange(f.shape[0])).sum() / total
    cx = (weight.sum(axis=0) * np.arange(f.shape[1])).sum() / total
    moved = ndimage.shift(f, ((f.shape[0] - 1) / 2 - cy, (f.shape[1] - 1) / 2 - cx), order=1, mode="nearest")
    return np.clip(np.rint(moved), 0, 255).astype(np.uint8)


def _dft_hash(images: list[np.ndarray]) -> np.ndarray:
    """64 bits: the log magnitudes of the lowest 2-D DFT frequencies of each image (32x32, mean removed), above
    their median. Circular shifts leave the magnitudes unchanged."""
    from PIL import Image

    feats = []
    for image in images:
        small = np.asarray(Image.fromarray(image.astype(np.float32)).resize((32, 32), Image.Resampling.BILINEAR))
        mag = np.abs(np.fft.fft2(small - small.mean()))
        feats.append(np.log1p(np.concatenate([mag[:8, :8].ravel()[1:], mag[-8:, :8].ravel()[:1]])))
    feats = np.stack(feats)
    bits = feats > np.median(feats, axis=1, keepdims=True)
    return np.packbits(bits, axis=1, bitorder="big").view(">u8")[:, 0].astype(np.uint64)


def compare_channels(n: int, seed: int) -> None:
    """Recall of planted shifts and crops and distinct partners per image, for each candidate hash."""
    from PIL import Image

    from synthdata.datasets import load_fashion_mnist
    from synthdata.dedup.calibrate import plant_copy
    from synthdata.dedup.phash import image_hashes
    from synthdata.dedup.shift_hash import CENTRE

    rng = np.random.default_rng(seed)
    x = load_fashion_mnist()[0]
    images = list(x[np.sort(rng.choice(len(x), n, replace=False))])
    kinds = np.repeat(["shift", "crop"], 300)
    originals = rng.choice(n, len(kinds), replace=False)
    copies = [plant_copy(images[o], k, rng) for o, k in zip(originals, kinds)]
    pils = lambda ims: [Image.fromarray(i) for i in ims]  # noqa: E731
    (ph, crop, shifts), (ph_c, crop_c, shifts_c) = image_hashes(pils(images))[:3], image_hashes(pils(copies))[:3]
    re_ph, re_avg = image_hashes(pils([_recentred(i) for i in images]))[:2]
    re_ph_c, re_avg_c = image_hashes(pils([_recentred(c) for c in copies]))[:2]
    dft, dft_c = _dft_hash(images), _dft_hash(copies)
    count = np.bitwise_count

    def plain(h, hc, radius):  # (copy distances to originals, distinct pairs within radius per image)
        pairs = sum(int((count(h[s : s + 1000, None] ^ h[None, :]) <= radius).sum()) for s in range(0, n, 1000)) - n
        return count(h[originals] ^ hc) <= radius, pairs / n

    def shifted(radius):
        valid = lambda p, k: (p != 0) & (k != 0)  # noqa: E731
        d_copy = np.minimum(
            np.where(valid(shifts_c, ph[:1]), count(shifts_c ^ shifts[originals, CENTRE][:, None]), 64).min(axis=1),
            np.where(valid(shifts[originals], ph[:1]), count(shifts[originals] ^ shifts_c[:, CENTRE][:, None]), 64).min(axis=1))
        pairs = 0
        for s in range(0, n, 250):
            d = count(shifts[s : s + 250, :, None] ^ shifts[None, None, :, CENTRE])
            d[(shifts[s : s + 250] == 0)[:, :, None] | (shifts[:, CENTRE] == 0)[None, None, :]] = 64
            pairs += int((d.min(axis=1) <= radius).sum())
        return d_copy <= radius, (pairs - n) / n  # directed: each new image probing every other

    rows = {"pHash <= 10": plain(ph, ph_c, 10)}
    crop_pairs = sum(int(((count(crop[s : s + 1000, None] ^ crop[None, :]) <= 10)
                          & (count(ph[s : s + 1000, None] ^ ph[None, :]) <= 24)).sum()) for s in range(0, n, 1000)) - n
    crop_found = (count(crop[originals] ^ crop_c) <= 10) & (count(ph[originals] ^ ph_c) <= 24)
    rows["phash2 <= 10 and pHash <= 24"] = (crop_found, crop_pairs / n)
    rows["re-centred pHash <= 10"] = plain(re_ph, re_ph_c, 10)
    rows["re-centred average hash <= 8"] = plain(re_avg, re_avg_c, 8)
    rows["DFT magnitude hash <= 10"] = plain(dft, dft_c, 10)
    rows["shift hashes <= 4"] = shifted(4)
    print(f"{n:,} Fashion-MNIST images, 300 planted 1-2 px shifts and 300 crops")
    for name, (found, pairs) in rows.items():
        print(f"  {name:32s} shifts {found[kinds == 'shift'].mean():6.1%}  crops {found[kinds == 'crop'].mean():6.1%}  "
              f"distinct partners per image {pairs:8.1f}")


def timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, nargs="+", default=[20_000, 100_000])
    p.add_argument("--radius", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--skip-classic-above", type=int, default=100_000, help="classic banding grows with n^2")
    p.add_argument("--channels", action="store_true", help="compare candidate hashes for shifts and crops on Fashion-MNIST")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.channels:
        for n in args.n:
            compare_channels(n, args.seed)
        return
    con = duckdb.connect()
    r = args.radius
    for n in args.n:
        hashes = make_hashes(n)
        frame = pd.DataFrame({"image_id": [f"{i:08d}" for i in range(n)], "phash": to_signed(hashes), "is_new": True})
        con.execute("CREATE OR REPLACE TABLE h AS SELECT * FROM frame")
        layout, flips = search_plan(r, n)
        t_plan, planned = timed(lambda: candidate_pairs(con, "h", r, crop_radius=None), args.repeats)
        examined = band_collisions(con, "h", r, crop_radius=None)
        line = (f"n={n:>9,}: planned {len(layout)} bands of ~{64 // len(layout)} bits, {flips}-bit flips: "
                f"{t_plan:6.2f}s, {examined:>14,} row pairs examined, {len(planned):,} pairs")
        if n <= args.skip_classic_above:
            t_classic, classic = timed(lambda: candidate_pairs(con, "h", r, crop_radius=None, bands=r + 1), args.repeats)
            assert classic.equals(planned), "the two layouts must find the same pairs"
            examined_classic = band_collisions(con, "h", r, crop_radius=None, bands=r + 1)
            line += (f" | classic {r + 1} bands: {t_classic:6.2f}s, {examined_classic:>14,} examined"
                     f" | speed-up {t_classic / t_plan:4.1f}x")
        print(line, flush=True)


if __name__ == "__main__":
    main()
