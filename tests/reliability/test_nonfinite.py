"""Non-finite losses in a real run: rewards turn NaN, so the reward loss does. Those updates are
skipped and counted in `train/nonfinite`; checkpoints stay finite; after train.max_nonfinite
consecutive skips the run stops with exit 1, keeping the last good checkpoint."""

from __future__ import annotations

from pathlib import Path

from dreamerctl.run import rundir
from tests.reliability.reliability_tools import (
    assert_single_error,
    dreamerctl,
    load_safely,
    nonfinite_tensors,
    only_run_dir,
    train_args,
)

TASK = "gym_fault_envs:FaultNan-v0"  # rewards NaN from the 61st step on
NAN_FROM = 60


def test_nan_rewards_skip_updates_then_stop(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    result = dreamerctl(*train_args(TASK, "run.save_every=0.2", "train.max_nonfinite=20",
                                    steps=5000), logdir=logdir)
    run_dir = only_run_dir(logdir, TASK)
    checkpoint = run_dir / rundir.CHECKPOINT
    assert_single_error(result.returncode, 1, result.stderr,
                        "consecutive updates had non-finite losses or gradients, stopping; "
                        f"the last good checkpoint is kept in {checkpoint}")
    metrics = rundir.read_jsonl(run_dir / rundir.METRICS)
    assert any(m.get("train/nonfinite", 0) > 0 for m in metrics)
    assert metrics[-1]["train/nonfinite"] > 0  # the stop writes its metrics line first
    data = load_safely(checkpoint)
    # Saved while NaN rewards were already being trained on, yet nothing non-finite got in.
    assert data["step"] > NAN_FROM + 2, data["step"]
    assert nonfinite_tensors(data["agent"]) == []
