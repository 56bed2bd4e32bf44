"""run.tensorboard: the same scalars as the JSONL files as TensorBoard events, and one error
line before training where the optional package is missing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dreamerctl.errors import UsageError
from dreamerctl.run import rundir
from dreamerctl.run.train import train_run
from tests.helpers import assert_one_error


def test_events_hold_the_jsonl_scalars(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train_run("gym_CartPole-v1", ["debug"],
                             ["run.steps=60", 'run.device="cpu"', "run.tensorboard=true"],
                             tmp_path, None)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for name in (rundir.METRICS, rundir.SCORES):
        records = rundir.read_jsonl(run_dir / name)
        assert records
        keys = {k for r in records for k, v in r.items()
                if k not in ("step", "frames") and isinstance(v, int | float)}
        assert keys <= tags
        for key in keys:
            points = [(r["frames"], r[key]) for r in records if key in r]  # x: env frames
            logged = [(e.step, e.value) for e in events.Scalars(key)]
            assert [s for s, _ in logged] == [s for s, _ in points]
            assert [v for _, v in logged] == pytest.approx([v for _, v in points], rel=1e-6)


def test_openloop_videos_become_tensorboard_videos(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("moviepy.editor")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = train_run("atari_pong", ["debug"],
                             ["run.steps=40", 'run.device="cpu"', "run.tensorboard=true",
                              "run.report_every=30"], tmp_path, None)
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    # Named by agent step (30, 40); in TensorBoard at env frames, as the scalars (repeat 4).
    videos = sorted(int(p.stem.split("_")[1]) for p in (run_dir / "openloop").glob("*.mp4"))
    assert videos == [30, 40]
    assert [e.step for e in events.Images("openloop")] == [120, 160]
    first = events.Images("openloop")[0]
    assert first.encoded_image_string[:6] in (b"GIF89a", b"GIF87a") and first.width > 64


def test_missing_package_is_one_error_before_training(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # `import tensorboard` fails
    with pytest.raises(UsageError, match=r'pip install "dreamerctl\[tensorboard\]"'):
        train_run("gym_CartPole-v1", ["debug"], ["run.tensorboard=true"], tmp_path, None)
    assert not any(tmp_path.iterdir())  # no run directory was made


def test_cli_error_line_names_the_extra(tmp_path: Path) -> None:
    import subprocess

    code = ("import sys; sys.modules['tensorboard'] = None; "
            "from dreamerctl.cli.app import main; main()")
    result = subprocess.run([sys.executable, "-c", code, "train", "gym_CartPole-v1", "--preset",
                             "debug", "--set", "run.tensorboard=true", "--logdir",
                             str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert_one_error(result, 2, "run.tensorboard needs the tensorboard package")
