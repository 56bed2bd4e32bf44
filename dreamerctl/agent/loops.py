"""The two update loops of SPEC §4.

coupled (default): each update trains the world model on a batch and the actor-critic from that
batch's detached posterior. sample_starts: all world-model updates first, each on its own batch,
then as many actor-critic updates from posteriors of fresh batches encoded without gradient.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, get_args

import torch
from torch import Tensor

from dreamerctl.agent.agent import IMAG_STARTS, Agent, select_starts
from dreamerctl.config.schema import TrainConfig

__all__ = ["IMAG_STARTS", "LOOPS", "mean_metrics", "run_updates", "select_starts"]

# The choices are the schema's (config/schema.py): validated there, named here for tests.
LOOPS: tuple[str, ...] = get_args(TrainConfig.model_fields["loop"].annotation)
# Summed per update rather than averaged over the calls that make one update.
SUMMED = ("train/nonfinite",)


Phase = Callable[[str], AbstractContextManager[Any]]


def untimed(name: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


def run_updates(agent: Agent, sample: Callable[[], dict[str, Any]], count: int, loop: str,
                imag_starts: str, phase: Phase = untimed) -> dict[str, float]:
    """Run `count` updates with `loop`; returns metrics averaged over them ("train/nonfinite":
    skipped optimiser steps per update). `phase(name)` wraps each "world_model" and
    "actor_critic" half (sampling included): the timing hook of benchmarks/bench_update.py."""
    records: list[dict[str, Tensor]] = []
    if loop == "coupled":
        for _ in range(count):
            with phase("world_model"):
                metrics, post = agent.update_world_model(sample())
            records.append(metrics)
            with phase("actor_critic"):
                records.append(agent.update_actor_critic(post, imag_starts))
    elif loop == "sample_starts":
        for _ in range(count):
            with phase("world_model"):
                records.append(agent.update_world_model(sample())[0])
        for _ in range(count):
            with phase("actor_critic"):
                records.append(agent.update_actor_critic(agent.encode_starts(sample()),
                                                         imag_starts))
    else:
        raise ValueError(f"loop must be one of {LOOPS}, got {loop!r}")
    return mean_metrics(records, count)


def mean_metrics(records: list[dict[str, Tensor]], count: int) -> dict[str, float]:
    """Per-key means (sums / count for SUMMED keys), moved to the host in one transfer."""
    if count == 0 or not records:
        return {}
    values: dict[str, list[Tensor]] = {}
    for record in records:
        for key, value in record.items():
            values.setdefault(key, []).append(value.detach().float())
    keys = sorted(values)
    means = [torch.stack(values[key]).sum() / count if key in SUMMED
             else torch.stack(values[key]).mean() for key in keys]
    return dict(zip(keys, torch.stack(means).tolist(), strict=True))
