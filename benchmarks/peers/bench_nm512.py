"""Timing wrapper around NM512/dreamerv3-torch's own update step, on DMC-vision shapes.

    /tmp/nm512env/bin/python benchmarks/peers/bench_nm512.py --repo /tmp/nm512 --json

Run it with the peer's venv python (see README.md here), never dreamerctl's: it imports the
peer's modules (`dreamer`, `tools`) from their checkout at `--repo` and copies none of their
code. The config is their `configs.yaml` `defaults` with `dmc_vision` layered over it, resolved
the way their `dreamer.py` main does (their `tools.args_type`, the `//= action_repeat` steps),
with `device=cpu` and `num_actions=6` (walker). The agent is their `Dreamer`, built and frozen as
their main does; each timed update is one call of their `Dreamer._train(batch)`, which runs
`WorldModel._train` then `ImagBehavior._train`; both are also timed apart by wrapping the two
bound methods on the instances (their files are not touched). Batches are random arrays with
the keys and dtypes their replay yields for DMC walker (uint8 image, float32 proprio, action,
logprob, reward, discount, bool is_first and is_terminal), made before the timer starts: unlike
dreamerctl's `bench_update.py` the time excludes sampling, but includes their numpy-to-tensor
conversion in `preprocess`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import resource
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

# benchmarks/benchio.py: no dreamerctl import, so it loads in the peer's venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchio import cpu_model, write_result

PEER = "NM512/dreamerv3-torch"
ACTION_DIM = 6  # walker's action size
# DMC walker's proprio observations, as their envs/dmc.py shapes them (a scalar becomes (1,)).
# dmc_vision's encoder and decoder ignore them (mlp_keys '$^'), but their replay carries them.
WALKER_PROPRIO = {"orientations": (14,), "height": (1,), "velocity": (9,)}
CONFIG_NAMES = ("defaults", "dmc_vision")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=Path("/tmp/nm512"),
                        help="a checkout of NM512/dreamerv3-torch")
    parser.add_argument("--updates", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps default")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def import_peer(repo: Path) -> tuple[types.ModuleType, types.ModuleType, Any]:
    """Their `dreamer` and `tools` modules and their YAML module, imported from `repo`."""
    sys.path.insert(0, str(repo.resolve()))
    dreamer = importlib.import_module("dreamer")
    tools = importlib.import_module("tools")
    return dreamer, tools, dreamer.yaml


def merge(base: dict[str, Any], layer: dict[str, Any]) -> None:
    """Lay `layer` over `base` in place, nested dicts key by key."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def peer_config(repo: Path, tools: types.ModuleType, yaml: Any) -> argparse.Namespace:
    """Their config for `CONFIG_NAMES` on the CPU, as their main resolves it."""
    configs = yaml.safe_load((repo / "configs.yaml").read_text())
    values: dict[str, Any] = {}
    for name in CONFIG_NAMES:
        merge(values, configs[name])
    values["device"] = "cpu"
    config = argparse.Namespace(
        **{key: tools.args_type(value)(value) for key, value in values.items()})
    for key in ("steps", "eval_every", "log_every", "time_limit"):
        setattr(config, key, getattr(config, key) // config.action_repeat)
    config.num_actions = ACTION_DIM
    return config


def spaces(config: argparse.Namespace) -> tuple[Any, Any]:
    """Observation and action spaces of their DMC walker env at `config.size`."""
    import gym  # the peer's venv has it: their dreamer.py imports it

    obs = {key: gym.spaces.Box(-np.inf, np.inf, shape, dtype=np.float32)
           for key, shape in WALKER_PROPRIO.items()}
    obs["image"] = gym.spaces.Box(0, 255, (*config.size, 3), dtype=np.uint8)
    act = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), dtype=np.float32)
    return gym.spaces.Dict(obs), act


def random_batch(rng: np.random.Generator, config: argparse.Namespace) -> dict[str, np.ndarray]:
    """One batch with the keys and dtypes their `make_dataset` yields for DMC walker."""
    bt = (config.batch_size, config.batch_length)
    batch = {key: rng.normal(size=(*bt, *shape)).astype(np.float32)
             for key, shape in WALKER_PROPRIO.items()}
    is_first = np.zeros(bt, bool)
    is_first[:, 0] = True
    batch.update({
        "image": rng.integers(0, 256, (*bt, *config.size, 3), dtype=np.uint8),
        "action": rng.uniform(-1, 1, (*bt, ACTION_DIM)).astype(np.float32),
        "logprob": rng.normal(size=bt).astype(np.float32),
        "reward": rng.uniform(0, 1, bt).astype(np.float32),
        "discount": np.ones(bt, np.float32),
        "is_first": is_first,
        "is_terminal": np.zeros(bt, bool),
    })
    return batch


def build_agent(dreamer: types.ModuleType, config: argparse.Namespace,
                batches: Iterator[dict[str, np.ndarray]]) -> torch.nn.Module:
    """Their Dreamer, built, moved and frozen as their main does (no logdir is written)."""
    obs_space, act_space = spaces(config)
    logger = types.SimpleNamespace(step=0)  # Dreamer reads only .step; _train logs nothing
    agent = dreamer.Dreamer(obs_space, act_space, config, logger, batches).to(config.device)
    agent.requires_grad_(requires_grad=False)
    return agent


def time_method(owner: Any, name: str, record: list[float]) -> None:
    """Replace `owner.name` on the instance by a wrapper appending each call's seconds."""
    method: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(method)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - start)

    setattr(owner, name, timed)


def run_updates(agent: Any, batches: list[dict[str, np.ndarray]]) -> list[float]:
    """Seconds of each `agent._train(batch)` call."""
    seconds = []
    for batch in batches:
        start = time.perf_counter()
        agent._train(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


def git_commit(repo: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"],
                             capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip()


def shapes(config: argparse.Namespace) -> dict[str, Any]:
    return {
        "image": [*config.size, 3], "action_dim": config.num_actions,
        "batch_size": config.batch_size, "batch_length": config.batch_length,
        "imag_horizon": config.imag_horizon, "dyn_deter": config.dyn_deter,
        "dyn_hidden": config.dyn_hidden, "dyn_stoch": config.dyn_stoch,
        "dyn_discrete": config.dyn_discrete, "units": config.units,
        "cnn_depth": [config.encoder["cnn_depth"], config.decoder["cnn_depth"]],
        "encoder_keys": [config.encoder["cnn_keys"], config.encoder["mlp_keys"]],
        "actor_layers": config.actor["layers"], "critic_layers": config.critic["layers"],
        "precision": config.precision,
    }


def params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def compiled_graphs() -> int | None:
    """Graphs torch.compile actually built (their compile=True wraps modules whose `_train`
    never goes through `forward`, so this stays 0 on their training path)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return None
    return int(counters["stats"].get("unique_graphs", 0))


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dreamer, tools, yaml = import_peer(args.repo)
    config = peer_config(args.repo, tools, yaml)
    tools.set_seed_everywhere(config.seed)
    rng = np.random.default_rng(config.seed)
    batches = [random_batch(rng, config) for _ in range(args.warmup + args.updates)]
    with contextlib.redirect_stdout(sys.stderr):  # their constructors print sizes
        agent = build_agent(dreamer, config, iter(batches))
    wm_s: list[float] = []
    behavior_s: list[float] = []
    time_method(agent._wm, "_train", wm_s)
    time_method(agent._task_behavior, "_train", behavior_s)
    start = time.perf_counter()
    run_updates(agent, batches[:args.warmup])
    warmup_s = time.perf_counter() - start
    wm_s.clear()
    behavior_s.clear()
    seconds = run_updates(agent, batches[args.warmup:])
    result = {
        "peer": PEER, "commit": git_commit(args.repo),
        "configs": list(CONFIG_NAMES), "device": config.device,
        "s_per_update": median(seconds), "all": seconds,
        "s_world_model": median(wm_s), "world_model_all": wm_s,
        "s_behavior": median(behavior_s), "behavior_all": behavior_s,
        "updates": args.updates, "warmup": args.warmup, "warmup_s": warmup_s,
        "threads": torch.get_num_threads(),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch": torch.__version__, "numpy": np.__version__, "cpu": cpu_model(),
        "compile": config.compile, "compiled_graphs": compiled_graphs(),
        "params": {"world_model": params(agent._wm), "actor": params(agent._task_behavior.actor),
                   "value": params(agent._task_behavior.value)},
        "shapes": shapes(config),
        "timed": "Dreamer._train(batch) on a prepared numpy batch (no sampling)",
    }
    write_result(result, args.json)
    return result


if __name__ == "__main__":
    main()
