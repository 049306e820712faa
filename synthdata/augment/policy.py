"""The declarative augmentation policy: a validated, YAML-able list of ops with their probabilities and ranges.

A policy is data, not code, so it can live in a config file, be diffed, and be fingerprinted: the fingerprint
is part of every row's random seed, which makes an augmented row reproducible from (policy, seed, parent_id).
The ops themselves, and the names a policy accepts, come from the registry in `synthdata.augment.ops`.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthdata.augment.ops import KNOWN_OPS, OPS, Affine, ColorJitter, GaussianNoise, Rotate
from synthdata.augment.seeding import SAMPLER_VERSION

# Any registered op, told apart by its `op` name.
AnyOp = Annotated[Union[tuple(dict.fromkeys(OPS.values()))], Field(discriminator="op")]


class AugmentPolicy(BaseModel):
    """An ordered list of ops applied in turn to every row, each with its own probability."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ops: list[AnyOp] = Field(default_factory=list)
    # What geometric ops show where they uncover pixels outside the source image.
    padding_mode: Literal["zeros", "border", "reflection"] = "zeros"

    @model_validator(mode="before")
    @classmethod
    def _name_unknown_ops(cls, data: Any) -> Any:
        """Turn an unknown or missing op name into one error that lists the known names."""
        if isinstance(data, dict):
            for i, op in enumerate(data.get("ops") or []):
                if isinstance(op, dict) and op.get("op") not in KNOWN_OPS:
                    raise ValueError(
                        f"ops[{i}]: unknown op {op.get('op')!r}; known ops are: {', '.join(KNOWN_OPS)}"
                    )
        return data

    @classmethod
    def default(cls) -> AugmentPolicy:
        """A gentle policy for small digit-like images: no flips (a mirrored 2 is not a 2)."""
        return cls(
            ops=[
                Rotate(p=0.5, degrees=(-10.0, 10.0)),
                Affine(p=0.7, translate=0.08, scale=(0.9, 1.1), shear=(-8.0, 8.0)),
                ColorJitter(p=0.8, brightness=0.2, contrast=0.2),
                GaussianNoise(p=0.5, std=(0.0, 0.04)),
            ]
        )

    @classmethod
    def from_yaml(cls, text: str) -> AugmentPolicy:
        """Parse and validate a policy written as YAML (an empty document is the empty policy)."""
        return cls.model_validate(yaml.safe_load(text) or {})

    def to_yaml(self) -> str:
        """Write the policy as YAML that `from_yaml` reads back to an equal policy (each op's name first)."""
        data = self.model_dump(mode="json")
        data["ops"] = [{"op": op.pop("op"), **op} for op in data["ops"]]
        return yaml.safe_dump(data, sort_keys=False)

    def canonical_json(self) -> str:
        """The policy as key-sorted compact JSON: equal policies give equal strings."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @cached_property
    def _fingerprint(self) -> str:
        # Cached: the model is frozen, so it cannot go stale, and every augment_batch call asks for it.
        return hashlib.sha256(f"{SAMPLER_VERSION}|{self.canonical_json()}".encode()).hexdigest()[:16]

    def fingerprint(self) -> str:
        """A short stable hash of the sampler version and the canonical JSON.

        It seeds every row, so changing the policy (or the sampler) reshuffles, and it tells apart the rows that
        different policies or samplers produced.
        """
        return self._fingerprint
