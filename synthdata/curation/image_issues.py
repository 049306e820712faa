"""Image-quality flags of the kinds cleanvision reports, with thresholds taken from the data set itself.

Each image gets one score per measure; an image is flagged when its score is an outlier *of this set*:

- robust z-score: the deviation from the set's median, in units of 1.4826 x the median absolute deviation
  (MAD), must exceed `z` (3.5, the modified z-score cut of Iglewicz and Hoaglin);
- and a floor on the effect: the deviation must also exceed a fixed minimum (e.g. "at most half as bright as
  the median image"). On a homogeneous set the MAD is tiny and a z-score alone would flag images that differ
  by a hair; the floor keeps a clean set from flagging anything just because it is tightly distributed. No
  quantile is used, so nothing forces a fixed share of the set to be flagged.

Multiplicative measures (brightness, sharpness, entropy, contrast, size, aspect) are compared on a log scale,
so "half as sharp" is the same distance whatever the set's typical sharpness. The threshold recorded with
each flag is on the score's own scale.

| issue | score (per image) | flagged when |
|---|---|---|
| dark | 99th percentile of luma / 255 | far below the set (floor: < 1/2 of the median) |
| light | 1 - 5th percentile of luma / 255 | far below the set (floor: < 1/2 of the median) |
| blurry | std of the Laplacian / std of luma (contrast-free) | far below the set (floor: < 1/2 of the median) |
| low_information | entropy of the luma histogram / 8 bits | far below the set (floor: < 1/2 of the median) |
| near_constant | std of luma / 255 | far below the set (floor: < 1/10 of the median) |
| odd_aspect_ratio | width / height | far from the set's median, either way (floor: 2x) |
| odd_size | sqrt(width x height) | far from the set's median, either way (floor: 4x) |
| grayscale | mean channel spread / 255 | <= 2/255 (no colour), only while most of the set has colour |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from synthdata.color import luma_float
from synthdata.io.store import BlobStore
from synthdata.render import image_grid, markdown_image, thumbnail

ROBUST_Z = 3.5
MAD_TO_SIGMA = 1.4826
# Scores are computed on a copy no larger than this per side: enough to see blur and exposure, and a
# 100-megapixel original costs no more than a thumbnail.
SCORE_SIDE = 256
# Below this mean channel spread an RGB image holds no colour (JPEG chroma noise stays under it).
GRAY_TOLERANCE = 2.0 / 255.0
_EPS = 1e-4


@dataclass(frozen=True)
class Measure:
    """One issue: which score, which way is bad, and the minimum effect (a ratio) before anything is flagged."""

    issue: str
    score: str
    side: str  # low: small scores are bad | both: far either way
    floor_ratio: float


MEASURES = (
    Measure("dark", "brightness", "low", 2.0),
    Measure("light", "darkness", "low", 2.0),
    Measure("blurry", "sharpness", "low", 2.0),
    Measure("low_information", "entropy", "low", 2.0),
    Measure("near_constant", "contrast", "low", 10.0),
    Measure("odd_aspect_ratio", "aspect_ratio", "both", 2.0),
    Measure("odd_size", "size", "both", 4.0),
)
ISSUES = (*(m.issue for m in MEASURES), "grayscale")


def image_scores(image: np.ndarray) -> dict[str, float]:
    """The pixel scores of one uint8 image, (H, W) or (H, W, 3); size and aspect come from the caller."""
    arr = np.asarray(image)
    if max(arr.shape[:2]) > SCORE_SIDE:
        pil = Image.fromarray(arr)
        pil.thumbnail((SCORE_SIDE, SCORE_SIDE), Image.Resampling.BOX)
        arr = np.asarray(pil)
    y = luma_float(arr) / 255.0
    lo, hi = np.percentile(y, [5, 99])
    std = float(y.std())
    counts = np.bincount(np.clip(np.rint(y * 255), 0, 255).astype(np.int64).ravel(), minlength=256)
    p = counts[counts > 0] / y.size
    colour = 0.0
    if arr.ndim == 3 and arr.shape[2] >= 3:
        rgb = arr[..., :3].astype(np.float32) / 255.0
        colour = float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean())
    return {
        "brightness": float(hi),
        "darkness": float(1.0 - lo),
        "sharpness": float(ndimage.laplace(y).std() / std) if std > 0 else 0.0,
        "entropy": float(-(p * np.log2(p)).sum() / 8.0),
        "contrast": std,
        "colour": colour,
    }


def score_images(images: Iterable[np.ndarray], widths: Iterable[int], heights: Iterable[int]) -> pd.DataFrame:
    """One row of scores per image, in input order (pixels of any size; width/height of the original)."""
    rows = [image_scores(img) for img in images]
    df = pd.DataFrame(rows, columns=["brightness", "darkness", "sharpness", "entropy", "contrast", "colour"])
    w = np.asarray(list(widths), dtype=np.float64)
    h = np.asarray(list(heights), dtype=np.float64)
    if len(w) != len(df) or len(h) != len(df):
        raise ValueError(f"{len(df)} images but {len(w)} widths and {len(h)} heights")
    df["aspect_ratio"] = w / h
    df["size"] = np.sqrt(w * h)
    return df


def _outliers(values: np.ndarray, m: Measure, z: float) -> tuple[np.ndarray, float, float]:
    """(flagged mask, low threshold, high threshold) on the score's own scale for one measure."""
    logs = np.log(np.maximum(values, 0.0) + _EPS)
    med = float(np.median(logs))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(logs - med)))
    reach = max(z * sigma, float(np.log(m.floor_ratio)))
    low = float(np.exp(med - reach) - _EPS)
    high = float(np.exp(med + reach) - _EPS) if m.side == "both" else np.inf
    return (values < low) | (values > high), low, high


def flag_images(scores: pd.DataFrame, z: float = ROBUST_Z) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """The flags (row index, issue, score, threshold), and each issue's thresholds and count.

    `threshold` in a flag row is the bound the score crossed. Deterministic: no sampling, no randomness.
    """
    if z <= 0:
        raise ValueError(f"z must be positive, got {z}")
    flags, summary = [], {}
    if scores.empty:
        return pd.DataFrame(columns=["row", "issue", "score", "threshold"]), {}
    for m in MEASURES:
        values = scores[m.score].to_numpy(dtype=np.float64)
        mask, low, high = _outliers(values, m, z)
        for i in np.flatnonzero(mask):
            flags.append((int(i), m.issue, float(values[i]), low if values[i] < low else high))
        summary[m.issue] = {"count": int(mask.sum()), "low": low, **({"high": high} if m.side == "both" else {})}
    colour = scores["colour"].to_numpy(dtype=np.float64)
    gray = colour <= GRAY_TOLERANCE
    # A grayscale set is not a problem; a grayscale image among colour ones is.
    colour_set = bool((~gray).sum() > gray.sum())
    mask = gray & colour_set
    flags += [(int(i), "grayscale", float(colour[i]), GRAY_TOLERANCE) for i in np.flatnonzero(mask)]
    summary["grayscale"] = {"count": int(mask.sum()), "low": GRAY_TOLERANCE, "colour_share": float((~gray).mean())}
    df = pd.DataFrame(flags, columns=["row", "issue", "score", "threshold"])
    return df.sort_values(["issue", "row"], kind="stable").reset_index(drop=True), summary


def find_image_issues(
    con, store: BlobStore, z: float = ROBUST_Z
) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """`image_issues` rows (image_id, issue, score, threshold) for every image in `images`, and each issue's
    thresholds and count. Originals are decoded one at a time, so memory does not grow with the set."""
    df = con.execute("SELECT image_id, blob_key, width, height FROM images ORDER BY image_id").df()
    pixels = (np.asarray(store.decode(key).image) for key in df["blob_key"])  # under the store's limits
    flags, summary = flag_images(score_images(pixels, df["width"], df["height"]), z)
    flags.insert(0, "image_id", df["image_id"].to_numpy()[flags["row"].to_numpy(dtype=np.int64)])
    return flags.drop(columns="row"), summary


def flag_gallery(
    flags: pd.DataFrame, key_of: Mapping[str, str], store: BlobStore, group: str, caption, per_group: int = 10
) -> str:
    """Markdown: for each value of `group` (issue or kind), a strip of its first `per_group` flagged images and
    one caption line per image (`caption(row)`). "" when nothing is flagged."""
    parts = []
    for name, rows in flags.groupby(group, sort=True):
        shown = rows[rows["image_id"].isin(list(key_of))].head(per_group)
        if shown.empty:
            continue
        tiles = np.stack([thumbnail(store.decode(key_of[i]).image, 48) for i in shown["image_id"]])
        lines = [f"{n + 1}. {caption(row)}" for n, row in enumerate(shown.itertuples())]
        grid = markdown_image(image_grid(tiles, ncol=per_group, scale=2))
        parts.append(f"**{name}** ({len(rows)} flagged)\n\n{grid}\n\n" + "\n".join(lines))
    return "\n\n".join(parts)
