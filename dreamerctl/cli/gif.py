"""dreamerctl gif: MP4 files (or folders of them) to GIFs."""

from __future__ import annotations

from pathlib import Path

import typer

from dreamerctl.cli.common import print_line


def gif(
    inputs: list[Path] = typer.Argument(
        ..., metavar="MP4", help="MP4 files or folders holding MP4 files."),
    output: Path | None = typer.Option(
        None, "--output", "-o",
        help="A .gif path (one input) or a folder \\[default: beside each input].",
    ),
    stride: int = typer.Option(2, "--stride", min=1, help="Keep every stride-th frame."),
    fps: float = typer.Option(15, "--fps", min=0.1, help="GIF frames per second."),
    width: int | None = typer.Option(None, "--width", min=2, help="Resize to this width."),
    start: int = typer.Option(0, "--start", min=0, metavar="N",
                              help="Skip the video's first N frames."),
    max_frames: int | None = typer.Option(
        None, "--max-frames", min=1, metavar="N",
        help="At most N GIF frames (a clip of a long episode; bounds the memory used).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing GIFs."),
) -> None:
    """Convert MP4s to GIFs, keeping every --stride-th frame; prints each GIF's path."""
    from dreamerctl.video import convert_to_gifs

    for path in convert_to_gifs(inputs, output=output, stride=stride, fps=fps, width=width,
                             overwrite=overwrite, start=start, max_frames=max_frames):
        print_line(path)
