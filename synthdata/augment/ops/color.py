"""Colour jitter: brightness, contrast, saturation and hue, fused into one affine colour map per row."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from synthdata.augment.ops.base import PixelOp, Stage, lerp, register
from synthdata.color import LUMA_WEIGHTS

if TYPE_CHECKING:
    from synthdata.augment.batch import Plan, Rows, Step

_LUMA = np.array(LUMA_WEIGHTS)
_GRAY = np.outer(np.ones(3), _LUMA)  # x -> its luma in every channel
# In YIQ, hue is the angle in the IQ plane, so a hue shift is a rotation there, which is linear in RGB:
# YIQ^-1 @ [[1, 0, 0], [0, cos, sin], [0, -sin, cos]] @ YIQ = _HUE_FIXED + cos * _HUE_COS + sin * _HUE_SIN.
YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
YIQ_INV = np.linalg.inv(YIQ)
_HUE_FIXED = YIQ_INV @ np.diag([1.0, 0.0, 0.0]) @ YIQ
_HUE_COS = YIQ_INV @ np.diag([0.0, 1.0, 1.0]) @ YIQ
_HUE_SIN = YIQ_INV @ np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) @ YIQ


def _hue_matrices(turns: np.ndarray) -> np.ndarray:
    """Per-row RGB matrices rotating hue by `turns` of a full circle about the gray axis (0 -> exactly I)."""
    ang = (turns * (2 * math.pi))[:, None, None]
    m = _HUE_FIXED + np.cos(ang) * _HUE_COS + np.sin(ang) * _HUE_SIN
    return np.where((turns != 0)[:, None, None], m, np.eye(3))  # the round trip through YIQ is not exactly I


@register
class ColorJitter(PixelOp):
    """Brightness/contrast/saturation factors drawn from [1-x, 1+x]; hue shift from [-hue, hue] turns.

    Saturation and hue are skipped for 1-channel images, where they mean nothing.
    """

    stage: ClassVar[Stage] = "color"
    draws: ClassVar[int] = 5  # gate, brightness, contrast, saturation, hue

    op: Literal["color_jitter"] = "color_jitter"
    brightness: Annotated[float, Field(ge=0.0)] = 0.2
    contrast: Annotated[float, Field(ge=0.0)] = 0.2
    saturation: Annotated[float, Field(ge=0.0)] = 0.0
    hue: Annotated[float, Field(ge=0.0, le=0.5)] = 0.0

    def step(self, plan: Plan, u: np.ndarray) -> Step | None:
        """Brightness, contrast, saturation and hue, in that order, fused into one affine colour map per row.

        With factors b, k, s, hue rotation H and G = x -> luma(x) in every channel, the stages compose to
        out = k b (s H + (1 - s) G) x + (1 - k) b luma(mean(x)): contrast blends towards the mean gray of the
        brightened image, saturation towards the pixel's gray, and H and G both keep gray and luma (so H G = G
        and the hue turn leaves the contrast term alone). The batch then costs one matrix pass plus a per-row
        offset. Unlike chaining torchvision's ops, it clamps once at the end rather than after every stage.
        """
        fired = u[:, 0] < self.p
        n, c = plan.n, plan.c
        drawn: dict[str, np.ndarray] = {}
        ones = np.ones(n)

        def factor(name: str, col: int, amount: float) -> np.ndarray:
            # Factor 1 where the op did not fire makes the map exactly x -> x, so such rows are untouched.
            f = np.where(fired, lerp(u[:, col], (max(0.0, 1.0 - amount), 1.0 + amount)), 1.0)
            drawn[name] = f
            return f

        b = factor("brightness", 1, self.brightness) if self.brightness > 0 else ones
        k = factor("contrast", 2, self.contrast) if self.contrast > 0 else ones
        offset_gain = plan.to_dev((1.0 - k) * b) if self.contrast > 0 else None  # times luma(mean(x))
        if c == 1:  # saturation and hue mean nothing for one channel; the map is one number per row
            gain = plan.to_dev(k * b).view(n, 1, 1, 1)
        else:
            s = factor("saturation", 3, self.saturation) if self.saturation > 0 else ones
            rotate = np.eye(3)
            if self.hue > 0:
                drawn["hue"] = np.where(fired, lerp(u[:, 4], (-self.hue, self.hue)), 0.0)
                rotate = _hue_matrices(drawn["hue"])
            a = (k * b * s)[:, None, None] * rotate + (k * b * (1.0 - s))[:, None, None] * _GRAY
            gain, luma = plan.to_dev(a), plan.to_dev(_LUMA)
        plan.record(self.op, np.flatnonzero(fired), drawn)

        def color(rows: Rows) -> None:
            x, lo, hi = rows.x, rows.lo, rows.hi
            m = hi - lo
            flat = x.view(m, c, -1)
            offset = None
            if offset_gain is not None:
                means = flat.mean(dim=2)
                if c == 1:
                    offset = offset_gain[lo:hi] * means[:, 0]
                else:  # written out rather than `means @ luma`, for the reason given below
                    offset = offset_gain[lo:hi] * (
                        means[:, 0] * luma[0] + means[:, 1] * luma[1] + means[:, 2] * luma[2]
                    )
            buf = rows.output_buffer()
            buf = torch.empty_like(x) if buf is None else buf
            if c == 1:  # elementwise beats a (1 x 1) matmul
                torch.mul(x, gain[lo:hi], out=buf)
                if offset is not None:
                    buf.add_(offset.view(m, 1, 1, 1))  # mul + add: addcmul with a broadcast `self` is slower
            else:
                # Elementwise, not bmm/baddbmm: BLAS may pick its kernel by batch size (MKL does), which can
                # move the last bit of a row between batch sizes; separate mul and add round the same way
                # whatever the batch, the thread split or the vector tail.
                channels = x.unbind(1)
                g = gain[lo:hi].view(m, c, c, 1, 1)
                tmp = torch.empty_like(channels[0])
                for i in range(c):
                    out_i = buf[:, i]
                    torch.mul(channels[0], g[:, i, 0], out=out_i)
                    for j in range(1, c):
                        out_i.add_(torch.mul(channels[j], g[:, i, j], out=tmp))
                    if offset is not None:
                        out_i.add_(offset.view(m, 1, 1))
            rows.replace(buf.clamp_(0.0, 1.0))

        return color
