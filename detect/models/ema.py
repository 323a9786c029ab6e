"""`ModelEma`: an exponential moving average of a model's weights (Polyak averaging).

Kept the way Ultralytics' `ModelEMA` and timm's `ModelEmaV2` keep it: a frozen copy of the model
whose floating-point state (parameters and BatchNorm statistics) follows the trained one after
every optimizer step, ``ema = d * ema + (1 - d) * model``; integer buffers are copied. The decay
ramps up as ``d = min(decay, (1 + n) / (10 + n))`` after ``n`` updates (TensorFlow's
``ExponentialMovingAverage(num_updates=...)``), so early averages are not dominated by the random
initial weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ModelEma:
    """The averaged copy of `model`; `module` is what is validated, saved and exported."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    def current_decay(self) -> float:
        """The decay the next update uses."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards `model` (call after each optimizer step)."""
        d = self.current_decay()
        self.updates += 1
        averaged, current = [], []
        for ema_value, value in zip(
            self.module.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if ema_value.is_floating_point():
                averaged.append(ema_value)
                current.append(value.detach())
            else:
                ema_value.copy_(value)
        torch._foreach_lerp_(averaged, current, 1.0 - d)

    def state_dict(self) -> dict[str, Any]:
        """Weights-only-loadable state: the averaged weights and the update count."""
        return {"model": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.updates = int(state["updates"])
