"""dreamerctl eval: evaluate one checkpoint and print the score statistics."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamerctl.cli.common import (
    MODE_METAVAR,
    PARAMETERS_HELP,
    PARAMETERS_METAVAR,
    agent_options,
    logdir_or_default,
    print_json,
    print_rows,
)

COLUMNS = ["task", "step", "parameters", "episodes", "mean", "std", "min", "max", "ci95_low",
           "ci95_high", "mean_length"]


def evaluate(
    checkpoint: str = typer.Option(
        ..., "--checkpoint", "-c", metavar="PATH|latest",
        help="A checkpoint, run dir, 'latest' or 'none' (with --random-agent and --task)."
    ),
    random_agent: bool = typer.Option(
        False, "--random-agent",
        help="Act uniformly at random (a baseline) in the checkpoint's env settings.",
    ),
    task: str | None = typer.Option(
        None, "--task", metavar="TASK", help="Evaluate on another task with the same spaces."
    ),
    episodes: int = typer.Option(
        10, "--episodes", "-n", metavar="N", min=1,
        help="Episodes to run.",
    ),
    seed: int = typer.Option(
        0, "--seed", metavar="N",
        help="Seed of the evaluation envs and policy.",
    ),
    mode: str | None = typer.Option(
        None, "--mode", metavar=MODE_METAVAR,
        help="sample (as DreamerV3 evaluates) | greedy \\[default: sample]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    logdir: Path | None = typer.Option(None, "--logdir", help="Where 'latest' looks."),
    device: str | None = typer.Option(
        None, "--device", metavar="auto|cpu|cuda", help="auto | cpu | cuda \\[default: auto]."
    ),
    parameters: str | None = typer.Option(
        None, "--parameters", metavar=PARAMETERS_METAVAR,
        help=PARAMETERS_HELP + " \\[default: average]."
    ),
) -> None:
    """Evaluate a checkpoint: mean, std, min, max and a 95% bootstrap CI of the episode scores."""
    from dreamerctl.errors import UsageError
    from dreamerctl.run.evaluate import evaluate_checkpoint, evaluate_random
    from dreamerctl.run.rundir import resolve_checkpoint

    mode, device, parameters = agent_options(random_agent, mode, device, parameters)
    if random_agent:
        result = evaluate_random(checkpoint, logdir_or_default(logdir), task, episodes, seed)
        title = f"random agent on {result['task']}"
    elif checkpoint == "none":
        raise UsageError("--checkpoint none needs --random-agent and --task")
    else:
        path = resolve_checkpoint(checkpoint, logdir_or_default(logdir), task=task)
        result = evaluate_checkpoint(path, task=task, episodes=episodes, seed=seed, mode=mode,
                                     device=device, parameters=parameters)
        title = str(path)
    if as_json:
        print_json(result)
    else:
        print_rows([result], COLUMNS, title=title)
