"""Candidate pairs for images whose pHash is decided by noise.

pHash thresholds 64 DCT coefficients at their median. A drawing with symmetry (a circle, a flag, a plus sign,
a sunburst) has dozens of them at the median itself (0, by symmetry), so each of those bits is set by whatever
noise the file carries: a JPEG or WebP re-encode, a brightness change or a resize flips about half of them,
and the copy lands 12-28 bits from its original, beyond any radius that keeps the search small. On 10,360
desktop icons and clip art (``benchmarks/near_dup_recall.py --set icons``) 1,945 images have a fragile pHash
(:data:`synthdata.dedup.phash.FRAGILE_BITS` or more bits within ``FRAGILE_TOLERANCE`` of the median), and they
are the originals of 54 of the 55 re-encoded, brightness-changed, resized, cropped and shifted copies that the
other channels left unpaired; Fashion-MNIST has 305 per 10,000, whose copies pHash pairs anyway.

The same 64 coefficients, read as a unit vector of low frequencies (``lowfreq``, stored at ingest by
:func:`synthdata.dedup.phash.image_hashes`), still say what such an image is: a re-encoded copy correlates
with its original at 0.99+ and ranks it first among its look-alikes nearly always (of 60 near-identical
clip-art sunbursts, its own). So this channel pairs each new image with a fragile pHash with its
``MAX_PARTNERS`` best-correlated images that have low frequencies stored (:data:`synthdata.dedup.phash.LOWFREQ_BITS`
or more such bits), and each other new image that has them with its ``PARTIAL_PARTNERS`` best fragile one: a
copy may lose part of its original's symmetry (WebP smooths a 16 px glyph) and with it its fragile pHash. On
the icons it raised the share of JPEG copies with a candidate pair from 96.3% to 99.7% and of WebP copies
from 94.7% to 99.7%, for 0.2 more candidates per image; on 16 px icons WebP 89.7% -> 99.3% (docs/curation.md,
docs/benchmarks.md).

Cost: products of 64-value rows, (new fragile) x (all with low frequencies) and (the other new ones) x (all
fragile), in chunks of both: a set of photos has few fragile images and pays next to nothing; a set of
symmetric drawings pays per new image in proportion to how many it holds. Rows ingested before ``lowfreq``
existed hold NULL and are not in this channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from synthdata.dedup.phash import FRAGILE_BITS, lowfreq_array

# Best partners kept per new image with a fragile pHash: the original ranked first for all but a few re-encoded
# icons, and within the first three for every one (of 60 near-identical clip-art sunbursts, the copy's own is
# the closest).
MAX_PARTNERS = 4
# ...and per new image whose pHash is not fragile but has low frequencies (phash.LOWFREQ_BITS), among the fragile
# ones only: a copy that lost part of its original's symmetry ranks it first (16 px icons' WebP copies). More
# would pair the many such photos (Fashion-MNIST: 18% of the images) with fragile look-alikes for nothing.
PARTIAL_PARTNERS = 1
_ROWS = 2048  # new images correlated at once...
_COLS = 4096  # ...against this many (2048 x 4096 float32: 32 MB)


def fragile_pairs(
    ids: Sequence[str],
    lowfreq: np.ndarray,
    fragile: Sequence[bool],
    is_new: Sequence[bool],
    max_partners: int = MAX_PARTNERS,
    min_correlation: float = 0.0,
) -> pd.DataFrame:
    """Pairs (a, b) with a < b by correlation of ``lowfreq`` (N, 64 unit rows, one per id): each new image
    whose pHash is ``fragile`` with its ``max_partners`` best among all, each other new one with its
    PARTIAL_PARTNERS best among the fragile; with the correlation. Pairs under ``min_correlation`` are left
    out (the near-duplicate rule's screen less a margin: a copy's low frequencies correlate at least as well
    as its pixels, which the screen judges). On equal correlations the earlier image wins, so the result does
    not depend on chunking."""
    empty = pd.DataFrame({"a": pd.Series(dtype=object), "b": pd.Series(dtype=object), "correlation": []})
    x = np.ascontiguousarray(lowfreq, np.float32)
    fragile, new = np.asarray(fragile, bool), np.asarray(is_new, bool)
    found = [_best(x, np.flatnonzero(new & fragile), np.arange(len(ids)), max_partners),
             _best(x, np.flatnonzero(new & ~fragile), np.flatnonzero(fragile), PARTIAL_PARTNERS)]  # fmt: skip
    owner, partner, value = (np.concatenate(v) for v in zip(*found))
    keep = value >= max(min_correlation, 1e-6)
    if not keep.any():
        return empty
    names = np.asarray(ids, dtype=object)
    a, b = names[owner[keep]], names[partner[keep]]
    lo, hi = np.where(a < b, a, b), np.where(a < b, b, a)
    out = pd.DataFrame({"a": lo, "b": hi, "correlation": value[keep].astype(np.float64)})
    return out.groupby(["a", "b"], as_index=False, sort=True)["correlation"].max()


def stored_fragile_pairs(
    ids: Sequence[str],
    lowfreq: Sequence[bytes | None],
    fragile_bits: Sequence[int | None],
    is_new: Sequence[bool],
    min_correlation: float = 0.0,
) -> pd.DataFrame:
    """:func:`fragile_pairs` of images as the warehouse stores them (``raw_images``' ``lowfreq``, NULL where not
    kept or ingested before it, and ``phash_fragile_bits``), in the given order."""
    keep = [k for k, blob in enumerate(lowfreq) if blob is not None and not pd.isna(blob)]
    bits = np.array([fragile_bits[k] if fragile_bits[k] is not None and not pd.isna(fragile_bits[k]) else 0
                     for k in keep])  # fmt: skip
    rows = lowfreq_array([bytes(lowfreq[k]) for k in keep])
    new = [bool(is_new[k]) for k in keep]
    return fragile_pairs([ids[k] for k in keep], rows, bits >= FRAGILE_BITS, new, min_correlation=min_correlation)


def _best(x: np.ndarray, rows: np.ndarray, pool: np.ndarray, take: int) -> tuple[np.ndarray, ...]:
    """Each of ``rows``' ``take`` best-correlated rows of ``pool`` (sorted indices; not itself), in chunks of
    both: (owner, partner, correlation) flat, -inf where the pool ran short."""
    take = min(take, len(pool))
    if take < 1 or len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    owners, partners, values = [], [], []
    for r0 in range(0, len(rows), _ROWS):
        query = rows[r0 : r0 + _ROWS]
        best = np.full((len(query), take), -np.inf, np.float32)
        partner = np.zeros(best.shape, np.int64)
        for c0 in range(0, len(pool), _COLS):
            cols = pool[c0 : c0 + _COLS]
            corr = x[query] @ x[cols].T
            corr[query[:, None] == cols[None, :]] = -np.inf  # not itself
            merged = np.concatenate([best, corr], axis=1)
            candidates = np.concatenate([partner, np.broadcast_to(cols, corr.shape)], axis=1)
            pick = np.argsort(-merged, axis=1, kind="stable")[:, :take]
            best = np.take_along_axis(merged, pick, axis=1)
            partner = np.take_along_axis(candidates, pick, axis=1)
        owners.append(np.repeat(query, take))
        partners.append(partner.ravel())
        values.append(best.ravel())
    return np.concatenate(owners), np.concatenate(partners), np.concatenate(values)
