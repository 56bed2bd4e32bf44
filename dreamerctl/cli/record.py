"""dreamerctl record: MP4 per episode (score in the name), with an agent or a random one."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamerctl.cli.common import (
    MODE_METAVAR,
    PARAMETERS_HELP,
    PARAMETERS_METAVAR,
    agent_options,
    logdir_or_default,
    print_line,
)


def record(
    checkpoint: str = typer.Option(
        ..., "--checkpoint", "-c", metavar="PATH|latest",
        help="A checkpoint, run dir, 'latest' or 'none'."
    ),
    random_agent: bool = typer.Option(False, "--random-agent", help="Act uniformly at random."),
    task: str | None = typer.Option(
        None, "--task", metavar="TASK",
        help="Task (default: the checkpoint's).",
    ),
    episodes: int = typer.Option(
        1, "--episodes", "-n", metavar="N", min=1,
        help="Episodes to record.",
    ),
    output: Path = typer.Option(
        Path("videos"), "--output", "-o", metavar="DIR",
        help="Output folder.",
    ),
    fps: int = typer.Option(30, "--fps", min=1, help="Video frames per second."),
    max_steps: int | None = typer.Option(
        None, "--max-steps", min=1, help="Stop an episode after this many agent steps."
    ),
    make_gif: bool = typer.Option(
        False, "--gif", help="Also write a GIF beside each MP4 (every 2nd frame, real time)."
    ),
    seed: int = typer.Option(
        0, "--seed", metavar="N", help="Seed of the policy; episode i resets the env with seed + i."
    ),
    with_model: bool = typer.Option(
        False, "--with-model", help="Show the agent's 64x64 input and the model's reconstruction."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier recording in the output folder."
    ),
    append: bool = typer.Option(
        False, "--append",
        help="Add episodes to an earlier recording in the output folder (numbers and env seeds "
        "go on after its last episode).",
    ),
    mode: str | None = typer.Option(
        None, "--mode", metavar=MODE_METAVAR, help="sample | greedy \\[default: sample]."
    ),
    logdir: Path | None = typer.Option(None, "--logdir", help="Where 'latest' looks."),
    device: str | None = typer.Option(
        None, "--device", metavar="auto|cpu|cuda", help="auto | cpu | cuda \\[default: auto]."
    ),
    parameters: str | None = typer.Option(
        None, "--parameters", metavar=PARAMETERS_METAVAR,
        help=PARAMETERS_HELP + " \\[default: average]."
    ),
) -> None:
    """Record episodes to <output>/episode_<NNN>_score_<score>.mp4 and episodes.jsonl."""
    from dreamerctl.run.record import RecordRequest, record_videos

    mode, device, parameters = agent_options(random_agent, mode, device, parameters)
    request = RecordRequest(
        checkpoint=checkpoint, random_agent=random_agent, task=task, episodes=episodes,
        output=output, fps=fps, max_steps=max_steps, make_gif=make_gif, seed=seed,
        with_model=with_model, overwrite=overwrite, append=append, mode=mode,
        logdir=logdir_or_default(logdir), device=device, parameters=parameters,
    )
    # Each path as soon as its episode is kept: after a Ctrl-C stdout lists what was recorded.
    record_videos(request, on_episode=lambda row: print_line(row["path"]))
