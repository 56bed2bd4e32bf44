"""Memory arithmetic for the replay: fail early instead of being killed when the ring fills."""

from __future__ import annotations

from pathlib import Path

import torch

from dreamerctl.errors import RunError, UsageError

MEMINFO = Path("/proc/meminfo")
_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def format_bytes(n: int | float) -> str:
    """Human-readable binary size: 512 -> "512 B", 1288490188 -> "1.2 GiB"."""
    value = float(n)
    for unit in _UNITS[:-1]:
        if abs(value) < 1024:
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} {_UNITS[-1]}"


def available_memory(meminfo: Path = MEMINFO) -> int | None:
    """MemAvailable from /proc/meminfo in bytes, or None where it cannot be read (not Linux)."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            fields = line.split()
            try:
                return int(fields[1]) * 1024  # The kernel reports kB (KiB).
            except (IndexError, ValueError):
                return None
    return None


def check_memory(bytes_needed: int, capacity: int | None = None, meminfo: Path = MEMINFO) -> None:
    """Raise RunError when a full replay of `bytes_needed` would not fit in available memory.

    The ring is preallocated lazily (untouched pages cost nothing), so without this check a run
    that is too big only dies hours later, when the ring fills. `capacity` (steps) names the
    setting in the message; the check is skipped where MemAvailable cannot be read.
    """
    available = available_memory(meminfo)
    if available is None or bytes_needed <= available:
        return
    what = "replay" if capacity is None else f"replay capacity {capacity} steps"
    raise RunError(
        f"{what} needs {format_bytes(bytes_needed)} but the machine has "
        f"{format_bytes(available)} available; lower train.replay_capacity"
    )


def place_replay(choice: str, train_device: torch.device, needed: int,
                 gpu_free: int | None = None) -> str:
    """Where the replay lives: "cpu" or the training device (a string such as "cuda:0").

    `choice` is train.replay_device. "auto" puts it on the training GPU when the full replay
    (`needed` bytes, allocated up front on a GPU) takes at most a third of the GPU's free memory
    (`gpu_free`, asked of the GPU when not given), so that batches are gathered there without a
    copy per update; otherwise, and always when training on the CPU, it stays in host memory.
    """
    on_gpu = train_device.type == "cuda"
    if choice == "cpu" or (choice == "auto" and not on_gpu):
        return "cpu"
    if not on_gpu:
        raise UsageError("train.replay_device = cuda needs the model on a GPU (run.device)")
    if gpu_free is None:
        gpu_free = torch.cuda.mem_get_info(train_device)[0]
    if choice == "auto":
        return str(train_device) if 3 * needed <= gpu_free else "cpu"
    if needed > gpu_free:
        raise RunError(
            f"the replay needs {format_bytes(needed)} but {train_device} has "
            f"{format_bytes(gpu_free)} free; lower train.replay_capacity or set "
            "train.replay_device = cpu"
        )
    return str(train_device)
