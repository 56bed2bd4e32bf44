"""Replay: per-env ring buffers, uniform sequence sampling, chunked save and load (SPEC §4, §5)."""

from dreamerctl.replay.buffer import Replay
from dreamerctl.replay.memory import check_memory, format_bytes, place_replay

__all__ = ["Replay", "check_memory", "format_bytes", "place_replay"]
