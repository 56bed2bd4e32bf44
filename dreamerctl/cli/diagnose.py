"""dreamerctl diagnose: why a run does not learn, from its checkpoint and its replay."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from dreamerctl.cli.common import LOGDIR_HELP, logdir_or_default, print_json


def diagnose(
    run: str = typer.Argument(
        ..., metavar="RUN", help="A run directory, its checkpoint, or 'latest'."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    episodes: int = typer.Option(2, "--episodes", min=1,
                                 help="Last complete episodes for the value report."),
    last: int = typer.Option(1000, "--last", min=2,
                             help="Last replayed steps for the policy, reward and continue heads."),
    terminals: int = typer.Option(50, "--terminals", min=1,
                                  help="Last terminations for the continue head."),
    context: int = typer.Option(16, "--context", min=1,
                                help="Posterior steps before the open loop."),
    horizon: int = typer.Option(15, "--horizon", min=1, help="Open-loop steps."),
    windows: int = typer.Option(64, "--windows", min=1, help="Open-loop windows."),
    samples: int = typer.Option(64, "--samples", min=1,
                                help="Imagined futures per state (continuous actions)."),
    seed: int = typer.Option(0, "--seed"),
    logdir: Path | None = typer.Option(None, "--logdir", help=LOGDIR_HELP),
) -> None:
    """Look inside a run: why it learns or does not.

    Critic values against the returns collected, policy entropy or saturation, the reward
    head's residual, whether the continue head sees deaths coming, open-loop model error, and
    the actor's gradient."""
    from dreamerctl.errors import RunError
    from dreamerctl.run import rundir
    from dreamerctl.run.diagnose import diagnose as run_diagnose
    from dreamerctl.run.diagnose import format_report

    path, checkpoint = Path(run).expanduser(), None
    if run == "latest":
        path = rundir.latest_checkpoint(logdir_or_default(logdir)).run_dir
    elif path.is_file():  # the run's checkpoint, its best, or a kept snapshot
        path, checkpoint = rundir.run_dir_of(path), path
    elif not path.exists():
        raise RunError(f"run directory or checkpoint not found: {path}")
    report = run_diagnose(path, checkpoint, episodes=episodes, last=last, context=context,
                          horizon=horizon, windows=windows, samples=samples, seed=seed,
                          terminals=terminals)
    if as_json:
        print_json(report)
    else:
        sys.stdout.write(format_report(report))
