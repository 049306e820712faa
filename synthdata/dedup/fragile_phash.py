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
``MAX_PARTNERS`` best-correlated images that have one too (symmetric content mostly stays symmetric under the
supported transforms: their copies are fragile as well). On the icons it raised the share of JPEG copies
with a candidate pair from 96.3% to 99.7% and of WebP copies from 94.7% to 99.7%, for 0.2 more candidates
per image (docs/curation.md, docs/benchmarks.md).

Cost: one (new fragile) x (all fragile) product of 64-value rows, in chunks of both: a set of photos has few
fragile images and pays next to nothing; a set of symmetric drawings pays per new image in proportion to
how many it holds. Rows ingested before ``lowfreq`` existed hold NULL and are not in this channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# Best partners kept per new image: the original ranked first for all but a few re-encoded icons, and within
# the first three for every one (of 60 near-identical clip-art sunbursts, the copy's own is the closest).
MAX_PARTNERS = 4
_ROWS = 2048  # new images correlated at once...
_COLS = 4096  # ...against this many (2048 x 4096 float32: 32 MB)


def fragile_pairs(
    ids: Sequence[str],
    lowfreq: np.ndarray,
    is_new: Sequence[bool],
    max_partners: int = MAX_PARTNERS,
    min_correlation: float = 0.0,
) -> pd.DataFrame:
    """Pairs (a, b) with a < b of images with fragile pHashes: each new one's ``max_partners`` best by
    correlation of ``lowfreq`` (N, 64 unit rows, one per id), with the correlation. Pairs under
    ``min_correlation`` are left out (the near-duplicate rule's screen less a margin: a copy's low frequencies
    correlate at least as well as its pixels, which the screen judges). On equal correlations the earlier
    image wins, so the result does not depend on chunking."""
    empty = pd.DataFrame({"a": pd.Series(dtype=object), "b": pd.Series(dtype=object), "correlation": []})
    x = np.ascontiguousarray(lowfreq, np.float32)
    rows = np.flatnonzero(np.asarray(is_new, bool))
    take = min(max_partners, len(ids) - 1)
    if take < 1 or len(rows) == 0:
        return empty
    owners, partners, values = [], [], []
    for r0 in range(0, len(rows), _ROWS):
        query = rows[r0 : r0 + _ROWS]
        best = np.full((len(query), take), -np.inf, np.float32)
        partner = np.zeros(best.shape, np.int64)
        for c0 in range(0, len(ids), _COLS):
            cols = np.arange(c0, min(c0 + _COLS, len(ids)))
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
    owner, partner, value = (np.concatenate(v) for v in (owners, partners, values))
    keep = value >= max(min_correlation, 1e-6)
    if not keep.any():
        return empty
    names = np.asarray(ids, dtype=object)
    a, b = names[owner[keep]], names[partner[keep]]
    lo, hi = np.where(a < b, a, b), np.where(a < b, b, a)
    out = pd.DataFrame({"a": lo, "b": hi, "correlation": value[keep].astype(np.float64)})
    return out.groupby(["a", "b"], as_index=False, sort=True)["correlation"].max()
