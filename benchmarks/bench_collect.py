"""Collection speed: env frames per second with 1, 2, 4 env worker processes, and the policy's
share of the time (issue 8, item 5).

    python benchmarks/bench_collect.py atari_pong --workers 1 2 4 --steps 300 --json
    python benchmarks/bench_collect.py dmc_walker_walk --workers 1 2 4 --steps 300 --json

For each worker count it times two loops over `--steps` batched steps of the task's envs
(configured from the task's suite preset, with `--preset` layered over it): random actions only
(the envs alone), then the agent's policy (`--preset`-sized, untrained) choosing every action as
`dreamerctl train` does while collecting. `policy_share` is the policy's part of the second
loop. For DMC, `--no-render` switches the agent to proprioceptive observations (no pixels are
rendered), which shows what rendering costs. One JSON object per worker count with `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch

from dreamerctl.agent.agent import Agent
from dreamerctl.config.loader import build_config
from dreamerctl.envs import ParallelEnvs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--steps", type=int, default=300, help="batched steps per loop")
    parser.add_argument("--preset", action="append", default=[], help="layered over the suite")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-render", action="store_true",
                        help="DMC: vector observations only (no pixels rendered)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    overrides = [*args.set, f"env.num_envs={workers}", "env.parallel=true"]
    if args.no_render:
        overrides.append('env.obs_keys=["vector"]')
    config = build_config(args.task, args.preset, overrides)
    envs = ParallelEnvs(args.task, config.env, workers, seed=args.seed)
    try:
        torch.manual_seed(args.seed)
        agent = Agent.from_config(envs.obs_space, envs.act_space, config)
        agent.eval()
        rng = np.random.default_rng(args.seed)
        envs.reset()
        start = time.perf_counter()
        for _ in range(args.steps):
            envs.step(envs.act_space.sample(rng, workers))
        env_s = time.perf_counter() - start

        obs, state, policy_s = envs.reset(), None, 0.0
        start = time.perf_counter()
        for _ in range(args.steps):
            tick = time.perf_counter()
            action, state = agent.policy(obs, state)
            policy_s += time.perf_counter() - tick
            obs = envs.step(action)
        total_s = time.perf_counter() - start
    finally:
        envs.close()
    frames = args.steps * workers * config.env.action_repeat
    return {
        "task": args.task, "workers": workers, "steps": args.steps,
        "action_repeat": config.env.action_repeat, "obs_keys": sorted(envs.obs_space),
        "env_frames_per_s": frames / env_s,
        "frames_per_s_with_policy": frames / total_s,
        "policy_ms_per_step": 1000 * policy_s / args.steps,
        "policy_share": policy_s / total_s,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    results = []
    for workers in args.workers:
        result = measure(args, workers)
        results.append(result)
        if args.json:
            sys.stdout.write(json.dumps(result) + "\n")
        else:
            sys.stdout.write(
                f"{args.task} workers={workers}: {result['env_frames_per_s']:.0f} env frames/s "
                f"alone, {result['frames_per_s_with_policy']:.0f} with the policy "
                f"({100 * result['policy_share']:.0f}% policy)\n")
        sys.stdout.flush()
    return results


if __name__ == "__main__":
    main()
