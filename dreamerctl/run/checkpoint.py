"""Checkpoints: written atomically, read without executing pickled code (SPEC §5).

A checkpoint is one `torch.save` of plain data: tensors, numbers, strings, lists and dicts, so
`torch.load(weights_only=True)` reads it. It carries a format version, the task, the spaces, the
resolved config, the agent state (models, optimisers, normaliser, slow critic), the runner counters,
the replay sampler state and the RNG states.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dreamerctl.errors import RunError
from dreamerctl.fsutil import atomic_write
from dreamerctl.spaces import ActSpace, Space

if TYPE_CHECKING:
    import numpy as np
    import torch

FORMAT = "dreamerctl-checkpoint"
VERSION = 1


@dataclass
class Counters:
    """The runner's counters (the payload's `runner`): what a resumed run goes on counting from."""

    updates: int = 0            # updates of each rank (all ranks update in lockstep)
    episodes: int = 0           # finished training episodes, all ranks
    ready_step: int | None = None  # the agent step at which updates began
    clock_remainder: float = 0.0   # the train-ratio clock's fraction of an update
    replayed: int = 0           # replayed steps over all ranks, for the achieved train ratio
    best_eval: float | None = None  # the best eval mean (run.eval_every)
    world_size: int = 1         # ranks that wrote the checkpoint
    # Wall seconds the run's train commands spent up to this checkpoint, summed over resumes
    # (each from building the run to its save); 0 in checkpoints from before it was counted.
    # Time after a command's last save is not counted: a killed command's lost steps are redone.
    seconds: float = 0.0


@dataclass
class Payload:
    """What a checkpoint holds, typed: the runner writes it with `to_payload`; resume, eval,
    record, compare and find-latest read it with `from_payload`, which also fills what older
    checkpoints lack (one place for those defaults)."""

    task: str
    step: int                   # agent steps over all envs of all ranks
    frames: int                 # env frames: step x env.action_repeat
    obs_space: dict[str, Space]
    act_space: ActSpace
    config: dict[str, Any]      # the resolved config as a tree (config_to_dict)
    agent: dict[str, Any]       # Agent.save_state(): models, optimisers, normaliser, slow critic
    runner: Counters = field(default_factory=Counters)
    replay: dict[str, Any] = field(default_factory=dict)  # rank 0's replay sampler state
    rng: dict[str, Any] = field(default_factory=dict)     # rank 0's random states
    saved_at: float = 0.0
    ranks: list[dict[str, Any]] | None = None  # with several ranks: each one's replay and rng

    def to_payload(self) -> dict[str, Any]:
        data = {**self.__dict__, "runner": asdict(self.runner),
                "obs_space": {key: space.to_dict() for key, space in self.obs_space.items()},
                "act_space": self.act_space.to_dict()}
        if self.ranks is None:
            del data["ranks"]
        return data

    @classmethod
    def from_payload(cls, data: dict[str, Any]) -> Payload:
        runner = dict(data.get("runner", {}))
        if "replayed" not in runner:  # before the achieved ratio counted all ranks' steps
            train = data["config"].get("train", {})
            runner["replayed"] = (int(runner.get("updates", 0)) * int(train.get("batch_size", 0))
                                  * int(train.get("batch_length", 0)))
        known = Counters.__dataclass_fields__
        return cls(
            task=str(data["task"]), step=int(data["step"]),
            frames=int(data.get("frames", data["step"])),
            obs_space={key: Space.from_dict(value) for key, value in data["obs_space"].items()},
            act_space=ActSpace.from_dict(data["act_space"]), config=data["config"],
            agent=data["agent"],
            runner=Counters(**{key: value for key, value in runner.items() if key in known}),
            replay=data.get("replay", {}), rng=data.get("rng", {}),
            saved_at=float(data.get("saved_at", 0.0)), ranks=data.get("ranks"))

    def rank_state(self, rank: int) -> dict[str, Any]:
        """Rank `rank`'s replay sampler and RNG states (the top level's with one rank)."""
        if self.ranks is not None:
            return self.ranks[rank]
        return {"replay": self.replay, "rng": self.rng}


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


def read_payload(path: Path, mmap: bool = False) -> Payload:
    """A checkpoint's payload, typed (with `mmap`, its tensors stay on disk until used: for the
    task, counters and spaces alone)."""
    data = load_checkpoint(path, mmap=mmap)
    try:
        return Payload.from_payload(data)
    except (KeyError, TypeError, ValueError) as e:
        raise RunError(f"checkpoint {path} has a malformed entry ({type(e).__name__}: {e})"
                       ) from None


def read_meta(path: Path) -> Payload:
    """Task, counters and spaces without reading the tensors into memory."""
    return read_payload(path, mmap=True)


def capture_rng(device: torch.device, generator: np.random.Generator) -> dict[str, Any]:
    """The random states that drive training: torch's (and, on a GPU, that device's), the
    runner's numpy generator and Python's."""
    import random

    import torch

    state = {"torch": torch.get_rng_state(), "numpy": generator.bit_generator.state,
             "python": list(random.getstate())}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device,
                generator: np.random.Generator) -> None:
    """Restore `capture_rng()`; a GPU state is restored only on a GPU (a run moved between
    devices goes on with that device's seeded generator)."""
    import random

    import torch

    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
    generator.bit_generator.state = state["numpy"]
    random.setstate((state["python"][0], tuple(state["python"][1]), state["python"][2]))
