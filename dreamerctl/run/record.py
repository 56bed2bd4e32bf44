"""Record episodes to MP4: one file per episode, named with its score, plus episodes.jsonl.

Frames are the env's full-resolution renders (one per agent step, the first right after reset),
optionally with the actor's panels (agent input, model reconstruction) beside them.
"""

from __future__ import annotations

from collections.abc import Callable
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
                    progress: bool = True,
                    checkpoint: Path | None = None) -> list[dict[str, Any]]:
    """Record `episodes` episodes into `output`; returns one row per episode, as in the JSONL.

    Episode i resets the env with seed + i and ends at is_last or after `max_steps` agent steps.
    Each row: {"episode", "score", "length", "truncated", "path", "task", "seed",
    "checkpoint"} with the episode's env seed; `truncated` marks an episode that --max-steps
    cut, `checkpoint` is the agent's (None for a random agent).
    """
    prepare_output(output, overwrite)
    rows: list[dict[str, Any]] = []
    with ProgressReporter(f"record {task}", total=episodes, enabled=progress) as reporter:
        last_score = None

        def on_step(steps: int, score: float) -> None:
            reporter.update(len(rows), step=steps, score=score, last_score=last_score)

        for index in range(episodes):
            row = record_episode(env, actor, index, output, fps, max_steps, seed + index, on_step)
            row = {**row, "task": task,
                   "checkpoint": None if checkpoint is None else str(checkpoint)}
            if make_gif:
                mp4 = Path(row["path"])
                mp4_to_gif(mp4, mp4.with_suffix(".gif"), stride=GIF_STRIDE, fps=fps / GIF_STRIDE)
            rundir.append_jsonl(output / JSONL, row)
            rows.append(row)
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


def check_output(output: Path, overwrite: bool) -> None:
    """Refuse a file as the output folder (or one of its parents), and a folder holding a
    recording unless overwrite."""
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
    if old and not overwrite:
        raise UsageError(f"{old[0]} already exists; pass --overwrite to replace the recording "
                         "in that folder, or choose another --output")


def prepare_output(output: Path, overwrite: bool) -> None:
    """check_output, then remove an earlier recording (overwrite) and create the folder."""
    check_output(output, overwrite)
    for path in existing_outputs(output):
        path.unlink()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create --output folder {output}: {e.strerror}") from None



def record_videos(checkpoint: str, random_agent: bool, task: str | None, episodes: int,
                    output: Path, fps: int, max_steps: int | None, make_gif: bool, seed: int,
                    with_model: bool, overwrite: bool, mode: str, logdir: Path,
                    device: str) -> list[Path]:
    """`dreamerctl record`: build the actor and env, record, return the MP4 paths."""
    from dreamerctl.envs import make_env
    from dreamerctl.run.policy import RandomPolicy, check_mode, load_actor, random_agent_setup

    check_mode(mode)

    if checkpoint == "none" and (not random_agent or task is None):
        raise UsageError("--checkpoint none needs --random-agent and --task")
    if with_model and random_agent:
        raise UsageError("--with-model needs a checkpoint: there is no model with --checkpoint "
                         "none" if checkpoint == "none" else
                         "--with-model needs the checkpoint's agent, not --random-agent")
    # The checkpoint is found first (a misspelled one is named as such, whatever the output
    # holds), then the output is checked, before a model is loaded or a simulator started.
    path = None if random_agent else rundir.resolve_checkpoint(checkpoint, logdir, task=task)
    check_output(output, overwrite)
    actor: Actor | None = None
    if random_agent:
        task, env_cfg, _ = random_agent_setup(checkpoint, logdir, task)
    else:
        assert path is not None
        actor, task, env_cfg = load_actor(path, task=task, seed=seed, mode=mode, device=device,
                                          with_model=with_model)
    env = make_env(task, env_cfg, seed)
    try:
        actor = actor if actor is not None else RandomPolicy(env.act_space, seed)
        rows = record_episodes(env, actor, episodes, output, fps, max_steps, make_gif,
                               overwrite, seed, task, checkpoint=path)
    finally:
        env.close()
    return [Path(row["path"]) for row in rows]
