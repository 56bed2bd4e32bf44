"""Replay chunk files on disk (SPEC §5 `replay/`).

A chunk holds consecutive steps of one env stream as an uncompressed `.npz`, one array of shape
(L, ...) per key, named `<stream:02d>-<first step index:012d>-<L>.npz`. The step index counts every
step ever added to that stream, so names never repeat across resumes. Chunks are written
atomically (fsutil.atomic_write): after a crash a chunk is either complete or absent. Files that
are still damaged (another writer, a copy gone wrong) are skipped with a warning and renamed to
`*.bad`, so a resume never crashes on them and warns only once.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dreamerctl.fsutil import atomic_write
from dreamerctl.spaces import KeySpaces as Spaces

CHUNK_RE = re.compile(r"^(\d{2,})-(\d{12,})-(\d+)\.npz(\.bad)?$")
BAD_SUFFIX = ".bad"


@dataclass(frozen=True)
class ChunkName:
    """A parsed chunk file name: which stream, which steps [first, first + length)."""

    path: Path
    stream: int
    first: int
    length: int
    bad: bool = False

    @property
    def end(self) -> int:
        return self.first + self.length


def chunk_path(directory: Path, stream: int, first: int, length: int) -> Path:
    return directory / f"{stream:02d}-{first:012d}-{length}.npz"


def parse_name(path: Path) -> ChunkName | None:
    """The chunk a file name describes, or None when the name is not a chunk's."""
    match = CHUNK_RE.match(path.name)
    if match is None:
        return None
    stream, first, length, bad = match.groups()
    return ChunkName(path, int(stream), int(first), int(length), bad is not None)


def list_chunks(directory: Path) -> list[ChunkName]:
    """Every chunk name in `directory` (damaged `*.bad` ones included), sorted by stream, first."""
    names = [parse_name(path) for path in directory.iterdir()]
    return sorted((n for n in names if n is not None), key=lambda n: (n.stream, n.first))


def write_chunk(path: Path, data: dict[str, np.ndarray]) -> None:
    """Write `data` (key -> (L, ...) array) to `path` atomically; the caller fsyncs the folder."""
    # A file object keeps np.savez from appending ".npz".
    savez: Callable[..., None] = np.savez  # numpy's stub takes **data for its keywords
    atomic_write(path, lambda file: savez(file, **data), sync_folder=False)


def read_chunk(name: ChunkName, spaces: Spaces) -> dict[str, np.ndarray] | None:
    """The chunk's arrays, (L, *shape) per key of `spaces`; None (with a warning) if unusable."""
    try:
        with np.load(name.path, allow_pickle=False) as npz:
            data = {key: npz[key] for key in spaces}
        _check(data, name.length, spaces)
    # Any failure (truncated zip, garbage bytes, missing key, wrong shape) must not stop a
    # resume: the chunk is skipped and the rest of the replay loads.
    except Exception as error:
        _quarantine(name.path, f"{type(error).__name__}: {error}")
        return None
    return data


def _check(data: dict[str, np.ndarray], length: int, spaces: Spaces) -> None:
    for key, (shape, dtype) in spaces.items():
        array = data[key]
        if array.shape != (length, *shape) or array.dtype != np.dtype(dtype):
            raise ValueError(
                f"{key!r} is {array.dtype}{list(array.shape)}, expected {dtype}{[length, *shape]}"
            )


def _quarantine(path: Path, reason: str) -> None:
    warnings.warn(f"skipping unreadable replay chunk {path} ({reason})", stacklevel=3)
    # In a read-only folder the chunk stays and is skipped again next time.
    with contextlib.suppress(OSError):
        path.replace(path.with_name(path.name + BAD_SUFFIX))
