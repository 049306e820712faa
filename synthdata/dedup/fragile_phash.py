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
:func:`synthdata.dedup.phash.image_hashes`), still say what such an image is: a re-encoded copy correlates with
its original at 0.99+ and ranks it first among its look-alikes nearly always (of 60 near-identical clip-art
sunbursts, its own). So this channel pairs each new image with a fragile pHash with its ``MAX_PARTNERS``
best-correlated images with :data:`synthdata.dedup.phash.LOWFREQ_BITS` or more such bits (every image stores its
low frequencies since 2026-12-07, for the pHash channel's ranking; these are the channel's), and each other new
image that has them with its ``PARTIAL_PARTNERS`` best fragile one: a copy may lose part of its original's
symmetry (WebP smooths a 16 px glyph) and with it its fragile pHash. On the icons it raised the share of JPEG
copies with a candidate pair from 96.3% to 99.7% and of WebP copies from 94.7% to 99.7%, for 0.2 more candidates
per image; on 16 px icons WebP 89.7% -> 99.3% (docs/curation.md, docs/benchmarks.md).

Where a set holds a crowd of near-identical symmetric drawings (clip-art jigsaw pieces in several colours,
stars, sunbursts), 64 low frequencies rank dozens of look-alikes above a brightness-changed copy's own
original. Ingest also stores those images' 32x32 pHash thumbnail (``thumb32``), and the partners are then
taken from a SHORTLIST by low frequencies: ``MAX_PARTNERS - 1`` by thumbnail correlation, and the best by low
frequencies (a resized copy's thumbnail is blurred, its low frequencies are not).

Cost: products of 64-value rows, (new fragile) x (all with low frequencies) and (the other new ones) x (all
fragile), in chunks of both, then 1,024-value products with each new image's shortlist: a set of photos has
few fragile images and pays next to nothing; a set of symmetric drawings pays per new image in proportion to
how many it holds. Rows ingested before ``lowfreq`` existed hold NULL and are not in this channel (nor are
flat images); rows ingested before ``thumb32`` are ranked by their low frequencies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from synthdata.dedup.phash import FRAGILE_BITS, LOWFREQ_BITS, THUMB_BYTES, lowfreq_array, thumb_array

# Best partners kept per new image with a fragile pHash: by low frequencies alone, the original ranked first for
# all but a few re-encoded icons, and within the first three for every one (of 60 near-identical clip-art
# sunbursts, the copy's own is the closest). With thumbnails: 3 by them and the best by low frequencies.
MAX_PARTNERS = 4
# ...and per new image whose pHash is not fragile but has low frequencies (phash.LOWFREQ_BITS), among the fragile
# ones only: a copy that lost part of its original's symmetry ranks it first (16 px icons' WebP copies). More
# would pair the many such photos (Fashion-MNIST: 18% of the images) with fragile look-alikes for nothing.
PARTIAL_PARTNERS = 1
# With thumbnails (``thumb32``), the low frequencies shortlist this many per new image, and the partners are the
# shortlist's best by thumbnail correlation (and the first by low frequencies): 64 low frequencies cannot tell
# apart near-identical clip-art shapes, a 32x32 thumbnail often can. Offline, brightness-changed copies of the
# icons set's 1,945 fragile images that land beyond the pHash radius (375): the low frequencies' 4 best held the
# original for 172, the 4 best thumbnails of the whole set for 303, of a 128-long shortlist for 300.
SHORTLIST = 128
_ROWS = 1024  # new images correlated at once...
_COLS = 4096  # ...against this many (1024 x 4096 float64: 32 MB)
_RERANK_ROWS = 64  # shortlists re-ranked at once (64 x 128 thumbnails as float32: 32 MB)


def fragile_pairs(
    ids: Sequence[str],
    lowfreq: np.ndarray,
    fragile: Sequence[bool],
    is_new: Sequence[bool],
    max_partners: int = MAX_PARTNERS,
    min_correlation: float = 0.0,
    thumbs: np.ndarray | None = None,
) -> pd.DataFrame:
    """Pairs (a, b) with a < b by correlation of ``lowfreq`` (N, 64 unit rows, one per id): each new image
    whose pHash is ``fragile`` with its ``max_partners`` best among all, each other new one with its
    PARTIAL_PARTNERS best among the fragile; with the correlation. With ``thumbs`` (N, 1024 uint8 rows of
    :func:`synthdata.dedup.phash.thumb_array`; zero rows where unknown) the low frequencies shortlist SHORTLIST
    per new image and the best are taken by thumbnail correlation (by the low frequencies' where either row is
    unknown or flat). Pairs whose low frequencies correlate under ``min_correlation`` are left out (the near-duplicate
    rule's screen less a margin: a copy's low frequencies correlate at least as well as its pixels, which the
    screen judges). On equal correlations the earlier image wins, so the result does not depend on chunking."""
    empty = pd.DataFrame({"a": pd.Series(dtype=object), "b": pd.Series(dtype=object), "correlation": []})
    # float16 values (as stored) in float64: every product and partial sum of two unit rows is then exact, so a
    # correlation does not depend on how a matrix product was blocked, and equal rows tie exactly.
    x = np.asarray(lowfreq, np.float16).astype(np.float64)
    fragile, new = np.asarray(fragile, bool), np.asarray(is_new, bool)
    t = None if thumbs is None else _Thumbs(np.asarray(thumbs, np.uint8))
    fragile_new, partial_new = np.flatnonzero(new & fragile), np.flatnonzero(new & ~fragile)
    everyone = np.arange(len(ids))
    if t is None:
        found = [_best(x, fragile_new, everyone, max_partners)]
    else:  # max_partners - 1 by thumbnails, and the best by low frequencies (often the same one)
        found = [_best(x, fragile_new, everyone, max_partners - 1, t, first=1)]
    found.append(_best(x, partial_new, np.flatnonzero(fragile), PARTIAL_PARTNERS, t))
    owner, partner, value = (np.concatenate(v) for v in zip(*found))
    keep = value >= max(min_correlation, 1e-6)
    if not keep.any():
        return empty
    names = np.asarray(ids, dtype=object)
    a, b = names[owner[keep]], names[partner[keep]]
    lo, hi = np.where(a < b, a, b), np.where(a < b, b, a)
    out = pd.DataFrame({"a": lo, "b": hi, "correlation": value[keep].astype(np.float64)})
    return out.groupby(["a", "b"], as_index=False, sort=True)["correlation"].max()


def _known(value: object) -> bool:
    return value is not None and not pd.isna(value)


def stored_fragile_pairs(
    ids: Sequence[str],
    lowfreq: Sequence[bytes | None],
    fragile_bits: Sequence[int | None],
    is_new: Sequence[bool],
    min_correlation: float = 0.0,
    thumb32: Sequence[bytes | None] | None = None,
) -> pd.DataFrame:
    """:func:`fragile_pairs` of images as the warehouse stores them (``raw_images``' ``lowfreq``, NULL for flat
    images and rows ingested before it, ``phash_fragile_bits``, and ``thumb32``, NULL in rows ingested before
    it), in the given order: the channel's images are those with LOWFREQ_BITS or more such bits."""
    # Every image ingested now stores its low frequencies (they rank pHash partners too); the channel's are
    # those with LOWFREQ_BITS or more noise-decided bits (rows ingested before kept them for these alone).
    keep = [k for k, blob in enumerate(lowfreq)
            if _known(blob) and _known(fragile_bits[k]) and fragile_bits[k] >= LOWFREQ_BITS]  # fmt: skip
    bits = np.array([fragile_bits[k] for k in keep])
    rows = lowfreq_array([bytes(lowfreq[k]) for k in keep])
    new = [bool(is_new[k]) for k in keep]
    have = [i for i, k in enumerate(keep) if thumb32 is not None and _known(thumb32[k])]
    thumbs = np.zeros((len(keep), THUMB_BYTES), np.uint8) if have else None
    if thumbs is not None:
        thumbs[have] = thumb_array([bytes(thumb32[keep[i]]) for i in have])
    return fragile_pairs([ids[k] for k in keep], rows, bits >= FRAGILE_BITS, new, min_correlation=min_correlation,
                         thumbs=thumbs)  # fmt: skip


class _Thumbs:
    """Thumbnails less 128 (int8), with each row's sum and centred sum of squares. Each product of two such pixels
    is at most 2^14 in magnitude, so every partial sum of 1,024 of them is an integer float32 holds exactly: the
    correlations are the same however they are batched."""

    def __init__(self, rows: np.ndarray) -> None:
        self.rows = (rows.astype(np.int16) - 128).astype(np.int8)
        wide = self.rows.astype(np.float64)
        self.sum = wide.sum(axis=1)
        self.centred = np.einsum("nd,nd->n", wide, wide) - self.sum**2 / rows.shape[1]
        self.known = self.centred > 0.5  # unknown (all-zero) rows and flat ones are flat: no correlation

    def correlation(self, query: np.ndarray, partner: np.ndarray) -> np.ndarray:
        """(q,) rows against (q, K) rows: (q, K) correlations (NaN where either is not known)."""
        a, b = self.rows[query].astype(np.float32), self.rows[partner].astype(np.float32)
        dot = np.matmul(b, a[:, :, None])[..., 0].astype(np.float64)
        cov = dot - self.sum[query][:, None] * self.sum[partner] / self.rows.shape[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            out = cov / np.sqrt(self.centred[query][:, None] * self.centred[partner])
        return np.where(self.known[query][:, None] & self.known[partner], out, np.nan)


def _best(
    x: np.ndarray, rows: np.ndarray, pool: np.ndarray, take: int, thumbs: _Thumbs | None = None, first: int = 0
) -> tuple[np.ndarray, ...]:
    """Each of ``rows``' ``take`` best-correlated rows of ``pool`` (sorted indices; not itself), in chunks of
    both: (owner, partner, correlation of ``x``) flat, -inf where the pool ran short. With ``thumbs``, the best
    ``take`` by thumbnail correlation among the SHORTLIST best by ``x``, and the ``first`` best by ``x`` too."""
    final = min(take, len(pool))
    first = min(first, len(pool)) if thumbs is not None else 0
    if final + first < 1 or len(rows) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    take = min(max(take, first, SHORTLIST), len(pool)) if thumbs is not None else final
    owners, partners, values = [], [], []
    for r0 in range(0, len(rows), _ROWS):
        query = rows[r0 : r0 + _ROWS]
        best = np.full((len(query), take), -np.inf)
        partner = np.zeros(best.shape, np.int64)
        for c0 in range(0, len(pool), _COLS):
            cols = pool[c0 : c0 + _COLS]
            corr = x[query] @ x[cols].T
            corr[query[:, None] == cols[None, :]] = -np.inf  # not itself
            merged = np.concatenate([best, corr], axis=1)
            candidates = np.concatenate([partner, np.broadcast_to(cols, corr.shape)], axis=1)
            pick = _top(merged, take)
            best = np.take_along_axis(merged, pick, axis=1)
            partner = np.take_along_axis(candidates, pick, axis=1)
        if thumbs is not None:
            reranked = _rerank(thumbs, query, best, partner, final)
            best, partner = (np.concatenate([r, v[:, :first]], axis=1) for r, v in zip(reranked, (best, partner)))
        owners.append(np.repeat(query, final + first))
        partners.append(partner.ravel())
        values.append(best.ravel())
    return np.concatenate(owners), np.concatenate(partners), np.concatenate(values)


def _top(values: np.ndarray, take: int) -> np.ndarray:
    """Column indices of each row's ``take`` largest values, largest first, the earlier column first among equal
    ones: what a stable descending argsort's first ``take`` columns are, found by a partition (a full sort of
    every row cost most of this channel's time: 4 s of wall time on 70,000 Fashion-MNIST images)."""
    n = values.shape[1]
    if take >= n:
        return np.argsort(-values, axis=1, kind="stable")
    part = np.argpartition(-values, take - 1, axis=1)[:, :take]
    kth = np.take_along_axis(values, part, axis=1).min(axis=1)
    # A row where a value equal to the last one kept was left out (equal rows: byte-identical images) is sorted in
    # full; elsewhere the kept set is exact, and only its order is left to fix.
    ties = (values >= kth[:, None]).sum(axis=1) > take
    part.sort(axis=1)
    order = np.argsort(-np.take_along_axis(values, part, axis=1), axis=1, kind="stable")
    pick = np.take_along_axis(part, order, axis=1)
    if ties.any():
        pick[ties] = np.argsort(-values[ties], axis=1, kind="stable")[:, :take]
    return pick


def _rerank(
    thumbs: _Thumbs, query: np.ndarray, value: np.ndarray, partner: np.ndarray, take: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``take`` best of each query's shortlist (``value`` and ``partner``, (q, K)) by thumbnail correlation,
    where both thumbnails are known (else by ``value``); ties go to the earlier partner. Returns their ``value``
    and ``partner``."""
    out_value, out_partner = np.empty((len(query), take), value.dtype), np.empty((len(query), take), partner.dtype)
    for r0 in range(0, len(query), _RERANK_ROWS):
        q, v, p = query[r0 : r0 + _RERANK_ROWS], value[r0 : r0 + _RERANK_ROWS], partner[r0 : r0 + _RERANK_ROWS]
        score = thumbs.correlation(q, p)
        score = np.where(np.isnan(score), v, score)
        score[~np.isfinite(v)] = -np.inf  # where the pool ran short
        by_index = np.argsort(p, axis=1, kind="stable")
        order = np.argsort(-np.take_along_axis(score, by_index, axis=1), axis=1, kind="stable")
        pick = np.take_along_axis(by_index, order[:, :take], axis=1)
        out_value[r0 : r0 + len(q)] = np.take_along_axis(v, pick, axis=1)
        out_partner[r0 : r0 + len(q)] = np.take_along_axis(p, pick, axis=1)
    return out_value, out_partner
