"""An exponential moving average of the acting parameters (the world model and the actor), which
a checkpoint's policy acts with when `train.policy_ema` > 0 (issue 20).

Not in the paper: there the last parameters act. Why: a CartPole agent whose training episodes
all reach 500 has frozen snapshots that drive off the track, each with its own small drift that
the next few hundred updates reverse; the mean of neighbouring snapshots' parameters holds
(benchmarks/RESULTS.md, "Two tries at the flicker"). Training is unchanged: collection
uses the live parameters, and the average is only read by eval, record, compare and the
periodic evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn


class ParameterAverage:
    """avg <- avg + w_n * (live - avg) after update n, with w_n = (1 - decay) / (1 - decay^n):
    the exponential moving average with Adam's bias correction. The first update copies
    (w_1 = 1); each update's parameters weigh decay^(n - k) against the others, and w_n tends
    to 1 - decay once decay^n is small (after ~5,000 updates at 0.999). Without the correction
    (w_n = 1 - decay from the second update on) the first update's parameters kept a weight of
    decay^(n - 1): 22% after 1,500 updates at 0.999."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.live = {f"{key}.{name}": param for key, module in modules.items()
                     for name, param in module.named_parameters()}
        self.average = {name: param.detach().float().clone() for name, param in self.live.items()}
        self.count = 0

    @torch.no_grad()
    def update(self) -> None:
        weight = (1.0 - self.decay) / (1.0 - self.decay ** (self.count + 1))
        # One multi-tensor lerp over all parameters (one kernel launch per group on a GPU).
        torch._foreach_lerp_(list(self.average.values()),
                             [param.detach().float() for param in self.live.values()], weight)
        self.count += 1

    @contextlib.contextmanager
    def swapped_in(self) -> Iterator[None]:
        """The live modules hold the average inside the block and their own values after it.
        Before the first update there is no average: the live values stay."""
        if self.count == 0:
            yield
            return
        saved = {name: param.detach().clone() for name, param in self.live.items()}
        self.copy_in()
        try:
            yield
        finally:
            with torch.no_grad():
                for name, param in self.live.items():
                    param.copy_(saved[name])

    @torch.no_grad()
    def copy_in(self) -> None:
        """Overwrite the live parameters with the average (an agent loaded to act)."""
        if self.count == 0:
            return
        for name, param in self.live.items():
            param.copy_(self.average[name].to(param.dtype))

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count,
                "average": {name: tensor.cpu() for name, tensor in self.average.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        average: dict[str, Tensor] = state["average"]
        if set(average) != set(self.average):
            raise ValueError("the saved parameter average does not match this model")
        for name, tensor in average.items():
            self.average[name].copy_(tensor)
        self.count = int(state["count"])
