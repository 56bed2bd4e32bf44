"""Drive the real CLI in subprocesses for the fault-injection tests: start, watch, signal, kill.

Every subprocess gets its own DREAMERCTL_LOGDIR, one torch thread (two torch processes with two
threads each on two cores are ~25x slower than with one: another process may be training), and
this folder on PYTHONPATH so that `gym_fault_envs:<Id>` tasks import `fault_envs`.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from dreamerctl.run import rundir

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CARTPOLE = "gym_CartPole-v1"


def cli_env(logdir: Path) -> dict[str, str]:
    """The environment of a CLI subprocess: private logdir, one thread, fault envs importable."""
    env = {**os.environ, "DREAMERCTL_LOGDIR": str(logdir), "OMP_NUM_THREADS": "1"}
    env.pop("DREAMERCTL_DEBUG", None)
    paths = [str(HERE), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


def train_args(task: str, *settings: str, steps: int, resume: str | None = None) -> list[str]:
    """`train TASK --preset debug --device cpu --steps N [--set S]... [--resume R]`."""
    args = ["train", task, "--device", "cpu", "--steps", str(steps)]
    args += ["--preset", "debug"] if resume is None else ["--resume", resume]
    for setting in settings:
        args += ["--set", setting]
    return args


def dreamerctl(*args: str, logdir: Path, timeout: float = 180,
               preexec_fn: Callable[[], None] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m dreamerctl ARGS` to the end."""
    return subprocess.run([sys.executable, "-m", "dreamerctl", *args], env=cli_env(logdir),
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec_fn, cwd=cwd or ROOT)


def dreamerctl_all(commands: list[list[str]], logdir: Path,
                   jobs: int = 2) -> list[subprocess.CompletedProcess[str]]:
    """Run several independent commands, `jobs` at a time (most of each is importing torch)."""
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda args: dreamerctl(*args, logdir=logdir), commands))


class Background:
    """`python -m dreamerctl ARGS` running in the background; stderr is collected line by line
    (a thread drains it, so the child never blocks on a full pipe)."""

    def __init__(self, *args: str, logdir: Path, new_session: bool = False) -> None:
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dreamerctl", *args], env=cli_env(logdir), cwd=ROOT,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=new_session,
        )
        self.lines: list[str] = []
        self.out: list[str] = []
        self.readers = [threading.Thread(target=self._drain, args=(pipe, into), daemon=True)
                        for pipe, into in ((self.proc.stderr, self.lines),
                                           (self.proc.stdout, self.out))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _drain(pipe: Any, into: list[str]) -> None:
        for line in pipe:
            into.append(line.rstrip("\n"))

    @property
    def stdout(self) -> str:
        return "\n".join(self.out)

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll `condition` until true; fail with the child's stderr if it ends or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                self.join_readers()
                raise AssertionError(f"process ended ({self.proc.returncode}) before {what}:\n"
                                     f"{self.stderr}")
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"timed out waiting for {what}:\n{self.stderr}")
            time.sleep(0.02)

    def has_line(self, fragment: str) -> bool:
        return any(fragment in line for line in list(self.lines))

    def finish(self, timeout: float = 120) -> int:
        """Wait for the exit; returns the exit code (stdout and stderr are then complete)."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"process did not exit in {timeout}s:\n{self.stderr}") from None
        self.join_readers()
        return self.proc.returncode

    def join_readers(self) -> None:
        for reader in self.readers:
            reader.join(10)

    def kill(self) -> float:
        """SIGKILL; returns the wall time of the kill."""
        moment = time.time()
        self.proc.kill()
        self.proc.wait(30)
        self.join_readers()
        return moment


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_single_error(code: int, expected_code: int, stderr: str, fragment: str) -> str:
    """SPEC §6: the exit code, exactly one `error:` line holding `fragment`, no traceback."""
    assert code == expected_code, (code, stderr)
    lines = error_lines(stderr)
    assert len(lines) == 1, stderr
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in stderr, stderr
    return lines[0]


def run_dirs(logdir: Path, task: str = CARTPOLE) -> list[Path]:
    return sorted((logdir / f"{rundir.PREFIX}{task}").glob("*"))


def only_run_dir(logdir: Path, task: str = CARTPOLE) -> Path:
    dirs = run_dirs(logdir, task)
    assert len(dirs) == 1, dirs
    return dirs[0]


def load_safely(path: Path) -> dict[str, Any]:
    """What SPEC §5 promises of every checkpoint: it loads with weights_only=True."""
    return torch.load(path, map_location="cpu", weights_only=True)


def metric_steps(run_dir: Path, name: str = rundir.METRICS) -> list[int]:
    return [int(record["step"]) for record in rundir.read_jsonl(run_dir / name)]


def loss_logged_after(run_dir: Path, frames: int) -> bool:
    """A metrics line with a training loss at a step past `frames`: updates are running."""
    return any(record["frames"] > frames and "train/loss/actor" in record
               for record in rundir.read_jsonl(run_dir / rundir.METRICS))


def nonfinite_tensors(tree: Any, prefix: str = "") -> list[str]:
    """Paths of the floating tensors in a nested checkpoint structure that hold NaN or inf."""
    if isinstance(tree, torch.Tensor):
        bad = tree.is_floating_point() and not bool(torch.isfinite(tree).all())
        return [prefix] if bad else []
    if isinstance(tree, float):
        return [] if math.isfinite(tree) else [prefix]
    items: Any = tree.items() if isinstance(tree, dict) else (
        enumerate(tree) if isinstance(tree, list | tuple) else [])
    return [path for key, value in items for path in nonfinite_tensors(value, f"{prefix}/{key}")]
