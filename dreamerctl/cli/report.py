"""dreamerctl report: one self-contained HTML page of one or several runs."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamerctl.cli.common import LOGDIR_HELP, logdir_or_default, print_json, print_line, print_rows


def report(
    runs: list[str] = typer.Argument(
        ..., metavar="RUN",
        help="Run directories, checkpoints or 'latest' (several: overlaid, seeds grouped).",
    ),
    output: Path = typer.Option(Path("report.html"), "--output", "-o",
                                help="The HTML file to write."),
    as_json: bool = typer.Option(False, "--json", help="Print the series as JSON, no page."),
    as_csv: bool = typer.Option(
        False, "--csv", help="Print every point as CSV (run, task, seed, series, frames, value)."
    ),
    videos: list[Path] = typer.Option(
        [], "--videos",
        help="A folder `dreamerctl record` wrote; its episodes of these runs' checkpoints are "
        "shown with the run (repeatable).",
    ),
    logdir: Path | None = typer.Option(None, "--logdir", help=LOGDIR_HELP),
) -> None:
    """Write an HTML page of a run's curves, beside the official DreamerV3 one; prints its path.

    The page holds the training curves, the official DreamerV3 curve of the task where one is
    published, the open-loop videos and the configs."""
    from dreamerctl.errors import UsageError
    from dreamerctl.page import as_json as series_json
    from dreamerctl.page import check_output, write_page
    from dreamerctl.run.report import attach_recordings, export_rows, read_run, resolve_run_dirs

    if as_json and as_csv:
        raise UsageError("--json and --csv exclude each other")
    if not (as_json or as_csv):
        check_output(output)
    data = [read_run(run_dir) for run_dir in resolve_run_dirs(runs, logdir_or_default(logdir))]
    attach_recordings(data, [folder.expanduser() for folder in videos])
    if as_json:
        print_json(series_json(data))
    elif as_csv:
        print_rows(export_rows(data), ["run", "task", "seed", "series", "frames", "value"],
                   as_csv=True)
    else:
        print_line(write_page(data, output))
