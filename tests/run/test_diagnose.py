"""dreamerctl diagnose on debug runs: every report, continuous and discrete actions, errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dreamerctl.run.diagnose import load_replay
from tests.helpers import assert_one_error, run_cli


def train_debug(task: str, logdir: Path, *sets: str) -> Path:
    """A tiny run of `task` (short episodes, so that the replay holds complete ones)."""
    args = ["train", task, "--preset", "debug", "--steps", "80", "--logdir", str(logdir),
            "--set", "env.time_limit=20", *(a for s in sets for a in ("--set", s))]
    result = subprocess.run([sys.executable, "-m", "dreamerctl", *args], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    (run,) = logdir.glob("dreamer_*/*")
    return run


def test_diagnose_reports_values_policy_model_and_gradient(tmp_path: Path) -> None:
    run = train_debug("gym_Pendulum-v1", tmp_path / "logs", "env.obs_keys=[\"vector\"]")
    result = run_cli("diagnose", str(run), "--json", "--context", "4", "--horizon", "3",
                     "--windows", "8", "--samples", "4", "--last", "50")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["replay_steps"] == 81  # 80 steps' observations and the last one's result
    # 20-step episodes are 21 records (the reset observation first): the last two complete ones.
    assert len(report["values"]) == 2
    for episode in report["values"]:
        assert episode["length"] == 21
        assert len(episode["value"]) == len(episode["return"]) == len(episode["steps"])
        assert episode["return"][-1] == 0.0  # nothing is collected after the last step
    policy = report["policy"]
    assert policy["steps"] == 50
    low, *_, high = policy["std"][0]  # one action dimension, quantiles 0..1 of its std
    assert 0.1 <= low <= high <= 1.0  # actor_critic.min_std, max_std
    assert 0.0 <= policy["at_bound"][0] <= 1.0
    reward = report["reward"]  # Pendulum's reward is never exactly 0
    assert 47 <= reward["steps"] <= 48  # the last 50 steps hold 2 or 3 resets, left out
    assert reward["zero_steps"] == 0 and "phantom_value" not in reward
    assert reward["mae_at_nonzero"] > 0
    # Pendulum never terminates (its time limit is no death): no terminations, all steps live.
    assert report["continue"]["terminals"] == report["continue"]["shown"] == 0
    assert report["continue"]["live_steps"] == 50
    assert 0.0 <= report["continue"]["live_min"] <= report["continue"]["live_mean"] <= 1.0
    model = report["model"]
    assert model["windows"] == 8 and model["after_steps"] == [1, 3]
    for key in ("vector_rmse", "unchanged_rmse"):
        assert [len(row) for row in model[key]] == [3, 3]  # Pendulum: cos, sin, velocity
        assert all(x >= 0 for row in model[key] for x in row)
    assert len(model["posterior_rmse"]) == 3
    rows = report["gradient"]["states"]
    assert len(rows) == 8 and all(len(row["grad_mean"]) == 1 for row in rows)
    assert all(abs(row["grad_mean"][0]) < 1e6 for row in rows)


def test_diagnose_discrete_actions_and_a_missing_checkpoint(tmp_path: Path) -> None:
    run = train_debug("gym_FrozenLake-v1", tmp_path / "logs", "env.obs_keys=[\"vector\"]",
                      "run.keep_every=40")
    result = run_cli("diagnose", str(run / "checkpoint.pt"), "--json", "--context", "4",
                     "--horizon", "3", "--windows", "4")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["step"] == 80 and report["checkpoint"] == str(run / "checkpoint.pt")
    # A kept snapshot is diagnosed as itself, with its run's replay (how a dip is looked into).
    snapshot = run / "checkpoints" / "checkpoint_000000040.pt"
    earlier = run_cli("diagnose", str(snapshot), "--json", "--context", "4", "--horizon", "3",
                      "--windows", "4")
    assert earlier.returncode == 0, earlier.stderr
    assert json.loads(earlier.stdout)["step"] == 40
    assert json.loads(earlier.stdout)["run"] == str(run)
    # ... and on the replay as it was then: the 40 steps collected after it are left out.
    assert json.loads(earlier.stdout)["replay_steps"] == 40
    assert json.loads(earlier.stdout)["replay_steps_after"] == 41  # with the last observation
    assert report["replay_steps"] == 81 and report["replay_steps_after"] == 0
    text = run_cli("diagnose", str(snapshot), "--context", "4", "--horizon", "3", "--windows", "4")
    assert "40 replayed steps (the replay as this checkpoint saw it: the 41 steps collected " \
        "after it are left out)" in text.stdout, text.stdout
    assert report["gradient"] is None  # no dynamics gradient for discrete actions
    share = report["policy"]["action_share"]  # of one-hot actions, each rounded to 3 digits
    assert abs(sum(share) - 1.0) <= 0.0005 * len(share) + 1e-9
    reward = report["reward"]  # FrozenLake's reward is 0 but at the goal
    assert 0 < reward["steps"] < 80  # the resets are left out
    assert reward["zero_steps"] >= reward["steps"] - 2
    assert reward["phantom_value"] == pytest.approx(reward["pred_at_zero_mean"] * 333, rel=0.01)
    # Falling into a hole is a death: the continue head is read at every one in the replay.
    terminal = load_replay(run, {"is_terminal": ((), "bool")})["is_terminal"]
    cont = report["continue"]
    assert cont["terminals"] == cont["shown"] == int(terminal.sum()) >= 1
    assert [row["step"] for row in cont["rows"]] == np.flatnonzero(terminal).tolist()
    probs = [row["p_continue"] for row in cont["rows"]]
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert cont["missed"] == sum(p >= 0.5 for p in probs)
    assert cont["at_terminal_max"] == max(probs)
    assert len(terminal) == 81
    assert cont["live_steps"] == 81 - int(terminal.sum())  # --last 1000 > 81 steps
    assert_one_error(run_cli("diagnose", str(tmp_path)), 1, f"no checkpoint.pt in {tmp_path}")
    bad = tmp_path / "bad.pt"  # named as the user gave it, not as a temporary copy
    bad.write_bytes(b"not a checkpoint")
    assert_one_error(run_cli("diagnose", str(bad)), 1, f"checkpoint {bad} is corrupt")
    assert_one_error(run_cli("diagnose", str(tmp_path / "nope")), 1,
                     f"run directory or checkpoint not found: {tmp_path / 'nope'}")
    text = run_cli("diagnose", "latest", "--windows", "4",
                   env={"DREAMERCTL_LOGDIR": str(tmp_path / "logs")})
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith(f"{run}: checkpoint at step 80")
    for section in ("values (critic V", "policy over the last", "reward head over",
                    f"continue head at the last {cont['shown']} of the replay's",
                    "model open loop over"):
        assert section in text.stdout
