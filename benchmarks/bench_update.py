"""Update speed of the agent on DMC-vision shapes with synthetic data (SPEC §7).

    python benchmarks/bench_update.py --preset small --loop coupled --imag-starts all \
        --precision bf16 --updates 3 --json

Builds the agent from the config of `dmc_vision` with `--preset` layered over it (64x64x3 images,
a 6-dim continuous action, batch 16 x 64), warms up, then times `--updates` updates the way
`dreamerctl.agent.loops.run_updates` runs them, world-model and actor-critic phases apart.
Batches come from a replay of random steps on `--replay-device` (auto: the GPU the model
trains on, as in training), so the time includes sampling and getting the batch to the model.
`--set run.compile=reduce-overhead` times the compiled update (compiling happens in the
warm-up, reported as warmup_s); on a GPU the report adds gpu_peak_mb. The process keeps freed
memory for reuse as training does (`dreamerctl.run.allocator`); `--default-malloc` times glibc's
defaults instead.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from benchio import cpu_model, write_result  # this folder, first on sys.path as a script

from dreamerctl.agent.agent import Agent
from dreamerctl.agent.loops import run_updates
from dreamerctl.config.loader import build_config
from dreamerctl.replay import Replay, place_replay
from dreamerctl.run.allocator import keep_freed_memory
from dreamerctl.run.device import pick_device
from dreamerctl.spaces import ActSpace, Space

ACTION_DIM = 6
POOL = 2  # the synthetic replay holds POOL batches' worth of steps


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small")
    # Shorthands for --set train.loop=..., train.imag_starts=..., run.precision=... (given
    # before the --set ones, so an explicit --set of the same field wins, as in `train`). Left
    # out, the preset's own choice holds (the default preset's: coupled, all, fp32).
    parser.add_argument("--loop", choices=("coupled", "sample_starts"))
    parser.add_argument("--imag-starts", choices=("all", "last"))
    parser.add_argument("--precision", choices=("fp32", "bf16", "auto"))
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--replay-device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where batches are sampled from, as train.replay_device")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override over the preset, as `dreamerctl train --set`")
    parser.add_argument("--no-flops", action="store_true",
                        help="skip counting FLOPs and measuring the matmul peak")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc's malloc thresholds as they are (training sets them)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def synthetic_replay(obs: dict[str, Space], act_space: ActSpace, batch: int, length: int,
                     seed: int, device: str) -> Replay:
    """A replay on `device` holding POOL * B * T random steps of `obs` and `act_space`
    (episodes of 500 steps), sampled the way training samples it: the update's input path is
    the real one (on a GPU, batches are gathered there)."""
    rng = np.random.default_rng(seed)
    spaces = {key: (tuple(space.shape), space.dtype) for key, space in obs.items()}
    spaces.update({"action": ((act_space.size,), "float32"), "reward": ((), "float32"),
                   "is_first": ((), "bool"), "is_last": ((), "bool"),
                   "is_terminal": ((), "bool")})

    def observation(key: str) -> np.ndarray:
        shape, dtype = spaces[key]
        if dtype == "uint8":
            return rng.integers(0, 256, (1, *shape), dtype=np.uint8)
        return rng.normal(size=(1, *shape)).astype(dtype)

    steps = POOL * batch * length
    replay = Replay(spaces, 1, steps, batch, length, seed=seed, device=device)
    for t in range(steps):
        replay.add({
            **{key: observation(key) for key in obs},
            "action": rng.uniform(-1, 1, (1, act_space.size)).astype(np.float32),
            "reward": rng.uniform(0, 1, 1).astype(np.float32),
            "is_first": np.array([t % 500 == 0]), "is_last": np.array([t % 500 == 499]),
            "is_terminal": np.zeros(1, bool),
        })
    return replay


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """run_updates' timing hook: seconds per phase, the device synchronised at each end."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.seconds = {"world_model": 0.0, "actor_critic": 0.0}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        sync(self.device)
        self.seconds[name] += time.perf_counter() - start


def timed_updates(agent: Agent, sample: Callable[[], dict[str, Any]], count: int, loop: str,
                  imag_starts: str) -> tuple[float, float, dict[str, float]]:
    """Seconds in the world-model and actor-critic phases of `count` updates of the real loop
    (run_updates, timed through its hook), and its metrics."""
    timer = PhaseTimer(agent.device)
    metrics = run_updates(agent, sample, count, loop, imag_starts, phase=timer)
    return timer.seconds["world_model"], timer.seconds["actor_critic"], metrics


def count_flops(agent: Agent, sample: Callable[[], dict[str, Any]], loop: str,
                imag_starts: str) -> float:
    """FLOPs of one update (forward and backward matrix products and convolutions, as
    torch.utils.flop_counter counts them; elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        timed_updates(agent, sample, 1, loop, imag_starts)
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 2048,
                seconds: float = 1.0) -> float:
    """Measured FLOP/s of a square matrix product in `dtype` on `device`: the device's
    practical peak for the kind of work the update is made of.

    The side grows from 256 up to `size` while the next product (8x the work) fits in half the
    budget: where `dtype` is emulated (bf16 on an AVX2-only CPU runs at ~1 GFLOP/s, 60x below
    fp32 on an AMD EPYC) one 2048 x 2048 product would take tens of seconds."""
    side = 256
    while True:
        a = torch.randn(side, side, device=device).to(dtype)
        b = torch.randn(side, side, device=device).to(dtype)
        a @ b  # warm-up: one-time kernel set-up
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        once = time.perf_counter() - start
        if side >= size or 8 * once > seconds / 2:
            break
        side *= 2
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
        sync(device)
    return 2 * side**3 * count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    malloc = "default" if args.default_malloc else (
        "keep freed" if keep_freed_memory(quiet=True) else "default")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    given = {"train.loop": args.loop, "train.imag_starts": args.imag_starts,
             "run.precision": args.precision}
    shorthands = [f'{key}="{value}"' for key, value in given.items() if value is not None]
    config = build_config(None, ["dmc_vision", args.preset], [*shorthands, *args.set])
    loop, imag_starts = config.train.loop, config.train.imag_starts
    train, size = config.train, tuple(config.env.size)
    obs, act = {"image": Space((*size, 3), "uint8")}, ActSpace(False, ACTION_DIM)
    agent = Agent.from_config(obs, act, config, device=pick_device(args.device))
    replay_device = place_replay(args.replay_device, agent.device, 0)
    replay = synthetic_replay(obs, act, train.batch_size, train.batch_length, args.seed,
                              replay_device)
    sample = replay.sample
    if agent.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(agent.device)
    start = time.perf_counter()
    timed_updates(agent, sample, args.warmup, loop, imag_starts)
    warmup_s = time.perf_counter() - start  # includes compiling with run.compile
    flops = None if args.no_flops else count_flops(agent, sample, loop, imag_starts)
    start = time.perf_counter()
    wm_s, ac_s, metrics = timed_updates(agent, sample, args.updates, loop, imag_starts)
    total = time.perf_counter() - start
    result = {
        "updates_per_s": args.updates / total,
        "ms_per_update": 1000 * total / args.updates,
        "ms_world_model": 1000 * wm_s / args.updates,
        "ms_actor_critic": 1000 * ac_s / args.updates,
        "device": str(agent.device),
        "device_name": (torch.cuda.get_device_name(agent.device)
                        if agent.device.type == "cuda" else cpu_model()),
        "preset": args.preset, "loop": loop, "imag_starts": imag_starts,
        "precision": agent.precision, "updates": args.updates, "warmup": args.warmup,
        "warmup_s": warmup_s,
        "batch": [train.batch_size, train.batch_length],
        "params": sum(p.numel() for p in agent.parameters() if p.requires_grad),
        "replay_device": replay_device,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        # Everything the process allocated on the GPU: model, optimiser state, activations,
        # the small replay (the `replay` line of a training log gives a full one's size).
        "gpu_peak_mb": (torch.cuda.max_memory_allocated(agent.device) / 2**20
                        if agent.device.type == "cuda" else None),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "compile": config.run.compile, "malloc": malloc,
        "nonfinite": metrics["train/nonfinite"],
        "overrides": args.set,
    }
    if flops is not None:
        achieved = flops * args.updates / total
        peaks = {name: matmul_peak(agent.device, dtype)
                 for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
        result.update({
            "gflop_per_update": flops / 1e9,
            "achieved_gflop_s": achieved / 1e9,
            "peak_gflop_s_fp32": peaks["fp32"] / 1e9,
            "peak_gflop_s_bf16": peaks["bf16"] / 1e9,
            # Against the peak of the precision the update ran in.
            "peak_fraction": achieved / peaks[agent.precision],
        })
    write_result(result, args.json)
    return result


if __name__ == "__main__":
    main()
