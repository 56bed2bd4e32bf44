"""Device selection: `auto` picks CUDA when present and says so."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dreamerctl.errors import UsageError

if TYPE_CHECKING:
    import torch

log = logging.getLogger("dreamerctl")


def pick_device(name: str) -> torch.device:
    import torch

    has_cuda = torch.cuda.is_available()
    if name == "auto":
        if has_cuda:
            log.info("using CUDA device %s", torch.cuda.get_device_name(0))
            return torch.device("cuda")
        return torch.device("cpu")
    if name == "cuda":
        if not has_cuda:
            raise UsageError("--device cuda was asked for but no CUDA device is available")
        return torch.device("cuda")
    if name == "cpu":
        if has_cuda:
            log.warning("a CUDA device is present but --device cpu forces the CPU")
        return torch.device("cpu")
    raise UsageError(f"unknown device '{name}': use auto, cpu or cuda")
