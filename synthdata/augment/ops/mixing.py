"""Mixing ops: blend each firing row with a partner row of the batch; soft labels blend the same way.

A row picks its partner with its own draws from the *sorted* parent_ids of the other rows in the batch, so
the choice does not depend on row order; the partner's parent_id and lambda are recorded. Reproducing such a
row needs the partner's image (augmented up to that op, which is itself reproducible from the partner's
parent_id). The row's own image always keeps at least half the weight (lambda >= 0.5), so its parent_id
remains the honest provenance. In a batch of one there is no partner and the op is skipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from synthdata.augment.ops.base import PixelOp, Stage, register

if TYPE_CHECKING:
    from synthdata.augment.batch import Plan, Rows, Step


def _beta_half(u: np.ndarray, alpha: float) -> np.ndarray:
    """Beta(alpha, alpha) by inverse CDF of the row's uniform, folded onto [0.5, 1] so the row keeps the majority."""
    from scipy.special import betaincinv  # only mixup/cutmix need it

    lam = betaincinv(alpha, alpha, u)
    return np.maximum(lam, 1.0 - lam)


def _partners(plan: Plan, u: np.ndarray, fired: np.ndarray) -> np.ndarray:
    """Each firing row's partner: a uniform pick among the other rows ranked by parent_id; itself elsewhere."""
    order, rank = plan.ranked
    pick = np.minimum(np.floor(u * (plan.n - 1)).astype(np.int64), max(plan.n - 2, 0))
    pick = pick + (pick >= rank)  # skip the row's own rank
    partner = order[np.minimum(pick, plan.n - 1)]
    return np.where(fired, partner, np.arange(plan.n))


def _mix_labels(plan: Plan, idx: np.ndarray, partner: np.ndarray, lam: np.ndarray) -> None:
    """Soft labels follow the pixels: for each firing row, lambda of its own, 1 - lambda of its partner's.
    Rows that did not fire keep theirs (lambda 1), so only the firing rows are computed."""
    if idx.size == 0:
        return
    rows = torch.from_numpy(idx).to(plan.device)
    lam_y = plan.to_dev(lam[idx], plan.soft.dtype).view(-1, 1)
    mixed = plan.soft[rows] * lam_y + plan.soft[torch.from_numpy(partner[idx]).to(plan.device)] * (1.0 - lam_y)
    plan.soft = plan.soft.index_put((rows,), mixed)  # a new tensor: the caller's labels are never written


@register
class Mixup(PixelOp):
    """Blend with a partner row of the batch, lambda ~ Beta(alpha, alpha); labels blend the same way."""

    stage: ClassVar[Stage] = "mixing"
    draws: ClassVar[int] = 3  # gate, partner, lambda

    op: Literal["mixup"] = "mixup"
    alpha: Annotated[float, Field(gt=0.0)] = 0.2

    def step(self, plan: Plan, u: np.ndarray) -> Step | None:
        """Blend each firing row with its partner: lambda * own + (1 - lambda) * partner."""
        fired = (u[:, 0] < self.p) & (plan.n > 1)
        partner = _partners(plan, u[:, 1], fired)
        lam = np.where(fired, _beta_half(u[:, 2], self.alpha), 1.0)
        idx = np.flatnonzero(fired)
        _mix_labels(plan, idx, partner, lam)
        plan.record(self.op, idx, {"partner_parent_id": plan.id_array[partner], "lambda": lam})
        if idx.size == 0:
            return None
        partner_dev = torch.from_numpy(partner[idx]).to(plan.device)
        lam_dev = plan.to_dev(lam[idx]).view(-1, 1, 1, 1)

        def mixup(rows: Rows) -> None:
            other = rows.x.index_select(0, partner_dev)  # gathered before any row is overwritten
            rows.put(idx, torch.lerp(other, rows.get(idx), lam_dev))

        return mixup


@register
class Cutmix(PixelOp):
    """Paste a box of a partner row, box area ~ 1 - lambda with lambda ~ Beta(alpha, alpha)."""

    stage: ClassVar[Stage] = "mixing"
    draws: ClassVar[int] = 5  # gate, partner, lambda, x, y

    op: Literal["cutmix"] = "cutmix"
    alpha: Annotated[float, Field(gt=0.0)] = 1.0

    def step(self, plan: Plan, u: np.ndarray) -> Step | None:
        """Paste a box of the partner into each firing row; the box covers 1 - lambda of it."""
        fired = (u[:, 0] < self.p) & (plan.n > 1)
        partner = _partners(plan, u[:, 1], fired)
        h, w = plan.h, plan.w
        cut = np.sqrt(1.0 - _beta_half(u[:, 2], self.alpha))
        ch, cw = np.round(cut * h).astype(np.int64), np.round(cut * w).astype(np.int64)
        cy, cx = np.floor(u[:, 3] * h).astype(np.int64), np.floor(u[:, 4] * w).astype(np.int64)
        y0, x0 = np.clip(cy - ch // 2, 0, h), np.clip(cx - cw // 2, 0, w)
        y1, x1 = np.clip(cy + ch - ch // 2, 0, h), np.clip(cx + cw - cw // 2, 0, w)
        box = np.stack([y0, x0, np.where(fired, y1 - y0, 0), np.where(fired, x1 - x0, 0)], 1)
        # The box is clipped at the border, so lambda is recomputed from the area actually pasted.
        lam = 1.0 - (box[:, 2] * box[:, 3]) / (h * w)
        idx = np.flatnonzero(fired)
        _mix_labels(plan, idx, partner, lam)
        plan.record(self.op, idx, {"partner_parent_id": plan.id_array[partner], "lambda": lam, "box_yxhw": box})
        if idx.size == 0:
            return None
        partner_dev = torch.from_numpy(partner[idx]).to(plan.device)
        in_y, in_x = plan.box_masks(box[idx], torch.bool)
        mask = in_y & in_x

        def cutmix(rows: Rows) -> None:
            other = rows.x.index_select(0, partner_dev)  # gathered before any row is overwritten
            rows.put(idx, torch.where(mask, other, rows.get(idx)))

        return cutmix
