"""dreamerctl.run.record on real envs (CartPole, Pong) with real ffmpeg."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamerctl.config import build_config
from dreamerctl.envs import Env, Obs, make_env
from dreamerctl.errors import UsageError
from dreamerctl.run.policy import RandomPolicy
from dreamerctl.run.record import RecordRequest, record_episodes, record_videos
from dreamerctl.spaces import ActSpace
from dreamerctl.video import SEPARATOR_COLOR, read_frames

CARTPOLE = "gym_CartPole-v1"
PONG = "atari_pong"


def make(task: str, seed: int = 0) -> Env:
    return make_env(task, build_config(task).env, seed)


def record(task: str, output: Path, episodes: int = 1, max_steps: int | None = 50,
           gif: bool = False, overwrite: bool = False, seed: int = 0,
           actor: object = None) -> list[dict]:
    env = make(task, seed)
    try:
        actor = actor or RandomPolicy(env.act_space, seed)
        return record_episodes(env, actor, episodes, output, fps=30, max_steps=max_steps,
                               make_gif=gif, overwrite=overwrite, seed=seed, task=task,
                               progress=False)
    finally:
        env.close()


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_record_cartpole_names_files_with_scores(tmp_path: Path) -> None:
    output = tmp_path / "videos"
    rows = record(CARTPOLE, output, episodes=2, max_steps=50, gif=True, seed=3)
    assert read_jsonl(output / "episodes.jsonl") == rows
    for i, row in enumerate(rows):
        assert set(row) == {"episode", "score", "length", "truncated", "path", "task", "seed",
                            "checkpoint", "parameters"}
        assert row["checkpoint"] is None and row["parameters"] is None  # a random actor
        assert row["truncated"] == (row["length"] == 50)  # cut by max_steps, not ended
        assert row["episode"] == i and row["task"] == CARTPOLE and row["seed"] == 3 + i
        assert 1 <= row["length"] <= 50
        assert row["score"] == row["length"]  # CartPole pays 1 per step
        path = Path(row["path"])
        assert path == output / f"episode_{i:03d}_score_{row['score']:.1f}.mp4"
        frames = read_frames(path)
        # One frame after reset plus one per agent step, at gymnasium's rgb_array size.
        assert frames.shape == (row["length"] + 1, 400, 600, 3)
        assert frames.std(axis=0).max() > 20  # the pole and cart move
        with Image.open(path.with_suffix(".gif")) as gif:
            assert gif.n_frames == math.ceil((row["length"] + 1) / 2)
    assert sorted(p.name for p in output.iterdir()) == sorted(
        [Path(r["path"]).name for r in rows] + [Path(r["path"]).stem + ".gif" for r in rows]
        + ["episodes.jsonl"]
    )  # no temporary files left


def test_record_pong_stops_at_max_steps(tmp_path: Path) -> None:
    rows = record(PONG, tmp_path, episodes=1, max_steps=40)
    (row,) = rows
    assert row["length"] == 40
    assert Path(row["path"]).name == f"episode_000_score_{row['score']:.1f}.mp4"
    frames = read_frames(Path(row["path"]))
    assert frames.shape == (41, 210, 160, 3)  # native ALE resolution
    # The playfield changes over time (ball, paddles), the frame is not one colour.
    assert frames[-1].reshape(-1, 3).std(axis=0).max() > 10
    assert np.abs(frames[-1].astype(int) - frames[5].astype(int)).max() > 50


def test_recording_is_reproducible_by_seed(tmp_path: Path) -> None:
    first = record(CARTPOLE, tmp_path / "a", episodes=2, max_steps=None, seed=7)
    again = record(CARTPOLE, tmp_path / "b", episodes=2, max_steps=None, seed=7)
    strip = [[(r["score"], r["length"], r["seed"]) for r in rows] for rows in (first, again)]
    assert strip[0] == strip[1]
    assert np.array_equal(read_frames(Path(first[0]["path"])),
                          read_frames(Path(again[0]["path"])))


def test_refuses_to_overwrite_then_overwrite_replaces(tmp_path: Path) -> None:
    output = tmp_path / "videos"
    old = record(CARTPOLE, output, episodes=2, max_steps=20, gif=True, seed=0)
    with pytest.raises(UsageError) as info:
        record(CARTPOLE, output, episodes=1, max_steps=20)
    first = sorted(output.glob("episode_*.mp4"))[0]
    assert str(info.value) == (
        f"{first} already exists; pass --overwrite to replace the recording in that folder, "
        "--append to add episodes to it, or choose another --output"
    )
    # Only the jsonl left over is enough to refuse.
    for path in output.glob("episode_*"):
        path.unlink()
    with pytest.raises(UsageError, match=r"episodes\.jsonl already exists"):
        record(CARTPOLE, output, episodes=1, max_steps=20)

    new = record(CARTPOLE, output, episodes=1, max_steps=20, seed=5, overwrite=True)
    assert read_jsonl(output / "episodes.jsonl") == new  # the old lines are gone
    assert len(old) == 2 and not list(output.glob("*.gif"))
    assert [p.name for p in output.glob("episode_*.mp4")] == [Path(new[0]["path"]).name]


def test_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(UsageError) as info:
        record(CARTPOLE, taken)
    assert str(info.value) == f"--output {taken} is an existing file, not a folder"


class PanelActor:
    """A real Actor with a panel: constant action 0 and a solid 64x64 image beside the frame."""

    def __init__(self, act_space: ActSpace) -> None:
        self.act_space = act_space
        self.calls = 0
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def act(self, obs: Obs) -> np.ndarray:
        self.calls += 1
        return np.eye(self.act_space.size, dtype=np.float32)[0]

    def panel(self) -> list[tuple[str, np.ndarray]] | None:
        return [("solid", np.full((64, 64, 3), (30, 90, 220), np.uint8))]


def test_panel_is_shown_beside_the_frame(tmp_path: Path) -> None:
    env = make(CARTPOLE)
    actor = PanelActor(env.act_space)
    try:
        (row,) = record_episodes(env, actor, 1, tmp_path, fps=30, max_steps=None,
                                 make_gif=False, overwrite=False, seed=0, task=CARTPOLE,
                                 progress=False)
    finally:
        env.close()
    assert actor.resets == 1
    assert actor.calls == row["length"] + 1  # every observation, the last one included
    frames = read_frames(Path(row["path"]))
    # 600 px render, 4 px separator, the panel scaled from 64 to 400 px high (400 wide).
    assert frames.shape == (row["length"] + 1, 400, 1004, 3)
    panel = frames[:, 40:-20, 624:-20].reshape(-1, 3).mean(axis=0)
    assert np.allclose(panel, (30, 90, 220), atol=6), panel
    # Each part is labelled in its top-left corner: white text on a dark box ("env", "solid").
    for left in (0, 604):
        box = frames[:, 1:20, left + 1:left + 30].astype(int)
        assert (box.max(axis=-1) > 200).any() and (box.max(axis=-1) < 60).mean() > 0.5, left
    separator = frames[:, 20:-20, 601:603].reshape(-1, 3).mean(axis=0)
    assert np.allclose(separator, SEPARATOR_COLOR, atol=10), separator


def test_random_actor_is_uniform_and_seeded() -> None:
    space = ActSpace(discrete=True, size=3)
    actions = np.stack([RandomPolicy(space, 1).act({}) for _ in range(2)])
    assert np.array_equal(actions[0], actions[1])  # same seed, same first action
    actor = RandomPolicy(space, 0)
    many = np.stack([actor.act({}) for _ in range(600)])
    assert many.shape == (600, 3) and (many.sum(axis=1) == 1).all()
    assert np.all(np.abs(many.mean(axis=0) - 1 / 3) < 0.07)
    box = RandomPolicy(ActSpace(discrete=False, size=2), 0)
    values = np.stack([box.act({}) for _ in range(500)])
    assert values.dtype == np.float32 and values.min() >= -1 and values.max() <= 1
    assert values.min() < -0.9 and values.max() > 0.9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"random_agent": False}, "--checkpoint none needs --random-agent and --task"),
        ({"task": None}, "--checkpoint none needs --random-agent and --task"),
        ({"with_model": True},
         "--with-model needs a checkpoint: there is no model with --checkpoint none"),
        ({"checkpoint": "latest", "with_model": True},
         "--with-model needs the checkpoint's agent, not --random-agent"),
        ({"mode": "best"}, "unknown --mode 'best': use sample or greedy"),
    ],
)
def test_record_videos_usage_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    args = {"checkpoint": "none", "random_agent": True, "task": CARTPOLE, "episodes": 1,
            "output": tmp_path / "v", "fps": 30, "max_steps": 5, "make_gif": False, "seed": 0,
            "with_model": False, "overwrite": False, "mode": "sample",
            "logdir": tmp_path / "logdir", "device": "cpu", **kwargs}
    with pytest.raises(UsageError) as info:
        record_videos(RecordRequest(**args))
    assert str(info.value) == message
    assert not (tmp_path / "v").exists()


def test_record_videos_random_agent(tmp_path: Path) -> None:
    paths = record_videos(RecordRequest(
        checkpoint="none", random_agent=True, task=PONG, episodes=1, output=tmp_path / "v",
        fps=30, max_steps=10, make_gif=False, seed=0, with_model=False, overwrite=False,
        mode="sample", logdir=tmp_path / "logdir", device="cpu",
    ))
    assert [p.parent for p in paths] == [tmp_path / "v"] and paths[0].is_file()
    assert read_frames(paths[0]).shape == (11, 210, 160, 3)
