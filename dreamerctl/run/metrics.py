"""What a run logs while it trains: scores.jsonl (one line per finished episode) and
metrics.jsonl (one line per `run.log_every` seconds: losses averaged over the window's updates,
rates, sizes, counts), with the same scalars in TensorBoard where `run.tensorboard` is on.

Under torchrun each rank finishes its own episodes and runs its own updates: the episodes are
gathered to rank 0, which alone writes; losses are averaged over all ranks' updates, and rates
and replay sizes summed over ranks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dreamerctl.run import rundir
from dreamerctl.run.checkpoint import Counters
from dreamerctl.run.distributed import World
from dreamerctl.run.events import Events


class Window:
    """Metrics gathered between two log lines."""

    def __init__(self, scores: list[float] | None = None) -> None:
        self.sums: dict[str, float] = {}
        self.updates = 0
        self.steps = 0
        self.scores: list[float] = list(scores or [])

    def add(self, metrics: dict[str, float], count: int) -> None:
        self.updates += count
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * count

    def means(self) -> dict[str, float]:
        if not self.updates:
            return {}
        return {key: value / self.updates for key, value in self.sums.items()}

    @property
    def last_score(self) -> float | None:
        return self.scores[-1] if self.scores else None

    @classmethod
    def merge(cls, parts: list[tuple[dict[str, float], int]]) -> Window:
        """One window of the (sums, updates) of several ranks: its means are over all their
        updates."""
        merged = cls()
        for sums, updates in parts:
            merged.updates += updates
            for key, value in sums.items():
                merged.sums[key] = merged.sums.get(key, 0.0) + value
        return merged


class MetricsLog:
    """The scores and metrics files of one run directory (see the module's docstring)."""

    def __init__(self, run_dir: Path, world: World, events: Events, action_repeat: int,
                 batch_steps: int) -> None:
        self.run_dir = run_dir
        self.world = world
        self.events = events
        self.action_repeat = action_repeat
        self.batch_steps = batch_steps  # replayed steps of one update on one rank: B x T
        # Episodes finished here and not yet written (with several ranks, until they are
        # gathered at the next metrics line or checkpoint): (step, frames, score, length).
        self.pending: list[tuple[int, int, float, int]] = []

    def finished(self, step: int, score: float, length: int) -> None:
        self.pending.append((step, step * self.action_repeat, score, length))

    def flush_episodes(self, window: Window, counters: Counters) -> None:
        """Write the finished episodes to scores.jsonl (rank 0, the episodes of every rank,
        gathered) and count them; every rank gets the scores for the window's mean."""
        if self.world.distributed:
            gathered = self.world.all_gather(self.pending)
            episodes = sorted(episode for part in gathered for episode in part)
        else:
            episodes = self.pending
        self.pending = []
        for step, frames, score, length in episodes:
            counters.episodes += 1
            window.scores.append(score)
            if self.world.main:
                row = {"step": step, "frames": frames, "episode/score": score,
                       "episode/length": length}
                rundir.append_jsonl(self.run_dir / rundir.SCORES, row)
                self.events.scalars(row, frames)

    def log(self, window: Window, seconds: float, step: int, counters: Counters,
            replay_size: int) -> dict[str, float]:
        """Write one metrics line; returns the rates shown beside the progress bar (none on
        ranks other than 0)."""
        self.flush_episodes(window, counters)
        merged = window
        if self.world.distributed:
            parts = self.world.all_gather((window.sums, window.updates, replay_size))
            merged = Window.merge([(sums, updates) for sums, updates, _ in parts])
            replay_size = sum(size for _, _, size in parts)
        if not self.world.main:
            return {}
        seconds = max(seconds, 1e-9)
        frames = step * self.action_repeat
        record: dict[str, Any] = {"step": step, "frames": frames, **merged.means()}
        record["fps/env"] = window.steps * self.action_repeat / seconds
        record["fps/train"] = merged.updates * self.batch_steps / seconds
        record["train/updates"] = counters.updates
        record["train/updates_per_s"] = window.updates / seconds
        if counters.ready_step is not None and step > counters.ready_step:
            record["train/ratio_achieved"] = counters.replayed / (step - counters.ready_step)
        record["replay/size"] = replay_size
        record["episode/count"] = counters.episodes
        if window.scores:
            record["episode/score_mean"] = float(np.mean(window.scores))
        rundir.append_jsonl(self.run_dir / rundir.METRICS, record)
        self.events.scalars(record, frames)
        return {"updates/s": record["train/updates_per_s"], "env fps": record["fps/env"]}
