"""Training speed on a busy machine: updates/s alone, beside a busy process, beside a second
training process, for torch's default threads and for `run.threads = "auto"` (issue 24).

    python benchmarks/bench_contention.py --kinds gym small

Two model kinds: `gym` (the `gym` preset on CartPole's shapes: a 4-d vector, 2 discrete
actions) and `small` (`dmc_vision` + `small`: 64x64x3 images, 6 continuous actions). Each
measurement is a fresh child process that builds the agent, fills a synthetic replay, warms up
and then runs the real update loop (`dreamerctl.agent.loops.run_updates`, one update at a
time) for `--seconds`, with its threads chosen by the policy under test: `default` leaves
torch's (one per core), `auto` calls `dreamerctl.run.threads.apply_threads` as training does.
OMP_NUM_THREADS is removed from the children's environment, so that both policies decide.

Scenarios: `alone`; `busy`: beside `python -c "while True: pass"` (one single-threaded busy
process); `pair`: two training children of the same kind and policy at once (their mean).
Prints one JSON line per measurement and a summary (each policy's busy and pair speed as a
fraction of its alone speed, and auto's alone speed against default's).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

KINDS = {
    # kind: (presets, observation, discrete, actions, default seconds)
    "gym": (["gym"], "vector", True, 2, 20.0),
    "small": (["dmc_vision", "small"], "image", False, 6, 60.0),
}
POLICIES = ("default", "auto")
SCENARIOS = ("alone", "busy", "pair")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", nargs="+", choices=tuple(KINDS), default=list(KINDS))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES),
                        help="default, auto, or a thread count")
    parser.add_argument("--scenarios", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=0.0,
                        help="timed seconds per measurement (0: 20 for gym, 60 for small)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "POLICY", "SECONDS"),
                        help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def child(kind: str, policy: str, seconds: float) -> dict[str, Any]:
    """One measurement in this process: updates/s of the real update loop."""
    import torch
    from bench_update import synthetic_replay

    from dreamerctl.agent.agent import Agent
    from dreamerctl.agent.loops import run_updates
    from dreamerctl.config.loader import build_config
    from dreamerctl.run.threads import apply_threads
    from dreamerctl.spaces import ActSpace, Space

    presets, obs_key, discrete, actions, _ = KINDS[kind]
    config = build_config(None, presets, [])
    train = config.train
    obs = ({"vector": Space((4,), "float32")} if obs_key == "vector"
           else {"image": Space((*config.env.size, 3), "uint8")})
    act = ActSpace(discrete, actions)
    torch.manual_seed(0)
    agent = Agent.from_config(obs, act, config)
    if policy != "default":
        apply_threads(policy if policy == "auto" else int(policy), agent, quiet=True)
    replay = synthetic_replay(obs, act, train.batch_size, train.batch_length, 0, "cpu")
    run_updates(agent, replay.sample, 2, train.loop, train.imag_starts)  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run_updates(agent, replay.sample, 1, train.loop, train.imag_starts)
        count += 1
    elapsed = time.perf_counter() - start
    return {"kind": kind, "policy": policy, "threads": torch.get_num_threads(),
            "updates": count, "seconds": elapsed, "updates_per_s": count / elapsed}


def spawn(kind: str, policy: str, seconds: float) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key != "OMP_NUM_THREADS"}
    return subprocess.Popen([sys.executable, __file__, "--child", kind, policy, str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)


def result_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"a measurement exited {process.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def measure(kind: str, policy: str, scenario: str, seconds: float) -> dict[str, Any]:
    busy = None
    if scenario == "busy":
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        runs = [spawn(kind, policy, seconds) for _ in range(2 if scenario == "pair" else 1)]
        results = [result_of(run) for run in runs]
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    rates = [r["updates_per_s"] for r in results]
    return {**results[0], "scenario": scenario, "updates_per_s": sum(rates) / len(rates),
            "each_updates_per_s": rates}


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rate = {(r["kind"], r["policy"], r["scenario"]): r["updates_per_s"] for r in rows}
    out: dict[str, Any] = {}
    for kind, policy, scenario in rate:
        alone = rate.get((kind, policy, "alone"))
        if scenario != "alone" and alone:
            out[f"{kind}/{policy}/{scenario}_vs_alone"] = rate[(kind, policy, scenario)] / alone
    for kind in {r["kind"] for r in rows}:
        auto, default = rate.get((kind, "auto", "alone")), rate.get((kind, "default", "alone"))
        if auto and default:
            out[f"{kind}/auto_alone_vs_default_alone"] = auto / default
    return out


def machine() -> str:
    from benchio import cpu_model

    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.child:
        kind, policy, seconds = args.child
        sys.stdout.write(json.dumps(child(kind, policy, float(seconds))) + "\n")
        return []
    rows = []
    for kind in args.kinds:
        seconds = args.seconds or KINDS[kind][4]
        for policy in args.policies:
            for scenario in args.scenarios:
                row = measure(kind, policy, scenario, seconds)
                rows.append(row)
                sys.stdout.write(json.dumps(row) + "\n")
                sys.stdout.flush()
    sys.stdout.write(json.dumps({"summary": summary(rows), "machine": machine()}) + "\n")
    return rows


if __name__ == "__main__":
    main()
