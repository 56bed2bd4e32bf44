"""What every command shares: the two consoles, result rendering, the logdir."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dreamerctl.spaces import ACT_MODES, ACT_PARAMETERS

MODE_METAVAR = "|".join(ACT_MODES)  # --mode of eval, record and compare
PARAMETERS_METAVAR = "|".join(ACT_PARAMETERS)  # --parameters of eval, record and compare
PARAMETERS_HELP = ("average: the moving average the policy acts with (train.policy_ema; the "
                   "last trained parameters where none was kept) | live: the last trained "
                   "parameters, as training collected with them")

# Results go to stdout; progress, logs and errors go to stderr (SPEC §6).
out = Console(soft_wrap=True)
if not out.is_terminal:
    # Piped or captured: no terminal width to fit, so never truncate table cells.
    out = Console(soft_wrap=True, width=240)


# Help texts are Rich markup: a literal "[" is written "\\[" in the source.
LOGDIR_HELP = "Root of run directories \\[default: $DREAMERCTL_LOGDIR or ~/logdir]."


def agent_options(random_agent: bool, mode: str | None, device: str | None,
                  parameters: str | None = None) -> tuple[str, str, str]:
    """`--mode`, `--device` and `--parameters` (defaults sample, auto, average) say how a
    checkpoint's agent acts, where it runs and with which parameters; a random agent has none
    of them, so giving them with `--random-agent` is an error rather than silently ignored."""
    from dreamerctl.errors import UsageError

    given = [flag for flag, value in (("--mode", mode), ("--device", device),
                                      ("--parameters", parameters)) if value is not None]
    if random_agent and given:
        raise UsageError(f"{' and '.join(given)} cannot be used with --random-agent: it acts "
                         "uniformly at random, with no network")
    return mode or "sample", device or "auto", parameters or "average"


def default_logdir() -> Path:
    return Path(os.environ.get("DREAMERCTL_LOGDIR") or "~/logdir").expanduser()


def logdir_or_default(logdir: Path | None) -> Path:
    return logdir.expanduser() if logdir is not None else default_logdir()


def print_line(value: Any) -> None:
    """One result (a path, a value) on stdout, verbatim: never through Rich markup, so that a
    folder named `vids[best]` prints as itself and `$(dreamerctl ...)` gets it whole."""
    sys.stdout.write(f"{value}\n")
    sys.stdout.flush()


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2) + "\n")
    sys.stdout.flush()


def print_rows(rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str | None = None,
               as_json: bool = False, as_csv: bool = False) -> None:
    """Render the same rows as a Rich table, a JSON list or CSV."""
    if as_json:
        print_json(list(rows))
        return
    if as_csv:
        import csv

        writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text cells are shown as they are: a path with brackets is not markup.
        table.add_row(*(Text(format_cell(row.get(c))) for c in columns))
    out.print(table)


def format_cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(format_cell(v) for v in value) + "]"
    return "" if value is None else str(value)


def setup_logging(debug: bool) -> None:
    """Logs go to stderr as plain lines (`warning:` prefixed for warnings)."""
    from dreamerctl.run.distributed import launch_rank

    handler = logging.StreamHandler(sys.stderr)
    rank, world = launch_rank()
    # Under torchrun the ranks share one terminal: rank 0 logs as a single process does, the
    # others only their warnings, each naming its rank.
    quiet = world > 1 and rank != 0
    handler.setFormatter(LevelFormatter(f"rank {rank}: " if quiet else ""))
    root = logging.getLogger("dreamerctl")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO)
    root.propagate = False


class LevelFormatter(logging.Formatter):
    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        # Only the CLI's final message starts with `error:`; logged problems are warnings.
        message = self.prefix + record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"warning: {message}"
        return message
