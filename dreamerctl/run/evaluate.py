"""`eval` and `compare`: run a checkpoint's policy for whole episodes on fixed seeds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dreamerctl.config import EnvConfig
from dreamerctl.errors import UsageError
from dreamerctl.run import rundir
from dreamerctl.run.policy import (
    RandomPolicy,
    check_mode,
    check_parameters,
    load_agent,
    random_agent_setup,
    task_and_env,
)
from dreamerctl.run.progress import ProgressReporter
from dreamerctl.run.stats import EpisodeTracker

if TYPE_CHECKING:
    from dreamerctl.agent.agent import Agent


def bootstrap_ci(scores: np.ndarray, seed: int, samples: int = 10_000,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean."""
    if len(scores) == 1:
        return float(scores[0]), float(scores[0])
    rng = np.random.default_rng(seed)
    means = rng.choice(scores, size=(samples, len(scores)), replace=True).mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def score_summary(scores: list[float], lengths: list[int], seed: int) -> dict[str, Any]:
    array = np.asarray(scores, np.float64)
    low, high = bootstrap_ci(array, seed)
    return {
        "episodes": len(scores), "mean": float(array.mean()), "std": float(array.std()),
        "min": float(array.min()), "max": float(array.max()), "ci95_low": low, "ci95_high": high,
        "mean_length": float(np.mean(lengths)), "scores": [float(s) for s in scores],
        "lengths": [int(n) for n in lengths],
    }


def run_episodes(agent: Agent | None, task: str, env_cfg: EnvConfig, episodes: int, seed: int,
                 mode: str, label: str, progress: bool = True) -> tuple[list[float], list[int]]:
    """`episodes` whole episodes, split evenly over the preset's envs; `agent` None acts
    uniformly at random. Each env i starts from seed + i and does its own share, so the result
    depends only on the seed and the env count."""
    import torch

    from dreamerctl.envs import ParallelEnvs

    num = max(1, min(episodes, env_cfg.num_envs))
    quota = [episodes // num + (1 if i < episodes % num else 0) for i in range(num)]
    done: list[list[tuple[float, int]]] = [[] for _ in range(num)]
    torch.manual_seed(seed)
    envs = ParallelEnvs(task, env_cfg, num, seed=seed)
    actor: Agent | RandomPolicy = RandomPolicy(envs.act_space, seed) if agent is None else agent
    try:
        tracker = EpisodeTracker(num)
        obs, state = envs.reset(), None
        with ProgressReporter(label, episodes, enabled=progress) as bar:
            while any(len(d) < q for d, q in zip(done, quota, strict=True)):
                for episode in tracker.update(obs):
                    if len(done[episode.env]) < quota[episode.env]:
                        done[episode.env].append((episode.score, episode.length))
                finished = sum(len(d) for d in done)
                bar.update(finished, force=finished == episodes)
                if finished >= episodes:
                    break
                action, state = actor.policy(obs, state, mode=mode)
                obs = envs.step(action)
    finally:
        envs.close()
    ordered = [item for per_env in done for item in per_env]
    return [s for s, _ in ordered], [n for _, n in ordered]


def evaluate_checkpoint(path: Path, task: str | None, episodes: int, seed: int, mode: str,
                        device: str, parameters: str = "average") -> dict[str, Any]:
    check_mode(mode)
    loaded = load_agent(path, device, parameters)
    chosen, env_cfg = task_and_env(loaded, task)
    scores, lengths = run_episodes(loaded.agent, chosen, env_cfg, episodes, seed, mode,
                                   f"eval {chosen}")
    return {"path": str(path), "task": chosen, "step": loaded.step, "frames": loaded.frames,
            "mode": mode, "parameters": loaded.parameters, "seed": seed,
            **score_summary(scores, lengths, seed)}


def evaluate_random(checkpoint: str, logdir: Path, task: str | None, episodes: int,
                    seed: int) -> dict[str, Any]:
    """`eval --random-agent`: uniform random actions on the episodes `eval` would run, in the
    checkpoint's env settings or, with `--checkpoint none`, the task's suite defaults."""
    chosen, env_cfg, path = random_agent_setup(checkpoint, logdir, task)
    scores, lengths = run_episodes(None, chosen, env_cfg, episodes, seed, "sample",
                                   f"eval {chosen} (random agent)")
    return {"path": str(path) if path else "none", "task": chosen, "step": 0, "frames": 0,
            "mode": "random", "seed": seed, **score_summary(scores, lengths, seed)}


def compare_checkpoints(specs: list[str], logdir: Path, episodes: int, seed: int, mode: str,
                        device: str, random_agent: bool = False,
                        parameters: str = "average") -> list[dict[str, Any]]:
    """Each checkpoint on its own task and the same seeds; rows grouped by task (in the order
    the tasks first appear) and sorted by mean within each, best first: scores of different
    tasks are not comparable.
    With `random_agent`, one more row per task: uniform random actions in the env settings of
    that task's first checkpoint (path "random", step 0, `env_from` that checkpoint)."""
    check_mode(mode)
    check_parameters(parameters)
    paths: list[Path] = []
    for spec in specs:
        path = rundir.resolve_checkpoint(spec, logdir)
        if path.resolve() not in [p.resolve() for p in paths]:
            paths.append(path)
    if not paths:
        raise UsageError("compare needs at least one checkpoint")
    rows = [evaluate_checkpoint(p, None, episodes, seed, mode, device, parameters) for p in paths]
    if random_agent:
        first_of_task: dict[str, str] = {}
        for row in rows:
            first_of_task.setdefault(row["task"], row["path"])
        for first in first_of_task.values():
            row = evaluate_random(first, logdir, None, episodes, seed)
            rows.append({**row, "path": "random", "env_from": first})
    order = {task: i for i, task in reversed(list(enumerate(row["task"] for row in rows)))}
    return sorted(rows, key=lambda row: (order[row["task"]], -row["mean"]))
