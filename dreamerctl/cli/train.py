"""dreamerctl train TASK: parse, build the config, call the runner."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from dreamerctl.cli.common import LOGDIR_HELP, logdir_or_default, print_line

if TYPE_CHECKING:
    from dreamerctl.config.loader import Override


def preset_help() -> str:
    from dreamerctl.config.loader import preset_names

    return ("Preset name or a TOML path; repeatable, layered in order. Shipped: "
            + ", ".join(preset_names()) + ".")


def train(
    task: str = typer.Argument(..., metavar="TASK",
                               help="atari_<game>, dmc_<domain>_<task> or gym_<EnvId>."),
    preset: list[str] = typer.Option(
        [], "--preset", "-p", metavar="NAME|PATH", help=preset_help()
    ),
    overrides: list[str] = typer.Option(
        [], "--set", "-s", metavar="KEY=VALUE",
        help="Override one field (a TOML literal); repeatable.",
    ),
    steps: int | None = typer.Option(None, "--steps", metavar="N",
                                     help="Total agent steps (run.steps)."),
    logdir: Path | None = typer.Option(None, "--logdir", metavar="DIR", help=LOGDIR_HELP),
    seed: int | None = typer.Option(
        None, "--seed", metavar="N", help="Seed of the envs, networks and replay (run.seed)."
    ),
    device: str | None = typer.Option(None, "--device", metavar="auto|cpu|cuda",
                                      help="Where to train (run.device)."),
    resume: str | None = typer.Option(
        None, "--resume", metavar="PATH|latest",
        help="Continue a run: a checkpoint, a run directory or 'latest'.",
    ),
) -> None:
    """Train a DreamerV3 agent; prints the run directory."""
    from dreamerctl.run.train import train_run

    extra: list[Override] = []
    if steps is not None:
        extra.append((f"run.steps={steps}", f"--steps {steps}"))
    if seed is not None:
        extra.append((f"run.seed={seed}", f"--seed {seed}"))
    if device is not None:
        extra.append((f'run.device="{device}"', f"--device {device}"))
    run_dir = train_run(
        task=task,
        presets=preset,
        overrides=[*overrides, *extra],
        logdir=logdir_or_default(logdir),
        resume=resume,
    )
    if run_dir is not None:  # None on the other ranks of a torchrun job: rank 0 prints it
        print_line(run_dir)
