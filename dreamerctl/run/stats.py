"""Counting as the runner counts: episodes' scores and lengths from the step records (one
EpisodeTracker for training, evaluation and recording), and the train-ratio clock. The summary
statistics of evaluated scores (mean, CI) are `evaluate.score_summary`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Episode:
    env: int
    score: float
    length: int


class EpisodeTracker:
    """Sums rewards and counts agent steps per env over batched step dicts.

    A step with `is_first` starts a new episode (its reward, 0 by contract, is not counted); a step
    with `is_last` finishes one and is returned by `update`.
    """

    def __init__(self, num: int) -> None:
        self.score = np.zeros(num, np.float64)
        self.length = np.zeros(num, np.int64)

    def update(self, obs: dict[str, np.ndarray]) -> list[Episode]:
        first = np.asarray(obs["is_first"], bool)
        self.score[first] = 0.0
        self.length[first] = 0
        self.score[~first] += np.asarray(obs["reward"], np.float64)[~first]
        self.length[~first] += 1
        done = []
        for i in np.flatnonzero(np.asarray(obs["is_last"], bool)):
            done.append(Episode(int(i), float(self.score[i]), int(self.length[i])))
        return done


class TrainRatioClock:
    """How many updates are due: `ratio` updates per agent step, carrying the fraction (SPEC §4).

    `ratio` = train_ratio / (batch_size * batch_length). The remainder is part of the checkpoint so
    a resumed run keeps the exact same schedule.
    """

    def __init__(self, ratio: float, remainder: float = 0.0) -> None:
        self.ratio = ratio
        self.remainder = remainder

    def due(self, steps: int) -> int:
        self.remainder += steps * self.ratio
        count = int(self.remainder)
        self.remainder -= count
        return count
