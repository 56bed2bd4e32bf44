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
