"""Which augmented rows a generator trains on: every augmented image except mixup / cutmix blends.

A mixing op (stage "mixing" in the augmentation registry) makes an image of two classes with a soft label. The
generators are conditioned on one class id, so such a row would teach the generator that a blend of a shirt and
a boot is what "shirt" looks like. Conditioning on the soft label instead (a mixture of class embeddings) would
be correct, but the generator is only ever sampled with one class, so the capacity spent on learning blends
buys nothing: mixing rows are left out of generator input, and the asset reports how many.
"""

from __future__ import annotations

import json
from collections.abc import Iterable


def mixing_ops() -> frozenset[str]:
    """Op names whose rows are blends of two images (read from the augmentation registry, not a hand-kept list)."""
    from synthdata.augment.ops import OPS

    return frozenset(name for name, cls in OPS.items() if cls.stage == "mixing")


def is_mixed(ops_json: str, mixing: frozenset[str] | None = None) -> bool:
    """True if the row's recorded ops (the `ops` column of augmented_images: JSON [{"op": ...}, ...]) include a
    mixing op."""
    mixing = mixing_ops() if mixing is None else mixing
    return any(op.get("op") in mixing for op in json.loads(ops_json or "[]"))


def generator_rows(ops_column: Iterable[str]) -> list[bool]:
    """Per augmented row: may a class-conditional generator train on it (i.e. it is not a mixing row)?"""
    mixing = mixing_ops()
    return [not is_mixed(ops, mixing) for ops in ops_column]
