"""Leak-free, stable train/val/test assignment.

A group's split is a pure function of (seed, group id): adding a drop never moves an existing image, and
every member of a duplicate group lands with its representative. The hash is independent of the label, so
every class gets the configured fractions in expectation (stratified without a global sort, which would move
old images whenever new ones arrive); the splits asset reports the realised per-class proportions.
"""

from __future__ import annotations

import hashlib

import pandas as pd

SPLITS = ("train", "val", "test")


def unit_hash(*parts: object) -> float:
    """A stable uniform number in [0, 1) from any parts (sha256, not Python's salted hash)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def validate_fractions(fractions: dict[str, float]) -> None:
    if set(fractions) != set(SPLITS):
        raise ValueError(f"split fractions must name exactly {SPLITS}, got {sorted(fractions)}")
    if any(v <= 0 for v in fractions.values()):
        raise ValueError(f"every split fraction must be > 0, got {fractions}")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {sum(fractions.values()):.4f}")


def split_of(group_id: str, seed: int, fractions: dict[str, float]) -> str:
    u = unit_hash(seed, group_id)
    edge = 0.0
    for name in SPLITS:
        edge += fractions[name]
        if u < edge:
            return name
    return SPLITS[-1]


def assign_splits(images: pd.DataFrame, seed: int, fractions: dict[str, float]) -> pd.DataFrame:
    """images: columns image_id, label and optionally group_id (defaults to the image itself)."""
    validate_fractions(fractions)
    out = images[["image_id", "label"]].copy()
    out["group_id"] = images["group_id"] if "group_id" in images else images["image_id"]
    out["split"] = [split_of(g, seed, fractions) for g in out["group_id"]]
    return out.reset_index(drop=True)
