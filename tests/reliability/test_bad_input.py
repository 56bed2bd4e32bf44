"""Bad input everywhere, in one table: each row is a real CLI call that must end with its exit
code and exactly one `error:` line holding the fragment, and no traceback (SPEC §6).

Placeholders in argv: {tmp} the test's own folder (also the working directory), {logdir} an
empty logdir in it, {garbage}, {empty}, {truncated} damaged checkpoints, {video} a text file
named .mp4, {toml} a broken preset."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.reliability.reliability_tools import assert_single_error, dreamerctl

T = "gym_CartPole-v1"
TRAIN = ["train", T, "--preset", "debug", "--device", "cpu", "--steps", "10"]
RANDOM = ["record", "--checkpoint", "none", "--random-agent", "--output", "{tmp}/v"]

ROWS: list[tuple[str, list[str], int, str]] = [
    # tasks and games
    ("unknown task", ["train", "gym_NoSuch-v9"], 2, "NoSuch-v9"),
    ("unknown suite", ["train", "mujoco_ant"], 2, "unknown suite 'mujoco'"),
    ("unknown game", ["train", "atari_pongg"], 2, "unknown Atari game 'pongg'"),
    ("unknown dmc task", ["train", "dmc_cartpole_juggle"], 2, "cartpole_juggle"),
    ("unknown game to record", [*RANDOM, "--task", "atari_nogame"], 2, "'nogame'"),
    # presets and fields
    ("unknown preset", [*TRAIN, "--preset", "tiny"], 2, "unknown preset 'tiny'"),
    ("missing preset file", [*TRAIN, "--preset", "{tmp}/nope.toml"], 2, "nope.toml"),
    ("broken preset file", [*TRAIN, "--preset", "{toml}"], 2, "{toml}"),
    ("unknown field", [*TRAIN, "--set", "train.bogus=1"], 2, "'train.bogus'"),
    ("unknown section", [*TRAIN, "--set", "nosuch.x=1"], 2, "'nosuch"),
    ("override without =", [*TRAIN, "--set", "run.steps"], 2, "run.steps"),
    ("wrong type", [*TRAIN, "--set", 'train.batch_size="two"'], 2, "'train.batch_size'"),
    ("wrong type of option", [*TRAIN, "--seed", "abc"], 2, "--seed"),
    ("negative steps", ["train", T, "--steps", "-3"], 2, "'run.steps' (from --steps -3)"),
    ("batch length out of range", [*TRAIN, "--set", "train.batch_length=1"], 2,
     "'train.batch_length'"),
    ("save_every out of range", [*TRAIN, "--set", "run.save_every=0"], 2, "'run.save_every'"),
    ("max_nonfinite out of range", [*TRAIN, "--set", "train.max_nonfinite=0"], 2,
     "'train.max_nonfinite'"),
    ("gym kwarg that dreamerctl sets", [*TRAIN, "--set", "env.gym.kwargs.max_episode_steps=9"], 2,
     "env.gym.kwargs.max_episode_steps cannot be set: set env.time_limit (agent steps) instead "
     "(from --set env.gym.kwargs.max_episode_steps=9)"),
    ("gym kwarg the env does not take", [*TRAIN, "--set", "env.gym.kwargs.bogus=1"], 2,
     "env.gym.kwargs {{'bogus': 1}} do not fit gym_CartPole-v1: CartPoleEnv.__init__() got an "
     "unexpected keyword argument 'bogus'"),
    ("unknown device", [*TRAIN[:-4], "--device", "tpu"], 2,
     "invalid value 'tpu' for 'run.device' (from --device tpu)"),
    ("replay on a GPU without one", [*TRAIN, "--set", "train.replay_device=cuda"], 2,
     "train.replay_device = cuda needs the model on a GPU"),
    ("unknown option", [*TRAIN, "--bogus"], 2, "--bogus"),
    ("zero episodes", ["eval", "--checkpoint", "latest", "--episodes", "0"], 2, "--episodes"),
    ("unknown mode", ["eval", "--checkpoint", "{truncated}", "--mode", "wild"], 2, "wild"),
    ("preset on resume", ["train", T, "--resume", "latest", "--preset", "debug"], 2,
     "--preset cannot change a resumed run"),
    # checkpoints
    ("missing checkpoint", ["eval", "--checkpoint", "{tmp}/x.pt"], 1,
     "checkpoint not found: {tmp}/x.pt"),
    ("garbage checkpoint", ["eval", "--checkpoint", "{garbage}"], 1,
     "checkpoint {garbage} is corrupt or truncated"),
    ("empty checkpoint", ["train", T, "--resume", "{empty}"], 1, "checkpoint {empty} is empty"),
    ("truncated checkpoint", ["eval", "--checkpoint", "{truncated}"], 1,
     "checkpoint {truncated} is corrupt or truncated"),
    ("truncated checkpoint to resume", ["train", T, "--resume", "{truncated}"], 1,
     "checkpoint {truncated} is corrupt or truncated"),
    ("run dir without checkpoint", ["eval", "--checkpoint", "{logdir}"], 1,
     "no checkpoint.pt in run directory {logdir}"),
    # latest in an empty logdir
    ("find-latest, empty logdir", ["find-latest", "--logdir", "{logdir}"], 1,
     "no checkpoint found under {logdir}"),
    ("eval latest, empty logdir", ["eval", "--checkpoint", "latest", "--logdir", "{logdir}"], 1,
     "no checkpoint found under {logdir}"),
    ("record latest, empty logdir",
     ["record", "--checkpoint", "latest", "--logdir", "{logdir}", "--output", "{tmp}/v"], 1,
     "no checkpoint found under {logdir}"),
    ("compare latest, empty logdir", ["compare", "latest", "--logdir", "{logdir}"], 1,
     "no checkpoint found under {logdir}"),
    ("train resume latest, empty logdir",
     ["train", T, "--resume", "latest", "--logdir", "{logdir}"], 1,
     "no checkpoint found under {logdir}"),
    # record and gif
    ("random agent without task", RANDOM, 2, "--checkpoint none needs --random-agent and --task"),
    ("task without random agent", ["record", "--checkpoint", "none", "--task", T], 2,
     "--checkpoint none needs --random-agent and --task"),
    ("non-video to gif", ["gif", "{video}"], 1, "{video} is not a readable video"),
    ("missing input to gif", ["gif", "{tmp}/none.mp4"], 2, "no such file or folder"),
    ("json and csv", ["compare", "latest", "--json", "--csv"], 2, "exclude"),
]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("bad_input")
    (tmp / "garbage.pt").write_bytes(b"\x00garbage" * 1000)
    (tmp / "empty.pt").write_bytes(b"")
    whole = tmp / "whole.pt"
    torch.save({"format": "dreamerctl-checkpoint", "version": 1,
                "agent": {"w": torch.randn(1000, 100)}}, whole)
    (tmp / "truncated.pt").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    (tmp / "video.mp4").write_text("not a video")
    (tmp / "broken.toml").write_text("[run\nsteps = ")
    return {"garbage": str(tmp / "garbage.pt"),
            "empty": str(tmp / "empty.pt"), "truncated": str(tmp / "truncated.pt"),
            "video": str(tmp / "video.mp4"), "toml": str(tmp / "broken.toml")}


@pytest.mark.parametrize(("argv", "code", "fragment"), [row[1:] for row in ROWS],
                         ids=[row[0] for row in ROWS])
def test_bad_input(argv: list[str], code: int, fragment: str, files: dict[str, str],
                   tmp_path: Path) -> None:
    logdir = tmp_path / "logdir"
    logdir.mkdir()
    places = {**files, "tmp": str(tmp_path), "logdir": str(logdir)}
    args = [arg.format(**places) for arg in argv]
    result = dreamerctl(*args, logdir=logdir, cwd=tmp_path)
    assert_single_error(result.returncode, code, result.stderr, fragment.format(**places))
    assert result.stdout == ""
    # A run that fails to start leaves no (empty) run directory behind.
    assert list(logdir.iterdir()) == []
