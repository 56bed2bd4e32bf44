"""Frames to MP4 and GIF, MP4 back to frames, and the image grids the reports and recordings show.

Frames are uint8 RGB arrays of shape (H, W, 3). MP4s are H.264 (libx264) in yuv420p with even
dimensions, which is what ordinary players (browsers, QuickTime, phones) accept. Every file is
written to a temporary name in its target folder and moved into place (fsutil), so an
interrupted run never leaves a half-written video under the final name.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
from collections.abc import Generator, Iterable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import imageio_ffmpeg
import numpy as np
from PIL import Image

from dreamerctl.errors import RunError, UsageError
from dreamerctl.fsutil import (
    atomic_path,
    folder_problem,
    put_in_place,
    temporary_path,
)

if TYPE_CHECKING:
    from PIL import ImageFont
    from rich.progress import Progress, ProgressColumn

# Constant quality: 18 is visually lossless for rendered frames and keeps 64x64 ones sharp.
X264_PARAMS = ["-crf", "18", "-preset", "medium", "-movflags", "+faststart"]
CONTEXT_COLOR = (0, 200, 0)  # open-loop tiles the model observed (t < context)
OPENLOOP_COLOR = (220, 0, 0)  # open-loop tiles the model predicted (t >= context)
SEPARATOR_COLOR = (24, 24, 24)
BORDER = 2
SEPARATOR = 4


# ---------------------------------------------------------------------------------------------
# MP4 writing and reading


class Mp4Writer:
    """Streams uint8 RGB frames (H, W, 3) into an H.264 MP4 at a temporary path in `folder`.

    `commit(path)` moves the finished file into place; leaving the `with` block without
    committing deletes it. Streaming keeps long episodes (tens of thousands of frames) out of
    memory, and lets the caller choose the final name (e.g. with the score) at the end.
    """

    def __init__(self, folder: Path, fps: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        # The final name (with the score) comes at commit; ffmpeg needs the .mp4 suffix now.
        self.tmp = temporary_path(folder / f"{secrets.token_hex(4)}.mp4")
        self.fps = fps
        self.count = 0
        self._shape: tuple[int, int] | None = None
        self._gen: Generator[None, bytes | None, None] | None = None

    def append(self, frame: np.ndarray) -> None:
        """Add one uint8 (H, W, 3) frame; every frame must have the first frame's size."""
        frame = even_frame(check_frame(frame))
        gen = self._gen if self._gen is not None else self._start(frame.shape[:2])
        if frame.shape[:2] != self._shape:
            raise ValueError(f"frame {self.count} is {frame.shape[:2]}, expected {self._shape}")
        gen.send(np.ascontiguousarray(frame).tobytes())
        self.count += 1

    def _start(self, shape: tuple[int, int]) -> Generator[None, bytes | None, None]:
        self._shape = shape
        height, width = shape
        self._gen = imageio_ffmpeg.write_frames(
            str(self.tmp), (width, height), fps=self.fps, codec="libx264",
            pix_fmt_out="yuv420p", quality=None, macro_block_size=1,
            output_params=X264_PARAMS, ffmpeg_log_level="error",
        )
        self._gen.send(None)  # start the ffmpeg process
        return self._gen

    def commit(self, path: Path) -> int:
        """Finish the file and move it to `path` (same folder as the writer); returns the count."""
        if self._gen is None:
            raise ValueError("no frames to write")
        self._gen.close()
        self._gen = None
        put_in_place(self.tmp, path)  # named only now: the score is in the name
        return self.count

    def abort(self) -> None:
        if self._gen is not None:
            with contextlib.suppress(Exception):
                self._gen.close()
            self._gen = None
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.abort()  # a no-op after commit: the temporary file is gone by then


def write_mp4(path: Path, frames: Iterable[np.ndarray] | np.ndarray, fps: float) -> int:
    """Write uint8 RGB frames (N, H, W, 3) to an H.264 MP4 atomically; returns N.

    Odd sizes are padded by one pixel (edge-replicated) to even ones, which yuv420p requires.
    """
    path = Path(path)
    with Mp4Writer(path.parent, fps) as writer:
        for frame in frames:
            writer.append(frame)
        return writer.commit(path)


def iter_frames(path: Path) -> Generator[np.ndarray, None, None]:
    """Decode an MP4 (or any video ffmpeg reads) frame by frame: uint8 (H, W, 3) each."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path} is not a readable video: no such file")
    try:
        gen = imageio_ffmpeg.read_frames(str(path))
        meta = next(gen)
        width, height = meta["size"]
    except (OSError, RuntimeError, StopIteration, KeyError, ValueError) as e:
        raise RunError(f"{path} is not a readable video: {ffmpeg_reason(e)}") from None
    count = 0
    try:
        for data in gen:
            count += 1
            yield np.frombuffer(data, np.uint8).reshape(height, width, 3)
    except (OSError, RuntimeError, ValueError) as e:
        raise RunError(f"{path} is not a readable video: {ffmpeg_reason(e)}") from None
    finally:
        gen.close()
    if count == 0:
        raise RunError(f"{path} is not a readable video: it holds no frames")


def read_frames(path: Path) -> np.ndarray:
    """All frames of a video: uint8 (N, H, W, 3). Raises RunError for non-video or corrupt files."""
    return np.stack(list(iter_frames(path)))


def ffmpeg_reason(error: BaseException) -> str:
    """The one line of ffmpeg's stderr that says why a file did not open."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in reversed(lines):
        match = re.search(r"(Invalid data found[\w ]*|moov atom not found|Permission denied)", line)
        if match:
            return match.group(1)
    return "ffmpeg could not decode it"


def check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 (H, W, 3), got {frame.dtype} {frame.shape}")
    return frame


def even_frame(frame: np.ndarray) -> np.ndarray:
    """Pad an (H, W, 3) frame by one edge-replicated row/column where H or W is odd."""
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if not (pad_h or pad_w):
        return frame
    return np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")


# ---------------------------------------------------------------------------------------------
# GIF


def mp4_to_gif(src: Path, dst: Path, stride: int = 2, fps: float = 15,
               width: int | None = None, start: int = 0, max_frames: int | None = None) -> int:
    """Write every `stride`-th frame of `src` from frame `start` on, at most `max_frames` of
    them, as a GIF that loops forever; returns its frames.

    Frames are decoded one at a time and kept only as 1-byte palette images until the GIF is
    written (Pillow writes a GIF in one go), so `max_frames` bounds the memory of a long episode.
    `width` resizes keeping the aspect ratio. GIF delays are whole centiseconds, so the frame
    duration is 1/fps rounded to 10 ms, and at least 20 ms: browsers play shorter delays as 100.
    """
    if stride < 1 or fps <= 0 or start < 0 or (max_frames is not None and max_frames < 1):
        raise ValueError("stride and max_frames must be >= 1, start >= 0 and fps > 0")
    images: list[Image.Image] = []
    frames = iter_frames(src)
    seen = 0
    try:
        for seen, frame in enumerate(frames, 1):
            index = seen - 1 - start
            if index >= 0 and index % stride == 0:
                images.append(to_gif_image(frame, width))
                if max_frames is not None and len(images) >= max_frames:
                    break
    finally:
        frames.close()
    if not images:
        raise UsageError(f"--start {start} is past the end of {src} ({seen} frames)")
    dst = Path(dst)
    with atomic_path(dst) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], loop=0,
                       duration=max(20, round(100 / fps) * 10), disposal=1, optimize=False)
    return len(images)


def to_gif_image(frame: np.ndarray, width: int | None) -> Image.Image:
    image = Image.fromarray(frame)
    if width is not None and width != image.width:
        height = max(1, round(image.height * width / image.width))
        resample = Image.Resampling.LANCZOS if width < image.width else Image.Resampling.NEAREST
        image = image.resize((width, height), resample)
    # One adaptive palette per frame; no dithering keeps flat game colours flat.
    return image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def convert_to_gifs(inputs: list[Path], output: Path | None, stride: int, fps: float,
                 width: int | None, overwrite: bool, start: int = 0,
                 max_frames: int | None = None) -> list[Path]:
    """`dreamerctl gif`: convert MP4 files and folders of them; returns the GIF paths."""
    videos = collect_videos(inputs)
    targets = gif_targets(videos, output)
    for target in targets:
        if target.exists() and not overwrite:
            raise UsageError(f"{target} already exists; pass --overwrite to replace it")
        problem = folder_problem(target.parent)
        if problem is not None:
            raise UsageError(f"cannot write to --output folder {target.parent}: {problem}")
    with progress_bar() as progress:
        task = progress.add_task("gif", total=len(videos))
        for video, target in zip(videos, targets, strict=True):
            progress.update(task, description=video.name)
            mp4_to_gif(video, target, stride=stride, fps=fps, width=width, start=start,
                       max_frames=max_frames)
            progress.advance(task)
    return targets


def collect_videos(inputs: list[Path]) -> list[Path]:
    """MP4 files as given, plus every *.mp4 inside each folder (sorted, hidden files skipped)."""
    videos: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.glob("*.mp4") if p.is_file() and p.name[0] != ".")
            if not found:
                raise UsageError(f"no MP4 files in folder {item}")
            videos += found
        elif item.is_file():
            videos.append(item)
        else:
            raise UsageError(f"no such file or folder: {item}")
    return videos


def gif_targets(videos: list[Path], output: Path | None) -> list[Path]:
    """Beside each video, the one .gif file given, or inside the output folder."""
    if output is None:
        return [v.with_suffix(".gif") for v in videos]
    if output.suffix.lower() == ".gif" and not output.is_dir():
        if len(videos) != 1:
            raise UsageError(f"--output {output} is one GIF but there are {len(videos)} videos; "
                             "give a folder instead")
        make_folder(output.parent)
        return [output]
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output {output} is an existing file, not a folder")
    targets = [output / f"{v.stem}.gif" for v in videos]
    if len(set(targets)) != len(targets):
        raise UsageError("two input videos share a name; convert them into separate folders")
    make_folder(output)
    return targets


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create folder {folder}: {e.strerror}") from None


# ---------------------------------------------------------------------------------------------
# Progress


def progress_bar(*extra_columns: ProgressColumn) -> Progress:
    """A transient Rich progress bar on stderr; silent when stderr is not a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), *extra_columns,
        TimeElapsedColumn(), console=console, transient=True,
        disable=not console.is_terminal,
    )


# ---------------------------------------------------------------------------------------------
# Grids


def openloop_grid(true: np.ndarray, pred: np.ndarray, context: int) -> np.ndarray:
    """Open-loop report frames: rows true / predicted / error, the N sequences side by side.

    true, pred: uint8 (N, T, H, W, 3). Returns uint8 (T, 3 * (H + 4), N * (W + 4), 3). The error
    is 128 + (pred - true) / 2, so mid-grey means no error. Each tile has a 2 px border: green
    while the model observes (t < context), red once it predicts open loop (t >= context).
    """
    if true.shape != pred.shape or true.ndim != 5 or true.shape[-1] != 3:
        raise ValueError(f"true and pred must both be (N, T, H, W, 3), got {true.shape}, "
                         f"{pred.shape}")
    diff = pred.astype(np.float32) - true.astype(np.float32)
    error = np.clip(128 + diff / 2, 0, 255).astype(np.uint8)
    rows = np.stack([true, pred, error])  # (3, N, T, H, W, 3)
    rows = add_borders(rows, context)  # (3, N, T, H + 4, W + 4, 3)
    r, n, t, h, w, c = rows.shape
    # (3, N, T, h, w, C) -> (T, 3, h, N, w, C) -> (T, 3h, Nw, C)
    return rows.transpose(2, 0, 3, 1, 4, 5).reshape(t, r * h, n * w, c)


def add_borders(tiles: np.ndarray, context: int) -> np.ndarray:
    """(..., T, H, W, 3) -> (..., T, H + 4, W + 4, 3): a 2 px border coloured by t vs context."""
    *lead, t, h, w, c = tiles.shape
    b = BORDER
    out = np.empty((*lead, t, h + 2 * b, w + 2 * b, c), np.uint8)
    colors = np.array([CONTEXT_COLOR if i < context else OPENLOOP_COLOR for i in range(t)],
                      np.uint8)
    out[...] = colors[:, None, None, :]  # broadcast (T, 1, 1, 3) over the leading axes
    out[..., b:b + h, b:b + w, :] = tiles
    return out


def side_by_side(frames: list[np.ndarray], height: int,
                 labels: list[str] | None = None) -> np.ndarray:
    """Resize each frame to `height` (keeping aspect) and join them with 4 px dark separators;
    with `labels`, each part carries its label in its top-left corner.

    frames: uint8 (H_i, W_i, 3) or (H_i, W_i) greyscale. Upscaling uses nearest neighbour, so a
    64x64 agent input stays crisp next to a full-resolution render. Returns (height, W, 3).
    """
    if not frames:
        raise ValueError("side_by_side needs at least one frame")
    if labels is not None and len(labels) != len(frames):
        raise ValueError(f"{len(labels)} labels for {len(frames)} frames")
    parts: list[np.ndarray] = []
    for i, frame in enumerate(frames):
        if i:
            parts.append(np.full((height, SEPARATOR, 3), SEPARATOR_COLOR, np.uint8))
        part = resize_height(as_rgb(frame), height)
        parts.append(label(part, labels[i]) if labels else part)
    return np.concatenate(parts, axis=1)


@functools.cache
def text_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's default font at `size` px, loaded once per size (labels go on every frame)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # a scalable font where FreeType is there
    except (ImportError, OSError, TypeError):
        return ImageFont.load_default()


def label(frame: np.ndarray, text: str) -> np.ndarray:
    """A copy of the uint8 (H, W, 3) `frame` with `text` in white on a dark box at its top
    left, sized to the frame (about a 25th of its height, at least 10 px)."""
    from PIL import ImageDraw

    image = Image.fromarray(np.ascontiguousarray(frame))
    draw = ImageDraw.Draw(image)
    font = text_font(max(10, frame.shape[0] // 25))
    right, bottom = draw.textbbox((4, 3), text, font=font)[2:]
    draw.rectangle((0, 0, right + 4, bottom + 3), fill=SEPARATOR_COLOR)
    draw.text((4, 3), text, fill=(255, 255, 255), font=font)
    return np.asarray(image)


def label_rows(frames: np.ndarray, labels: list[str], width: int = 44) -> np.ndarray:
    """(T, H, W, 3) frames of len(labels) equal rows (as openloop_grid's) -> (T, H, width + W,
    3): a dark column on the left naming each row."""
    from PIL import ImageDraw

    t, h = frames.shape[:2]
    column = Image.new("RGB", (width, h), SEPARATOR_COLOR)
    draw = ImageDraw.Draw(column)
    font = text_font(11)
    band = h / len(labels)
    for i, text in enumerate(labels):
        draw.text((width / 2, band * (i + 0.5)), text, fill=(255, 255, 255), font=font,
                  anchor="mm")
    strip = np.broadcast_to(np.asarray(column), (t, h, width, 3))
    return np.concatenate([strip, frames], axis=2)


def as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3 or frame.shape[-1] not in (1, 3):
        raise ValueError(f"frames must be (H, W, 3) or (H, W), got {frame.shape}")
    return np.repeat(frame, 3, axis=-1) if frame.shape[-1] == 1 else frame


def resize_height(frame: np.ndarray, height: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (height, round(W * height / H), 3)."""
    h, w = frame.shape[:2]
    if h == height:
        return frame
    width = max(1, round(w * height / h))
    resample = Image.Resampling.NEAREST if h < height else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(frame).resize((width, height), resample))
