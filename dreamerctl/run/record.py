"""Record episodes to MP4: one file per episode, named with its score, plus episodes.jsonl.

Frames are the env's full-resolution renders (one per agent step, the first right after reset),
optionally with the actor's panels (agent input, model reconstruction) beside them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dreamerctl.envs.base import Env, Obs
from dreamerctl.errors import RunError, UsageError
from dreamerctl.fsutil import folder_problem
from dreamerctl.run import rundir
from dreamerctl.run.progress import ProgressReporter
from dreamerctl.run.stats import EpisodeTracker
from dreamerctl.video import Mp4Writer, mp4_to_gif, side_by_side

JSONL = "episodes.jsonl"
GIF_STRIDE = 2  # --gif keeps every 2nd frame at half the fps, so it plays in real time


class Actor(Protocol):
    """A policy for one env. `panel()` gives images to show beside the frame, or None."""

    def reset(self) -> None:
        """Forget the carried state: a new episode starts."""

    def act(self, obs: Obs) -> np.ndarray:
        """One env's step dict -> one action of the env's act_space (float32 (A,))."""

    def panel(self) -> list[tuple[str, np.ndarray]] | None:
        """(label, uint8 (H, W, 3) image) pairs about the last `act` call (e.g. the 64x64
        input), or None."""


def record_episodes(env: Env, actor: Actor, episodes: int, output: Path, fps: int,
                    max_steps: int | None, make_gif: bool, overwrite: bool, seed: int, task: str,
                    progress: bool = True, checkpoint: Path | None = None,
                    parameters: str | None = None, append: bool = False,
                    on_episode: Callable[[dict[str, Any]], None] | None = None
                    ) -> list[dict[str, Any]]:
    """Record `episodes` episodes into `output`; returns one row per episode, as in the JSONL,
    and hands each to `on_episode` as soon as its video is in place.

    Episode i resets the env with seed + i and ends at is_last or after `max_steps` agent steps.
    With `append`, a folder's earlier recording stays and i continues after its last episode
    (so do the env seeds). Each row: {"episode", "score", "length", "truncated", "path",
    "task", "seed", "checkpoint", "parameters"} with the episode's env seed; `truncated` marks
    an episode that --max-steps cut, `checkpoint` is the agent's and `parameters` which of its
    parameters acted ("average" or "live"; both None for a random agent).
    """
    first = prepare_output(output, overwrite, append)
    rows: list[dict[str, Any]] = []
    with ProgressReporter(f"record {task}", total=episodes, enabled=progress) as reporter:
        last_score = None

        def on_step(steps: int, score: float) -> None:
            reporter.update(len(rows), step=steps, score=score, last_score=last_score)

        for index in range(first, first + episodes):
            row = record_episode(env, actor, index, output, fps, max_steps, seed + index, on_step)
            row = {**row, "task": task,
                   "checkpoint": None if checkpoint is None else str(checkpoint),
                   "parameters": parameters}
            if make_gif:
                mp4 = Path(row["path"])
                mp4_to_gif(mp4, mp4.with_suffix(".gif"), stride=GIF_STRIDE, fps=fps / GIF_STRIDE)
            rundir.append_jsonl(output / JSONL, row)
            rows.append(row)
            if on_episode is not None:
                on_episode(row)
            last_score = row["score"]
            reporter.update(len(rows), force=True, last_score=last_score, length=row["length"])
    return rows


def record_episode(env: Env, actor: Actor, index: int, output: Path, fps: int,
                   max_steps: int | None, seed: int,
                   on_step: Callable[[int, float], None]) -> dict[str, Any]:
    """Run one episode, streaming frames to a temporary MP4 renamed with the score at the end."""
    obs = env.reset(seed=seed)
    actor.reset()
    tracker = EpisodeTracker(1)
    tracker.update(batched(obs))
    steps = 0
    with Mp4Writer(output, fps) as writer:
        while True:
            # Act before drawing, so the panel shows this observation; the action chosen from
            # the last observation is never sent to the env.
            action = actor.act(obs)
            writer.append(compose(env.render(), actor.panel()))
            if obs["is_last"] or (max_steps is not None and steps >= max_steps):
                break
            obs = env.step(action)
            tracker.update(batched(obs))
            steps += 1
            on_step(steps, float(tracker.score[0]))
        score = float(tracker.score[0])
        path = output / f"episode_{index:03d}_score_{score:.1f}.mp4"
        writer.commit(path)
    return {"episode": index, "score": score, "length": steps,
            "truncated": not bool(obs["is_last"]), "path": str(path), "seed": seed}


def batched(obs: Obs) -> dict[str, np.ndarray]:
    """One env's step dict as a batch of one, the form EpisodeTracker reads."""
    return {key: np.asarray(value)[None] for key, value in obs.items()}


def compose(frame: np.ndarray, panel: list[tuple[str, np.ndarray]] | None) -> np.ndarray:
    """The frame alone, or the frame with the actor's panels beside it at the frame's height,
    each part labelled."""
    if not panel:
        return frame
    return side_by_side([frame, *(image for _, image in panel)], height=frame.shape[0],
                        labels=["env", *(name for name, _ in panel)])


def existing_outputs(output: Path) -> list[Path]:
    """Files of an earlier recording in `output`: episode_* videos and GIFs, episodes.jsonl."""
    if not output.is_dir():
        return []
    found = sorted(output.glob("episode_*.mp4")) + sorted(output.glob("episode_*.gif"))
    return found + ([output / JSONL] if (output / JSONL).exists() else [])


def check_output(output: Path, overwrite: bool, append: bool = False) -> None:
    """Refuse a file as the output folder (or one of its parents), and a folder holding a
    recording unless overwrite or append."""
    if overwrite and append:
        raise UsageError("--overwrite replaces a recording and --append adds to it: choose one")
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is an existing file, not a folder")
    parent = output.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"--output {output} lies under the file {parent}, not a folder")
    problem = folder_problem(output)
    if problem is not None:
        raise UsageError(f"cannot write to --output folder {output}: {problem}")
    old = existing_outputs(output)
    if old and not (overwrite or append):
        raise UsageError(f"{old[0]} already exists; pass --overwrite to replace the recording "
                         "in that folder, --append to add episodes to it, or choose another "
                         "--output")


def next_episode(output: Path) -> int:
    """The episode number after the last one recorded in `output` (0 for none), from
    episodes.jsonl and the episode_<NNN>_* files alike."""
    numbers = [int(row["episode"]) for row in rundir.read_jsonl(output / JSONL)
               if isinstance(row.get("episode"), int)]
    for path in existing_outputs(output):
        head = path.name.split("_")
        if len(head) > 1 and head[0] == "episode" and head[1].isdigit():
            numbers.append(int(head[1]))
    return max(numbers, default=-1) + 1


def prepare_output(output: Path, overwrite: bool, append: bool = False) -> int:
    """check_output, then remove an earlier recording (overwrite) or keep it (append), and
    create the folder; returns the first episode number to record."""
    check_output(output, overwrite, append)
    if append:
        first = next_episode(output)
    else:
        first = 0
        for path in existing_outputs(output):
            path.unlink()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create --output folder {output}: {e.strerror}") from None
    return first


@dataclass(frozen=True)
class RecordRequest:
    """What `dreamerctl record` is asked to do (its options, resolved)."""

    checkpoint: str              # a checkpoint, run directory, 'latest' or 'none'
    output: Path
    logdir: Path
    random_agent: bool = False
    task: str | None = None
    episodes: int = 1
    fps: int = 30
    max_steps: int | None = None
    make_gif: bool = False
    seed: int = 0
    with_model: bool = False
    overwrite: bool = False
    append: bool = False
    mode: str = "sample"
    device: str = "auto"
    parameters: str = "average"


def record_videos(request: RecordRequest,
                  on_episode: Callable[[dict[str, Any]], None] | None = None) -> list[Path]:
    """`dreamerctl record`: build the actor and env, record, return the MP4 paths (each episode's
    row also goes to `on_episode` once its video is in place, so an interrupted recording has
    listed what it kept)."""
    from dreamerctl.envs import make_env
    from dreamerctl.run.policy import (
        RandomPolicy,
        check_mode,
        check_parameters,
        load_actor,
        random_agent_setup,
    )

    r = request
    check_mode(r.mode)
    check_parameters(r.parameters)
    if r.checkpoint == "none" and (not r.random_agent or r.task is None):
        raise UsageError("--checkpoint none needs --random-agent and --task")
    if r.with_model and r.random_agent:
        raise UsageError("--with-model needs a checkpoint: there is no model with --checkpoint "
                         "none" if r.checkpoint == "none" else
                         "--with-model needs the checkpoint's agent, not --random-agent")
    # The checkpoint is found first (a misspelled one is named as such, whatever the output
    # holds), then the output is checked, before a model is loaded or a simulator started.
    path = None if r.random_agent else rundir.resolve_checkpoint(r.checkpoint, r.logdir, r.task)
    check_output(r.output, r.overwrite, r.append)
    actor: Actor | None = None
    parameters = None
    if path is None:
        task, env_cfg, _ = random_agent_setup(r.checkpoint, r.logdir, r.task)
    else:
        actor, task, env_cfg, parameters = load_actor(
            path, task=r.task, seed=r.seed, mode=r.mode, device=r.device,
            with_model=r.with_model, parameters=r.parameters)
    env = make_env(task, env_cfg, r.seed)
    try:
        actor = actor if actor is not None else RandomPolicy(env.act_space, r.seed)
        rows = record_episodes(env, actor, r.episodes, r.output, r.fps, r.max_steps,
                               r.make_gif, r.overwrite, r.seed, task, checkpoint=path,
                               parameters=parameters, append=r.append, on_episode=on_episode)
    finally:
        env.close()
    return [Path(row["path"]) for row in rows]
