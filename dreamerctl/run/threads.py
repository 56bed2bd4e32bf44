"""How many torch threads a process uses (`run.threads`, issue 24).

torch's default is one intra-op thread per core of the machine, and OpenMP's threads spin at
their barriers. For the small models of the `gym` and `dmc_proprio` presets, whose ops take
microseconds, that makes every op wait for its slowest thread: beside one other busy process
on a 2-core machine training ran 35-170x slower (issue 24; RESULTS, "Threads"). One thread
is as fast there and cannot be held up by a descheduled sibling. Larger models gain from every
core they may use, and their ops are long enough that a busy neighbour costs them about its
share.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger("dreamerctl")

# Below this many trainable parameters one thread is as fast as several (measured on 2 cores:
# the gym model, 0.66M, against `small`, 17.9M; RESULTS, "Threads").
SMALL_MODEL = 3_000_000
# Convolutions over batches of 64x64 images are longer ops than a vector model's of the same
# size: the ~2M-parameter `vision_cpu` update took 629 ms on one thread and 446 ms on two
# (one Xeon with AMX, 2 cores, bf16, with two other runs paused). The debug preset's 0.1M pixel
# model is not: beside two busy processes its 200-step Pong run took 232 s on two threads and
# 19 s on one. The cut at 0.5M lies between the two measured models; it is not itself measured.
SMALL_CONV_MODEL = 500_000
CGROUP = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP) -> float | None:
    """CPUs this process's cgroup may use (cgroup v2 cpu.max, or v1 cfs quota/period); None
    where no quota is set or none can be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def usable_cores(root: Path = CGROUP) -> int:
    """The cores this process may run on: its CPU affinity, capped by its cgroup's quota (a
    container's --cpus), not the machine's core count."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    quota = cgroup_quota(root)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def choose_threads(setting: str | int, params: int, processes: int = 1,
                   cores: int | None = None, convolutional: bool = False) -> tuple[int, str]:
    """(threads, why) for `run.threads` = "auto" or a number, a model of `params` trainable
    parameters (with image convolutions or not), and `processes` processes of this job on the
    machine (torchrun's local ranks)."""
    if setting != "auto":
        return int(setting), "run.threads"
    omp = os.environ.get("OMP_NUM_THREADS", "")
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "auto: OMP_NUM_THREADS"
    cores = usable_cores() if cores is None else cores
    if params < (SMALL_CONV_MODEL if convolutional else SMALL_MODEL):
        return 1, (f"auto: a {params / 1e6:.2f}M-parameter model is as fast on one thread and "
                   f"is not stalled by other processes")
    share = max(1, cores // max(1, processes))
    per = f" of {processes} processes" if processes > 1 else ""
    what = f"a {params / 1e6:.2f}M-parameter convolutional model: " \
        if params < SMALL_MODEL else ""
    return share, f"auto: {what}the {cores} usable cores{per}"


def apply_threads(setting: str | int, model: torch.nn.Module, processes: int = 1,
                  quiet: bool = False) -> int:
    """Set torch's intra-op threads by choose_threads for `model` (an nn.Module: its trainable
    parameters count) and log the choice; returns it."""
    import torch

    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    convolutional = any(isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
                        for m in model.modules())
    threads, why = choose_threads(setting, params, processes, convolutional=convolutional)
    torch.set_num_threads(threads)
    log.log(logging.DEBUG if quiet else logging.INFO, "torch threads: %d (%s)", threads, why)
    return threads
