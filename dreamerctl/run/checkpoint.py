"""Checkpoints: written atomically, read without executing pickled code (SPEC §5).

A checkpoint is one `torch.save` of plain data: tensors, numbers, strings, lists and dicts, so
`torch.load(weights_only=True)` reads it. It carries a format version, the task, the spaces, the
resolved config, the agent state (models, optimisers, normaliser, slow critic), the runner counters,
the replay sampler state and the RNG states.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any, BinaryIO

from dreamerctl.errors import RunError
from dreamerctl.fsutil import atomic_write

FORMAT = "dreamerctl-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically (fsutil.atomic_write)."""
    import torch

    data = {"format": FORMAT, "version": VERSION, **payload}

    def write(f: BinaryIO) -> None:
        try:
            torch.save(data, f)
        except RuntimeError as e:
            # torch.save reports a failed write (disk full, file too large) as a
            # RuntimeError about stream positions; the OSError behind it says what
            # went wrong. Other RuntimeErrors are bugs and stay as they are.
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise

    atomic_write(path, write)


def copy_checkpoint(source: Path, path: Path) -> None:
    """An atomic copy of a checkpoint (a run's best one, or a kept snapshot)."""
    import shutil

    def write(f: BinaryIO) -> None:
        with source.open("rb") as src:
            shutil.copyfileobj(src, f)

    atomic_write(path, write)


def load_checkpoint(path: Path, mmap: bool = False) -> dict[str, Any]:
    """Read a checkpoint safely; every failure is a RunError naming the file."""
    import torch

    if not path.is_file():
        raise RunError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise RunError(f"checkpoint {path} is empty")
    check_container(path)
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before it refuses a file: the error says it.
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        raise RunError(describe_load_error(path, e)) from None
    check_format(path, data)
    return data


def check_container(path: Path) -> None:
    """torch.save writes a zip archive; a bare pickle (the official JAX DreamerV3's
    checkpoint.pkl, say) is another program's file, said so before torch reads it."""
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except PermissionError:
        raise RunError(f"cannot read checkpoint {path}: permission denied") from None
    if head[:1] == b"\x80" and head[:4] != b"PK\x03\x04":
        raise RunError(f"{path} is a plain pickle, not a dreamerctl checkpoint (for example the "
                       "JAX DreamerV3's checkpoint.pkl); it cannot be loaded")


def describe_load_error(path: Path, error: Exception) -> str:
    """One line for a checkpoint that `torch.load(weights_only=True)` rejected."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError) and "GLOBAL" in text:
        # The file asks to import and call something: a checkpoint never does that.
        what = next(line for line in text.splitlines() if "GLOBAL" in line).strip()
        return f"refusing to load {path}: it holds pickled code, not only weights ({what})"
    if isinstance(error, PermissionError):
        return f"cannot read checkpoint {path}: permission denied"
    return f"checkpoint {path} is corrupt or truncated, or not a checkpoint"


def check_format(path: Path, data: Any) -> None:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RunError(f"{path} is not a dreamerctl checkpoint")
    version = data.get("version")
    if version != VERSION:
        raise RunError(
            f"checkpoint {path} has format version {version}, this dreamerctl reads version "
            f"{VERSION}"
        )
    missing = [key for key in ("task", "step", "obs_space", "act_space", "config", "agent")
               if key not in data]
    if missing:
        raise RunError(f"checkpoint {path} lacks {', '.join(missing)}")


def read_meta(path: Path) -> dict[str, Any]:
    """Task, counters and spaces without reading the tensors into memory."""
    data = load_checkpoint(path, mmap=True)
    return {
        "task": data["task"],
        "step": int(data["step"]),
        "frames": int(data.get("frames", data["step"])),
        "obs_space": data["obs_space"],
        "act_space": data["act_space"],
        "config": data["config"],
    }
