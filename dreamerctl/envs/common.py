"""Helpers every suite adapter shares: observation keys, image resizing, actions, step dicts."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

from dreamerctl.envs.base import Obs
from dreamerctl.errors import UsageError


def select_keys(task: str, offered: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The observation keys of `wanted` (cfg.obs_keys) that the env offers, in offered order."""
    keys = [key for key in offered if key in wanted]
    if not keys:
        raise UsageError(
            f"task '{task}' offers observations {list(offered)}, but env.obs_keys is "
            f"{list(wanted)}; set env.obs_keys to include one of them"
        )
    return keys


def resize(frame: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """uint8 (h, w, C) or (h, w) -> uint8 (H, W, 3) with (H, W) = size, by area averaging.

    Each output pixel is the mean of the source area it covers, fractional pixels included
    (OpenCV's INTER_AREA, the 2023 code's own resize): Pong's one-pixel ball keeps its mass,
    where PIL's bilinear filter kept 0.70x of its energy. PIL's BOX filter is not this: it
    weighs whole pixels by their centres, 27 grey levels off on a Pong frame (issue 19)."""
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = frame[..., 0]
    height, width = int(size[0]), int(size[1])
    if frame.shape[:2] != (height, width):
        frame = cv2.resize(np.ascontiguousarray(frame), (width, height),
                           interpolation=cv2.INTER_AREA)
    if frame.ndim == 2:  # grey -> RGB
        frame = np.repeat(frame[..., None], 3, axis=-1)
    return np.ascontiguousarray(frame, dtype=np.uint8)


def discrete_index(action: npt.ArrayLike) -> int:
    """One-hot (or any score vector) (A,) -> the chosen index (argmax)."""
    return int(np.argmax(np.asarray(action).reshape(-1)))


def rescale(action: npt.ArrayLike, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Float (A,) in [-1, 1] -> the env's Box bounds, clipped first; unbounded dims pass through."""
    action = np.clip(np.asarray(action, dtype=np.float64).reshape(low.shape), -1.0, 1.0)
    bounded = np.isfinite(low) & np.isfinite(high)
    low, high = np.where(bounded, low, -1.0), np.where(bounded, high, 1.0)
    return low + (action + 1.0) / 2.0 * (high - low)


def step_dict(
    obs: dict[str, np.ndarray], reward: float = 0.0, is_first: bool = False,
    is_last: bool = False, is_terminal: bool = False,
) -> Obs:
    """Observation keys plus the step keys of the env contract (envs/base.py)."""
    return {
        **obs,
        "reward": np.float32(reward),
        "is_first": bool(is_first),
        "is_last": bool(is_last),
        "is_terminal": bool(is_terminal),
    }
