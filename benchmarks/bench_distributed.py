"""Learner throughput of data-parallel training (issue 9): updates per second with 1, 2, ...
ranks launched by torchrun, on synthetic replay batches shaped like the task's.

    OMP_NUM_THREADS=1 python benchmarks/bench_distributed.py --task gym_CartPole-v1 \
        --preset gym --ranks 1 2 --updates 40 --json

For each rank count it runs `python -m torch.distributed.run --standalone --nproc_per_node N`
on this file (one torch thread per rank unless --threads says otherwise). Every rank builds the
agent exactly as `dreamerctl train` does (so gradients are averaged and return percentiles
gathered over ranks), warms up, waits for the others, and times `--updates` updates of
`dreamerctl.agent.loops.run_updates`. Ranks update in lockstep, so updates/s is the job's rate;
samples/s = ranks x B x T x updates/s is the replayed steps the job learns from per second.
With 1 rank torchrun sets WORLD_SIZE=1 and the single-process code path is what is timed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="gym_CartPole-v1")
    parser.add_argument("--preset", action="append", default=[],
                        help="preset layered over the task's suite preset; repeatable "
                             "[default: none, i.e. the suite's own model]")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--updates", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per rank")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--json", action="store_true", help="print one JSON list")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def synthetic_batches(obs_space: dict[str, Any], act_space: Any, batch: int, length: int,
                      rng: np.random.Generator, pool: int = 2) -> list[dict[str, np.ndarray]]:
    """Random batches with the task's keys and shapes; each sequence starts an episode."""
    batches = []
    for _ in range(pool):
        data: dict[str, np.ndarray] = {}
        for key, space in obs_space.items():
            shape = (batch, length, *space.shape)
            data[key] = (rng.integers(0, 256, shape, dtype=np.uint8) if space.dtype == "uint8"
                         else rng.normal(size=shape).astype(np.float32))
        data["action"] = act_space.sample(rng, batch * length).reshape(batch, length, -1)
        data["reward"] = rng.uniform(0, 1, (batch, length)).astype(np.float32)
        data["is_first"] = np.zeros((batch, length), bool)
        data["is_first"][:, 0] = True
        data["is_last"] = np.zeros((batch, length), bool)
        data["is_terminal"] = np.zeros((batch, length), bool)
        batches.append(data)
    return batches


def worker(args: argparse.Namespace) -> None:
    """One rank: build the agent as `dreamerctl train` does, time the updates."""
    import torch

    from dreamerctl.agent.agent import Agent
    from dreamerctl.agent.loops import run_updates
    from dreamerctl.config.loader import build_config
    from dreamerctl.envs.registry import make_env
    from dreamerctl.run.device import pick_device
    from dreamerctl.run.distributed import join

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    world = join()
    config = build_config(args.task, args.preset, args.set)
    env = make_env(args.task, config.env, seed=0)
    obs_space, act_space = env.obs_space, env.act_space
    env.close()
    train = config.train
    torch.manual_seed(0)
    device = world.device(pick_device(args.device))
    agent = Agent.from_config(obs_space, act_space, config, device=device)
    world.broadcast_state(agent)
    rng = np.random.default_rng(world.seed(0))
    pool = itertools.cycle(synthetic_batches(obs_space, act_space, train.batch_size,
                                             train.batch_length, rng))

    def timed(count: int) -> float:
        world.any(False)  # start together
        start = time.perf_counter()
        run_updates(agent, lambda: next(pool), count, train.loop, train.imag_starts)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    timed(args.warmup)
    seconds = timed(args.updates)
    if world.main:
        rate = args.updates / seconds
        print(json.dumps({
            "ranks": world.size, "task": args.task, "preset": args.preset or ["(suite)"],
            "device": str(device), "threads_per_rank": torch.get_num_threads(),
            "batch": [train.batch_size, train.batch_length], "updates": args.updates,
            "updates_per_s": round(rate, 3), "ms_per_update": round(1000 / rate, 2),
            "samples_per_s": round(world.size * train.batch_size * train.batch_length * rate, 1),
        }), flush=True)
    world.leave(True)


def launch(args: argparse.Namespace, ranks: int) -> dict[str, Any]:
    """Run the workers for `ranks` under torchrun; rank 0's JSON line."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", str(ranks), str(Path(__file__).resolve()), "--worker",
               "--task", args.task, "--updates", str(args.updates), "--warmup", str(args.warmup),
               "--threads", str(args.threads), "--device", args.device]
    for preset in args.preset:
        command += ["--preset", preset]
    for setting in args.set:
        command += ["--set", setting]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(args.threads, 1))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p)
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        raise SystemExit(f"{ranks} ranks failed with exit code {result.returncode}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    rows = [launch(args, ranks) for ranks in args.ranks]
    base = rows[0]["samples_per_s"] / rows[0]["ranks"]
    for row in rows:
        row["scaling"] = round(row["samples_per_s"] / base / row["ranks"], 3)  # 1.0 = linear
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for row in rows:
        print(f"{row['ranks']} rank(s): {row['updates_per_s']:.2f} updates/s, "
              f"{row['samples_per_s']:.0f} samples/s, scaling {row['scaling']:.2f}")


if __name__ == "__main__":
    main()
