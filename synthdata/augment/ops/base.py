"""What every op is made of, and the registry that the policy, the sampler and the engine read ops from.

An op is one class: its name (the `op` field, a Literal that is the policy's discriminator), its config
fields and their checks, how many uniforms it draws per row (`draws`), its `stage`, and the code that turns
its draws into parameters, records them and applies them. `@register` adds it to `OPS`; `KNOWN_OPS`, the
policy's union of op types and each op's block of uniforms all follow from there.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal, TypeVar, get_args

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from synthdata.augment.batch import Plan, Step

# geometric: moves pixels (composed with its neighbours into one resampling); color: one colour map per row;
# pixel: changes a row's values from the row alone; mixing: blends in a partner row from the batch.
Stage = Literal["geometric", "color", "pixel", "mixing"]


def _ordered(bounds: tuple[float, float]) -> tuple[float, float]:
    """Reject a (min, max) pair whose min exceeds its max."""
    lo, hi = bounds
    if lo > hi:
        raise ValueError(f"range min {lo} is greater than max {hi}")
    return bounds


# A closed interval [min, max] from which a parameter is drawn uniformly; YAML writes it as `[min, max]`.
Range = Annotated[tuple[float, float], AfterValidator(_ordered)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, description="chance that the op is applied to a row")]


def within(bounds: tuple[float, float], lo: float, hi: float, what: str) -> None:
    """Raise unless both ends of `bounds` lie in [lo, hi]."""
    if bounds[0] < lo or bounds[1] > hi:
        raise ValueError(f"{what} must lie within [{lo}, {hi}], got {list(bounds)}")


def lerp(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Map uniforms in [0, 1) onto [lo, hi]."""
    lo, hi = bounds
    return lo + u * (hi - lo)


def log_lerp(u: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """Map uniforms onto [lo, hi] evenly in log space, so that ratio r and 1/r are equally likely."""
    return np.exp(lerp(u, (math.log(bounds[0]), math.log(bounds[1]))))


class Op(BaseModel):
    """Fields shared by every op; unknown fields are errors so that a typo never silently does nothing.

    `draws` uniforms per row: the first decides whether the op fires; the count is fixed per op type (drawn
    even when the op does not fire) so that the layout of a row's draws depends only on the policy.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    stage: ClassVar[Stage]
    draws: ClassVar[int]

    p: Probability = 0.5


class GeometricOp(Op):
    """An op that moves pixels. The engine composes a run of consecutive geometric ops into one 3x3 matrix
    per row and resamples each row at most once."""

    stage: ClassVar[Stage] = "geometric"

    @abstractmethod
    def matrices(self, plan: Plan, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Record what the op drew for each row and return (per-row 3x3 forward matrices, mapping source pixel
        index to output pixel index and the identity where it did not fire; rows it resamples)."""


class PixelOp(Op):
    """An op that changes pixel values: it samples its parameters, records them, and returns the step that
    applies them (None when it leaves every row as it is). Mixing steps run on the whole batch; the others on
    any range of rows."""

    @abstractmethod
    def step(self, plan: Plan, u: np.ndarray) -> Step | None:
        """Sample the op for the whole batch from its block of uniforms `u` (N, draws), record it, plan the step."""


# Every accepted op name -> its class, in the order the ops were registered (the order error messages list).
OPS: dict[str, type[Op]] = {}

OpT = TypeVar("OpT", bound=type[Op])


def register(cls: OpT) -> OpT:
    """Add an op class under every name its `op` field accepts (a class may accept an alias)."""
    if not isinstance(getattr(cls, "draws", None), int) or not hasattr(cls, "stage"):
        raise TypeError(f"{cls.__name__} must set `draws` and `stage`")
    for name in get_args(cls.model_fields["op"].annotation):
        if name in OPS:
            raise ValueError(f"op name {name!r} is registered twice ({OPS[name].__name__}, {cls.__name__})")
        OPS[name] = cls
    return cls
