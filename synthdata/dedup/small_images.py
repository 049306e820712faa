"""Candidate pairs for resized copies of small images, which pHash cannot pair.

pHash keeps the 8x8 lowest DCT frequencies of a 32x32 upscale. A copy shrunk to fewer pixels than its
original has lost the upper part of what those bits see near its own resolution, so some bits turn to noise
and the copy lands beyond the search radius: scikit-learn's 8x8 digits shrunk to 5 px lie within radius 10
of their original 5% of the time, at 6 px 68%, at 7 px 90-97%; 16 px desktop icons (Moka and MATE, 1,246
distinct) shrunk to 8 px 90%, 9-13 px 93-99%, 14-15 px 99-100%. The copies themselves are not ambiguous: a
4-7 px copy of a digit lies ~0.003 from its original by copy distance, and another digit came within the
calibrated threshold of 3 in 100 copies at 4 px and of none at 5-7 px.

Small images are cheap to compare directly, so this channel does: each image whose longer side is at most
``SMALL_SIDE`` against every image of another shape that a 0.5x-1x resize could have made it from (up to
about twice its size), the larger shrunk to the smaller's shape (Pillow's bilinear, which antialiases when
it shrinks), by luma correlation. Each new small image keeps its ``MAX_PARTNERS`` best; each new larger
image the best small image of each shape (a copy that arrived first: across shapes, small copies of other
images would outrank it). The original ranks first for 99.8% of 0.5x-0.95x copies of the digits and second
for the rest, whichever filter (bilinear, bicubic, Lanczos) made the copy, and within the first four for
every 8-15 px copy of the icons; a box-filtered 4x4 descriptor ranked the digits' first for 72%.

Cost: per pair of shapes holding a new image, one matrix product of its images (at most 15 x 15 values
each), in chunks of both sides. Images of one shape, the common case, make no pairs here and are not
loaded; a set of many small images of many sizes pays n x m correlations per pair of shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd
from PIL import Image

from synthdata.dedup.phash import hamming

# Images with a longer side up to this are compared here: shrunk copies under 16 px leave pHash's radius
# (digits from 8 px: 7 px copies 90-97% within it, 6 px 68%, 5 px 5%; 16 px desktop icons: 8 px copies 90%,
# 9-13 px 93-99%, 14-15 px 99-100%).
SMALL_SIDE = 15
# Larger images than this are never the original of a 0.5x copy of a small image (0.5x of 31 px rounds to 16).
POOL_SIDE = 2 * SMALL_SIDE + 1
# Best partners kept per new image (the original ranked first or second on every digit copy measured).
MAX_PARTNERS = 4
_ROWS = 2048  # small images correlated at once...
_COLS = 2048  # ...against this many larger ones (2048 x 2048 float32: 16 MB)
_CACHED_IMAGES = 16384  # lumas kept between pairs of shapes (at most 31 x 31 float32 each: <= 63 MB)
# The copy evidence screens a pair on its best correlation over several views (three resize filters, both
# directions); this channel sees one of them (bilinear, towards the smaller image), so it keeps pairs down
# to this much below the screen.
SCREEN_SLACK = 0.05


def _factors_overlap(source: tuple[int, int], target: tuple[int, int], lo: float, hi: float) -> bool:
    """Whether one factor f in [lo, hi] resizes ``source`` (h, w) to ``target`` when each side is rounded
    (side * f within half a pixel of the target's): the intervals of f for the two sides overlap."""
    lo = max(lo, *((t - 0.5) / s for t, s in zip(target, source)))
    hi = min(hi, *((t + 0.5) / s for t, s in zip(target, source)))
    return lo <= hi


def _resize_of(large: tuple[int, int], small: tuple[int, int]) -> bool:
    """Whether ``small`` could be a 0.5x-1x resize of ``large``, or ``large`` a 1x-2x resize of ``small``."""
    return large != small and (_factors_overlap(large, small, 0.5, 1.0) or _factors_overlap(small, large, 1.0, 2.0))


def _unit(luma: np.ndarray) -> np.ndarray:
    """Rows zero-mean and unit-norm (flat rows stay zero: they correlate with nothing)."""
    flat = luma.reshape(len(luma), -1).astype(np.float32)
    flat -= flat.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norm, out=np.zeros_like(flat), where=norm > 1e-6)


def _luma(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) if image.ndim == 2 else image[..., :3].astype(np.float32).mean(axis=2)


def resized_small_pairs(
    ids: Sequence[str],
    shapes: Sequence[tuple[int, int]],
    is_new: Sequence[bool],
    load: Callable[[str], np.ndarray],
    max_partners: int = MAX_PARTNERS,
    min_correlation: float = 0.0,
) -> pd.DataFrame:
    """Pairs (a, b) with a < b where one image could be a 0.5x-1x resize of the other and is at most
    SMALL_SIDE px, each new image's ``max_partners`` best by luma correlation, with the correlation. Pairs
    under ``min_correlation`` are left out (the near-duplicate rule's screen, less a margin: this view is one
    of those the copy evidence screens on, see :data:`SCREEN_SLACK`). ``ids``/``shapes`` ((h, w))/``is_new``
    describe the archive's images (any sizes: only those in a pair of shapes with a new image are loaded);
    ``load(id)`` gives an image's pixels (uint8, grey or colour)."""
    empty = pd.DataFrame({"a": pd.Series(dtype=object), "b": pd.Series(dtype=object), "correlation": []})
    by_shape: dict[tuple[int, int], list[int]] = {}
    for k, shape in enumerate(shapes):
        if max(shape) <= POOL_SIDE:
            by_shape.setdefault((int(shape[0]), int(shape[1])), []).append(k)
    new = np.asarray(is_new, bool)
    blocks = [(small, large) for small in by_shape if max(small) <= SMALL_SIDE
              for large in by_shape if _resize_of(large, small)]  # fmt: skip
    found: list[tuple[np.ndarray, ...]] = []  # (new image, partner, correlation, kept per shape)

    # An image of one shape meets several others (an 8 px digit: its 4-7 px copies and its 9-16 px ones), so
    # lumas are kept for a while rather than decoded once per pair of shapes.
    @lru_cache(maxsize=_CACHED_IMAGES)
    def luma(k: int) -> np.ndarray:
        return _luma(np.asarray(load(ids[k])))

    row_units: dict[tuple[int, int], np.ndarray] = {}  # per small shape, shared by the larger shapes it meets
    for small, large in blocks:
        rows, cols = np.array(by_shape[small]), np.array(by_shape[large])
        if not new[rows].any():  # only new larger images look for a copy that arrived first
            cols = cols[new[cols]]
        if len(cols) == 0:
            continue
        if small not in row_units:
            row_units[small] = _unit(np.stack([luma(k) for k in rows]))
        found += _block_pairs(rows, row_units[small], cols, new, small, max_partners, luma)
    if not found:
        return empty
    owner, partner, value, per_shape = (np.concatenate(v) for v in zip(*found))
    keep = value >= max(min_correlation, 1e-6)
    frame = pd.DataFrame({"owner": owner[keep], "partner": partner[keep], "correlation": value[keep]})
    forward = frame[~per_shape[keep]]
    # Each new small image's best partners over every shape it was compared with (ties by position).
    forward = forward.sort_values(["owner", "correlation", "partner"], ascending=[True, False, True], kind="stable")
    frame = pd.concat([forward.groupby("owner", sort=False).head(max_partners), frame[per_shape[keep]]])
    names = np.asarray(ids, dtype=object)
    a, b = names[frame["owner"].to_numpy()], names[frame["partner"].to_numpy()]
    lo, hi = np.where(a < b, a, b), np.where(a < b, b, a)
    out = pd.DataFrame({"a": lo, "b": hi, "correlation": frame["correlation"].to_numpy()})
    out = out.groupby(["a", "b"], as_index=False, sort=True)["correlation"].max()
    return out if len(out) else empty


def _block_pairs(
    rows: np.ndarray, row_units: np.ndarray, cols: np.ndarray, new: np.ndarray, small: tuple[int, int],
    max_partners: int, luma: Callable[[int], np.ndarray],
) -> list[tuple[np.ndarray, ...]]:  # fmt: skip
    """One pair of shapes: ``rows`` (images of shape ``small``, ``row_units`` their unit lumas) against
    ``cols`` (of a larger shape, shrunk to ``small``), in chunks of both so memory stays at _ROWS x _COLS
    correlations whatever the counts. Each new row keeps its ``max_partners`` best columns (by correlation),
    each new column its best row."""
    new_rows, new_cols = new[rows], new[cols]
    take = min(max_partners, len(cols))
    row_best = np.full((int(new_rows.sum()), take), -np.inf, np.float32)
    row_partner = np.zeros(row_best.shape, np.int64)
    col_best = np.full(int(new_cols.sum()), -np.inf, np.float32)
    col_partner = np.zeros(len(col_best), np.int64)
    # Position of each new row / column among the new ones (where its running best is kept).
    new_row_at, new_col_at = np.cumsum(new_rows) - 1, np.cumsum(new_cols) - 1
    for c0 in range(0, len(cols), _COLS):
        chunk = cols[c0 : c0 + _COLS]
        shrunk = np.stack([
            np.asarray(Image.fromarray(luma(k)).resize(small[::-1], Image.Resampling.BILINEAR)) for k in chunk
        ])  # fmt: skip
        col_units = _unit(shrunk)
        chunk_new = new_cols[c0 : c0 + _COLS]
        for r0 in range(0, len(rows), _ROWS):
            corr = row_units[r0 : r0 + _ROWS] @ col_units.T
            part_new = new_rows[r0 : r0 + _ROWS]
            corr[~part_new[:, None] & ~chunk_new[None, :]] = -np.inf  # old with old: settled before
            if part_new.any():
                at = new_row_at[r0 : r0 + _ROWS][part_new]
                values = np.concatenate([row_best[at], corr[part_new]], axis=1)
                partners = np.concatenate([row_partner[at], np.broadcast_to(chunk, (len(at), len(chunk)))], axis=1)
                # Stable: on equal correlations the earlier image wins, however the columns are chunked.
                pick = np.argsort(-values, axis=1, kind="stable")[:, :take]
                row_best[at] = np.take_along_axis(values, pick, axis=1)
                row_partner[at] = np.take_along_axis(partners, pick, axis=1)
            if chunk_new.any():
                sub = corr[:, chunk_new]
                arg = sub.argmax(axis=0)
                value = sub[arg, np.arange(sub.shape[1])]
                at = new_col_at[c0 : c0 + _COLS][chunk_new]
                better = value > col_best[at]
                col_best[at[better]] = value[better]
                col_partner[at[better]] = rows[r0 : r0 + _ROWS][arg[better]]
    return [
        (np.repeat(rows[new_rows], take), row_partner.ravel(), row_best.ravel(), np.zeros(row_best.size, bool)),
        (cols[new_cols], col_partner, col_best, np.ones(len(col_best), bool)),
    ]


def merge_pairs(pairs: pd.DataFrame, small: pd.DataFrame, phash: Mapping[str, int]) -> pd.DataFrame:
    """Candidate pairs (``a, b, distance`` and maybe ``crop_only``, from
    :func:`synthdata.dedup.candidates.candidate_pairs`) with this channel's pairs added: their ``distance``
    is their pHash distance (``phash``: id -> hash as stored, UBIGINT or BIGINT), ``crop_only`` marks every pair pHash alone did
    not find; sorted by (a, b), one row per pair."""
    if small.empty:
        return pairs
    seen = set(zip(pairs["a"], pairs["b"]))
    extra = small[[(a, b) not in seen for a, b in zip(small["a"], small["b"])]]
    if extra.empty:
        return pairs
    # Stored as UBIGINT (the warehouse) or BIGINT (the same bits): the low 64 bits of the Python int either way
    # (a list of Python ints beyond int64 would not make an integer array by itself).
    hashes = lambda ids: np.array([int(phash[i]) & 0xFFFF_FFFF_FFFF_FFFF for i in ids], np.uint64)  # noqa: E731
    distance = hamming(hashes(extra["a"]), hashes(extra["b"])).astype(np.int32)
    base = pairs if "crop_only" in pairs else pairs.assign(crop_only=False)
    added = pd.DataFrame({"a": extra["a"].to_numpy(), "b": extra["b"].to_numpy(), "distance": distance, "crop_only": True})
    out = pd.concat([base, added], ignore_index=True).sort_values(["a", "b"], kind="stable", ignore_index=True)
    return out
