"""Opt-in learning checks, `python -m pytest -m slow` (tens of minutes on 2 CPU cores).

What a user gets from `dreamerctl train gym_CartPole-v1 --steps 10000` must balance the pole,
and keep balancing it (issue 20: on one machine kind an agent reached 500 and then lost it).
The run evaluates itself every 2,500 steps (`run.eval_every`, which changes no training step),
so one straight run shows both. benchmarks/learn.py runs the same check over several seeds and
writes the curves to benchmarks/RESULTS.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

REACH_BY = 10_000   # agent steps: README's main job
HOLD_UNTIL = 20_000
EVERY = 2_500
REACH = 475.0
HOLD = 450.0


@pytest.mark.slow
def test_cartpole_reaches_475_by_10000_steps_and_holds_450_to_20000(tmp_path: Path) -> None:
    train = run_cli("train", "gym_CartPole-v1", "--steps", str(HOLD_UNTIL), "--seed", "0",
                    "--set", f"run.eval_every={EVERY}", "--logdir", str(tmp_path),
                    timeout=4 * 3600)
    assert train.returncode == 0, train.stderr[-2000:]
    run_dir = Path(train.stdout.strip().splitlines()[-1])
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    curve = [(row["step"], row["mean"]) for row in evals]
    assert [step for step, _ in curve] == list(range(EVERY, HOLD_UNTIL + 1, EVERY)), curve
    reached = [step for step, mean in curve if mean >= REACH]
    assert reached and reached[0] <= REACH_BY, curve
    assert all(mean >= HOLD for step, mean in curve if step >= reached[0]), curve
