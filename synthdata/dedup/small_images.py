"""Candidate pairs for resized copies of small images, which pHash cannot pair.

pHash keeps the 8x8 lowest DCT frequencies of a 32x32 upscale. An image of 8 px has no more detail than that,
and a 0.5x-0.9x copy of it lacks the upper part of those frequencies, so those bits are noise and the copy
lands beyond the search radius (scikit-learn's 8x8 digits: of copies resized to 5 px, 5% lie within radius 10
of their original, at 6 px 68%, at 7 px 90-97%, at 12 px 100%). The copies themselves are not ambiguous: the
copy distance of a 4-7 px copy to its original is ~0.003, and another digit came within the calibrated
threshold of one in 100 copies at 4 px and of none at 5-7 px.

Small images are cheap to compare directly, so this channel does: each image whose longer side is at most
``SMALL_SIDE`` against every image of another shape that a resize of 0.5x-1x could have made it from (up to
about twice its size), the larger resized to the smaller's shape (Pillow's bilinear, which antialiases when
it shrinks), luma correlation, and each new image keeps its ``MAX_PARTNERS`` best partners. On the digits the
original ranks first for 99.8% of 0.5x-0.95x copies and within the first two for all of them, whichever
filter (bilinear, bicubic, Lanczos) made the copy; a box-filtered descriptor ranked it first for 72%.

Cost: one small matrix product per pair of shapes, all new images against all images of the compatible
shapes (pairs of two old images were settled when they arrived). Images of one shape, the common case, make
no pairs here at all; a set of many small images of many sizes pays n x m correlations of at most 11 x 11
values per pair of shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

# Images with a longer side up to this are compared here: pHash's 8x8 DCT bits need 8 px of detail, and a
# copy of 8 px or more keeps its original's pHash within the radius (on the digits, every 0.5x-2x copy of
# 8-16 px was paired by pHash; of 7 px copies 90-97%, 6 px 68%, 5 px 5%).
SMALL_SIDE = 7
# Larger images than this are never the original of a 0.5x copy of a small image (0.5x of 15 px rounds to 8).
POOL_SIDE = 2 * SMALL_SIDE + 1
# Best partners kept per new image (the original ranked first or second on every digit copy measured).
MAX_PARTNERS = 4
_PER_SHAPE = 1  # ...and best small image of each shape kept per new larger image
_ROWS = 4096
# The copy evidence screens a pair on its best correlation over several views (three resize filters, both
# directions); this channel sees one of them (bilinear, towards the smaller image), so it keeps pairs down
# to this much below the screen.
SCREEN_SLACK = 0.05  # small images correlated at once (memory: _ROWS x partners floats)


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
    flat = luma.reshape(len(luma), -1).astype(np.float64)
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
    of those the copy evidence screens on, see :data:`SCREEN_SLACK`). ``ids``/``shapes`` ((h, w))/``is_new`` describe the archive's images (any sizes: only those
    up to POOL_SIDE are looked at and loaded); ``load(id)`` gives an image's pixels (uint8, grey or colour)."""
    empty = pd.DataFrame({"a": pd.Series(dtype=object), "b": pd.Series(dtype=object), "correlation": []})
    by_shape: dict[tuple[int, int], list[int]] = {}
    for k, shape in enumerate(shapes):
        if max(shape) <= POOL_SIDE:
            by_shape.setdefault((int(shape[0]), int(shape[1])), []).append(k)
    blocks = [(small, large) for small in by_shape if max(small) <= SMALL_SIDE
              for large in by_shape if _resize_of(large, small)]  # fmt: skip
    new = np.asarray(is_new, bool)
    blocks = [(s, g) for s, g in blocks if new[by_shape[s]].any() or new[by_shape[g]].any()]
    if not blocks:
        return empty
    lumas: dict[int, np.ndarray] = {}
    for k in {k for s, g in blocks for k in by_shape[s] + by_shape[g]}:
        lumas[k] = _luma(np.asarray(load(ids[k])))
    found: list[tuple[np.ndarray, ...]] = []  # (new image, partner, correlation, kept per shape)
    for small, large in blocks:
        rows, cols = np.array(by_shape[small]), np.array(by_shape[large])
        shrunk = np.stack([
            np.asarray(Image.fromarray(lumas[k]).resize(small[::-1], Image.Resampling.BILINEAR))
            for k in cols
        ])  # fmt: skip
        unit_cols = _unit(shrunk)
        for start in range(0, len(rows), _ROWS):
            part = rows[start : start + _ROWS]
            corr = _unit(np.stack([lumas[k] for k in part])) @ unit_cols.T
            corr[~new[part][:, None] & ~new[cols][None, :]] = -np.inf  # old with old: settled before
            # Each new small image ranks every larger image it could be a copy of (the forward view: its
            # original ranks first among them); each new larger image keeps its best small image per shape
            # (a copy that arrived first: across shapes, small copies of other images would outrank it).
            if new[part].any():
                mat = corr[new[part]]
                take = min(max_partners, mat.shape[1])
                best = np.argpartition(-mat, take - 1, axis=1)[:, :take]
                found.append((np.repeat(part[new[part]], take), cols[best].ravel(),
                              np.take_along_axis(mat, best, axis=1).ravel(), np.zeros(best.size, bool)))  # fmt: skip
            if new[cols].any():
                mat = corr.T[new[cols]]
                take = min(_PER_SHAPE, mat.shape[1])
                best = np.argpartition(-mat, take - 1, axis=1)[:, :take]
                found.append((np.repeat(cols[new[cols]], take), part[best].ravel(),
                              np.take_along_axis(mat, best, axis=1).ravel(), np.ones(best.size, bool)))  # fmt: skip
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


def merge_pairs(pairs: pd.DataFrame, small: pd.DataFrame, phash: Mapping[str, int]) -> pd.DataFrame:
    """Candidate pairs (``a, b, distance`` and maybe ``crop_only``, from
    :func:`synthdata.dedup.candidates.candidate_pairs`) with this channel's pairs added: their ``distance``
    is their pHash distance (``phash``: id -> hash as stored), ``crop_only`` marks every pair pHash alone did
    not find; sorted by (a, b), one row per pair."""
    if small.empty:
        return pairs
    seen = set(zip(pairs["a"], pairs["b"]))
    extra = small[[(a, b) not in seen for a, b in zip(small["a"], small["b"])]]
    if extra.empty:
        return pairs
    # Stored as UBIGINT (the warehouse) or BIGINT (the same bits): the low 64 bits of the Python int either way.
    hashes = lambda ids: np.array([int(phash[i]) & 0xFFFF_FFFF_FFFF_FFFF for i in ids], np.uint64)  # noqa: E731
    distance = np.bitwise_count(hashes(extra["a"]) ^ hashes(extra["b"])).astype(np.int32)
    base = pairs if "crop_only" in pairs else pairs.assign(crop_only=False)
    added = pd.DataFrame({"a": extra["a"].to_numpy(), "b": extra["b"].to_numpy(), "distance": distance, "crop_only": True})
    out = pd.concat([base, added], ignore_index=True).sort_values(["a", "b"], kind="stable", ignore_index=True)
    return out
