"""Near-duplicate candidate search: the planned multi-index layout against classic radius + 1 banding, same run.

    python benchmarks/candidate_search.py                    # 20k and 100k hashes, radius 10
    python benchmarks/candidate_search.py --n 20000 300000 --skip-classic-above 100000

Hashes: uniform random 64-bit values (distinct images) plus 10% planted copies, each a random earlier hash
with 1..10 bits flipped, all new (the first drop). Both layouts must return the same pairs (checked); the
printed figures are the row pairs each join examines (:func:`band_collisions`, which the tests use
too) and the seconds of ``candidate_pairs``, best of --repeats. Real pHashes cluster more than uniform ones,
so real collisions are higher for both layouts (see docs/curation.md for the figures on the ingest
benchmark's photo crops).
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
) -> int:
    """Row pairs the band joins of :func:`candidate_pairs` examine before the distance filters (a pair meeting
    on several bands or flips counts once for each), summed over both channels when ``phash2`` is present:
    the joins' real work, to compare with the all-pairs count. Same channels, plans and keyed rows as
    :func:`candidate_pairs`."""
    total = 0
    for column, r, dtype, where in _channels(con, hashes_table, radius, crop_radius):
        layout, flip_radius = _plan_for(con, hashes_table, r, where, bands)
        keyed = _keyed_sql(hashes_table, column, dtype, layout, flip_radius, where)
        # Each probing row meets itself once (flip 0); in all-pairs mode every pair is met from both sides.
        probe_filter, self_filter = ("p.is_new", "k.is_new") if new_only else ("true", "true")
        sql = f"""
            WITH {keyed}, counts AS (SELECT band, v, count(*) AS n FROM keyed GROUP BY band, v)
            SELECT coalesce(sum(c.n), 0)::HUGEINT - (SELECT count(*) FROM keyed k WHERE {self_filter})
            FROM probes p JOIN counts c ON c.band = p.band AND c.v = p.v WHERE {probe_filter}"""
        examined = int(con.execute(sql).fetchone()[0])
        total += examined if new_only else examined // 2
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
    args = p.parse_args()
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
