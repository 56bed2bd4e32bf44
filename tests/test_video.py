"""dreamerctl.video: real ffmpeg round trips, GIF conversion, the open-loop grid and panels."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from dreamerctl.errors import RunError, UsageError
from dreamerctl.video import (
    CONTEXT_COLOR,
    OPENLOOP_COLOR,
    SEPARATOR_COLOR,
    convert_to_gifs,
    label_rows,
    mp4_to_gif,
    openloop_grid,
    read_frames,
    side_by_side,
    write_mp4,
)


def gradient_frames(n: int, height: int, width: int) -> np.ndarray:
    """Smooth frames (n, height, width, 3) that change over time, so H.264 keeps them close."""
    y = np.linspace(0, 200, height)[:, None]
    x = np.linspace(0, 200, width)[None, :]
    frames = np.empty((n, height, width, 3), np.uint8)
    for t in range(n):
        frames[t, ..., 0] = (y + 4 * t) % 256
        frames[t, ..., 1] = x
        frames[t, ..., 2] = 40 + 10 * t
    return frames


def video_meta(path: Path) -> dict:
    gen = imageio_ffmpeg.read_frames(str(path))
    meta = next(gen)
    gen.close()
    return meta


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-frame 64x32 (W x H) MP4 whose frame t has blue level 40 + 10 t."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    write_mp4(path, gradient_frames(12, 32, 64), fps=10)
    return path


# --- MP4 -------------------------------------------------------------------------------------


def test_write_mp4_round_trip_64x64(tmp_path: Path) -> None:
    frames = gradient_frames(10, 64, 64)
    path = tmp_path / "a.mp4"
    assert write_mp4(path, frames, fps=30) == 10
    decoded = read_frames(path)
    assert decoded.shape == (10, 64, 64, 3) and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(int) - frames.astype(int)).mean()
    assert error < 4.0, error
    assert listing(tmp_path) == ["a.mp4"]  # no temporary file left behind


def test_write_mp4_is_h264_yuv420p_for_players(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    write_mp4(path, iter(gradient_frames(5, 48, 80)), fps=25)
    meta = video_meta(path)
    assert meta["codec"] == "h264"
    assert meta["pix_fmt"].startswith("yuv420p")
    assert meta["fps"] == 25
    assert meta["size"] == (80, 48)


def test_write_mp4_pads_odd_sizes_to_even(tmp_path: Path) -> None:
    frames = gradient_frames(4, 63, 65)
    path = tmp_path / "odd.mp4"
    write_mp4(path, frames, fps=10)
    decoded = read_frames(path)
    assert decoded.shape == (4, 64, 66, 3)
    # Padded, not cropped or scaled: the original pixels are where they were.
    error = np.abs(decoded[:, :63, :65].astype(int) - frames.astype(int)).mean()
    assert error < 4.0, error


def test_write_mp4_failure_keeps_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "a.mp4"
    write_mp4(path, gradient_frames(3, 32, 32), fps=10)
    before = path.read_bytes()

    def frames():
        yield from gradient_frames(3, 32, 32)
        yield np.zeros((16, 16, 3), np.uint8)  # a size change mid-stream

    with pytest.raises(ValueError, match="expected"):
        write_mp4(path, frames(), fps=10)
    assert path.read_bytes() == before
    assert listing(tmp_path) == ["a.mp4"]


def test_write_mp4_rejects_empty_and_wrong_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no frames"):
        write_mp4(tmp_path / "a.mp4", [], fps=10)
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "b.mp4", np.zeros((2, 8, 8, 3), np.float32), fps=10)
    assert listing(tmp_path) == []


def test_read_frames_errors_name_the_file(tmp_path: Path, clip: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(RunError) as info:
        read_frames(text)
    assert str(info.value) == (
        f"{text} is not a readable video: Invalid data found when processing input"
    )
    truncated = tmp_path / "cut.mp4"
    truncated.write_bytes(clip.read_bytes()[:1000])
    with pytest.raises(RunError, match=r"cut\.mp4 is not a readable video: "):
        read_frames(truncated)
    with pytest.raises(RunError) as info:
        read_frames(tmp_path / "missing.mp4")
    assert str(info.value) == f"{tmp_path / 'missing.mp4'} is not a readable video: no such file"


# --- GIF -------------------------------------------------------------------------------------


def gif_info(path: Path) -> tuple[tuple[int, int], int, int, int]:
    """(size, frames, loop, duration in ms) of a GIF."""
    with Image.open(path) as image:
        return image.size, image.n_frames, image.info["loop"], image.info["duration"]


@pytest.mark.parametrize(("stride", "expected"), [(1, 12), (2, 6), (5, 3), (12, 1), (50, 1)])
def test_mp4_to_gif_keeps_every_stride_th_frame(tmp_path: Path, clip: Path, stride: int,
                                                expected: int) -> None:
    dst = tmp_path / "out.gif"
    assert mp4_to_gif(clip, dst, stride=stride, fps=10) == expected
    assert gif_info(dst) == ((64, 32), expected, 0, 100)


def test_mp4_to_gif_keeps_the_right_frames(tmp_path: Path, clip: Path) -> None:
    dst = tmp_path / "out.gif"
    mp4_to_gif(clip, dst, stride=5)
    with Image.open(dst) as image:
        blues = []
        for i in range(image.n_frames):
            image.seek(i)
            blues.append(int(np.asarray(image.convert("RGB"))[16, 32, 2]))
    # Frames 0, 5 and 10 have blue levels 40, 90 and 140.
    assert np.allclose(blues, [40, 90, 140], atol=6), blues


def blues_of(gif: Path) -> list[int]:
    with Image.open(gif) as image:
        out = []
        for i in range(image.n_frames):
            image.seek(i)
            out.append(int(np.asarray(image.convert("RGB"))[16, 32, 2]))
    return out


def test_mp4_to_gif_clips_with_start_and_max_frames(tmp_path: Path, clip: Path) -> None:
    """--start skips source frames, --max-frames caps the GIF (the clip's frame i has blue
    40 + 10 i); a start past the end is one usage error naming the video's length."""
    dst = tmp_path / "clip.gif"
    assert mp4_to_gif(clip, dst, stride=2, start=3, max_frames=3) == 3
    assert np.allclose(blues_of(dst), [70, 90, 110], atol=6), blues_of(dst)  # frames 3, 5, 7
    assert mp4_to_gif(clip, dst, stride=1, start=10) == 2  # frames 10 and 11: the end
    with pytest.raises(UsageError, match=r"--start 12 is past the end of .* \(12 frames\)"):
        mp4_to_gif(clip, tmp_path / "none.gif", start=12)
    assert listing(tmp_path) == ["clip.gif"]


def test_mp4_to_gif_resizes_keeping_aspect(tmp_path: Path, clip: Path) -> None:
    dst = tmp_path / "small.gif"
    mp4_to_gif(clip, dst, stride=4, fps=15, width=32)
    size, frames, loop, duration = gif_info(dst)
    assert size == (32, 16) and frames == 3 and loop == 0
    assert duration == 70  # 1/15 s in whole centiseconds
    assert listing(tmp_path) == ["small.gif"]


def test_convert_to_gifs_writes_beside_each_video(tmp_path: Path, clip: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("b.mp4", "a.mp4"):
        (folder / name).write_bytes(clip.read_bytes())
    (folder / "readme.txt").write_text("not a video")
    paths = convert_to_gifs([folder], output=None, stride=3, fps=15, width=None, overwrite=False)
    assert paths == [folder / "a.gif", folder / "b.gif"]
    assert gif_info(folder / "a.gif")[1] == 4

    with pytest.raises(UsageError) as info:
        convert_to_gifs([folder / "a.mp4"], output=None, stride=3, fps=15, width=None,
                     overwrite=False)
    assert str(info.value) == f"{folder / 'a.gif'} already exists; pass --overwrite to replace it"
    again = convert_to_gifs([folder / "a.mp4"], output=None, stride=6, fps=15, width=None,
                         overwrite=True)
    assert again == [folder / "a.gif"] and gif_info(folder / "a.gif")[1] == 2


def test_convert_to_gifs_output_file_and_folder(tmp_path: Path, clip: Path) -> None:
    one = tmp_path / "one.gif"
    assert convert_to_gifs([clip], one, stride=2, fps=15, width=None, overwrite=False) == [one]
    folder = tmp_path / "gifs" / "nested"
    paths = convert_to_gifs([clip], folder, stride=2, fps=15, width=16, overwrite=False)
    assert paths == [folder / "clip.gif"] and gif_info(paths[0])[0] == (16, 8)
    with pytest.raises(UsageError, match="is one GIF but there are 2 videos"):
        convert_to_gifs([clip, clip.parent], tmp_path / "x.gif", stride=2, fps=15, width=None,
                     overwrite=False)
    with pytest.raises(UsageError) as info:
        convert_to_gifs([clip], one / "sub", stride=2, fps=15, width=None, overwrite=False)
    assert str(info.value) == f"cannot create folder {one / 'sub'}: Not a directory"
    deep = tmp_path / "new" / "deep.gif"
    assert convert_to_gifs([clip], deep, stride=2, fps=15, width=None, overwrite=False) == [deep]


def test_convert_to_gifs_output_that_is_a_file(tmp_path: Path, clip: Path) -> None:
    existing = tmp_path / "taken"
    existing.write_text("x")
    with pytest.raises(UsageError) as info:
        convert_to_gifs([clip], existing, stride=2, fps=15, width=None, overwrite=False)
    assert str(info.value) == f"--output {existing} is an existing file, not a folder"


def test_convert_to_gifs_input_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        convert_to_gifs([tmp_path / "nope.mp4"], None, 2, 15, None, False)
    assert str(info.value) == f"no such file or folder: {tmp_path / 'nope.mp4'}"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError) as info:
        convert_to_gifs([empty], None, 2, 15, None, False)
    assert str(info.value) == f"no MP4 files in folder {empty}"
    text = tmp_path / "fake.mp4"
    text.write_text("hello")
    with pytest.raises(RunError) as info:
        convert_to_gifs([text], None, 2, 15, None, False)
    assert str(info.value).startswith(f"{text} is not a readable video: ")
    assert not (tmp_path / "fake.gif").exists()
    assert sorted(listing(tmp_path)) == ["empty", "fake.mp4"]


# --- grids -----------------------------------------------------------------------------------


def test_openloop_grid_layout() -> None:
    n, t, h, w, context = 2, 5, 8, 6, 3
    rng = np.random.default_rng(0)
    true = rng.integers(0, 256, (n, t, h, w, 3), dtype=np.uint8)
    pred = true.copy()
    pred[1] = 255 - true[1]  # sequence 1 is wrong, sequence 0 exact
    grid = openloop_grid(true, pred, context)
    th, tw = h + 4, w + 4
    assert grid.shape == (t, 3 * th, n * tw, 3) and grid.dtype == np.uint8

    def tile(step: int, row: int, col: int) -> np.ndarray:
        return grid[step, row * th:(row + 1) * th, col * tw:(col + 1) * tw]

    for step in range(t):
        color = CONTEXT_COLOR if step < context else OPENLOOP_COLOR
        for row in range(3):
            for col in range(n):
                cell = tile(step, row, col)
                ring = np.concatenate([cell[:2].reshape(-1, 3), cell[-2:].reshape(-1, 3),
                                       cell[:, :2].reshape(-1, 3), cell[:, -2:].reshape(-1, 3)])
                assert (ring == color).all(), (step, row, col)
            np.testing.assert_array_equal(tile(step, 0, col)[2:-2, 2:-2], true[col, step])
            np.testing.assert_array_equal(tile(step, 1, col)[2:-2, 2:-2], pred[col, step])
        # No error is exactly mid-grey; the wrong sequence's error is 128 + (pred - true) / 2.
        assert (tile(step, 2, 0)[2:-2, 2:-2] == 128).all()
        diff = pred[1, step].astype(float) - true[1, step].astype(float)
        expected = np.clip(128 + diff / 2, 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(tile(step, 2, 1)[2:-2, 2:-2], expected)


def test_openloop_grid_error_extremes_and_shape_check() -> None:
    true = np.zeros((1, 1, 2, 2, 3), np.uint8)
    pred = np.full_like(true, 255)
    grid = openloop_grid(true, pred, context=0)
    assert grid[0, 2 * 6 + 2, 2, 0] == 255  # 128 + 127.5, clipped to 255
    grid = openloop_grid(pred, true, context=0)
    assert grid[0, 2 * 6 + 2, 2, 0] == 0  # 128 - 127.5 rounds down to 0
    with pytest.raises(ValueError, match="N, T, H, W, 3"):
        openloop_grid(true, pred[:, :, :1], context=0)


def test_label_rows_names_each_row_in_a_column_on_the_left() -> None:
    grid = np.full((2, 3 * 68, 136, 3), 128, np.uint8)
    out = label_rows(grid, ["true", "model", "error"])
    assert out.shape == (2, 3 * 68, 44 + 136, 3)
    assert (out[:, :, 44:] == 128).all()  # the grid is untouched
    column = out[0, :, :44].max(axis=-1)
    for row in range(3):  # white text in each row's band, dark elsewhere
        band = column[row * 68:(row + 1) * 68]
        assert (band > 200).sum() > 10 and (band < 60).mean() > 0.6, row
    np.testing.assert_array_equal(out[0], out[1])


def test_side_by_side_labels_each_part() -> None:
    frames = [np.full((200, 100, 3), 100, np.uint8), np.full((64, 64, 3), 100, np.uint8)]
    plain = side_by_side(frames, height=200)
    labelled = side_by_side(frames, height=200, labels=["env", "agent input 64x64"])
    assert labelled.shape == plain.shape
    changed = np.argwhere((labelled != plain).any(axis=-1))
    assert changed[:, 0].max() < 20  # only the label boxes at the top changed
    assert set(changed[:, 1] < 100) == {True, False}  # in both parts
    with pytest.raises(ValueError, match="2 labels for 1 frames"):
        side_by_side(frames[:1], height=200, labels=["a", "b"])


def test_side_by_side_heights_separators_and_nearest() -> None:
    frame = np.full((210, 160, 3), 200, np.uint8)
    small = np.zeros((64, 64, 3), np.uint8)
    small[:32] = 255  # top half white: nearest keeps a hard edge when upscaled
    grey = np.full((32, 32), 77, np.uint8)
    out = side_by_side([frame, small, grey], height=210)
    assert out.shape == (210, 160 + 4 + 210 + 4 + 210, 3) and out.dtype == np.uint8
    assert (out[:, :160] == 200).all()
    assert (out[:, 160:164] == SEPARATOR_COLOR).all()
    up = out[:, 164:374]
    assert set(np.unique(up)) == {0, 255}  # nearest neighbour: no blended values
    assert (up[:105] == 255).all() and (up[105:] == 0).all()
    assert (out[:, 374:378] == SEPARATOR_COLOR).all()
    assert (out[:, 378:] == 77).all()
    with pytest.raises(ValueError):
        side_by_side([], height=10)
