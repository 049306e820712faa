"""Geometric ops: each gives per-row 3x3 forward matrices (source pixel index -> output pixel index), identity
where it did not fire, and the engine resamples a run of them once (`synthdata.augment.engine`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from synthdata.augment.ops.base import GeometricOp, Range, lerp, log_lerp, register, within

if TYPE_CHECKING:
    from synthdata.augment.batch import Plan


def _linear_about(
    center: tuple[float, float], a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray
) -> np.ndarray:
    """Per-row 3x3 matrices applying [[a, b], [c, d]] about `center` (pixel-index coordinates)."""
    cx, cy = center
    m = np.zeros((a.shape[0], 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = a, b, c, d, 1.0
    m[:, 0, 2] = cx - a * cx - b * cy
    m[:, 1, 2] = cy - c * cx - d * cy
    return m


class _Flip(GeometricOp):
    """Mirror about the centre column (`horizontal`) or row: such rows are mirrored exactly, never resampled."""

    draws: ClassVar[int] = 1  # gate
    horizontal: ClassVar[bool]

    def matrices(self, plan: Plan, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fired = u[:, 0] < self.p
        sign, one, zero = np.where(fired, -1.0, 1.0), np.ones(plan.n), np.zeros(plan.n)
        if self.horizontal:
            m = _linear_about(plan.center, sign, zero, zero, one)
        else:
            m = _linear_about(plan.center, one, zero, zero, sign)
        plan.record(self.op, np.flatnonzero(fired), {})
        return m, np.zeros(plan.n, dtype=bool)


@register
class HFlip(_Flip):
    """Mirror left-right."""

    horizontal: ClassVar[bool] = True

    op: Literal["hflip"] = "hflip"


@register
class VFlip(_Flip):
    """Mirror top-bottom."""

    horizontal: ClassVar[bool] = False

    op: Literal["vflip"] = "vflip"


@register
class Rotate(GeometricOp):
    """Rotate about the image centre by an angle in degrees (positive = counter-clockwise)."""

    draws: ClassVar[int] = 2  # gate, angle

    op: Literal["rotate"] = "rotate"
    degrees: Range = (-15.0, 15.0)

    def matrices(self, plan: Plan, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fired = u[:, 0] < self.p
        deg = np.where(fired, lerp(u[:, 1], self.degrees), 0.0)
        cos, sin = np.cos(np.deg2rad(deg)), np.sin(np.deg2rad(deg))
        # Image y points down, so this matrix turns the picture counter-clockwise for positive angles (as PIL does).
        m = _linear_about(plan.center, cos, sin, -sin, cos)
        plan.record(self.op, np.flatnonzero(fired), {"degrees": deg})
        return m, fired


@register
class Affine(GeometricOp):
    """Translate (as a fraction of width/height), scale about the centre, and shear (degrees, x and y)."""

    draws: ClassVar[int] = 6  # gate, tx, ty, scale, shear x, shear y

    op: Literal["affine"] = "affine"
    translate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    scale: Range = (0.9, 1.1)
    shear: Range = (-10.0, 10.0)

    @model_validator(mode="after")
    def _check(self) -> Affine:
        if self.scale[0] <= 0:
            raise ValueError(f"scale must be positive, got {list(self.scale)}")
        within(self.shear, -80.0, 80.0, "shear (degrees)")
        return self

    def matrices(self, plan: Plan, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scale and shear about the centre, then translate by fractions of the size."""
        fired = u[:, 0] < self.p
        t = np.where(fired[:, None], lerp(u[:, 1:3], (-self.translate, self.translate)), 0.0)
        scale = np.where(fired, lerp(u[:, 3], self.scale), 1.0)
        shear = np.where(fired[:, None], lerp(u[:, 4:6], self.shear), 0.0)
        k = np.tan(np.deg2rad(shear))
        m = _linear_about(plan.center, scale, scale * k[:, 0], scale * k[:, 1], scale)
        m[:, 0, 2] += t[:, 0] * plan.w
        m[:, 1, 2] += t[:, 1] * plan.h
        plan.record(self.op, np.flatnonzero(fired), {"translate": t, "scale": scale, "shear": shear})
        return m, fired


@register
class RandomResizedCrop(GeometricOp):
    """Crop a box of `scale` x the image area and aspect `ratio`, resized back to the input size."""

    draws: ClassVar[int] = 5  # gate, area, log-ratio, x, y

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

    def matrices(self, plan: Plan, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map a random box (area fraction `scale`, aspect `ratio`) onto the whole output."""
        fired = u[:, 0] < self.p
        area = lerp(u[:, 1], self.scale) * (plan.h * plan.w)
        ratio = log_lerp(u[:, 2], self.ratio)
        # Clamp instead of torchvision's rejection loop: a fixed number of draws per row keeps sampling vectorised.
        bw = np.where(fired, np.minimum(np.sqrt(area * ratio), plan.w), float(plan.w))
        bh = np.where(fired, np.minimum(np.sqrt(area / ratio), plan.h), float(plan.h))
        x0, y0 = u[:, 3] * (plan.w - bw), u[:, 4] * (plan.h - bh)
        # Box edges (continuous coords, pixel i spans [i, i+1]) map onto the output's edges.
        sx, sy = plan.w / bw, plan.h / bh
        m = np.zeros((plan.n, 3, 3))
        m[:, 0, 0], m[:, 1, 1], m[:, 2, 2] = sx, sy, 1.0
        m[:, 0, 2] = (0.5 - x0) * sx - 0.5
        m[:, 1, 2] = (0.5 - y0) * sy - 0.5
        plan.record(self.op, np.flatnonzero(fired), {"box_xywh": np.stack([x0, y0, bw, bh], 1)})
        return m, fired
