"""eval, compare, record with an agent and find-latest on checkpoints trained in the test."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from dreamerctl.run.train import train_run
from dreamerctl.video import read_frames
from tests.helpers import assert_one_error, run_cli


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two CartPole runs and one Pendulum run of the debug preset."""
    root = tmp_path_factory.mktemp("runs")
    for task, steps in [("gym_CartPole-v1", 40), ("gym_Pendulum-v1", 40),
                        ("gym_CartPole-v1", 60)]:
        train_run(task, ["debug"], [f"run.steps={steps}", 'run.device="cpu"'], root, None)
    return root


def cli(logdir: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli(*args, env={"DREAMERCTL_LOGDIR": str(logdir)})
    return result.returncode, result.stdout, result.stderr


def test_eval_json_fields_and_determinism(logdir: Path) -> None:
    args = ("eval", "--checkpoint", "latest", "--episodes", "3", "--json", "--seed", "5")
    code, stdout, stderr = cli(logdir, *args)
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["task"] == "gym_CartPole-v1" and result["step"] == 60
    for key in ("mean", "std", "min", "max", "ci95_low", "ci95_high", "episodes", "scores",
                "lengths", "mean_length"):
        assert key in result, key
    assert result["episodes"] == len(result["scores"]) == 3
    assert result["min"] <= result["ci95_low"] <= result["mean"] <= result["ci95_high"]
    assert result["ci95_high"] <= result["max"]
    assert all(length >= 8 for length in result["lengths"])  # CartPole lasts 8+ steps
    again = json.loads(cli(logdir, *args)[1])
    assert again["scores"] == result["scores"]
    other = json.loads(cli(logdir, *args[:-1], "6")[1])
    assert other["scores"] != result["scores"]


def test_eval_table_goes_to_stdout(logdir: Path) -> None:
    code, stdout, stderr = cli(logdir, "eval", "--checkpoint", "latest", "--episodes", "1",
                               "--mode", "greedy")
    assert code == 0, stderr
    assert "gym_CartPole-v1" in stdout and "mean" in stdout
    assert "eval gym_CartPole-v1" in stderr  # progress on stderr


def test_latest_with_task_is_the_newest_checkpoint_of_that_task(logdir: Path) -> None:
    """`--checkpoint latest --task T` is what `find-latest --task T` prints (issue 23), and
    every command names the checkpoint it used on stderr."""
    _, cartpole, _ = cli(logdir, "find-latest", "--task", "gym_CartPole-v1")
    _, pendulum, _ = cli(logdir, "find-latest", "--task", "gym_Pendulum-v1")
    _, newest, _ = cli(logdir, "find-latest")
    assert newest == cartpole != pendulum
    for task, path in (("gym_Pendulum-v1", pendulum), ("gym_CartPole-v1", cartpole)):
        code, stdout, stderr = cli(logdir, "eval", "--checkpoint", "latest", "--episodes", "1",
                                   "--task", task, "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["task"] == task
        assert f"checkpoint: {path.strip()}" in stderr.splitlines()
    result = run_cli("eval", "--checkpoint", "latest", "--task", "gym_CartPole-v0",
                     env={"DREAMERCTL_LOGDIR": str(logdir)})
    assert_one_error(result, 1, "no checkpoint found under")
    result = run_cli("eval", "--checkpoint", "latest", "--task", "gym_CartPol-v1",
                     env={"DREAMERCTL_LOGDIR": str(logdir)})
    assert_one_error(result, 2, "gym_CartPole-v1")


def test_eval_task_override(logdir: Path) -> None:
    """An explicit checkpoint plays on another task whose spaces match."""
    _, path, _ = cli(logdir, "find-latest", "--task", "gym_CartPole-v1")
    code, stdout, stderr = cli(logdir, "eval", "--checkpoint", path.strip(), "--episodes", "1",
                               "--task", "gym_CartPole-v0", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["task"] == "gym_CartPole-v0"
    result = run_cli("eval", "--checkpoint", path.strip(), "--task", "gym_Acrobot-v1",
                     env={"DREAMERCTL_LOGDIR": str(logdir)})
    assert_one_error(result, 2, "task gym_Acrobot-v1 does not fit checkpoint of gym_CartPole-v1")
    assert "vector (6,) float32 vs (4,) float32" in result.stderr
    assert "actions 3 discrete vs 2 discrete" in result.stderr


def test_eval_bad_mode(logdir: Path) -> None:
    result = run_cli("eval", "--checkpoint", "latest", "--mode", "best",
                     env={"DREAMERCTL_LOGDIR": str(logdir)})
    assert_one_error(result, 2, "unknown --mode 'best'")


def test_eval_random_agent_baseline(tmp_path: Path) -> None:
    """`eval --random-agent` scores uniform random actions: in a checkpoint's env settings (here
    a 7-step time limit), or with `--checkpoint none` in the task's suite defaults; the same
    seed gives the same episodes."""
    run_dir = train_run("gym_CartPole-v1", ["debug"],
                             ["run.steps=20", 'run.device="cpu"', "env.time_limit=7"],
                             tmp_path, None)
    code, stdout, stderr = cli(tmp_path, "eval", "--checkpoint", str(run_dir), "--random-agent",
                               "--episodes", "6", "--json")
    assert code == 0, stderr
    limited = json.loads(stdout)
    assert limited["path"] == str(run_dir / "checkpoint.pt") and limited["mode"] == "random"
    assert limited["task"] == "gym_CartPole-v1" and limited["step"] == 0
    assert len(limited["lengths"]) == 6 and max(limited["lengths"]) <= 7
    args = ("eval", "--checkpoint", "none", "--random-agent", "--task", "gym_CartPole-v1",
            "--episodes", "12", "--seed", "3", "--json")
    code, stdout, stderr = cli(tmp_path, *args)
    assert code == 0, stderr
    free = json.loads(stdout)
    assert free["path"] == "none" and free["episodes"] == 12
    assert max(free["lengths"]) > 7 and 8 <= free["mean"] <= 60  # CartPole's random level ~22
    assert free["scores"] == free["lengths"]  # +1 per step
    assert json.loads(cli(tmp_path, *args)[1])["scores"] == free["scores"]
    code, stdout, _ = cli(tmp_path, *args[:-1])
    assert code == 0 and "random agent on gym_CartPole-v1" in stdout
    for bad in (["--checkpoint", "none", "--task", "gym_CartPole-v1"],
                ["--checkpoint", "none", "--random-agent"]):
        result = run_cli("eval", *bad, env={"DREAMERCTL_LOGDIR": str(tmp_path)})
        assert_one_error(result, 2, "--checkpoint none needs --random-agent and --task")


def test_find_latest_per_task(logdir: Path) -> None:
    code, stdout, _ = cli(logdir, "find-latest", "--task", "gym_Pendulum-v1", "--json")
    assert code == 0
    found = json.loads(stdout)
    assert found["task"] == "gym_Pendulum-v1" and found["step"] == 40
    assert Path(found["path"]).parent == Path(found["run_dir"])
    code, stdout, _ = cli(logdir, "find-latest")
    assert code == 0 and stdout.strip().endswith("checkpoint.pt") and "\n" not in stdout.strip()
    code, _, stderr = cli(logdir, "find-latest", "--task", "atari_pong")
    assert code == 1 and "error: no checkpoint found" in stderr


def test_compare_json_and_csv(logdir: Path) -> None:
    paths = sorted(str(p) for p in logdir.glob("dreamer_*/*/checkpoint.pt"))
    code, stdout, stderr = cli(logdir, "compare", *paths, "--episodes", "2", "--json")
    assert code == 0, stderr
    rows = json.loads(stdout)
    assert sorted(row["path"] for row in rows) == paths
    # Grouped by task in order of first appearance, best first within each (issue 23).
    tasks = [row["task"] for row in rows]
    assert tasks == sorted(tasks, key=tasks.index) and set(tasks) == {"gym_CartPole-v1",
                                                                       "gym_Pendulum-v1"}
    first = min(paths, key=lambda path: path)  # the task of the first path leads
    assert tasks[0] == next(row["task"] for row in rows if row["path"] == first)
    for task in set(tasks):
        means = [row["mean"] for row in rows if row["task"] == task]
        assert means == sorted(means, reverse=True)
    code, stdout, _ = cli(logdir, "compare", *paths, "--episodes", "2", "--csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(stdout)))
    assert len(table) == 3
    assert list(table[0]) == ["path", "task", "step", "parameters", "episodes", "mean", "std",
                              "min", "max", "ci95_low", "ci95_high"]
    assert {row["parameters"] for row in table} == {"average"}  # the gym preset keeps one
    by_path = {row["path"]: row for row in rows}
    for line in table:  # the same seeds give the same numbers in both formats
        assert float(line["mean"]) == pytest.approx(by_path[line["path"]]["mean"])


def test_compare_random_agent_rows(logdir: Path) -> None:
    """One random row per task, in the env of that task's first checkpoint on the command line,
    with the numbers `eval --random-agent` gives for that checkpoint on the same seeds."""
    paths = sorted(str(p) for p in logdir.glob("dreamer_*/*/checkpoint.pt"))
    code, stdout, stderr = cli(logdir, "compare", *paths, "--episodes", "4", "--seed", "2",
                               "--random-agent", "--json")
    assert code == 0, stderr
    rows = json.loads(stdout)
    assert len(rows) == 5
    random_rows = {row["task"]: row for row in rows if row["path"] == "random"}
    assert set(random_rows) == {"gym_CartPole-v1", "gym_Pendulum-v1"}
    for task, row in random_rows.items():
        first = next(p for p in paths if f"dreamer_{task}" in p)
        assert row["env_from"] == first and row["mode"] == "random" and row["step"] == 0
        code, stdout, stderr = cli(logdir, "eval", "--checkpoint", first, "--random-agent",
                                   "--episodes", "4", "--seed", "2", "--json")
        assert code == 0, stderr
        assert json.loads(stdout)["scores"] == row["scores"]
    assert [row["mean"] for row in rows] == sorted((row["mean"] for row in rows), reverse=True)
    code, stdout, _ = cli(logdir, "compare", paths[0], "--episodes", "1", "--random-agent",
                          "--csv")
    assert code == 0
    assert sorted(line["path"] for line in csv.DictReader(io.StringIO(stdout))) == sorted(
        [paths[0], "random"])


def test_compare_run_dirs_and_latest(logdir: Path) -> None:
    run_dirs = sorted(str(p.parent) for p in logdir.glob("dreamer_*/*/checkpoint.pt"))
    code, stdout, stderr = cli(logdir, "compare", run_dirs[0], "latest", "--episodes", "1",
                               "--json")
    assert code == 0, stderr
    assert len(json.loads(stdout)) == 2


def test_record_with_agent_and_model_view(logdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "videos"
    code, stdout, stderr = cli(logdir, "record", "--checkpoint", "latest", "--episodes", "2",
                               "--max-steps", "12", "--output", str(out))
    assert code == 0, stderr
    files = sorted(out.glob("episode_*.mp4"))
    assert [line for line in stdout.splitlines()] == [str(f) for f in files]
    assert len(files) == 2 and all("_score_" in f.name for f in files)
    frames = read_frames(files[0])
    assert frames.shape[1:] == (400, 600, 3)  # CartPole's own rgb_array size
    lines = [json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]
    assert [x["episode"] for x in lines] == [0, 1]
    _, latest, _ = cli(logdir, "find-latest")
    assert all(x["checkpoint"] == latest.strip() for x in lines)  # the agent that played
    assert f"checkpoint: {latest.strip()}" in stderr.splitlines()


def test_record_with_model_on_images(tmp_path: Path) -> None:
    logdir = tmp_path / "pong"
    train_run("atari_pong", ["debug"], ["run.steps=30", 'run.device="cpu"'], logdir, None)
    out = tmp_path / "videos"
    code, _, stderr = cli(logdir, "record", "--checkpoint", "latest", "--max-steps", "5",
                          "--with-model", "--output", str(out))
    assert code == 0, stderr
    (video,) = out.glob("episode_000_score_*.mp4")
    frames = read_frames(video)
    # Pong at 210x160, then the agent's 64x64 input and the model's reconstruction, both scaled
    # to the frame height with 4 px separators: 160 + 4 + 210 + 4 + 210.
    assert frames.shape[1:] == (210, 588, 3)
    assert len(frames) == 6
    code, _, stderr = cli(logdir, "record", "--checkpoint", "latest", "--random-agent",
                          "--max-steps", "5", "--output", str(tmp_path / "random"))
    assert code == 0, stderr
    assert read_frames(next((tmp_path / "random").glob("*.mp4"))).shape[1:] == (210, 160, 3)


@pytest.mark.parametrize("task, frame", [("gym_CartPole-v1", (400, 600, 3)),
                                         ("atari_pong", (210, 160, 3)),
                                         ("dmc_cartpole_balance", (384, 384, 3))])
def test_record_a_trained_agent_on_every_suite(tmp_path: Path, task: str,
                                               frame: tuple[int, int, int]) -> None:
    """Every suite's trained agent can be watched, sampled and greedy, with the model's view
    (DMC's renders are flipped views with negative strides, issue 23)."""
    logdir = tmp_path / "runs"
    train_run(task, ["debug"], ["run.steps=20", 'run.device="cpu"'], logdir, None)
    with_model = [] if task.startswith("gym_") else ["--with-model"]
    for name, extra in (("sample", []), ("greedy", ["--mode", "greedy", *with_model])):
        out = tmp_path / name
        code, stdout, stderr = cli(logdir, "record", "--checkpoint", "latest", "--max-steps",
                                   "3", "--output", str(out), *extra)
        assert code == 0, stderr
        assert "warning" not in stderr.lower(), stderr
        (video,) = out.glob("episode_000_score_*.mp4")
        assert stdout.splitlines() == [str(video)]
        frames = read_frames(video)
        assert len(frames) == 4 and frames.shape[1] == frame[0]
        # With the model's view the frame grows by the two 64x64 panels scaled to its height.
        assert frames.shape[2] == frame[1] if name == "sample" or not with_model \
            else frames.shape[2] > frame[1]
    if not with_model:
        code, _, stderr = cli(logdir, "record", "--checkpoint", "latest", "--with-model",
                              "--output", str(tmp_path / "refused"))
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == 2 and len(errors) == 1, stderr
        assert errors[0].startswith("error: --with-model shows")
        assert not (tmp_path / "refused").exists()


@pytest.mark.parametrize("command", ["eval", "record"])
def test_agent_options_with_random_agent_are_refused(command: str, tmp_path: Path) -> None:
    """--mode, --device and --parameters choose how a network acts; a random agent has none,
    so they are an error with --random-agent instead of being silently ignored."""
    base = (command, "--checkpoint", "none", "--random-agent", "--task", "gym_CartPole-v1",
            "--output", str(tmp_path / "v")) if command == "record" else (
            command, "--checkpoint", "none", "--random-agent", "--task", "gym_CartPole-v1")
    assert_one_error(run_cli(*base, "--mode", "greedy"), 2,
                     "--mode cannot be used with --random-agent")
    assert_one_error(run_cli(*base, "--mode", "sample", "--device", "cpu"), 2,
                     "--mode and --device cannot be used with --random-agent")
    assert_one_error(run_cli(*base, "--parameters", "live"), 2,
                     "--parameters cannot be used with --random-agent")
    assert not (tmp_path / "v").exists()


@pytest.mark.parametrize("command", ["eval", "record"])
def test_random_agent_without_a_checkpoint_points_to_none(command: str, tmp_path: Path) -> None:
    result = run_cli(command, "--checkpoint", "latest", "--random-agent", "--task",
                     "gym_CartPole-v1", "--output" if command == "record" else "--seed",
                     str(tmp_path / "v") if command == "record" else "0",
                     env={"DREAMERCTL_LOGDIR": str(tmp_path / "empty")})
    assert_one_error(result, 1, "a random agent needs no checkpoint: --checkpoint none "
                                "--random-agent --task gym_CartPole-v1")
