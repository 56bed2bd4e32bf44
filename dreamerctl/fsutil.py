"""Durable file operations shared by checkpoints, replay chunks and videos."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


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
