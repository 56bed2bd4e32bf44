"""dreamerctl compare: evaluate several checkpoints on the same seeds, one row each."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamerctl.cli.common import (
    MODE_METAVAR,
    PARAMETERS_HELP,
    PARAMETERS_METAVAR,
    logdir_or_default,
    print_rows,
)

COLUMNS = ["path", "task", "step", "parameters", "episodes", "mean", "std", "min", "max",
           "ci95_low", "ci95_high"]


def compare(
    checkpoints: list[str] = typer.Argument(
        ..., metavar="CHECKPOINT", help="Checkpoints, run directories or 'latest'."),
    episodes: int = typer.Option(
        10, "--episodes", "-n", metavar="N", min=1,
        help="Episodes per checkpoint.",
    ),
    seed: int = typer.Option(0, "--seed", metavar="N", help="The same seeds for every checkpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of rows."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV: a header and one line per row."),
    mode: str = typer.Option("sample", "--mode", metavar=MODE_METAVAR, help="sample | greedy."),
    logdir: Path | None = typer.Option(None, "--logdir", help="Where 'latest' looks."),
    device: str = typer.Option(
        "auto", "--device", metavar="auto|cpu|cuda",
        help="auto | cpu | cuda.",
    ),
    random_agent: bool = typer.Option(
        False, "--random-agent",
        help="Add a row per task: random actions in its first checkpoint's env settings.",
    ),
    parameters: str = typer.Option(
        "average", "--parameters", metavar=PARAMETERS_METAVAR, help=PARAMETERS_HELP + "."
    ),
) -> None:
    """Evaluate checkpoints on the same seeds; rows grouped by task, best mean first."""
    from dreamerctl.errors import UsageError
    from dreamerctl.run.evaluate import compare_checkpoints

    if as_json and as_csv:
        raise UsageError("--json and --csv exclude each other")
    rows = compare_checkpoints(checkpoints, logdir_or_default(logdir), episodes=episodes,
                               seed=seed, mode=mode, device=device,
                               random_agent=random_agent, parameters=parameters)
    print_rows(rows, COLUMNS, title="compare", as_json=as_json, as_csv=as_csv)
