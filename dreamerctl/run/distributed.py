"""Data-parallel training under torchrun (issue 9): which rank this process is, and the few
collectives the runner needs to keep every rank in lockstep.

torchrun starts one process per rank with RANK, WORLD_SIZE and LOCAL_RANK set; `join` makes them
one process group (gloo for CPU tensors, NCCL for CUDA ones) and one GPU per rank. Each rank
collects with its own envs into its own replay; the agent averages gradients and gathers returns
(agent/collective.py), so the parameters stay identical. Everything that depends on a clock, a
signal or a file differs between ranks and is decided together here: a rank that skips a
collective the others enter would leave them waiting until the timeout.

Outside torchrun (or with WORLD_SIZE 1) `World()` stands for the single process and every method
is a plain local no-op, so a single-process run is exactly what it was.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from dreamerctl.errors import DreamerError, RunError, UsageError, shared
from dreamerctl.fsutil import process_running

if TYPE_CHECKING:
    import torch

log = logging.getLogger("dreamerctl")
T = TypeVar("T")

TIMEOUT_ENV = "DREAMERCTL_DIST_TIMEOUT"
# Long enough for rank 0 to write a large checkpoint while the others wait, short enough that
# a rank that hangs (rather than dies, which is noticed at once) does not hold GPUs for hours.
DEFAULT_TIMEOUT_S = 600.0
# A lost peer closes its sockets a moment before its process is gone: look for it this long.
LOST_PEER_WAIT_S = 2.0


def launch_rank() -> tuple[int, int]:
    """(rank, world size) that torchrun gave this process; (0, 1) outside torchrun."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0, 1
    if size <= 1 or "LOCAL_RANK" not in os.environ:
        return 0, 1
    return rank, size


def timeout_seconds() -> float:
    """The process-group timeout: $DREAMERCTL_DIST_TIMEOUT seconds, else 600."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise UsageError(f"{TIMEOUT_ENV}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise UsageError(f"{TIMEOUT_ENV} must be positive, got {text}")
    return value


@dataclass(frozen=True)
class World:
    """This process's place in the job: rank, ranks in all, and per node.

    `peers` holds (host, pid) of every rank, so a collective that fails can name the rank whose
    process is gone instead of only saying that a connection closed.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    peers: tuple[tuple[str, int], ...] = ()

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run directory."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    # ----------------------------------------------------------------------------- placement
    def device(self, device: torch.device) -> torch.device:
        """One GPU per rank: a CUDA device becomes cuda:LOCAL_RANK."""
        import torch

        if not self.distributed or device.type != "cuda":
            return device
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise UsageError(
                f"rank {self.rank} needs GPU {self.local_rank} of its node but only {count} are "
                f"visible; start at most {count} ranks per node (--nproc_per_node)"
            )
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def seed(self, seed: int) -> int:
        """This rank's seed for what it samples on its own (actions, replay batches): rank 0
        keeps `seed`, so it draws what a single process would."""
        return seed + 1_000_003 * self.rank

    def replay_dir(self, run_dir: Path) -> Path:
        """Each rank's replay chunks in their own folder (replay/rank_<r>/ with several ranks)."""
        folder = run_dir / "replay"
        return folder / f"rank_{self.rank}" if self.distributed else folder

    # ----------------------------------------------------------------------------- collectives
    def max(self, *values: int) -> list[int]:
        """Each value's maximum over ranks: one small all_reduce (MAX) of all of them."""
        if not self.distributed:
            return list(values)
        import torch
        import torch.distributed as dist

        tensor = torch.tensor(values, dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return [int(value) for value in tensor.tolist()]

    def any(self, *flags: bool) -> list[bool]:
        """Each flag true on at least one rank."""
        return [bool(value) for value in self.max(*(int(flag) for flag in flags))]

    def all_gather(self, obj: T) -> list[T]:
        """Every rank's `obj` (picklable), in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, obj)
        return gathered

    def broadcast(self, obj: T) -> T:
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return cast(T, box[0])

    def from_main(self, fn: Callable[[], T]) -> T:
        """Run `fn` on rank 0 alone and hand its result to every rank.

        A DreamerError there (a bad preset, a missing checkpoint) is raised on every rank, marked
        shared so the job prints it once, instead of leaving the other ranks waiting."""
        if not self.distributed:
            return fn()
        result: Any = None
        failure: tuple[int, str] | None = None
        if self.main:
            try:
                result = fn()
            except DreamerError as e:
                failure = (e.exit_code, str(e))
                self.broadcast((None, failure))
                raise shared(e) from None
        result, failure = self.broadcast((result, failure))
        if failure is not None:
            error = DreamerError(failure[1])
            error.exit_code = failure[0]
            raise shared(error)
        return result

    def broadcast_state(self, module: torch.nn.Module) -> None:
        """Copy rank 0's parameters and buffers to every rank, in place."""
        if not self.distributed:
            return
        import torch
        import torch.distributed as dist

        with torch.no_grad():
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def leave(self, clean: bool) -> None:
        """Leave the process group. After a failure the peers may be gone, and tearing down a
        group with pending work can block: the process is exiting anyway, so skip it."""
        if not self.distributed or not clean:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()

    # ---------------------------------------------------------------------------------- faults
    def lost_ranks(self) -> list[int]:
        """Ranks on this host whose process is gone (exited, killed, or a zombie)."""
        host = socket.gethostname()
        return [rank for rank, (peer_host, pid) in enumerate(self.peers)
                if rank != self.rank and peer_host == host and not process_running(pid)]

    def explain(self, error: BaseException) -> DreamerError | None:
        """A collective that failed because another rank died or hung, as one RunError that
        names the rank; None for any other error (it stays as it is)."""
        if not self.distributed or isinstance(error, DreamerError):
            return None
        if not isinstance(error, RuntimeError):  # torch.distributed.DistError is one
            return None
        deadline = time.monotonic() + LOST_PEER_WAIT_S
        lost = self.lost_ranks()
        while not lost and time.monotonic() < deadline:
            time.sleep(0.1)
            lost = self.lost_ranks()
        if lost:
            names = ", ".join(f"rank {rank} (pid {self.peers[rank][1]})" for rank in lost)
            return RunError(f"{names} stopped, so this rank stops too")
        text = str(error)
        if collective_failure(error, text):
            first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
            return RunError(f"lost contact with the other ranks ({first})")
        return None


def collective_failure(error: BaseException, text: str) -> bool:
    """Whether `error` came out of gloo or NCCL (a peer that closed, reset or timed out)."""
    import torch.distributed as dist

    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    return any(word in text for word in ("gloo", "NCCL", "Connection closed", "Timed out"))


def join() -> World:
    """Join the torchrun job this process belongs to; `World()` outside one.

    The group has a backend per device (gloo for CPU tensors and the runner's small objects,
    NCCL for CUDA ones), so it is set up before the config says where the model will live, and
    a finite timeout, so a rank that stops answering ends the job instead of hanging it.
    """
    rank, size = launch_rank()
    if size == 1:
        return World()
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ["LOCAL_RANK"])
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if cuda and local_rank < torch.cuda.device_count():
        torch.cuda.set_device(local_rank)  # before NCCL touches a device
    backend = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    timeout = datetime.timedelta(seconds=timeout_seconds())
    try:
        dist.init_process_group(backend, timeout=timeout)
        peers: list[Any] = [None] * size
        dist.all_gather_object(peers, (socket.gethostname(), os.getpid()))
    except (RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RunError(f"cannot join the other ranks of the torchrun job: {first}") from e
    if rank == 0:
        log.info("data-parallel training on %d ranks (%s)", size, backend)
    return World(rank, size, local_rank, local_size, tuple(tuple(peer) for peer in peers))


def state_digest(state: Mapping[str, Any]) -> str:
    """SHA-256 of a state dict's names and tensor bytes: equal digests on every rank mean
    bitwise-equal parameters and buffers."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in state.items():
        digest.update(name.encode())
        data = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
