"""dreamerctl find-latest: the newest checkpoint under the logdir."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamerctl.cli.common import LOGDIR_HELP, logdir_or_default, print_json, print_line


def find_latest(
    logdir: Path | None = typer.Option(
        None, "--logdir", help=LOGDIR_HELP
    ),
    task: str | None = typer.Option(None, "--task", metavar="TASK", help="Only runs of this task."),
    as_json: bool = typer.Option(
        False, "--json", help="Print path, run_dir, task and step as JSON."
    ),
) -> None:
    """Print the newest checkpoint's path (exit 1 when there is none)."""
    from dreamerctl.run.rundir import latest_checkpoint

    found = latest_checkpoint(logdir_or_default(logdir), task=task)
    if as_json:
        print_json(found.to_dict())
    else:
        print_line(found.path)
