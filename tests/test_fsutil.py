"""The one atomic write (fsutil) every durable file goes through, and its temporaries' cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dreamerctl.fsutil import (
    atomic_path,
    atomic_write,
    atomic_write_text,
    process_running,
    remove_stale_temporaries,
    temporary_path,
)
from tests.helpers import dead_pid


def test_temporary_name_is_hidden_owned_and_keeps_the_suffix(tmp_path: Path) -> None:
    tmp = temporary_path(tmp_path / "ep_3_score_21.mp4")
    assert tmp.parent == tmp_path
    assert tmp.name == f".ep_3_score_21.mp4.tmp-{os.getpid()}.mp4"  # ffmpeg reads the suffix


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "config.toml"
    target.write_text("old")
    atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert os.listdir(tmp_path) == ["config.toml"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def half(f) -> None:
        f.write(b"half a ")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(target, half)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["checkpoint.pt"]
    with pytest.raises(ValueError), atomic_path(tmp_path / "new.gif") as tmp:
        tmp.write_bytes(b"GIF8")
        raise ValueError("encoder failed")
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_stale_temporaries_of_dead_writers_go_and_live_ones_stay(tmp_path: Path) -> None:
    dead = dead_pid()
    stale = [tmp_path / f".checkpoint.pt.tmp-{dead}",  # dreamerctl 0.1.0's name
             tmp_path / f".00-000000000000-64.npz.tmp-{dead}.npz",
             tmp_path / f".a1b2c3d4.mp4.tmp-{dead}.mp4"]
    live = [temporary_path(tmp_path / "checkpoint.pt"), tmp_path / ".tmp-notapid.mp4",
            tmp_path / "checkpoint.pt"]
    for path in stale + live:
        path.write_bytes(b"x")
    assert sorted(remove_stale_temporaries(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(live)


def test_process_running_sees_zombies_as_gone() -> None:
    assert process_running(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    while process_running(child.pid):
        pass  # exits, then stays a zombie until reaped below: gone either way
    child.wait()
    assert not process_running(child.pid)
    assert not process_running(dead_pid())
