"""TensorBoard events beside the JSONL files (`run.tensorboard = true`, issue 21).

The run directory's `tensorboard/` folder gets every metrics line and every finished episode as
scalars (x = env frames, the `frames` of the JSONL files) and the open-loop videos where
TensorBoard's video writer can encode them (it needs moviepy 1.x, in the extra; without it
the videos stay MP4s only). `tensorboard --logdir ~/logdir` then shows every run. The JSONL
files stay the record; this is a view of them. `tensorboard` is an optional extra:
`pip install "dreamerctl[tensorboard]"`.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any

import numpy as np

from dreamerctl.errors import UsageError

log = logging.getLogger("dreamerctl")
FOLDER = "tensorboard"


def has_moviepy_editor() -> bool:
    """torch's add_video needs moviepy.editor, which moviepy 2 removed."""
    try:
        importlib.import_module("moviepy.editor")
    except ImportError:
        return False
    return True


def require_tensorboard() -> None:
    """One error line naming the extra, before any training, where the package is missing."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise UsageError('run.tensorboard needs the tensorboard package: pip install '
                         '"dreamerctl[tensorboard]"') from None


class Events:
    """Writes nothing: a run without TensorBoard, and every rank but rank 0."""

    def scalars(self, record: dict[str, Any], frames: int) -> None:
        pass

    def video(self, name: str, frames: np.ndarray, step: int, fps: int) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardEvents(Events):
    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / FOLDER))
        # TensorBoard encodes videos with moviepy (without it, torch prints a line and writes
        # nothing): say so once, here.
        self.videos = has_moviepy_editor()
        if not self.videos:
            log.info('TensorBoard gets no open-loop videos without moviepy 1.x (pip install '
                     '"dreamerctl[tensorboard]"); they are in openloop/ as MP4')

    def scalars(self, record: dict[str, Any], frames: int) -> None:
        for key, value in record.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if key not in ("step", "frames") and number:
                self.writer.add_scalar(key, value, global_step=frames)

    def video(self, name: str, frames: np.ndarray, step: int, fps: int) -> None:
        """frames (T, H, W, 3) uint8."""
        if not self.videos:
            return
        import torch

        tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None]
        self.writer.add_video(name, tensor, global_step=step, fps=fps)

    def close(self) -> None:
        self.writer.close()


def open_events(enabled: bool, run_dir: Path, main: bool) -> Events:
    if not (enabled and main):
        return Events()
    require_tensorboard()
    return TensorBoardEvents(run_dir)
