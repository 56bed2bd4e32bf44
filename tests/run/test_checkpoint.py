"""Checkpoints: atomic writes, safe loads, clear errors for every kind of bad file."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from dreamerctl.errors import RunError
from dreamerctl.run.checkpoint import (
    VERSION,
    Counters,
    Payload,
    load_checkpoint,
    read_meta,
    read_payload,
    save_checkpoint,
)
from dreamerctl.spaces import ActSpace, Space

PAYLOAD = {"task": "gym_CartPole-v1", "step": 10, "frames": 10, "obs_space": {},
           "act_space": {"discrete": True, "size": 2},
           "config": {}, "agent": {"w": torch.arange(4.0)}}


def test_round_trip_with_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, PAYLOAD)
    data = torch.load(path, weights_only=True)
    assert data["version"] == VERSION
    assert torch.equal(data["agent"]["w"], torch.arange(4.0))
    assert read_meta(path).step == 10
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


class Exploit:
    def __reduce__(self) -> tuple:
        return (os.system, ("touch pwned",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    torch.save({"format": "dreamerctl-checkpoint", "version": VERSION, "x": Exploit()}, path)
    with pytest.raises(RunError, match=f"refusing to load {path}"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_plain_pickle_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(Exploit()))
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


def test_typed_payload_round_trip_and_the_defaults_of_older_checkpoints(tmp_path: Path) -> None:
    payload = Payload(task="atari_pong", step=7, frames=28,
                      obs_space={"image": Space((64, 64, 3), "uint8")},
                      act_space=ActSpace(True, 6), config={"train": {"batch_size": 2}},
                      agent={"w": torch.ones(2)}, runner=Counters(updates=3, replayed=48,
                                                                   best_eval=1.5, world_size=2),
                      replay={"seed": 1}, rng={"numpy": {}}, saved_at=5.0,
                      ranks=[{"replay": {}, "rng": {}}, {"replay": {"r": 1}, "rng": {}}])
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, payload.to_payload())
    back = read_payload(path)
    assert back.runner == payload.runner and back.obs_space == payload.obs_space
    assert (back.task, back.step, back.frames, back.act_space) == ("atari_pong", 7, 28,
                                                                   ActSpace(True, 6))
    assert back.rank_state(1) == {"replay": {"r": 1}, "rng": {}}
    # A checkpoint of an earlier dreamerctl: no frames, no ranks, counters before replayed,
    # best_eval and world_size existed. Its defaults are those of a run of that time.
    old = {"task": "gym_CartPole-v1", "step": 10, "obs_space": {},
           "act_space": {"discrete": True, "size": 2},
           "config": {"train": {"batch_size": 16, "batch_length": 32}}, "agent": {},
           "runner": {"updates": 4, "episodes": 2, "ready_step": 3, "clock_remainder": 0.5},
           "replay": {"a": 1}, "rng": {"b": 2}}
    read = Payload.from_payload(old)
    assert read.frames == 10 and read.ranks is None
    assert read.runner == Counters(updates=4, episodes=2, ready_step=3, clock_remainder=0.5,
                                   replayed=4 * 16 * 32, best_eval=None, world_size=1)
    assert read.rank_state(0) == {"replay": {"a": 1}, "rng": {"b": 2}}


def test_a_malformed_payload_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {**PAYLOAD, "act_space": {"size": 2}})
    with pytest.raises(RunError, match=f"checkpoint {path} has a malformed entry"):
        read_payload(path)
