"""Durable file operations: the one atomic write of every file dreamerctl keeps (checkpoints,
replay chunks, videos, GIFs, the report page, rewritten JSONL), and the cleanup of the
temporaries a killed writer leaves.

A file is written under a temporary name beside its target, `.<name>.tmp-<pid><suffix>` (hidden;
the pid says whether its writer still runs; the suffix keeps the format a tool infers from the
name, as ffmpeg does), fsynced, renamed over the target, and the folder fsynced: a kill at any
moment leaves the old file or the new one, never a torn one under the final name.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TMP_MARK = ".tmp-"


def temporary_path(target: Path) -> Path:
    """The temporary name of `target` for this process (not created here, so that the file gets
    the umask's mode)."""
    return target.with_name(f".{target.name}{TMP_MARK}{os.getpid()}{target.suffix}")


def fsync_file(path: Path) -> None:
    with path.open("rb") as f:
        os.fsync(f.fileno())


def put_in_place(tmp: Path, target: Path, sync_folder: bool = True) -> None:
    """The durable step of every atomic write: fsync the finished temporary file, rename it over
    `target` (same folder), then fsync the folder unless the caller does that once for many."""
    fsync_file(tmp)
    os.replace(tmp, target)
    if sync_folder:
        fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_path(target: Path, sync_folder: bool = True) -> Iterator[Path]:
    """Yield the temporary path to write `target` through; when the block ends normally it is
    put in place (`put_in_place`); when it raises, the temporary file is removed."""
    tmp = temporary_path(target)
    try:
        yield tmp
        put_in_place(tmp, target, sync_folder)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(target: Path, write: Callable[[BinaryIO], object],
                 sync_folder: bool = True) -> None:
    """`write` into the temporary file of `target`, then put it in place (atomic_path)."""
    with atomic_path(target, sync_folder) as tmp, tmp.open("wb") as f:
        write(f)


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write(target, lambda f: f.write(text.encode()))


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files in `folder` of writers that were killed midway (their process
    is gone); returns them. A live process's temporary file is left alone."""
    removed = []
    for tmp in folder.glob(f".*{TMP_MARK}*"):
        pid = tmp.name.rpartition(TMP_MARK)[2].partition(".")[0]
        if pid.isdigit() and not process_running(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def process_running(pid: int) -> bool:
    """Whether `pid` is a live process; a zombie (exited, not yet reaped) counts as gone."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        # The state follows the parenthesised command name, which may itself hold spaces.
        return stat.read_text().rpartition(")")[2].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def fsync_dir(directory: Path) -> None:
    """Make renames and deletions in `directory` durable (a no-op where unsupported: some
    filesystems refuse fsync on folders; the rename itself is still atomic)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def nearest_existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def folder_problem(folder: Path) -> str | None:
    """Why new files cannot go into `folder` (made with its missing parents), or None.

    Tried, not inferred from permission bits: a temporary file is created and removed in the
    nearest existing folder, which also catches read-only mounts and root on /sys."""
    import tempfile

    existing = nearest_existing(folder)
    if not existing.is_dir():
        return "it is an existing file" if existing == folder else f"{existing} is a file"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        return f"{existing} is not writable ({e.strerror or e})"
    return None
