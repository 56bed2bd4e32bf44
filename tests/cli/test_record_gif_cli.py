"""`dreamerctl record` and `dreamerctl gif` as a user runs them: a subprocess, real files."""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image

from dreamerctl.video import read_frames
from tests.helpers import assert_one_error, run_cli

RECORD = ["record", "--checkpoint", "none", "--random-agent", "--task", "gym_CartPole-v1",
          "--episodes", "2", "--max-steps", "30"]


def gif_frames(path: Path) -> int:
    with Image.open(path) as image:
        return image.n_frames


def test_record_then_gif(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    result = run_cli(*RECORD, "--output", str(videos), "--gif")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "error:" not in result.stderr
    rows = [json.loads(line) for line in (videos / "episodes.jsonl").read_text().splitlines()]
    # stdout holds exactly the MP4 paths, one a line.
    assert result.stdout.splitlines() == [row["path"] for row in rows]
    assert len(rows) == 2
    for row in rows:
        mp4 = Path(row["path"])
        assert mp4.name == f"episode_{row['episode']:03d}_score_{row['score']:.1f}.mp4"
        assert read_frames(mp4).shape == (row["length"] + 1, 400, 600, 3)
        assert mp4.with_suffix(".gif").is_file()

    # The GIFs beside the videos exist: gif refuses to replace them...
    result = run_cli("gif", str(videos), "--stride", "3")
    first_gif = Path(rows[0]["path"]).with_suffix(".gif")
    assert_one_error(result, 2, f"{first_gif} already exists; pass --overwrite")
    assert result.stdout == ""
    # ... writes into another folder ...
    result = run_cli("gif", str(videos), "--stride", "3", "--output", str(tmp_path / "gifs"))
    assert result.returncode == 0, result.stderr
    expected = [tmp_path / "gifs" / (Path(row["path"]).stem + ".gif") for row in rows]
    assert result.stdout.splitlines() == [str(p) for p in expected]
    for row, gif in zip(rows, expected, strict=True):
        assert gif_frames(gif) == math.ceil((row["length"] + 1) / 3)
    # ... clips a long episode with --start and --max-frames ...
    clip = tmp_path / "clip.gif"
    result = run_cli("gif", rows[0]["path"], "--stride", "1", "--start", "2", "--max-frames",
                     "4", "--output", str(clip))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(clip)] and gif_frames(clip) == 4
    # ... and replaces them with --overwrite.
    result = run_cli("gif", str(videos), "--stride", "3", "--overwrite", "--width", "150")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(first_gif), str(first_gif.with_name(
        Path(rows[1]["path"]).stem + ".gif"))]
    with Image.open(first_gif) as image:
        assert image.size == (150, 100) and image.n_frames == math.ceil(
            (rows[0]["length"] + 1) / 3)


def test_record_refuses_to_overwrite(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    assert run_cli(*RECORD, "--episodes", "1", "--output", str(videos)).returncode == 0
    before = sorted(p.name for p in videos.iterdir())
    result = run_cli(*RECORD, "--output", str(videos))
    assert_one_error(result, 2, "already exists; pass --overwrite")
    assert result.stdout == ""
    assert sorted(p.name for p in videos.iterdir()) == before
    # A misspelled checkpoint is named as such, not hidden behind the taken output folder.
    missing = tmp_path / "no_such_checkpoint.pt"
    result = run_cli("record", "--checkpoint", str(missing), "--output", str(videos))
    assert_one_error(result, 1, f"checkpoint not found: {missing}")
    result = run_cli(*RECORD, "--output", str(videos), "--overwrite")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
    assert len(list(videos.glob("episode_*.mp4"))) == 2
    # --append adds to the recording: numbers and env seeds go on, nothing is removed.
    kept = sorted(videos.glob("episode_*.mp4"))
    result = run_cli(*RECORD, "--output", str(videos), "--append", "--episodes", "1")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (videos / "episodes.jsonl").read_text().splitlines()]
    assert [row["episode"] for row in rows] == [0, 1, 2]
    assert rows[2]["seed"] == rows[0]["seed"] + 2
    assert result.stdout.splitlines() == [rows[2]["path"]]
    assert Path(rows[2]["path"]).name.startswith("episode_002_score_")
    assert all(path.is_file() for path in kept)
    result = run_cli(*RECORD, "--output", str(videos), "--append", "--overwrite")
    assert_one_error(result, 2, "--overwrite replaces a recording and --append adds to it")


def test_record_usage_errors(tmp_path: Path) -> None:
    out = str(tmp_path / "v")
    result = run_cli("record", "--checkpoint", "none", "--task", "gym_CartPole-v1", "-o", out)
    assert_one_error(result, 2, "error: --checkpoint none needs --random-agent and --task")
    result = run_cli("record", "--checkpoint", "none", "--random-agent", "-o", out)
    assert_one_error(result, 2, "--checkpoint none needs --random-agent and --task")
    result = run_cli("record", "--checkpoint", "none", "--random-agent", "--task", "gym_NoSuch-v9",
                     "-o", out)
    assert_one_error(result, 2, "NoSuch-v9")
    taken = tmp_path / "taken"
    taken.write_text("x")
    result = run_cli(*RECORD, "--output", str(taken))
    assert_one_error(result, 2, f"--output {taken} is an existing file, not a folder")
    assert not (tmp_path / "v").exists()


def test_gif_errors(tmp_path: Path) -> None:
    result = run_cli("gif", str(tmp_path / "missing.mp4"))
    assert_one_error(result, 2, f"error: no such file or folder: {tmp_path / 'missing.mp4'}")
    result = run_cli("gif", str(tmp_path))
    assert_one_error(result, 2, f"no MP4 files in folder {tmp_path}")
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    result = run_cli("gif", str(fake))
    assert_one_error(result, 1, f"{fake} is not a readable video: ")
    assert result.stdout == ""
    result = run_cli("gif", str(fake), "--stride", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr
