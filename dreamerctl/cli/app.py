"""The Typer app and the one place where errors become `error: ...` lines and exit codes."""

from __future__ import annotations

import inspect
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import typer

from dreamerctl.cli import compare, diagnose, eval, find_latest, gif, record, report, train
from dreamerctl.cli.common import setup_logging
from dreamerctl.errors import DreamerError
from dreamerctl.run.distributed import launch_rank

app = typer.Typer(
    name="dreamerctl",
    help="Train, evaluate, record and compare DreamerV3 agents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("train")(train.train)
app.command("eval")(eval.evaluate)
app.command("record")(record.record)
app.command("find-latest")(find_latest.find_latest)
app.command("gif")(gif.gif)
app.command("compare")(compare.compare)
app.command("report")(report.report)
app.command("diagnose")(diagnose.diagnose)


def _show_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("dreamerctl")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown (not installed)"
        sys.stdout.write(f"dreamerctl {number}\n")
        raise typer.Exit()


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show tracebacks and debug logs (also DREAMERCTL_DEBUG=1)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    if debug:
        os.environ["DREAMERCTL_DEBUG"] = "1"
        setup_logging(True)


def debug_enabled() -> bool:
    return os.environ.get("DREAMERCTL_DEBUG", "") not in ("", "0")


def fail(message: str, code: int, shared: bool = False) -> int:
    """Print `message` as `error:` lines; returns `code`.

    In a torchrun job every rank is a process with its own stderr: an error that every rank
    raised together (`shared`) is printed by rank 0 alone, any other one names its rank."""
    rank, world = launch_rank()
    if world > 1 and shared and rank != 0:
        return code
    prefix = f"rank {rank}: " if world > 1 and not shared else ""
    lines = [line for line in str(message).strip().splitlines() if line.strip()] or ["failed"]
    for line in lines:
        sys.stderr.write(f"error: {prefix}{line}\n")
    sys.stderr.flush()
    return code


def terminate_like_ctrl_c() -> None:
    """SIGTERM (`kill`, a job scheduler, a timeout) interrupts like Ctrl-C: the command unwinds,
    so a video or GIF being written is removed instead of left as a hidden temporary file, and
    it exits 130. `train` installs its own handler, which saves a checkpoint first."""
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread (e.g. an embedding app)

    def interrupt(signum: int, frame: object) -> None:
        Terminated.seen = True
        raise Terminated

    signal.signal(signal.SIGTERM, interrupt)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process was, unwinding it like Ctrl-C."""

    seen = False


# What an option without a metavar shows in --help, by its annotation. Typer (0.29) shows the
# Python type otherwise (`--json <bool>`, `--episodes <int range>`, `--logdir <path>`); a flag
# takes no value, so it shows none.
METAVARS = {bool: "", int: "N", float: "X", str: "TEXT", Path: "PATH"}


def plain_help(command: Any, settings: dict[str, Any] | None = None) -> Any:
    """Help a person reads, for `command` and its subcommands: every option without a metavar
    gets the plain one of METAVARS (the help flag included), and the description's paragraphs
    flow; returns `command`."""
    settings = command.context_settings if settings is None else settings
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub, settings)
    # The help option is built once per command and kept (with the names of the first context
    # that asked): ask with the app's names, so -h stays. Typer 0.29 vendors click
    # (typer._click), so the context comes from the command, not from an `import click`.
    help_option = command.get_help_option(command.context_class(command, **settings))
    if help_option is not None:
        help_option.metavar = ""
    if command.help:  # Typer keeps a docstring's line breaks after its first paragraph
        paragraphs = inspect.cleandoc(command.help).split("\n\n")
        command.help = "\n\n".join(" ".join(p.split()) for p in paragraphs)
    for param in command.params:
        descriptor = getattr(param, "type_descriptor", None)
        if param.param_type_name != "option" or param.metavar is not None or descriptor is None:
            continue
        kind = bool if param.is_flag else descriptor.annotation
        if kind in METAVARS:
            param.metavar = METAVARS[kind]
    return command


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code (SPEC §6: 0, 1, 2, 130)."""
    if "--debug" in (argv if argv is not None else sys.argv[1:]):
        os.environ["DREAMERCTL_DEBUG"] = "1"
    setup_logging(debug_enabled())
    terminate_like_ctrl_c()
    try:
        command = plain_help(typer.main.get_command(app))
        result = command(args=argv, standalone_mode=False, prog_name="dreamerctl")
        if result == 130:  # typer turns Ctrl-C (and our SIGTERM) into a bare exit code 130
            return fail("interrupted by SIGTERM" if Terminated.seen else "interrupted", 130)
        return result if isinstance(result, int) else 0
    except DreamerError as e:
        if debug_enabled():
            traceback.print_exc()
        return fail(str(e), e.exit_code, shared=e.shared)
    except KeyboardInterrupt:  # outside typer's command call
        return fail("interrupted by SIGTERM" if Terminated.seen else "interrupted", 130)
    except Exception as e:
        # typer's usage errors (bad option, missing argument) carry their own exit code 2.
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            if e.exit_code == 0 or type(e).__name__ == "NoArgsIsHelpError":
                return 0  # the help was asked for, or is what a bare `dreamerctl` shows
            return fail(e.format_message(), e.exit_code)
        if debug_enabled():
            traceback.print_exc()
        hint = "" if debug_enabled() else " (run with --debug for the traceback)"
        return fail(f"{type(e).__name__}: {e}{hint}", 1)


def main() -> None:
    sys.exit(run())
