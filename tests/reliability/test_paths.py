"""Disk and paths: a logdir that is a file, read-only or full is refused before training; a
failed save keeps the previous checkpoint and says so; output paths that are files where a
folder is needed are usage errors; gif never replaces a file without --overwrite.

Tests run as root here, and root writes through chmod 0o500. As root, "read-only" is an
immutable folder (chattr +i: the kernel refuses every write, root's included) and "full" is a
1 MiB tmpfs mounted for the test; where neither is possible those tests are skipped.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from dreamerctl.run import rundir
from dreamerctl.video import write_mp4
from tests.reliability.reliability_tools import (
    CARTPOLE,
    assert_single_error,
    dreamerctl,
    load_safely,
    only_run_dir,
    train_args,
)

CHECKPOINT_LIMIT = 200_000  # bytes: far below a debug checkpoint (~0.5 MB), above everything else


def train_into(logdir: Path) -> list[str]:
    return [*train_args(CARTPOLE, steps=20), "--logdir", str(logdir)]


@contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make `folder` unwritable for this user; yields how."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield "chmod 0o500"
        finally:
            folder.chmod(0o700)
        return
    if shutil.which("chattr") is None or subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("root, and chattr +i is not available here: no way to make a folder "
                    "read-only for root")
    try:
        yield "chattr +i"
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@contextmanager
def tiny_filesystem(folder: Path) -> Iterator[None]:
    """Mount a 1 MiB tmpfs on `folder` (root only), unmounted afterwards."""
    folder.mkdir(parents=True)
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
            capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small filesystem here (needs root and mount)")
    try:
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_read_only_logdir_is_refused_before_training(tmp_path: Path) -> None:
    logdir = tmp_path / "ro"
    with read_only(logdir):
        for target in (logdir, logdir / "sub" / "dir"):
            result = dreamerctl(*train_into(target), logdir=tmp_path)
            assert_single_error(result.returncode, 1, result.stderr,
                                f"logdir {target} is not writable")
        assert list(logdir.iterdir()) == []


def test_full_logdir_is_refused_before_training(tmp_path: Path) -> None:
    logdir = tmp_path / "full"
    with tiny_filesystem(logdir):
        result = dreamerctl(*train_into(logdir), logdir=tmp_path)
        assert_single_error(result.returncode, 1, result.stderr,
                            f"logdir {logdir} has only 1 MiB free")
        assert list(logdir.iterdir()) == []


def test_a_file_where_a_folder_is_needed(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    result = dreamerctl(*train_into(taken), logdir=tmp_path)
    assert_single_error(result.returncode, 2, result.stderr,
                        f"logdir {taken} is an existing file, not a folder")
    result = dreamerctl(*train_into(taken / "runs"), logdir=tmp_path)
    assert_single_error(result.returncode, 2, result.stderr,
                        f"logdir {taken / 'runs'} lies under the file {taken}, not a folder")
    result = dreamerctl("record", "--checkpoint", "none", "--random-agent", "--task", CARTPOLE,
                        "--output", str(taken / "videos"), logdir=tmp_path)
    assert_single_error(result.returncode, 2, result.stderr,
                        f"--output {taken / 'videos'} lies under the file {taken}, not a folder")
    assert taken.read_text() == "not a folder"


def test_gif_never_replaces_a_file_without_overwrite(tmp_path: Path) -> None:
    frames = np.zeros((4, 16, 16, 3), np.uint8)
    videos = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for video in videos:
        write_mp4(video, frames, fps=10)
    target = tmp_path / "mine.gif"
    target.write_bytes(b"precious")
    result = dreamerctl("gif", str(videos[0]), "--output", str(target), logdir=tmp_path)
    assert_single_error(result.returncode, 2, result.stderr,
                        f"{target} already exists; pass --overwrite")
    assert target.read_bytes() == b"precious"
    taken = tmp_path / "notes.txt"
    taken.write_text("x")
    result = dreamerctl("gif", *map(str, videos), "--output", str(taken), logdir=tmp_path)
    assert_single_error(result.returncode, 2, result.stderr,
                        f"--output {taken} is an existing file, not a folder")
    result = dreamerctl("gif", str(videos[0]), "--output", str(target), "--overwrite",
                        logdir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert target.read_bytes()[:3] == b"GIF"


def limit_file_size() -> None:
    """In the child: files may not grow past CHECKPOINT_LIMIT (writes fail with EFBIG, as on a
    full disk; Python ignores SIGXFSZ, so the write fails instead of killing the process)."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (CHECKPOINT_LIMIT, CHECKPOINT_LIMIT))


def test_failed_saves_keep_the_previous_checkpoint(tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    assert dreamerctl(*train_args(CARTPOLE, steps=20), logdir=logdir).returncode == 0
    checkpoint = only_run_dir(logdir) / rundir.CHECKPOINT
    before = checkpoint.read_bytes()
    result = dreamerctl(*train_args(CARTPOLE, "run.save_every=0.2", steps=60, resume="latest"),
                        logdir=logdir, preexec_fn=limit_file_size)
    kept = f"the last good checkpoint is kept in {checkpoint}"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert f"warning: saving {checkpoint} failed (File too large); {kept}" in warnings, (
        result.stderr)
    assert_single_error(result.returncode, 1, result.stderr,
                        f"saving the final checkpoint failed; {kept}")
    assert checkpoint.read_bytes() == before
    assert load_safely(checkpoint)["step"] == 20
    assert sorted(p.name for p in checkpoint.parent.iterdir() if p.name.startswith(".")) == []


def test_unwritable_output_folders_are_one_error_before_any_work(tmp_path: Path) -> None:
    """record, gif and report refuse a folder they cannot write to with one line, before a
    simulator starts or a checkpoint loads (issue 23: ffmpeg's internals, a PermissionError)."""
    clip = tmp_path / "clip.mp4"
    write_mp4(clip, np.zeros((4, 32, 32, 3), np.uint8), fps=10)
    assert dreamerctl(*train_into(tmp_path / "logs"), logdir=tmp_path).returncode == 0
    run_dir = only_run_dir(tmp_path / "logs")
    ro = tmp_path / "ro"
    with read_only(ro):
        commands = {
            "record": ["record", "--checkpoint", "none", "--random-agent", "--task", CARTPOLE,
                       "--output", str(ro / "videos")],
            "gif": ["gif", str(clip), "--output", str(ro / "clip.gif")],
            "report": ["report", str(run_dir), "--output", str(ro / "report.html")],
        }
        for args in commands.values():
            result = dreamerctl(*args, logdir=tmp_path)
            assert_single_error(result.returncode, 2, result.stderr,
                                "cannot write to --output folder")
        assert list(ro.iterdir()) == []
