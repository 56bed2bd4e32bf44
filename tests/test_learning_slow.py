"""Opt-in learning check (issue 7: an eval mean of 450 within 30,000 CartPole steps): what a
user gets from `dreamerctl train gym_CartPole-v1 --steps 10000` must balance the pole. About
10-15 minutes on 2 CPU cores, so it only runs with `python -m pytest -m slow`.
benchmarks/learn.py runs the same check over several seeds and writes the learning curves to
benchmarks/RESULTS.md (seed 0 evaluated at 439, 500, 500 after 5,000, 10,000, 15,000 steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import run_cli

STEPS = 10_000
THRESHOLD = 450.0


@pytest.mark.slow
def test_cartpole_reaches_450_within_10000_steps(tmp_path: Path) -> None:
    train = run_cli("train", "gym_CartPole-v1", "--steps", str(STEPS), "--seed", "0",
                    "--logdir", str(tmp_path), timeout=3 * 3600)
    assert train.returncode == 0, train.stderr[-2000:]
    run_dir = train.stdout.strip().splitlines()[-1]
    result = run_cli("eval", "--checkpoint", run_dir, "--episodes", "10", "--seed", "1000",
                     "--json", timeout=1800)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["step"] == STEPS
    assert report["mean"] >= THRESHOLD, report
