"""The declarative augmentation policy: a validated, YAML-able list of ops with their probabilities and ranges.

A policy is data, not code, so it can live in a config file, be diffed, and be fingerprinted: the fingerprint
is part of every row's random seed, which makes an augmented row reproducible from (policy, seed, parent_id).
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

# How a row's seed becomes its op parameters (the generator and the layout of its draws). It is hashed into
# every fingerprint, so rows drawn by a different sampler never share a fingerprint in the warehouse.
# v1 (no tag in the hash): one torch.Generator per row. v2: SplitMix64 outputs, computed for the whole batch.
SAMPLER_VERSION = "splitmix64-v2"


def _ordered(bounds: tuple[float, float]) -> tuple[float, float]:
    """Reject a (min, max) pair whose min exceeds its max."""
    lo, hi = bounds
    if lo > hi:
        raise ValueError(f"range min {lo} is greater than max {hi}")
    return bounds


# A closed interval [min, max] from which a parameter is drawn uniformly; YAML writes it as `[min, max]`.
Range = Annotated[tuple[float, float], AfterValidator(_ordered)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, description="chance that the op is applied to a row")]


def _within(bounds: tuple[float, float], lo: float, hi: float, what: str) -> None:
    """Raise unless both ends of `bounds` lie in [lo, hi]."""
    if bounds[0] < lo or bounds[1] > hi:
        raise ValueError(f"{what} must lie within [{lo}, {hi}], got {list(bounds)}")


class _Op(BaseModel):
    """Fields shared by every op; unknown fields are errors so that a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    p: Probability = 0.5


class HFlip(_Op):
    """Mirror left-right."""

    op: Literal["hflip"] = "hflip"


class VFlip(_Op):
    """Mirror top-bottom."""

    op: Literal["vflip"] = "vflip"


class Rotate(_Op):
    """Rotate about the image centre by an angle in degrees (positive = counter-clockwise)."""

    op: Literal["rotate"] = "rotate"
    degrees: Range = (-15.0, 15.0)


class Affine(_Op):
    """Translate (as a fraction of width/height), scale about the centre, and shear (degrees, x and y)."""

    op: Literal["affine"] = "affine"
    translate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    scale: Range = (0.9, 1.1)
    shear: Range = (-10.0, 10.0)

    @model_validator(mode="after")
    def _check(self) -> Affine:
        if self.scale[0] <= 0:
            raise ValueError(f"scale must be positive, got {list(self.scale)}")
        _within(self.shear, -80.0, 80.0, "shear (degrees)")
        return self


class RandomResizedCrop(_Op):
    """Crop a box of `scale` x the image area and aspect `ratio`, resized back to the input size."""

    op: Literal["random_resized_crop"] = "random_resized_crop"
    scale: Range = (0.7, 1.0)
    ratio: Range = (3.0 / 4.0, 4.0 / 3.0)

    @model_validator(mode="after")
    def _check(self) -> RandomResizedCrop:
        if self.scale[0] <= 0 or self.scale[1] > 1:
            raise ValueError(f"scale must lie within (0, 1], got {list(self.scale)}")
        if self.ratio[0] <= 0:
            raise ValueError(f"ratio must be positive, got {list(self.ratio)}")
        return self


class ColorJitter(_Op):
    """Brightness/contrast/saturation factors drawn from [1-x, 1+x]; hue shift from [-hue, hue] turns.

    Saturation and hue are skipped for 1-channel images, where they mean nothing.
    """

    op: Literal["color_jitter"] = "color_jitter"
    brightness: Annotated[float, Field(ge=0.0)] = 0.2
    contrast: Annotated[float, Field(ge=0.0)] = 0.2
    saturation: Annotated[float, Field(ge=0.0)] = 0.0
    hue: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0


class GaussianBlur(_Op):
    """Blur with an odd square kernel and a sigma drawn from `sigma`."""

    op: Literal["gaussian_blur"] = "gaussian_blur"
    kernel_size: Annotated[int, Field(ge=1)] = 3
    sigma: Range = (0.1, 1.0)

    @model_validator(mode="after")
    def _check(self) -> GaussianBlur:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.sigma[0] <= 0:
            raise ValueError(f"sigma must be positive, got {list(self.sigma)}")
        return self


class GaussianNoise(_Op):
    """Add zero-mean Gaussian noise whose std is drawn from `std` (intensities are in [0, 1])."""

    op: Literal["gaussian_noise"] = "gaussian_noise"
    std: Range = (0.0, 0.05)

    @model_validator(mode="after")
    def _check(self) -> GaussianNoise:
        if self.std[0] < 0:
            raise ValueError(f"std must be non-negative, got {list(self.std)}")
        return self


class RandomErasing(_Op):
    """Fill a rectangle covering `area` of the image, with aspect (h/w) from `aspect`, with `fill`.

    `cutout` is accepted as another name for the same op.
    """

    op: Literal["random_erasing", "cutout"] = "random_erasing"
    area: Range = (0.02, 0.2)
    aspect: Range = (0.3, 3.3)
    fill: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0

    @model_validator(mode="after")
    def _check(self) -> RandomErasing:
        _within(self.area, 0.0, 1.0, "area")
        if self.aspect[0] <= 0:
            raise ValueError(f"aspect must be positive, got {list(self.aspect)}")
        return self


class Mixup(_Op):
    """Blend with a partner row of the batch, lambda ~ Beta(alpha, alpha); labels blend the same way."""

    op: Literal["mixup"] = "mixup"
    alpha: Annotated[float, Field(gt=0.0)] = 0.2


class Cutmix(_Op):
    """Paste a box of a partner row, box area ~ 1 - lambda with lambda ~ Beta(alpha, alpha)."""

    op: Literal["cutmix"] = "cutmix"
    alpha: Annotated[float, Field(gt=0.0)] = 1.0


AnyOp = Annotated[
    Union[
        HFlip, VFlip, Rotate, Affine, RandomResizedCrop, ColorJitter,
        GaussianBlur, GaussianNoise, RandomErasing, Mixup, Cutmix,
    ],
    Field(discriminator="op"),
]

KNOWN_OPS: tuple[str, ...] = (
    "hflip", "vflip", "rotate", "affine", "random_resized_crop", "color_jitter",
    "gaussian_blur", "gaussian_noise", "random_erasing", "cutout", "mixup", "cutmix",
)


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
