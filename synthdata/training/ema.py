"""The EMA of the weights a model samples with, which the loop updates every step and every sample comes from."""

from __future__ import annotations

import copy

import torch

from synthdata.models import GenerativeModel


class EMA:
    """Exponential moving average of the sampling part of the model; samples always come from the EMA copy.

    The decay ramps up as min(decay, (1 + t) / (10 + t)) so that in a short run the average is not dominated by
    the random initial weights.
    """

    def __init__(self, model: GenerativeModel, decay: float) -> None:
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self._ema = list(self.model.sampling_module().parameters())
        self._live = list(model.sampling_module().parameters())
        self._ema_buffers = list(self.model.sampling_module().buffers())
        self._live_buffers = list(model.sampling_module().buffers())

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self._ema, self._live, 1.0 - decay)
        if self._ema_buffers:  # one launch for all of them: on a GPU each copy_ would be its own kernel
            torch._foreach_copy_(self._ema_buffers, self._live_buffers)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.sampling_module().state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.sampling_module().load_state_dict(state)
