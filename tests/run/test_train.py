"""`dreamerctl train` end to end on the debug preset: run directory, clock, resume, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamerctl.run import rundir
from dreamerctl.run.checkpoint import load_checkpoint
from dreamerctl.run.diagnose import load_replay
from dreamerctl.run.train import train_run
from dreamerctl.video import read_frames
from tests.helpers import assert_one_error, run_cli

FAST = ["run.device=cpu"]


def train(tmp_path: Path, task: str, *overrides: str, steps: int = 120) -> Path:
    return train_run(task, ["debug"], [*FAST, f"run.steps={steps}", *overrides],
                          tmp_path / "logdir", resume=None)


def check_run_dir(run_dir: Path, task: str, steps: int, repeat: int) -> dict:
    assert run_dir.parent.name == f"dreamer_{task}"
    for name in ("checkpoint.pt", "config.toml", "metrics.jsonl", "scores.jsonl"):
        assert (run_dir / name).is_file(), name
    data = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert data["task"] == task and data["step"] == steps and data["frames"] == steps * repeat
    metrics = rundir.read_jsonl(run_dir / "metrics.jsonl")
    assert metrics and metrics[-1]["step"] == steps and metrics[-1]["frames"] == steps * repeat
    assert any(key.startswith("train/loss/") for key in metrics[-1])
    for key in ("fps/env", "fps/train", "train/ratio_achieved", "replay/size", "train/updates"):
        assert key in metrics[-1], key
    assert list((run_dir / "replay").glob("*.npz")), "replay chunks are saved"
    return data


def test_cartpole_debug_run(tmp_path: Path) -> None:
    run_dir = train(tmp_path, "gym_CartPole-v1")
    data = check_run_dir(run_dir, "gym_CartPole-v1", 120, 1)
    scores = rundir.read_jsonl(run_dir / "scores.jsonl")
    assert scores and all(s["episode/length"] >= 1 for s in scores)
    # The train-ratio clock: ratio 32 / (2 x 8) = 2 updates per agent step once replay holds a
    # batch (16 steps), from that step on; the checkpoint records when that was.
    ready = data["runner"]["ready_step"]
    assert ready == 16
    assert data["runner"]["updates"] == 2 * (120 - ready + 1)
    # config.toml is usable again as a preset and gives the same config.
    again = train_run("gym_CartPole-v1", [str(run_dir / "config.toml")], ["run.steps=1"],
                           tmp_path / "logdir2", resume=None)
    assert (again / "config.toml").read_text().replace("steps = 1\n", "steps = 120\n") == (
        run_dir / "config.toml").read_text()


def test_nothing_to_train_writes_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """`--steps 0` makes no run directory; a resume whose --steps is not above the run's step
    leaves its checkpoint as it was (issue 23), each with a warning."""
    with caplog.at_level("WARNING", logger="dreamerctl"):
        assert train_run("gym_CartPole-v1", ["debug"], ["run.steps=0"], tmp_path / "empty",
                              resume=None) is None
    assert not (tmp_path / "empty").exists() or not any((tmp_path / "empty").rglob("*.pt"))
    assert "--steps 0: nothing to train" in caplog.text
    run_dir = train(tmp_path, "gym_CartPole-v1", steps=30)
    checkpoint = run_dir / "checkpoint.pt"
    before = (checkpoint.read_bytes(), checkpoint.stat().st_mtime_ns)
    caplog.clear()
    with caplog.at_level("WARNING", logger="dreamerctl"):
        again = train_run("gym_CartPole-v1", [], ["run.steps=20"], tmp_path,
                               resume=str(run_dir))
    assert again == run_dir
    assert (checkpoint.read_bytes(), checkpoint.stat().st_mtime_ns) == before
    assert "is at step 30 and --steps 20 is the total" in caplog.text


def test_atari_debug_run_with_openloop_video(tmp_path: Path) -> None:
    run_dir = train(tmp_path, "atari_pong", "run.report_every=60", steps=80)
    check_run_dir(run_dir, "atari_pong", 80, 4)
    videos = sorted((run_dir / "openloop").glob("openloop_*.mp4"))
    assert [v.name for v in videos] == ["openloop_60.mp4", "openloop_80.mp4"]  # agent steps
    frames = read_frames(videos[-1])
    assert frames.shape[0] == 8  # batch_length
    # three stacked rows (true / predicted / error) of 64x64 tiles with 2 px borders, 2
    # sequences, after a 44 px column naming the rows
    assert frames.shape[1:] == (3 * 68, 44 + 2 * 68, 3)


def test_dmc_debug_run(tmp_path: Path) -> None:
    run_dir = train(tmp_path, "dmc_cartpole_balance", steps=60)
    check_run_dir(run_dir, "dmc_cartpole_balance", 60, 2)


def test_both_loops_and_start_modes_train(tmp_path: Path) -> None:
    for loop, starts in [("sample_starts", "all"), ("coupled", "last")]:
        run_dir = train(tmp_path, "gym_Pendulum-v1", f'train.loop="{loop}"',
                        f'train.imag_starts="{starts}"', "actor_critic.replay_value=0.3",
                        steps=60)
        metrics = rundir.read_jsonl(run_dir / "metrics.jsonl")
        assert metrics[-1]["train/updates"] > 0
        assert np.isfinite(metrics[-1]["train/loss/actor"])
        assert np.isfinite(metrics[-1]["train/loss/critic_replay"])


def test_resume_continues_the_same_run(tmp_path: Path) -> None:
    start = time.monotonic()
    run_dir = train(tmp_path, "gym_CartPole-v1", steps=60)
    first_s = time.monotonic() - start
    first = load_checkpoint(run_dir / "checkpoint.pt")
    scores_before = rundir.read_jsonl(run_dir / "scores.jsonl")
    start = time.monotonic()
    resumed = train_run("gym_CartPole-v1", [], ["run.steps=100"], tmp_path / "logdir",
                             resume="latest")
    second_s = time.monotonic() - start
    assert resumed == run_dir
    second = load_checkpoint(run_dir / "checkpoint.pt")
    assert second["step"] == 100
    # 2 updates per agent step continue from where they were, the fraction included.
    assert second["runner"]["updates"] == first["runner"]["updates"] + 2 * 40
    assert second["runner"]["ready_step"] == first["runner"]["ready_step"]
    # The training time adds up over the commands, each counted within its own wall time.
    assert 0 < first["runner"]["seconds"] < first_s
    assert 0 < second["runner"]["seconds"] - first["runner"]["seconds"] < second_s
    scores_after = rundir.read_jsonl(run_dir / "scores.jsonl")
    assert scores_after[: len(scores_before)] == scores_before
    metrics = rundir.read_jsonl(run_dir / "metrics.jsonl")
    steps = [m["step"] for m in metrics]
    assert steps == sorted(steps) and steps[-1] == 100
    # the replay came back: 60 steps and the first run's last observation before, 100 + 1
    assert [m["replay/size"] for m in metrics if m["step"] == 100] == [101]


def replayed(run_dir: Path) -> dict[str, np.ndarray]:
    """The flags of every step stored in the run's replay, oldest first."""
    return load_replay(run_dir, {"is_first": ((), "bool"), "is_last": ((), "bool")})


def test_an_episode_ending_on_the_last_step_is_scored_and_stored(tmp_path: Path) -> None:
    """The observation a run's last step returns is noted and stored like every other: a run
    that ends on an episode's last step keeps that episode's score and final transition, a run
    that ends mid-episode its last observation, and a resumed run goes on after them."""
    run_dir = train(tmp_path, "gym_Pendulum-v1", "env.time_limit=30", steps=30)
    scores = rundir.read_jsonl(run_dir / "scores.jsonl")
    assert [(s["step"], s["episode/length"]) for s in scores] == [(30, 30)]
    steps = replayed(run_dir)
    assert len(steps["is_first"]) == 31  # the reset observation and 30 steps' results
    np.testing.assert_array_equal(np.flatnonzero(steps["is_first"]), [0])
    np.testing.assert_array_equal(np.flatnonzero(steps["is_last"]), [30])
    train_run("gym_Pendulum-v1", [], ["run.steps=45"], tmp_path / "logdir", resume="latest")
    assert len(rundir.read_jsonl(run_dir / "scores.jsonl")) == 1  # the second is 15 steps in
    steps = replayed(run_dir)
    assert len(steps["is_first"]) == 31 + 16
    np.testing.assert_array_equal(np.flatnonzero(steps["is_first"]), [0, 31])
    np.testing.assert_array_equal(np.flatnonzero(steps["is_last"]), [30])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_resume_on_cuda_goes_on_with_the_gpu_random_state(tmp_path: Path) -> None:
    """The GPU's generator (imagined samples, actions) is saved and restored, so a resumed run
    does not replay the random draws its start made from the seed."""
    from dreamerctl.config import saved_config
    from dreamerctl.run.checkpoint import Payload
    from dreamerctl.run.train import Trainer

    run_dir = train_run("gym_CartPole-v1", ["debug"], ["run.device=cuda", "run.steps=40"],
                             tmp_path / "logdir", resume=None)
    data = load_checkpoint(run_dir / "checkpoint.pt")
    saved = data["rng"]["cuda"]
    torch.cuda.manual_seed(data["config"]["run"]["seed"])
    assert not torch.equal(saved, torch.cuda.get_rng_state()), "the GPU generator has advanced"
    trainer = Trainer("gym_CartPole-v1", saved_config(data["config"], "test"), run_dir,
                      resume=Payload.from_payload(data))
    trainer.build()
    try:
        assert torch.equal(torch.cuda.get_rng_state(trainer.device), saved)
    finally:
        trainer.envs.close()


def test_resume_task_mismatch(tmp_path: Path) -> None:
    from dreamerctl.errors import UsageError

    run_dir = train(tmp_path, "gym_CartPole-v1", steps=30)
    with pytest.raises(UsageError, match="is for task gym_CartPole-v1, not gym_Acrobot-v1"):
        train_run("gym_Acrobot-v1", [], [], tmp_path / "logdir", resume=str(run_dir))


def test_sigint_saves_and_exits_130(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    env = {**os.environ, "DREAMERCTL_LOGDIR": str(logdir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dreamerctl", "train", "gym_CartPole-v1", "--preset", "debug",
         "--steps", "100000", "--device", "cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        metrics = list(logdir.glob("dreamer_*/*/metrics.jsonl"))
        if metrics and metrics[0].read_text().count("train/loss") >= 1:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "error: interrupted by SIGINT; checkpoint saved" in stderr
    assert "Traceback" not in stderr
    (path,) = logdir.glob("dreamer_*/*/checkpoint.pt")
    data = torch.load(path, weights_only=True)
    assert 0 < data["step"] < 100000


def test_cli_train_prints_the_run_dir(tmp_path: Path) -> None:
    from tests.helpers import run_cli

    result = run_cli("train", "gym_CartPole-v1", "--preset", "debug", "--steps", "40",
                     "--device", "cpu", "--logdir", str(tmp_path / "logs"))
    assert result.returncode == 0, result.stderr
    run_dir = Path(result.stdout.strip())
    assert run_dir.parent == tmp_path / "logs" / "dreamer_gym_CartPole-v1"
    assert json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 40


def test_eval_every_writes_evals_keeps_the_best_and_changes_no_training_step(
        tmp_path: Path) -> None:
    plain = train(tmp_path / "plain", "gym_CartPole-v1", steps=90)
    evaluated = train(tmp_path / "eval", "gym_CartPole-v1", "run.eval_every=40", steps=90)
    rows = rundir.read_jsonl(evaluated / rundir.EVALS)
    assert [(r["step"], r["frames"], r["episodes"]) for r in rows] == [(40, 40, 2), (80, 80, 2)]
    assert all(r["mode"] == "sample" and len(r["scores"]) == 2 for r in rows)
    best = load_checkpoint(evaluated / rundir.BEST)
    best_row = max(rows, key=lambda r: r["mean"])
    assert best["step"] == best_row["step"]
    assert best["runner"]["best_eval"] == best_row["mean"]
    # Evaluating forks the random streams: the trained parameters are those of a run without.
    a = load_checkpoint(plain / "checkpoint.pt")["agent"]["modules"]
    b = load_checkpoint(evaluated / "checkpoint.pt")["agent"]["modules"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_keep_every_keeps_the_last_snapshots_that_compare_reads(tmp_path: Path) -> None:
    run_dir = train(tmp_path, "gym_CartPole-v1", "run.keep_every=30", "run.keep_last=2",
                    steps=100)
    kept = rundir.snapshots(run_dir)
    assert [p.name for p in kept] == ["checkpoint_000000060.pt", "checkpoint_000000090.pt"]
    assert [load_checkpoint(p)["step"] for p in kept] == [60, 90]
    assert load_checkpoint(run_dir / "checkpoint.pt")["step"] == 100
    result = run_cli("compare", *map(str, kept), "--episodes", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(row["step"] for row in json.loads(result.stdout)) == [60, 90]
    # `latest` is still the run's own checkpoint, not a snapshot.
    found = run_cli("find-latest", "--logdir", str(run_dir.parent.parent))
    assert found.stdout.strip() == str(run_dir / "checkpoint.pt")


def test_policy_ema_changes_no_training_step_and_is_what_a_checkpoint_acts_with(
        tmp_path: Path) -> None:
    from dreamerctl.run.policy import load_agent

    plain = train(tmp_path / "plain", "gym_CartPole-v1", "run.eval_every=40",
                  "train.policy_ema=0", steps=90)
    averaged = train(tmp_path / "ema", "gym_CartPole-v1", "run.eval_every=40",
                     "train.policy_ema=0.9", steps=90)
    assert "policy_average" not in load_checkpoint(plain / "checkpoint.pt")["agent"]
    saved = load_checkpoint(averaged / "checkpoint.pt")["agent"]
    # Training (the periodic evaluation with the average included) computes the same floats.
    a = load_checkpoint(plain / "checkpoint.pt")["agent"]["modules"]
    assert a.keys() == saved["modules"].keys()
    assert all(torch.equal(a[k], saved["modules"][k]) for k in a)
    assert saved["policy_average"]["count"] == saved["counters"]["actor_critic_updates"] > 1
    # run.eval_every says which parameters acted: the average once it has one.
    assert [row["parameters"] for row in rundir.read_jsonl(averaged / rundir.EVALS)] \
        == ["average", "average"]
    assert [row["parameters"] for row in rundir.read_jsonl(plain / rundir.EVALS)] \
        == ["live", "live"]
    # To act, a loaded agent takes the average; diagnose and --parameters live the live ones.
    acting = load_agent(averaged / "checkpoint.pt", "cpu").agent
    live = load_agent(averaged / "checkpoint.pt", "cpu", parameters="live").agent
    average = saved["policy_average"]["average"]
    for name, param in acting.behavior.actor.named_parameters():
        assert torch.equal(param, average[f"actor.{name}"])
    for name, param in live.behavior.actor.named_parameters():
        assert torch.equal(param, saved["modules"][f"behavior.actor.{name}"])
    assert not all(torch.equal(average[f"actor.{name}"], saved["modules"][f"behavior.actor.{name}"])
                   for name, _ in live.behavior.actor.named_parameters())
    # The critic is not averaged: it only trains.
    assert not any(key.startswith("critic") for key in average)


def test_parameters_option_chooses_the_average_or_the_live_parameters(tmp_path: Path) -> None:
    """eval, compare and record act with the average by default and say which parameters
    acted; `--parameters live` takes the last trained ones (a paired A/B on the same seeds); a
    checkpoint without an average acts with its live parameters either way and says so."""
    plain = train(tmp_path / "plain", "gym_CartPole-v1", "train.policy_ema=0", steps=60)
    averaged = train(tmp_path / "ema", "gym_CartPole-v1", "train.policy_ema=0.9", steps=60)
    ema, no_ema = str(averaged / "checkpoint.pt"), str(plain / "checkpoint.pt")

    def evaluated(path: str, *parameters: str) -> dict:
        result = run_cli("eval", "--checkpoint", path, "--episodes", "2", "--json",
                         "--device", "cpu", *parameters)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    assert evaluated(ema)["parameters"] == "average"
    assert evaluated(ema, "--parameters", "average")["parameters"] == "average"
    assert evaluated(ema, "--parameters", "live")["parameters"] == "live"
    assert evaluated(no_ema, "--parameters", "average")["parameters"] == "live"
    compared = run_cli("compare", ema, no_ema, "--episodes", "1", "--json", "--parameters",
                       "live")
    assert compared.returncode == 0, compared.stderr
    assert [row["parameters"] for row in json.loads(compared.stdout)] == ["live", "live"]
    for parameters in ("average", "live"):
        out = tmp_path / f"videos_{parameters}"
        recorded = run_cli("record", "--checkpoint", ema, "--max-steps", "3", "--output",
                           str(out), "--parameters", parameters)
        assert recorded.returncode == 0, recorded.stderr
        (row,) = rundir.read_jsonl(out / "episodes.jsonl")
        assert row["parameters"] == parameters and row["checkpoint"] == ema
    for command in (("eval", "--checkpoint", ema), ("compare", ema),
                    ("record", "--checkpoint", ema, "--output", str(tmp_path / "refused"))):
        assert_one_error(run_cli(*command, "--parameters", "mean"), 2,
                         "unknown --parameters 'mean': use average or live")
    assert not (tmp_path / "refused").exists()
