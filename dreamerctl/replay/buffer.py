"""Uniform replay of fixed-length sequences over per-env ring buffers (SPEC §4, §5).

Each env stream owns a ring of `capacity // num_envs` steps per key. The rings are torch tensors
on the replay's device: on the CPU they wrap np.zeros arrays, so untouched pages cost no memory;
on a GPU a sampled batch is gathered where the model trains, and only the B sequence starts
cross from the host (no batch copy per update, issue 8). Steps are addressed by a *logical*
index that only grows (the ring slot is `logical % ring`); a stream holds the logical range
[count - filled, count). A sequence is T consecutive logical indices inside that range, so it
may cross episode boundaries (the RSSM resets at `is_first`) but never the write head, where
the newest step sits next to the oldest.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from dreamerctl.errors import RunError
from dreamerctl.fsutil import fsync_dir, remove_stale_temporaries
from dreamerctl.replay.chunks import (
    ChunkName,
    Spaces,
    chunk_path,
    list_chunks,
    read_chunk,
    write_chunk,
)


class _Saved(NamedTuple):
    """A chunk on disk holding the logical steps [start, start + length) of its stream."""

    path: Path
    start: int
    length: int


class Replay:
    """Replay buffer: `add` one step of every env, `sample` (B, T) sequences uniformly.

    Args:
        spaces: stored key -> (shape, dtype) of one step, e.g. {"image": ((64, 64, 3), "uint8")}.
        num_envs: parallel env streams; `add` takes arrays with leading (num_envs,).
        capacity: total steps over all streams; each stream keeps the newest capacity // num_envs.
        batch_size, batch_length: B and T of a sampled batch.
        seed: seeds the sampler's numpy Generator (saved by `state_dict`).
        directory: where chunks are saved and loaded from; None keeps the replay in memory only.
        chunk: steps per stream in one chunk file.
        device: where the rings live and batches are gathered (default: the CPU).
    """

    def __init__(
        self,
        spaces: Spaces,
        num_envs: int,
        capacity: int,
        batch_size: int,
        batch_length: int,
        seed: int,
        directory: Path | None = None,
        chunk: int = 1024,
        device: torch.device | str = "cpu",
    ) -> None:
        self.spaces: Spaces = {
            key: (tuple(shape), str(dtype)) for key, (shape, dtype) in spaces.items()
        }
        self.num_envs = num_envs
        self.ring = capacity // max(num_envs, 1)
        if num_envs < 1 or self.ring < batch_length or batch_size < 1 or chunk < 1:
            raise ValueError(
                f"replay capacity {capacity} over {num_envs} envs gives {self.ring} steps per env; "
                f"need at least batch_length {batch_length} (and batch_size, chunk >= 1)"
            )
        self.batch_size = batch_size
        self.batch_length = batch_length
        # A chunk longer than the ring would be overwritten before it is written.
        self.chunk = min(chunk, self.ring)
        self.directory = None if directory is None else Path(directory)
        self._rng = np.random.default_rng(seed)
        self.device = torch.device(device)
        # key -> (num_envs, ring, *shape): one ring per env stream, rows of one tensor.
        self._data = {
            key: _zeros((num_envs, self.ring, *shape), dtype, self.device)
            for key, (shape, dtype) in self.spaces.items()
        }
        # The same memory seen as one row of machine words per step, (num_envs * ring, words):
        # gathers and writes then move whole steps (4x faster than per-element indexing).
        self._rows = {key: _as_rows(array.flatten(0, 1)) for key, array in self._data.items()}
        # On the CPU, the same memory as numpy arrays as well.
        self._host = ({key: array.numpy() for key, array in self._data.items()}
                      if self.device.type == "cpu" else {})
        self._steps = torch.arange(batch_length, device=self.device)  # 0 .. T-1
        self._reset()
        self._added = 0
        self._sampled = 0
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Continue the step counter of chunks already there, so no name is ever reused.
            self._next_index = self._scan_next_index()

    def _reset(self) -> None:
        """Empty every stream (the arrays keep their memory; only counters change)."""
        envs = self.num_envs
        self._count = np.zeros(envs, np.int64)  # logical index of the next step
        self._filled = np.zeros(envs, np.int64)  # steps held, <= ring
        self._pending = np.zeros(envs, np.int64)  # logical index of the first unsaved step
        self._next_index = np.zeros(envs, np.int64)  # file step index of that step
        self._saved: list[deque[_Saved]] = [deque() for _ in range(envs)]

    # -- storing -------------------------------------------------------------------------------

    def add(self, step: dict[str, np.ndarray]) -> None:
        """Append one step of every env: key -> (num_envs, *shape); other keys are ignored."""
        missing = sorted(self.spaces.keys() - step.keys())
        if missing:
            raise KeyError(f"replay step lacks keys {missing}")
        envs = np.arange(self.num_envs)
        slots = self._count % self.ring  # (num_envs,)
        rows = None if self._host else self._to_device(envs * self.ring + slots)
        for key, (shape, dtype) in self.spaces.items():
            value = np.asarray(step[key], dtype)
            if value.shape != (self.num_envs, *shape):
                raise ValueError(
                    f"replay key {key!r} has shape {value.shape}, "
                    f"expected {(self.num_envs, *shape)}"
                )
            if self._host:  # numpy writes into the tensors' memory: 4x less overhead per step
                self._host[key][envs, slots] = value
            else:
                assert rows is not None  # device rows, made above when not on the host
                target = self._rows[key]
                target.index_copy_(0, rows, _as_rows(self._to_device(value), target.dtype))
        self._count += 1
        self._filled = np.minimum(self._filled + 1, self.ring)
        self._added += self.num_envs
        if self.directory is not None:
            self._save_streams(np.flatnonzero(self._count - self._pending >= self.chunk))
            self._prune()

    def __len__(self) -> int:
        """Steps stored, all streams together."""
        return int(self._filled.sum())

    @property
    def ready(self) -> bool:
        """True once the replay holds one batch (B * T steps) and one stream a whole sequence."""
        enough = len(self) >= self.batch_size * self.batch_length
        return enough and bool((self._filled >= self.batch_length).any())

    @staticmethod
    def bytes_needed(spaces: Spaces, capacity: int) -> int:
        """Bytes the arrays take once `capacity` steps are stored."""
        per_step = sum(
            math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in spaces.values()
        )
        return capacity * per_step

    # -- sampling ------------------------------------------------------------------------------

    def _to_device(self, array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device, non_blocking=True)

    def sample(self) -> dict[str, Tensor]:
        """A batch of B sequences of T consecutive steps: key -> (B, T, *shape), tensors on the
        replay's device.

        Uniform over every valid start of every stream: a start s is valid when s .. s+T-1 all
        lie in the stream's logical range, so no sequence straddles the write head. The starts
        are drawn on the host (a numpy Generator, saved with checkpoints); the gather runs on
        the device.
        """
        length = self.batch_length
        starts = np.maximum(self._filled - length + 1, 0)  # valid starts per stream
        total = int(starts.sum())
        if total == 0:
            raise RuntimeError(f"replay holds no sequence of {length} steps yet")
        flat = self._rng.integers(0, total, size=self.batch_size)  # (B,)
        bounds = np.cumsum(starts)
        stream = np.searchsorted(bounds, flat, side="right")  # (B,)
        offset = flat - (bounds[stream] - starts[stream])
        first = (self._count[stream] - self._filled[stream] + offset) % self.ring  # (B,) slot
        index = self._to_device(np.stack([stream, first]))  # (2, B): 2B numbers cross
        # Row of each step in the rings seen as one (num_envs * ring, ...) array.
        rows = (index[0, :, None] * self.ring + (index[1, :, None] + self._steps) % self.ring)
        rows = rows.reshape(-1)  # (B * T,)
        self._sampled += 1
        return {key: _from_rows(self._rows[key].index_select(0, rows), array.dtype,
                                (-1, length, *array.shape[2:]))
                for key, array in self._data.items()}

    def state_dict(self) -> dict[str, Any]:
        """Sampler RNG state and counters, as plain python data (fits a weights_only checkpoint)."""
        return {
            "rng": _plain(self._rng.bit_generator.state),
            "added": self._added,
            "sampled": self._sampled,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned; the data itself comes back through `load`."""
        self._rng.bit_generator.state = state["rng"]
        self._added = int(state["added"])
        self._sampled = int(state["sampled"])

    # -- saving --------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every stream's unsaved steps as a (possibly short) chunk."""
        if self.directory is not None:
            self._save_streams(np.flatnonzero(self._count > self._pending))

    def _save_streams(self, streams: np.ndarray) -> None:
        if streams.size == 0 or self.directory is None:
            return
        for stream in streams:
            self._save(int(stream))
        fsync_dir(self.directory)  # once for all renames of this round

    def _save(self, stream: int) -> None:
        """Write logical steps [pending, count) of `stream` to one chunk file."""
        assert self.directory is not None
        start, stop = int(self._pending[stream]), int(self._count[stream])
        slots = torch.arange(start, stop, device=self.device) % self.ring
        data = {key: array[stream, slots].cpu().numpy() for key, array in self._data.items()}
        path = chunk_path(self.directory, stream, int(self._next_index[stream]), stop - start)
        try:
            write_chunk(path, data)
        except OSError as error:
            reason = error.strerror or error
            raise RunError(f"cannot write replay chunk {path}: {reason}") from error
        self._saved[stream].append(_Saved(path, start, stop - start))
        self._next_index[stream] += stop - start
        self._pending[stream] = stop

    def _prune(self) -> None:
        """Delete chunks whose steps have all been overwritten in memory: disk use ~ capacity."""
        oldest = self._count - self._filled
        for stream, saved in enumerate(self._saved):
            while saved and saved[0].start + saved[0].length <= oldest[stream]:
                saved.popleft().path.unlink(missing_ok=True)

    def _scan_next_index(self) -> np.ndarray:
        assert self.directory is not None
        ends = np.zeros(self.num_envs, np.int64)
        for name in list_chunks(self.directory):
            if name.stream < self.num_envs:
                ends[name.stream] = max(ends[name.stream], name.end)
        return ends

    # -- loading -------------------------------------------------------------------------------

    def load(self) -> int:
        """Replace the contents with the chunks in `directory`; returns the steps loaded.

        Keeps the newest capacity // num_envs steps per stream (older chunks are deleted);
        damaged chunks are skipped with a warning; temporary files are removed.
        """
        if self.directory is None:
            return 0
        self._reset()
        remove_stale_temporaries(self.directory)
        chunks = list_chunks(self.directory)
        for stream in range(self.num_envs):
            self._load_stream(stream, [name for name in chunks if name.stream == stream])
        extra = sorted({name.stream for name in chunks if name.stream >= self.num_envs})
        if extra:
            warnings.warn(
                f"ignoring replay chunks of streams {extra} in {self.directory}: "
                f"this run has {self.num_envs} envs",
                stacklevel=2,
            )
        fsync_dir(self.directory)
        return len(self)

    def _load_stream(self, stream: int, names: list[ChunkName]) -> None:
        """Fill the ring from its end backwards, newest chunk first, until it is full.

        The stream then holds the logical range [ring - kept, ring): the same sequences as the
        run that wrote the chunks, so a restored sampler draws the same batches.
        """
        self._next_index[stream] = max((name.end for name in names), default=0)
        kept, newer_first = 0, None
        for name in reversed([name for name in names if not name.bad]):
            if kept == self.ring:
                name.path.unlink(missing_ok=True)  # wholly older than what the ring keeps
                continue
            if newer_first is not None and name.end > newer_first:
                warnings.warn(
                    f"skipping replay chunk {name.path}: overlaps a newer chunk", stacklevel=3
                )
                continue
            data = read_chunk(name, self.spaces)
            if data is None:
                continue
            end = self.ring - kept
            take = min(name.length, end)
            for key, array in self._data.items():
                array[stream, end - take : end] = self._to_device(data[key][name.length - take :])
            if newer_first is not None and name.end < newer_first and "is_first" in self._data:
                # Steps are missing between this chunk and the newer one: start a new episode
                # there, so the model resets instead of stitching two unrelated pieces.
                self._data["is_first"][stream, end] = True
            self._saved[stream].appendleft(_Saved(name.path, end - name.length, name.length))
            kept += take
            newer_first = name.first
        self._count[stream] = self.ring
        self._filled[stream] = kept
        self._pending[stream] = self.ring


def _zeros(shape: tuple[int, ...], dtype: str, device: torch.device) -> Tensor:
    """A zero tensor; on the CPU it shares an np.zeros array, whose pages the kernel maps only
    when they are first written (so a ring costs memory as it fills, not up front)."""
    if device.type == "cpu":
        return torch.from_numpy(np.zeros(shape, dtype))
    return torch.zeros(shape, dtype=torch.from_numpy(np.zeros(0, dtype)).dtype, device=device)


def _as_rows(steps: Tensor, word: torch.dtype | None = None) -> Tensor:
    """A view of (steps, *shape) as (steps, words): each step's bytes as `word`s, by default the
    widest integer type that divides them."""
    flat = steps.reshape(steps.shape[0], -1).view(torch.uint8)  # (steps, bytes)
    if word is None:
        word = next(dtype for dtype, width in _WORDS if flat.shape[1] % width == 0)
    return flat.view(word)


_WORDS = ((torch.int64, 8), (torch.int32, 4), (torch.int16, 2), (torch.uint8, 1))


def _from_rows(rows: Tensor, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    """Gathered rows back as `dtype` steps of `shape`."""
    return rows.view(torch.uint8).view(dtype).reshape(shape)


def _plain(value: Any) -> Any:
    """A copy of nested dicts/lists with numpy scalars turned into python ones."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
