"""Before the loop: the run directory and config of a new run or a resumed one, the checks that
fail fast (the logdir, `--steps` that leave nothing to do), and what a resume tidies in the run
directory (a replay of another world size set aside, stale temporaries, lines past the
checkpoint)."""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from dreamerctl.config import Config, build_config, saved_config
from dreamerctl.config.loader import Override
from dreamerctl.errors import RunError, UsageError
from dreamerctl.fsutil import (
    atomic_write_text,
    folder_problem,
    nearest_existing,
    remove_stale_temporaries,
)
from dreamerctl.run import rundir
from dreamerctl.run.checkpoint import Payload, read_payload
from dreamerctl.run.distributed import World
from dreamerctl.run.events import require_tensorboard

log = logging.getLogger("dreamerctl")


def prepare(task: str, presets: list[str], overrides: Sequence[Override], logdir: Path,
            resume: str | None) -> tuple[Config, Path, Payload | None]:
    """The config, the run directory and, when resuming, the loaded checkpoint."""
    from dreamerctl.envs import check_task

    if resume is None:
        check_task(task)
        config = build_config(task, presets, overrides)
        if config.run.tensorboard:
            require_tensorboard()
        check_writable(logdir)
        return config, rundir.new_run_dir(logdir, task), None
    if presets:
        raise UsageError("--preset cannot change a resumed run; use --set KEY=VALUE")
    path = rundir.resolve_checkpoint(resume, logdir, task)
    payload = read_payload(path)
    if payload.task != task:
        raise UsageError(f"checkpoint {path} is for task {payload.task}, not {task}")
    config = saved_config(payload.config, str(path), overrides)
    if config.run.tensorboard:
        require_tensorboard()
    check_writable(path.parent)
    return config, path.parent, payload


def nothing_to_train(config: Config, run_dir: Path, payload: Payload | None, main: bool) -> bool:
    """Whether `--steps` leaves nothing to do (issue 23): then no run directory is made for a
    new run and a resumed run's checkpoint stays as it is, instead of an untrained or
    rewritten checkpoint becoming `latest`."""
    steps = config.run.steps
    if payload is None and steps == 0:
        if main:
            log.warning("--steps 0: nothing to train, so no run directory was made")
            remove_if_empty(run_dir)
        return True
    if payload is not None and steps <= payload.step:
        if main:
            log.warning("%s is at step %d and --steps %d is the total, not more steps: "
                        "nothing to train, the checkpoint is unchanged (give --steps above %d)",
                        run_dir, payload.step, steps, payload.step)
        return True
    return False


def remove_if_empty(run_dir: Path) -> None:
    """Remove a new run directory (and its task folder) that nothing was written to."""
    for folder in (run_dir, run_dir.parent):
        try:
            folder.rmdir()  # only ever removes an empty folder
        except OSError:
            return


def check_writable(folder: Path) -> None:
    """Fail before training when the logdir cannot take a run: a file where a folder is needed
    is a usage error (exit 2); a read-only or (nearly) full one a run-time failure (exit 1)."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        where = "is an existing file" if existing == folder else f"lies under the file {existing}"
        raise UsageError(f"logdir {folder} {where}, not a folder")
    if folder_problem(folder) is not None:
        raise RunError(f"logdir {folder} is not writable")
    free = shutil.disk_usage(existing).free
    if free < 50 * 2**20:
        raise RunError(f"logdir {folder} has only {free // 2**20} MiB free")


def set_aside_replay(world: World, run_dir: Path, old_world_size: int) -> Path | None:
    """Set aside the replay a run with another number of ranks left: its streams do not map
    onto this run's ranks. Nothing is deleted: rank 0 renames replay/ to
    replay-<W>ranks-<time>/ while the others wait; a rank whose folder is on a disk of its
    own node (not shared with rank 0) renames that folder the same way. Returns where rank 0's
    went (None where there was none, and on the other ranks)."""
    suffix = f"-{old_world_size}ranks-{time.strftime('%Y%m%d-%H%M%S')}"
    moved = move_aside(run_dir / "replay", suffix) if world.main else None
    world.any(False)  # a barrier: no rank writes chunks before the old ones are moved
    if not world.main:
        move_aside(world.replay_dir(run_dir), suffix)
    return moved


def tidy_resumed_run(run_dir: Path, step: int, action_repeat: int) -> None:
    """Rank 0, on resume: remove the temporaries of saves that were killed, and drop the JSONL
    lines past the checkpoint (the run redoes those steps)."""
    snapshots = run_dir / rundir.SNAPSHOTS
    for folder in (run_dir, *([snapshots] if snapshots.is_dir() else [])):
        for tmp in remove_stale_temporaries(folder):
            log.info("removed %s, left by a save that was killed", tmp.name)
    for name in (rundir.METRICS, rundir.SCORES, rundir.EVALS):
        drop_after(run_dir / name, step, action_repeat)


def move_aside(folder: Path, suffix: str) -> Path | None:
    """Rename `folder` to `folder` + `suffix` (its data kept, out of the way); None if there is
    no such folder."""
    if not folder.is_dir():
        return None
    target = folder.with_name(folder.name + suffix)
    folder.rename(target)
    return target


def drop_after(path: Path, step: int, action_repeat: int) -> None:
    """Keep only complete lines up to agent step `step`: a resumed run redoes what came after its
    checkpoint, so those lines (and a torn last line) must not stay twice. Lines of an older
    dreamerctl are rewritten with today's `step` and `frames` (rundir.read_records)."""
    if not path.exists():
        return
    records = rundir.read_records(path, action_repeat)
    kept = [r for r in records if isinstance(r.get("step"), int | float) and r["step"] <= step]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
