"""Replay buffer: storage, uniform sequence sampling, chunked save/load, memory arithmetic.

Every step carries its stream id and a per-stream counter (the step's index in that stream), so a
sampled sequence is contiguous exactly when its counters rise by one and its stream id is constant.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from dreamerctl.errors import RunError, UsageError
from dreamerctl.replay import Replay, check_memory, format_bytes, place_replay
from tests.helpers import dead_pid

SPACES = {
    "image": ((8, 8, 3), "uint8"),
    "action": ((2,), "float32"),
    "reward": ((), "float32"),
    "is_first": ((), "bool"),
    "is_last": ((), "bool"),
    "is_terminal": ((), "bool"),
    "counter": ((), "int64"),
    "stream": ((), "int32"),
}


def make(capacity: int = 60, num_envs: int = 1, batch: int = 8, length: int = 5, **kw) -> Replay:
    return Replay(SPACES, num_envs, capacity, batch, length, seed=0, **kw)


class Feeder:
    """Adds steps whose content is a function of (stream, counter); episodes of 7 steps."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.counter = 0

    def step(self) -> dict[str, np.ndarray]:
        envs, t = self.num_envs, self.counter
        return {
            "image": np.full((envs, 8, 8, 3), t % 256, np.uint8),
            "action": np.stack([np.full(2, t + 0.5 * e, np.float32) for e in range(envs)]),
            "reward": np.full(envs, t, np.float32),
            "is_first": np.full(envs, t % 7 == 0),
            "is_last": np.full(envs, t % 7 == 6),
            "is_terminal": np.zeros(envs, bool),
            "counter": np.full(envs, t, np.int64),
            "stream": np.arange(envs, dtype=np.int32),
        }

    def fill(self, replay: Replay, steps: int) -> None:
        for _ in range(steps):
            replay.add(self.step())
            self.counter += 1


def assert_contiguous(batch: dict[str, np.ndarray]) -> None:
    assert (np.diff(batch["counter"], axis=1) == 1).all()
    assert (batch["stream"] == batch["stream"][:, :1]).all()
    # Every key comes from the same step as the counter.
    np.testing.assert_array_equal(batch["reward"], batch["counter"].astype(np.float32))
    np.testing.assert_array_equal(batch["image"][..., 0, 0, 0], batch["counter"] % 256)
    np.testing.assert_array_equal(batch["action"][..., 1], batch["counter"] + 0.5 * batch["stream"])


def sample(replay: Replay) -> dict[str, np.ndarray]:
    """A batch as numpy arrays (the replay hands out tensors on its device)."""
    return {key: value.cpu().numpy() for key, value in replay.sample().items()}


def chunk_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_sample_shapes_and_dtypes() -> None:
    replay = make(batch=4, length=6)
    Feeder(1).fill(replay, 20)
    batch = sample(replay)
    assert set(batch) == set(SPACES)
    for key, (shape, dtype) in SPACES.items():
        assert batch[key].shape == (4, 6, *shape), key
        assert batch[key].dtype == np.dtype(dtype), key


def test_sample_hands_out_tensors_on_the_replay_device() -> None:
    replay = make(batch=4, length=6, device="cpu")
    Feeder(1).fill(replay, 20)
    batch = replay.sample()
    assert all(isinstance(value, torch.Tensor) for value in batch.values())
    assert {value.device.type for value in batch.values()} == {"cpu"}
    assert batch["image"].dtype == torch.uint8 and batch["is_first"].dtype == torch.bool
    assert batch["counter"].dtype == torch.int64 and batch["stream"].dtype == torch.int32


def test_add_casts_to_the_stored_dtype() -> None:
    # Envs hand out float64 rewards and python bools; the rings keep their declared dtypes.
    replay = make(batch=2, length=3)
    feeder = Feeder(1)
    for _ in range(5):
        step = feeder.step()
        step["reward"] = step["reward"].astype(np.float64)
        step["is_first"] = step["is_first"].tolist()
        replay.add(step)
        feeder.counter += 1
    batch = sample(replay)
    assert batch["reward"].dtype == np.float32 and batch["is_first"].dtype == np.bool_
    assert_contiguous(batch)


def test_device_write_path_stores_what_the_host_path_stores(tmp_path: Path) -> None:
    # A GPU replay writes steps with torch ops (no numpy view of its memory); run that path on
    # the CPU by dropping the numpy views, and compare with the usual one.
    host = make(capacity=60, num_envs=2, batch=16, length=5, directory=tmp_path / "host")
    device = make(capacity=60, num_envs=2, batch=16, length=5, directory=tmp_path / "device")
    device._host = {}
    Feeder(2).fill(host, 47)
    Feeder(2).fill(device, 47)
    for key in SPACES:
        np.testing.assert_array_equal(device._data[key].numpy(), host._data[key].numpy(), key)
    for _ in range(3):
        expected, got = sample(host), sample(device)
        for key in SPACES:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert_contiguous(got)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="compares a replay on a CUDA device with one on the CPU; no CUDA here")
def test_replay_on_cuda_samples_what_the_cpu_replay_samples(tmp_path: Path) -> None:
    cpu = make(capacity=60, num_envs=2, batch=16, length=5, directory=tmp_path / "cpu")
    gpu = make(capacity=60, num_envs=2, batch=16, length=5, directory=tmp_path / "gpu",
               device="cuda")
    feeders = Feeder(2), Feeder(2)
    feeders[0].fill(cpu, 50)
    feeders[1].fill(gpu, 50)
    for _ in range(3):
        expected, got = cpu.sample(), gpu.sample()
        assert {value.device.type for value in got.values()} == {"cuda"}
        for key in SPACES:
            np.testing.assert_array_equal(got[key].cpu().numpy(), expected[key].numpy())
    cpu.flush()
    gpu.flush()
    assert chunk_files(tmp_path / "cpu") == chunk_files(tmp_path / "gpu")


def test_sequences_are_contiguous_across_episode_boundaries() -> None:
    replay = make(capacity=100, batch=64, length=10)
    Feeder(1).fill(replay, 100)
    batch = sample(replay)
    assert_contiguous(batch)
    # Episodes are 7 steps long, so every 10-step sequence holds an is_first after its start.
    assert batch["is_first"][:, 1:].any(axis=1).all()


def test_start_positions_are_uniform() -> None:
    replay = make(capacity=50, batch=41 * 200, length=10)
    Feeder(1).fill(replay, 50)
    starts = sample(replay)["counter"][:, 0]
    counts = np.bincount(starts, minlength=50)
    assert counts[41:].sum() == 0  # a start after 40 would run past the newest step
    # 200 expected per start, std ~14: a 5-sigma band.
    assert counts[:41].min() > 130 and counts[:41].max() < 270


def test_wrap_never_straddles_the_write_head() -> None:
    replay = make(capacity=23, batch=256, length=6)
    feeder = Feeder(1)
    for _ in range(4 * 23 // 3):
        feeder.fill(replay, 3)
        if not replay.ready:
            continue
        batch = sample(replay)
        assert_contiguous(batch)
        oldest = max(0, feeder.counter - 23)
        assert batch["counter"].min() >= oldest
        assert batch["counter"].max() < feeder.counter
    # After wrapping, both the newest and the oldest full sequence still get sampled.
    starts = set(sample(replay)["counter"][:, 0].tolist())
    assert {feeder.counter - 23, feeder.counter - 6} <= starts
    assert len(replay) == 23


def test_streams_do_not_mix() -> None:
    replay = make(capacity=3 * 20, num_envs=3, batch=300, length=8)
    Feeder(3).fill(replay, 47)  # each 20-step ring wraps twice
    batch = sample(replay)
    assert_contiguous(batch)
    assert set(batch["stream"][:, 0].tolist()) == {0, 1, 2}
    assert len(replay) == 60


def test_ready_needs_one_batch() -> None:
    replay = make(capacity=100, num_envs=2, batch=3, length=5)
    feeder = Feeder(2)
    feeder.fill(replay, 7)  # 14 steps < 3 * 5
    assert not replay.ready
    feeder.fill(replay, 1)  # 16 steps, each stream holds 8 >= 5
    assert replay.ready
    assert make(capacity=100, batch=3, length=5).ready is False


def test_sampling_before_one_sequence_fails() -> None:
    replay = make(length=5)
    Feeder(1).fill(replay, 4)
    with pytest.raises(RuntimeError, match="no sequence"):
        sample(replay)


def test_capacity_smaller_than_a_sequence_is_rejected() -> None:
    with pytest.raises(ValueError, match="batch_length"):
        make(capacity=20, num_envs=4, length=6)


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    first = make(capacity=2 * 30, num_envs=2, batch=16, length=5, directory=tmp_path, chunk=7)
    feeder = Feeder(2)
    feeder.fill(first, 73)  # wraps each 30-step ring twice
    sample(first)
    first.flush()
    state = first.state_dict()
    # The state survives a weights_only checkpoint, as the runner stores it.
    torch.save({"replay": state}, tmp_path.parent / "ckpt.pt")
    state = torch.load(tmp_path.parent / "ckpt.pt", weights_only=True)["replay"]

    second = make(capacity=2 * 30, num_envs=2, batch=16, length=5, directory=tmp_path, chunk=7)
    assert second.load() == len(first) == 60
    second.load_state_dict(state)
    for _ in range(5):
        expected, got = sample(first), sample(second)
        for key in SPACES:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert_contiguous(got)
    assert got["counter"].min() >= 73 - 30


def test_flush_writes_partial_chunks_and_names_continue(tmp_path: Path) -> None:
    replay = make(capacity=100, directory=tmp_path, chunk=10)
    feeder = Feeder(1)
    feeder.fill(replay, 13)
    assert chunk_files(tmp_path) == ["00-000000000000-10.npz"]
    replay.flush()
    replay.flush()  # nothing pending: no empty chunk
    assert chunk_files(tmp_path) == ["00-000000000000-10.npz", "00-000000000010-3.npz"]
    feeder.fill(replay, 10)
    assert chunk_files(tmp_path)[-1] == "00-000000000013-10.npz"
    with np.load(tmp_path / "00-000000000010-3.npz") as chunk:
        np.testing.assert_array_equal(chunk["counter"], [10, 11, 12])
        assert chunk["image"].shape == (3, 8, 8, 3) and chunk["image"].dtype == np.uint8


def test_resume_continues_the_step_counter(tmp_path: Path) -> None:
    replay = make(capacity=100, directory=tmp_path, chunk=10)
    Feeder(1).fill(replay, 25)
    replay.flush()
    resumed = make(capacity=100, directory=tmp_path, chunk=10)
    assert resumed.load() == 25
    Feeder(1).fill(resumed, 10)
    assert chunk_files(tmp_path)[-1] == "00-000000000025-10.npz"
    assert len(chunk_files(tmp_path)) == 4


def test_damaged_chunks_are_skipped_with_a_warning(tmp_path: Path) -> None:
    replay = make(capacity=100, directory=tmp_path, chunk=10)
    Feeder(1).fill(replay, 40)
    truncated = tmp_path / "00-000000000010-10.npz"
    truncated.write_bytes(truncated.read_bytes()[:300])
    garbage = tmp_path / "00-000000000040-10.npz"
    garbage.write_bytes(b"not a zip file" * 10)
    torn = tmp_path / f".00-000000000050-10.npz.tmp-{dead_pid()}.npz"  # its writer was killed
    torn.write_bytes(b"torn")

    resumed = make(capacity=100, directory=tmp_path, chunk=10)
    with pytest.warns(UserWarning) as caught:
        assert resumed.load() == 30
    messages = " ".join(str(w.message) for w in caught)
    assert truncated.name in messages and garbage.name in messages
    assert not torn.exists()
    # Steps 10..19 are missing: the step after the gap starts an episode, so no sequence runs
    # from step 9 into step 20 as if they were consecutive.
    resumed.batch_size = 2000
    batch = sample(resumed)
    counters = batch["counter"]
    assert not ((counters >= 10) & (counters < 20)).any()
    jumps = np.diff(counters, axis=1) != 1
    assert jumps.any()
    assert batch["is_first"][:, 1:][jumps].all()
    # A second resume does not warn again, and new chunks get names past the damaged ones.
    again = make(capacity=100, directory=tmp_path, chunk=10)
    assert again.load() == 30
    Feeder(1).fill(again, 10)
    assert "00-000000000050-10.npz" in chunk_files(tmp_path)


def test_overwritten_chunks_are_pruned(tmp_path: Path) -> None:
    capacity, chunk = 40, 8
    replay = make(capacity=capacity, directory=tmp_path, chunk=chunk)
    feeder = Feeder(1)
    for _ in range(10):
        feeder.fill(replay, 23)
        on_disk = sum(int(name.split("-")[2].split(".")[0]) for name in chunk_files(tmp_path))
        assert on_disk <= capacity + chunk
    replay.flush()
    resumed = make(capacity=capacity, directory=tmp_path, chunk=chunk)
    assert resumed.load() == capacity
    resumed.batch_size = 500
    counters = sample(resumed)["counter"]
    assert counters.min() == 230 - capacity and counters.max() == 229


def test_load_keeps_only_the_newest_steps_of_a_smaller_ring(tmp_path: Path) -> None:
    Feeder(1).fill(make(capacity=100, directory=tmp_path, chunk=10), 50)
    smaller = make(capacity=25, batch=300, directory=tmp_path, chunk=10)
    assert smaller.load() == 25
    counters = sample(smaller)["counter"]
    assert counters.min() == 25 and counters.max() == 49
    # Chunks wholly older than the kept 25 steps are gone.
    assert chunk_files(tmp_path)[0] == "00-000000000020-10.npz"


def test_without_directory_nothing_is_written() -> None:
    replay = make()
    Feeder(1).fill(replay, 30)
    replay.flush()
    assert replay.load() == 0


def test_bytes_needed() -> None:
    spaces = {
        "image": ((64, 64, 3), "uint8"),
        "action": ((2,), "float32"),
        "reward": ((), "float32"),
        "is_first": ((), "bool"),
    }
    assert Replay.bytes_needed(spaces, 1000) == 1000 * (64 * 64 * 3 + 8 + 4 + 1)


def test_check_memory(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  8388608 kB\nMemAvailable:  2097152 kB\n")  # 2 GiB
    check_memory(2 * 1024**3, capacity=10, meminfo=meminfo)
    with pytest.raises(RunError) as error:
        check_memory(5 * 1024**3 + 1024**3 // 10, capacity=400_000, meminfo=meminfo)
    assert str(error.value) == (
        "replay capacity 400000 steps needs 5.1 GiB but the machine has 2.0 GiB available; "
        "lower train.replay_capacity"
    )
    check_memory(10**18, meminfo=tmp_path / "missing")  # unreadable: no check


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(int(1.2 * 1024**3)) == "1.2 GiB"
    assert format_bytes(3 * 1024**4) == "3.0 TiB"


def test_chunk_write_is_atomic(tmp_path: Path) -> None:
    replay = make(capacity=100, directory=tmp_path, chunk=5)
    Feeder(1).fill(replay, 5)
    assert chunk_files(tmp_path) == ["00-000000000000-5.npz"]  # no temporary left behind
    assert os.path.getsize(tmp_path / "00-000000000000-5.npz") > 5 * 8 * 8 * 3


def test_place_replay() -> None:
    gpu, gib = torch.device("cuda", 1), 1024**3
    # Training on the CPU: the replay stays there, whatever auto would like.
    assert place_replay("auto", torch.device("cpu"), 10, None) == "cpu"
    assert place_replay("cpu", gpu, 10, 80 * gib) == "cpu"
    # auto on a GPU: on it while the replay takes at most a third of its free memory.
    assert place_replay("auto", gpu, 12 * gib, 40 * gib) == "cuda:1"
    assert place_replay("auto", gpu, 14 * gib, 40 * gib) == "cpu"
    assert place_replay("cuda", gpu, 14 * gib, 40 * gib) == "cuda:1"
    with pytest.raises(RunError) as error:
        place_replay("cuda", gpu, 50 * gib, 40 * gib)
    assert str(error.value) == ("the replay needs 50.0 GiB but cuda:1 has 40.0 GiB free; lower "
                                "train.replay_capacity or set train.replay_device = cpu")
    with pytest.raises(UsageError, match=r"^train.replay_device = cuda needs the model on a GPU"):
        place_replay("cuda", torch.device("cpu"), 10, None)
