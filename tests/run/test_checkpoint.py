"""Checkpoints: atomic writes, safe loads, clear errors for every kind of bad file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from dreamerctl.errors import RunError
from dreamerctl.run.checkpoint import VERSION, load_checkpoint, read_meta, save_checkpoint

PAYLOAD = {"task": "gym_CartPole-v1", "step": 10, "frames": 10, "obs_space": {}, "act_space": {},
           "config": {}, "agent": {"w": torch.arange(4.0)}}


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, PAYLOAD)
    data = torch.load(path, weights_only=True)
    assert data["version"] == VERSION
    assert torch.equal(data["agent"]["w"], torch.arange(4.0))
    assert read_meta(path)["step"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary left


def test_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, PAYLOAD)

    class Unsaveable:
        def __reduce__(self) -> tuple:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(path, {**PAYLOAD, "step": 11, "bad": Unsaveable()})
    assert load_checkpoint(path)["step"] == 10
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


class Payload:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "dreamerctl-checkpoint", "version": VERSION, "x": Payload()}, path)
    with pytest.raises(RunError, match=f"refusing to load {path}"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_plain_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(RunError, match=str(path)):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "is empty"),
    (b"this is not a checkpoint at all", "corrupt or truncated"),
])
def test_garbage_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(content)
    with pytest.raises(RunError, match=message):
        load_checkpoint(path)


def test_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {**PAYLOAD, "agent": {"w": torch.zeros(10_000)}})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RunError, match=f"checkpoint {path} is corrupt or truncated"):
        load_checkpoint(path)


def test_other_formats_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(RunError, match="is not a dreamerctl checkpoint"):
        load_checkpoint(path)
    torch.save({"format": "dreamerctl-checkpoint", "version": 99}, path)
    with pytest.raises(RunError, match="format version 99, this dreamerctl reads version 1"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
