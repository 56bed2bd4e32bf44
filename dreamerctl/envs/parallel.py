"""A batch of envs of one task, in worker processes or in-process, with auto-reset and restarts.

Workers use the "spawn" start method: MuJoCo's GL contexts and ALE do not survive fork reliably.
Each worker owns one env and answers (method, args) messages over a pipe. An exception inside an
env comes back as a message, never as a hang; a worker that dies is noticed by polling its
process. A crashed env is restarted (fresh process, new seed) and its episode ends there with
is_last true and is_terminal false (the agent did not die); after `max_crashes` crashes of one
env without a successful step in between, RunError.

Spawned workers import the parent's main script unless it is a module: scripts that use
ParallelEnvs need the usual `if __name__ == "__main__":` guard (the dreamerctl CLI has it).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import signal
import traceback
import weakref
from multiprocessing.connection import Connection
from typing import Any, Final

import numpy as np

from dreamerctl.config.schema import EnvConfig
from dreamerctl.envs.base import Env, Obs
from dreamerctl.envs.registry import check_task, make_env
from dreamerctl.errors import DreamerError, RunError
from dreamerctl.spaces import FLAGS, ActSpace, Space

CONTEXT: Final = "spawn"
POLL_S = 0.05
JOIN_S = 5.0

log = logging.getLogger("dreamerctl")


class EnvFailure(Exception):
    """An exception raised by an env (in a worker or in-process), in picklable form."""

    def __init__(self, error: str, trace: str = "", original: DreamerError | None = None) -> None:
        super().__init__(error)
        self.error = error  # "TypeName: message"
        self.trace = trace
        self.original = original  # user-facing errors (UsageError, ...) are passed on as they are

    @classmethod
    def from_exception(cls, e: BaseException) -> EnvFailure:
        original = e if isinstance(e, DreamerError) else None
        return cls(f"{type(e).__name__}: {e}", traceback.format_exc(), original)

    def __reduce__(self) -> tuple[Any, ...]:
        return EnvFailure, (self.error, self.trace, self.original)


class EnvCrash(RunError):
    """An env of a ParallelEnvs failed: names the task, the env index and the original error."""

    def __init__(self, task: str, index: int, error: str, trace: str = "") -> None:
        super().__init__(f"env {index} of {task} failed: {error}")
        self.task, self.index, self.error, self.trace = task, index, error, trace


def worker_main(conn: Connection, task: str, cfg: EnvConfig, seed: int) -> None:
    """Worker process: build the env, report its spaces, then serve (method, args) messages."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    env = None
    try:
        env = make_env(task, cfg, seed)
        conn.send(("ok", (env.obs_space, env.act_space)))
        while True:
            method, args = conn.recv()
            if method == "close":
                break
            try:
                conn.send(("ok", getattr(env, method)(*args)))
            except Exception as e:
                conn.send(("error", EnvFailure.from_exception(e)))
    except (EOFError, BrokenPipeError):
        pass  # the parent is gone
    except Exception as e:
        conn.send(("error", EnvFailure.from_exception(e)))
    finally:
        if env is not None:
            with contextlib.suppress(Exception):  # a crashed env may fail to close as well
                env.close()
        conn.close()


class Process:
    """One env in a worker process. `send` then `recv`; `recv` raises EnvFailure."""

    def __init__(self, task: str, cfg: EnvConfig, seed: int, index: int) -> None:
        ctx = mp.get_context(CONTEXT)
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=worker_main, args=(child, task, cfg, seed), daemon=True,
            name=f"dreamerctl-env-{index}",
        )
        self.process.start()
        child.close()

    def send(self, method: str, *args: Any) -> None:
        # A dead worker cannot take the message; recv() reports its death.
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send((method, args))

    def recv(self) -> Any:
        while not self.conn.poll(POLL_S):
            if not self.process.is_alive() and not self.conn.poll(0):
                raise EnvFailure(f"worker process died (exit code {self.process.exitcode})")
        try:
            status, payload = self.conn.recv()
        except (EOFError, OSError):
            self.process.join(JOIN_S)
            raise EnvFailure(
                f"worker process died (exit code {self.process.exitcode})"
            ) from None
        if status == "error":
            raise payload
        return payload

    def close(self) -> None:
        """Ask the worker to close its env and exit; terminate it if it does not."""
        self.send("close")

    def join(self) -> None:
        self.process.join(JOIN_S)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(JOIN_S)
        self.conn.close()


class Local:
    """One env in this process, behind the same interface as Process."""

    def __init__(self, task: str, cfg: EnvConfig, seed: int, index: int) -> None:
        self.env: Env | None = None
        self.reply: tuple[str, Any]
        try:
            self.env = make_env(task, cfg, seed)
            self.reply = ("ok", (self.env.obs_space, self.env.act_space))
        except Exception as e:
            self.reply = ("error", EnvFailure.from_exception(e))

    def send(self, method: str, *args: Any) -> None:
        try:
            self.reply = ("ok", getattr(self.env, method)(*args))
        except Exception as e:
            self.reply = ("error", EnvFailure.from_exception(e))

    def recv(self) -> Any:
        status, payload = self.reply
        if status == "error":
            raise payload
        return payload

    def close(self) -> None:
        env, self.env = self.env, None
        if env is not None:
            with contextlib.suppress(Exception):  # a crashed env may fail to close as well
                env.close()

    def join(self) -> None:
        pass


Worker = Process | Local


def shutdown(workers: list[Worker]) -> None:
    """Close every worker: all are asked first, then joined, so they shut down in parallel."""
    for worker in workers:
        worker.close()
    for worker in workers:
        worker.join()


class ParallelEnvs:
    """`num` envs of `task`, seeds seed, seed + 1, ...; batched dicts with a leading (num,) axis.

    Auto-reset: an env whose last returned step had is_last true is reset on the next step() call
    (its action is ignored) and returns the first step of a new episode (is_first true).
    """

    def __init__(
        self, task: str, cfg: EnvConfig, num: int, seed: int, parallel: bool | None = None,
        max_crashes: int = 3,
    ) -> None:
        check_task(task)
        self.task, self.cfg, self.num, self.seed = task, cfg, num, seed
        self.parallel = cfg.parallel and num > 1 if parallel is None else parallel
        self.max_crashes = max_crashes
        self.workers: list[Worker] = [self.start(i, seed + i) for i in range(num)]
        self.finalizer = weakref.finalize(self, shutdown, self.workers)
        spaces = [self.ready(i) for i in range(num)]
        self.obs_space: dict[str, Space] = spaces[0][0]
        self.act_space: ActSpace = spaces[0][1]
        self.done = np.ones(num, dtype=bool)  # is_last of each env's last step: reset is due
        self.last: list[Obs | None] = [None] * num
        self.crashes = [0] * num  # consecutive crashes per env
        self.restarts = [0] * num

    def start(self, index: int, seed: int) -> Worker:
        kind = Process if self.parallel else Local
        return kind(self.task, self.cfg, seed, index)

    def ready(self, index: int) -> tuple[dict[str, Space], ActSpace]:
        """Wait for env `index` to be built; a failure closes all envs and raises."""
        try:
            return self.workers[index].recv()
        except EnvFailure as e:
            self.close()
            if e.original is not None:
                raise e.original from None
            raise EnvCrash(self.task, index, e.error, e.trace) from None

    def reset(self) -> dict[str, np.ndarray]:
        """Reset every env: batched first steps, each key (num, ...)."""
        for worker in self.workers:
            worker.send("reset")
        return self.collect(["reset"] * self.num)

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """actions (num, A) -> batched steps, each key (num, ...); auto-resets finished envs."""
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape != (self.num, self.act_space.size):
            raise ValueError(
                f"actions must have shape {(self.num, self.act_space.size)}, got {actions.shape}"
            )
        methods = ["reset" if done else "step" for done in self.done]
        for worker, method, action in zip(self.workers, methods, actions, strict=True):
            worker.send(method, *([action] if method == "step" else []))
        return self.collect(methods)

    def collect(self, methods: list[str]) -> dict[str, np.ndarray]:
        """Receive every env's reply (all of them, so no pipe is left out of step), then handle
        crashes one env at a time."""
        replies: list[Obs | EnvFailure] = []
        for worker in self.workers:
            try:
                replies.append(worker.recv())
            except EnvFailure as e:
                replies.append(e)
        steps: list[Obs] = []
        for index, (reply, method) in enumerate(zip(replies, methods, strict=True)):
            if isinstance(reply, EnvFailure):
                reply = self.recover(index, reply, method)
            elif method == "step":  # a reset alone does not prove the env works again
                self.crashes[index] = 0
            steps.append(reply)
        self.last = [*steps]
        self.done = np.array([step["is_last"] for step in steps], dtype=bool)
        return stack(steps)

    def recover(self, index: int, failure: EnvFailure, method: str) -> Obs:
        """Restart env `index` after `failure`. A failed step ends the episode (is_last, not
        terminal, reward 0, the last observation again); a failed reset is tried again."""
        self.crashes[index] += 1
        if failure.original is not None or self.crashes[index] >= self.max_crashes:
            self.close()
            if failure.original is not None:
                raise failure.original from None
            raise EnvCrash(
                self.task, index, f"{failure.error} ({self.crashes[index]} crashes in a row)",
                failure.trace,
            )
        log.warning("env %d of %s crashed (%s); restarting it", index, self.task, failure.error)
        self.restart(index)
        last = self.last[index]
        if method == "reset" or last is None:
            self.workers[index].send("reset")
            try:
                step = self.workers[index].recv()
            except EnvFailure as e:
                return self.recover(index, e, "reset")
            return step
        return {**last, "reward": np.float32(0.0), "is_first": False, "is_last": True,
                "is_terminal": False}

    def restart(self, index: int) -> None:
        """Replace env `index` by a fresh one with a new seed (the old one may crash again)."""
        old = self.workers[index]
        old.close()
        old.join()
        self.restarts[index] += 1
        seed = self.seed + index + self.num * self.restarts[index]
        self.workers[index] = self.start(index, seed)
        try:
            self.workers[index].recv()
        except EnvFailure as e:
            self.close()
            raise EnvCrash(self.task, index, f"restart failed: {e.error}", e.trace) from None

    def render(self, index: int) -> np.ndarray:
        """Env `index`'s current full-resolution frame, uint8 (H, W, 3)."""
        self.workers[index].send("render")
        try:
            return self.workers[index].recv()
        except EnvFailure as e:
            if e.original is not None:
                raise e.original from None
            raise EnvCrash(self.task, index, e.error, e.trace) from None

    def close(self) -> None:
        """Close all envs and end the worker processes; safe to call more than once."""
        self.finalizer()

    @property
    def closed(self) -> bool:
        return not self.finalizer.alive

    def __enter__(self) -> ParallelEnvs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stack(steps: list[Obs]) -> dict[str, np.ndarray]:
    """Per-env step dicts -> one dict of arrays with a leading (num,) axis."""
    batch = {key: np.stack([step[key] for step in steps]) for key in steps[0]}
    batch["reward"] = batch["reward"].astype(np.float32)
    for key in FLAGS:
        batch[key] = batch[key].astype(bool)
    return batch
