"""Cross-split leakage audit: near-copies of held-out (val, test) images in train, searched more loosely than
dedup and independently of its threshold, so a copy that dedup missed still shows.

For every held-out image, its ``max_partners`` closest train images by pHash (within ``radius`` bits, plus the
crop-robust channel, :func:`synthdata.dedup.candidates.candidate_pairs`, and first the partners of the
fragile-pHash channel, :mod:`synthdata.dedup.fragile_phash`, when ``images`` has its columns) are scored with
:func:`synthdata.dedup.confirm.similarity` (batched by :func:`~synthdata.dedup.confirm.confirm_pairs`, which
loads each image once). A similarity alone cannot tell a copy on homogeneous data: distinct
same-class 28x28 photos reach 0.99 (docs/curation.md). So a held-out image is flagged when its best train
partner is both similar (>= ``min_similarity``) and much closer than its second best (a ratio test, Lowe
2004): ``(1 - best) / (1 - second) <= max_ratio``, with ``1 - second`` capped at ``1 - min_similarity`` (and
taken as that when there is no second). A copy stands alone; a look-alike has look-alike neighbours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd
from PIL import Image

from synthdata.curation.gallery import pair_gallery
from synthdata.dedup.candidates import candidate_pairs
from synthdata.dedup.confirm import confirm_pairs
from synthdata.dedup.fragile_phash import stored_fragile_pairs
from synthdata.dedup.small_images import merge_pairs

HELD_OUT = ("val", "test")


@dataclass(frozen=True)
class LeakageSettings:
    # Looser than dedup's search (synthdata.dedup.candidates.DEFAULT_RADIUS): a copy dedup's radius missed is
    # still a candidate here.
    radius: int = 16
    # Looser than any dedup confirmation: the ratio test, not this floor, separates copies from look-alikes.
    min_similarity: float = 0.90
    # Tiny images carry little evidence: distinct 8x8 digits with few train neighbours reach 0.987 and a ratio
    # of 0.13, while planted JPEG / brightness / resize copies of them score >= 0.997. Pairs where either
    # image has a side below small_side need small_min_similarity.
    small_side: int = 16
    small_min_similarity: float = 0.99
    # Planted JPEG / brightness / resize copies of Fashion-MNIST and digits scored <= 0.12, 1 px shifts of
    # 28x28 photos 0.03-0.99; distinct held-out images: 1% below 0.25 on Fashion-MNIST (docs/curation.md).
    max_ratio: float = 0.2
    # Train partners scored per held-out image, closest pHash first: the cost is bounded by the held-out
    # images, not by the number of look-alike pairs (which grows like n^2 on homogeneous data).
    max_partners: int = 8

    def __post_init__(self) -> None:
        if not 0 <= self.radius < 64:
            raise ValueError(f"radius must be in 0..63, got {self.radius}")
        if not -1.0 <= self.min_similarity < 1.0:
            raise ValueError(f"min_similarity must be in [-1, 1), got {self.min_similarity}")
        if not 0 < self.max_ratio <= 1:
            raise ValueError(f"max_ratio must be in (0, 1], got {self.max_ratio}")
        if not self.min_similarity <= self.small_min_similarity < 1.0:
            raise ValueError(f"small_min_similarity must be in [min_similarity, 1), got {self.small_min_similarity}")
        if self.max_partners < 1:
            raise ValueError(f"max_partners must be >= 1, got {self.max_partners}")


@dataclass
class LeakageReport:
    closest: pd.DataFrame  # per held-out image with a candidate: kept_id (train), other_id, other_split, hamming, similarity, second, ratio, flagged
    searched: dict[str, int]  # held-out images per split
    candidates: int  # cross-split candidate pairs found
    compared: int  # pairs scored

    @property
    def flagged(self) -> pd.DataFrame:
        return self.closest[self.closest["flagged"]]

    def rates(self) -> dict[str, float]:
        """Per held-out split: the fraction of its images with a flagged train copy."""
        counts = self.flagged["other_split"].value_counts()
        return {s: (int(counts.get(s, 0)) / n if n else 0.0) for s, n in self.searched.items()}


def audit_leakage(
    images: pd.DataFrame, load: Callable[[str], np.ndarray], settings: LeakageSettings = LeakageSettings()
) -> LeakageReport:
    """images: image_id, split, phash and optionally phash2 (BIGINT/UBIGINT bits), lowfreq,
    phash_fragile_bits and thumb32 (``raw_images``' columns); load(image_id) -> pixels.

    Searches train x val and train x test; the result is sorted most suspicious first (flagged, then by
    similarity).
    """
    searched = {s: int((images["split"] == s).sum()) for s in HELD_OUT}
    hashed = images[images["phash"].notna()]
    table = hashed[["image_id", "phash", *(["phash2"] if "phash2" in hashed else [])]].assign(
        is_new=hashed["split"].isin(HELD_OUT).to_numpy()
    )
    with duckdb.connect() as con:  # in memory: the audit never takes the warehouse's write lock
        con.register("_audit_input", table)
        con.execute("CREATE TABLE audit_hashes AS SELECT * FROM _audit_input")
        pairs = candidate_pairs(con, "audit_hashes", settings.radius, new_only=True)
    fragile = _fragile_candidates(hashed, settings)
    pairs = merge_pairs(pairs, fragile, dict(zip(hashed["image_id"], hashed["phash"])))
    split = images.set_index("image_id")["split"]
    sa, sb = pairs["a"].map(split).to_numpy(), pairs["b"].map(split).to_numpy()
    cross = (sa == "train") != (sb == "train")  # new_only: the other side is held out
    a_train = sa[cross] == "train"
    a, b = pairs["a"].to_numpy()[cross], pairs["b"].to_numpy()[cross]
    found = pd.DataFrame({
        "kept_id": np.where(a_train, a, b), "other_id": np.where(a_train, b, a),
        "hamming": pairs["distance"].to_numpy()[cross],
    })  # fmt: skip
    # pHash distance orders the shortlist; fragile-pHash pairs come first (their pHash distance is noise).
    channel = set(zip(fragile["a"], fragile["b"])) | set(zip(fragile["b"], fragile["a"]))
    from_channel = [(k, o) in channel for k, o in zip(found["kept_id"], found["other_id"])]
    found["_rank"] = np.where(from_channel, -1, found["hamming"])
    shortlist = found.sort_values(["other_id", "_rank", "kept_id"]).groupby("other_id").head(settings.max_partners)
    shortlist = shortlist.drop(columns="_rank")
    side: dict[str, int] = {}  # shortest side per loaded image, for the small-image floor

    def load_id(image_id: str) -> np.ndarray:
        pixels = load(image_id)
        side[image_id] = min(pixels.shape[:2])
        return pixels

    # Thresholds below any similarity: every pair comes back scored, none is dropped.
    everything = {"threshold": -2.0, "small_threshold": -2.0, "crop_threshold": -2.0}
    pairs = shortlist.rename(columns={"kept_id": "a", "other_id": "b"})
    scored = confirm_pairs(pairs, load_id, **everything).rename(columns={"a": "kept_id", "b": "other_id"})
    scored["min_side"] = np.minimum(scored["kept_id"].map(side), scored["other_id"].map(side))
    return LeakageReport(_best_partners(scored, split, settings), searched, len(found), len(shortlist))


def _fragile_candidates(hashed: pd.DataFrame, settings: LeakageSettings) -> pd.DataFrame:
    """Pairs of the fragile-pHash channel (:mod:`synthdata.dedup.fragile_phash`: symmetric drawings, whose pHash
    noise decides) between held-out images and the rest, from the similarity floor up; none without the
    ``lowfreq`` and ``phash_fragile_bits`` columns (or rows ingested before them); ``thumb32`` when present."""
    if not {"lowfreq", "phash_fragile_bits"} <= set(hashed):
        return stored_fragile_pairs([], [], [], [])
    rows = hashed.sort_values("image_id")
    columns = (rows[c].tolist() for c in ("image_id", "lowfreq", "phash_fragile_bits"))
    thumbs = rows["thumb32"].tolist() if "thumb32" in rows else None
    return stored_fragile_pairs(*columns, rows["split"].isin(HELD_OUT).tolist(), settings.min_similarity, thumbs)


def _best_partners(scored: pd.DataFrame, split: pd.Series, settings: LeakageSettings) -> pd.DataFrame:
    """One row per held-out image: its most similar train partner, the second best's similarity, the ratio and
    whether it is flagged."""
    columns = ["kept_id", "other_id", "other_split", "hamming", "similarity", "second", "ratio", "flagged"]
    if scored.empty:
        return pd.DataFrame(columns=columns).astype({"flagged": bool, "similarity": float})
    ranked = scored.sort_values(["other_id", "similarity", "kept_id"], ascending=[True, False, True])
    best = ranked.groupby("other_id").head(1).set_index("other_id")
    second = ranked.groupby("other_id")["similarity"].nth(1)
    best["second"] = pd.Series(second.to_numpy(), index=ranked.loc[second.index, "other_id"]).reindex(best.index)
    floor = 1.0 - settings.min_similarity
    gap = np.minimum(1.0 - best["second"].fillna(settings.min_similarity), floor)
    best["ratio"] = (1.0 - best["similarity"]) / np.maximum(gap, 1e-12)
    floor_of_pair = np.where(best["min_side"] < settings.small_side, settings.small_min_similarity, settings.min_similarity)
    best["flagged"] = (best["similarity"] >= floor_of_pair) & (best["ratio"] <= settings.max_ratio)
    best["other_split"] = best.index.map(split)
    out = best.reset_index().sort_values(["flagged", "similarity", "other_id"], ascending=[False, False, True])
    return out[columns].reset_index(drop=True)


def leakage_gallery(closest: pd.DataFrame, read: Callable[[str], Image.Image | bytes], n: int = 12) -> str:
    """Markdown: the ``n`` most suspicious pairs, the train image (left) beside the held-out one (right), with a
    caption line each; "" when there is nothing to show. ``read(image_id)`` returns the image decoded under the
    store's limits (``BlobStore.decode(key).image``), or its encoded bytes (``pair_gallery``)."""
    shown = closest.head(n)
    captions = [
        f"- {'**flagged**' if row.flagged else 'not flagged'}: train `{row.kept_id[:12]}` / {row.other_split} "
        f"`{row.other_id[:12]}`, similarity {row.similarity:.4f}, ratio {row.ratio:.3f}, hamming {row.hamming}"
        for row in shown.itertuples()
    ]
    pairs = list(zip(shown["kept_id"], shown["other_id"]))
    return pair_gallery("Train (left) and held-out (right), most suspicious first:", pairs, captions, read)
