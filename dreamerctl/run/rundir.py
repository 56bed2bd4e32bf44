"""The run directory of SPEC §5 and how `latest` finds checkpoints in it.

    <logdir>/dreamer_<task>/<YYYYmmdd-HHMMSS>/
        checkpoint.pt, config.toml, metrics.jsonl, scores.jsonl, openloop/, replay/
        eval.jsonl and checkpoint_best.pt with run.eval_every
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamerctl.errors import RunError, UsageError

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.toml"
METRICS = "metrics.jsonl"
SCORES = "scores.jsonl"
EVALS = "eval.jsonl"  # run.eval_every's results, one line per evaluation
BEST = "checkpoint_best.pt"  # a copy of the checkpoint at the best eval mean
SNAPSHOTS = "checkpoints"  # run.keep_every's copies: checkpoints/checkpoint_<step>.pt


def snapshot_path(run_dir: Path, step: int) -> Path:
    return run_dir / SNAPSHOTS / f"checkpoint_{step:09d}.pt"


def run_dir_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint file belongs to: its folder, or the one above for a kept
    snapshot (checkpoints/checkpoint_<step>.pt)."""
    folder = checkpoint.parent
    return folder.parent if folder.name == SNAPSHOTS else folder


def snapshots(run_dir: Path) -> list[Path]:
    """A run's kept snapshots, oldest first (their names sort by step)."""
    return sorted((run_dir / SNAPSHOTS).glob("checkpoint_*.pt"))
PREFIX = "dreamer_"

log = logging.getLogger("dreamerctl")


def new_run_dir(logdir: Path, task: str) -> Path:
    """Create `<logdir>/dreamer_<task>/<timestamp>/`, never reusing an existing folder."""
    parent = logdir / f"{PREFIX}{task}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for attempt in range(1000):
        path = parent / (stamp if attempt == 0 else f"{stamp}-{attempt}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            continue
    raise RunError(f"cannot create a new run directory under {parent}")


def task_of_run_dir(run_dir: Path) -> str | None:
    name = run_dir.parent.name
    return name[len(PREFIX):] if name.startswith(PREFIX) else None


@dataclass(frozen=True)
class Found:
    """A checkpoint that `latest` resolved to."""

    path: Path
    run_dir: Path
    task: str
    step: int
    frames: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "run_dir": str(self.run_dir), "task": self.task,
                "step": self.step, "frames": self.frames}


def checkpoints_under(logdir: Path, task: str | None = None) -> list[Path]:
    """Every `dreamer_<task>/<run>/checkpoint.pt` under `logdir`, newest first (by mtime)."""
    if not logdir.is_dir():
        return []
    pattern = f"{PREFIX}{task}/*/{CHECKPOINT}" if task else f"{PREFIX}*/*/{CHECKPOINT}"
    return newest_first(logdir.glob(pattern))


def newest_first(paths: Iterable[Path]) -> list[Path]:
    """`paths` sorted by modification time, newest first; vanished files are left out."""
    found = []
    for path in paths:
        try:
            found.append((path.stat().st_mtime, path))
        except OSError:
            continue
    return [path for _, path in sorted(found, key=lambda item: item[0], reverse=True)]


def latest_checkpoint(logdir: Path, task: str | None = None) -> Found:
    """The newest checkpoint under `logdir` (restricted to `task`); RunError when there is none."""
    from dreamerctl.run.checkpoint import read_meta

    candidates = checkpoints_under(logdir, task)
    if not candidates:
        if task:
            from dreamerctl.envs import check_task

            check_task(task)  # a misspelled task names its close matches
        where = f" for task {task}" if task else ""
        raise RunError(f"no checkpoint found under {logdir}{where}")
    path = candidates[0]
    meta = read_meta(path)
    return Found(path=path, run_dir=path.parent, task=meta.task, step=meta.step,
                 frames=meta.frames)


def resolve_checkpoint(spec: str, logdir: Path, task: str | None = None) -> Path:
    """`latest` (the newest checkpoint of `task` where given, as `find-latest --task` prints),
    a run directory or a checkpoint path -> the checkpoint file, named on the log."""
    path = resolve_spec(spec, logdir, task)
    log.info("checkpoint: %s", path)
    return path


def resolve_spec(spec: str, logdir: Path, task: str | None) -> Path:
    if spec == "latest":
        return latest_checkpoint(logdir, task).path
    path = Path(spec).expanduser()
    if path.is_dir():
        candidate = path / CHECKPOINT
        if not candidate.is_file():
            raise RunError(f"no {CHECKPOINT} in run directory {path}{runs_inside(path)}")
        return candidate
    if not path.exists():
        raise RunError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise UsageError(f"not a checkpoint file: {path}")
    return path


def runs_inside(path: Path) -> str:
    """A hint for a logdir or `dreamer_<task>` folder given where a run directory was meant."""
    inside = checkpoints_under(path) or newest_first(path.glob(f"*/{CHECKPOINT}"))
    if not inside:
        return ""
    runs = f"{len(inside)} runs, the newest" if len(inside) > 1 else "1 run"
    return f"; it holds {runs}: {inside[0].parent}"


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line. A torn last line (a kill mid-write) is ended first, so it stays one bad
    line that readers skip instead of corrupting the next record."""
    line = json.dumps(record, allow_nan=True) + "\n"
    with path.open("a+b") as f:
        f.seek(0, 2)
        if f.tell() > 0:
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")
        f.write(line.encode())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete JSON lines of a file; torn or garbage lines are skipped."""
    if not path.is_file():
        return []
    records = []
    with path.open("rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def with_counts(records: list[dict[str, Any]], action_repeat: int) -> bool:
    """Give every record of metrics.jsonl, scores.jsonl or eval.jsonl `step` in agent steps and
    `frames` in env frames (issue 23), in place. Runs of dreamerctl 0.1.0 counted `step` in env
    frames and had no `frames` (eval.jsonl kept the agent step as `agent_step`): those are read
    as the same two counts. Returns whether any record was of that kind (then the run's
    open-loop videos are named by env frames too)."""
    old = False
    for record in records:
        if "frames" not in record and isinstance(record.get("step"), int | float):
            frames = record["step"]
            record["step"] = record.pop("agent_step", int(frames) // max(action_repeat, 1))
            record["frames"] = frames
            old = True
    return old


def read_records(path: Path, action_repeat: int) -> list[dict[str, Any]]:
    """read_jsonl, with_counts."""
    records = read_jsonl(path)
    with_counts(records, action_repeat)
    return records
