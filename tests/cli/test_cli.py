"""The CLI contract of SPEC §6, through real subprocesses: help, exit codes, one error line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import assert_one_error, run_cli

COMMANDS = ["train", "eval", "record", "find-latest", "gif", "compare", "report", "diagnose"]


def test_root_help_lists_every_command() -> None:
    result = run_cli("--help", env={"COLUMNS": "80"})
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout
    assert "<bool>" not in result.stdout  # the help flag takes no value


@pytest.mark.parametrize("command", ["report", "diagnose"])
def test_help_paragraphs_flow_at_any_width(command: str) -> None:
    """A docstring's line breaks are not the terminal's: at 200 columns the description's
    second paragraph is one line, not broken where the source was."""
    result = run_cli(command, "--help", env={"COLUMNS": "200"})
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    usage = next(i for i, line in enumerate(lines) if line.startswith("Usage:"))
    assert lines[usage + 2].endswith(".") and "╭" in lines[usage + 3], lines[usage:usage + 4]


@pytest.mark.parametrize("command", COMMANDS)
def test_command_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert result.stderr == ""


def test_unknown_command_is_a_usage_error() -> None:
    assert_one_error(run_cli("bogus"), 2, "No such command 'bogus'")


def test_missing_argument_is_a_usage_error() -> None:
    assert_one_error(run_cli("train"), 2, "Missing argument")


def test_unknown_task_suggests_close_matches() -> None:
    assert_one_error(run_cli("train", "atari_pongg"), 2, "atari_pong")


def test_unknown_suite() -> None:
    assert_one_error(run_cli("train", "mujoco_ant"), 2, "unknown suite 'mujoco'")


def test_bad_override_names_the_field() -> None:
    result = run_cli("train", "gym_CartPole-v1", "--set", "train.batch_length=1")
    assert_one_error(result, 2, "'train.batch_length' (from --set train.batch_length=1)")


def test_unknown_preset() -> None:
    assert_one_error(run_cli("train", "gym_CartPole-v1", "--preset", "tiny"), 2,
                     "unknown preset 'tiny'")


def test_negative_steps() -> None:
    assert_one_error(run_cli("train", "gym_CartPole-v1", "--steps", "-3"), 2, "'run.steps'")


def test_find_latest_in_an_empty_logdir(tmp_path: Path) -> None:
    result = run_cli("find-latest", "--logdir", str(tmp_path))
    assert_one_error(result, 1, f"no checkpoint found under {tmp_path}")
    assert result.stdout == ""


def test_eval_latest_without_runs(tmp_path: Path) -> None:
    result = run_cli("eval", "--checkpoint", "latest", "--logdir", str(tmp_path))
    assert_one_error(result, 1, "no checkpoint found")


def test_eval_missing_file(tmp_path: Path) -> None:
    assert_one_error(run_cli("eval", "--checkpoint", str(tmp_path / "x.pt")), 1,
                     "checkpoint not found")


def test_eval_garbage_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"\x00garbage" * 100)
    assert_one_error(run_cli("eval", "--checkpoint", str(path)), 1, str(path))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("--debug", "eval", "--checkpoint", str(tmp_path / "x.pt"))
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "error: checkpoint not found" in result.stderr


def test_compare_json_and_csv_exclude_each_other(tmp_path: Path) -> None:
    assert_one_error(run_cli("compare", str(tmp_path), "--json", "--csv"), 2, "exclude")


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_option_text_whole(command: str) -> None:
    """Rich markup must not eat a help text: `[default: ...]` is a style tag unless escaped."""
    import typer.main

    from dreamerctl.cli.app import app

    group = typer.main.get_command(app)
    params = group.commands[command].params  # type: ignore[attr-defined]
    result = run_cli(command, "--help", env={"COLUMNS": "400"})
    shown = " ".join(result.stdout.split())
    for param in params:
        text = getattr(param, "help", None)
        if text:
            assert " ".join(text.replace("\\[", "[").split()) in shown, param.name
    # No Python types where a person reads an option's metavar (`--json <bool>`, `<int range>`,
    # `<path>`), the help flag's included (the arguments' type labels are Typer's own).
    types = [line for line in result.stdout.splitlines()
             if re.search(r"--[a-z].*<(bool|int|float|str|path)", line)]
    assert not types, types


def test_no_arguments_prints_help_and_succeeds() -> None:
    result = run_cli()
    assert result.returncode == 0 and "Usage" in result.stdout and result.stderr == ""


def test_paths_with_brackets_and_spaces_print_verbatim(tmp_path: Path) -> None:
    """Every path on stdout is printed as it is, never read as Rich markup (issue 23)."""
    from dreamerctl.run.train import train_run

    logdir = tmp_path / "ld [exp]"
    run_dir = train_run("gym_CartPole-v1", ["debug"], ["run.steps=5", 'run.device="cpu"'],
                             logdir, None)
    env = {"DREAMERCTL_LOGDIR": str(logdir)}
    found = run_cli("find-latest", env=env)
    assert found.returncode == 0 and found.stdout == f"{run_dir / 'checkpoint.pt'}\n"
    for name in ("vids[best]", "v[/x]", "my [b]videos[/b]"):
        result = run_cli("record", "--checkpoint", "latest", "--max-steps", "2", "--output",
                         str(tmp_path / name), env=env)
        assert result.returncode == 0, result.stderr
        (video,) = (tmp_path / name).glob("*.mp4")
        assert result.stdout == f"{video}\n"
        gif = run_cli("gif", str(video), "--output", str(tmp_path / name / "a[1].gif"))
        assert gif.returncode == 0 and gif.stdout == f"{tmp_path / name / 'a[1].gif'}\n"
    table = run_cli("compare", str(run_dir / "checkpoint.pt"), "--episodes", "1", env=env)
    assert table.returncode == 0 and "[exp]" in table.stdout.replace("\n", "")


def test_version() -> None:
    from importlib.metadata import version

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout == f"dreamerctl {version('dreamerctl')}\n"


# Packages the `dev` extra brings in (with what they pull: import-linter -> click, grimp) that a
# user's `pip install .` does not: Typer 0.29 vendors click, so `import click` works in the
# test venv and fails on a user's machine.
DEV_ONLY = ("click", "grimp", "importlinter", "mypy", "pytest", "xdist", "ruff", "tensorboard",
            "moviepy")


def test_the_cli_imports_without_the_dev_extra() -> None:
    """Every dreamerctl module imports, and `--help` runs, with the dev extra's packages hidden."""
    code = f"""
import importlib, importlib.abc, pkgutil, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {DEV_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden: dev extra)")
        return None
sys.meta_path.insert(0, Hide())
import dreamerctl
for info in pkgutil.walk_packages(dreamerctl.__path__, "dreamerctl."):
    importlib.import_module(info.name)
from dreamerctl.cli.app import run
sys.exit(run(["--help"]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage" in result.stdout
