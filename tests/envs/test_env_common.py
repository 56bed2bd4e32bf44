"""Adapter helpers: action rescaling, image resizing, key selection."""

from __future__ import annotations

import numpy as np
import pytest

from dreamerctl.envs.common import discrete_index, rescale, resize, select_keys
from dreamerctl.errors import UsageError


def test_rescale_maps_the_unit_box_linearly_and_clips() -> None:
    low, high = np.array([-2.0, 0.0, -np.inf]), np.array([2.0, 10.0, np.inf])
    np.testing.assert_allclose(rescale([-1.0, -1.0, 0.5], low, high), [-2.0, 0.0, 0.5])
    np.testing.assert_allclose(rescale([0.5, 0.0, 3.0], low, high), [1.0, 5.0, 1.0])
    np.testing.assert_allclose(rescale([9.0, 1.0, -7.0], low, high), [2.0, 10.0, -1.0])


def test_discrete_index_is_the_argmax() -> None:
    assert discrete_index(np.array([0, 0, 1, 0], np.float32)) == 2
    assert discrete_index([0.1, 0.7, 0.2]) == 1


def test_resize_gives_rgb_uint8_at_the_size() -> None:
    grey = np.arange(210 * 160, dtype=np.uint32).reshape(210, 160, 1).astype(np.uint8)
    out = resize(grey, [64, 48])
    assert out.shape == (64, 48, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    flat = np.full((100, 80, 3), 77, np.uint8)
    np.testing.assert_array_equal(resize(flat, [32, 32]), np.full((32, 32, 3), 77, np.uint8))


def test_select_keys_filters_and_names_what_is_offered() -> None:
    assert select_keys("t", ["image", "vector"], ["vector"]) == ["vector"]
    with pytest.raises(UsageError, match=r"offers observations \['image'\]"):
        select_keys("t", ["image"], ["vector"])


def area_weights(source: int, target: int) -> np.ndarray:
    """(target, source): the share of each source pixel in each target pixel's interval, rows
    summing to 1 (exact area averaging, computed independently of PIL)."""
    edges = np.linspace(0.0, source, target + 1)
    weights = np.zeros((target, source))
    for i in range(target):
        for j in range(source):
            weights[i, j] = max(0.0, min(edges[i + 1], j + 1) - max(edges[i], j))
    return weights / weights.sum(1, keepdims=True)


def area_reference(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows, cols = area_weights(frame.shape[0], size[0]), area_weights(frame.shape[1], size[1])
    return np.einsum("ir,rcx,jc->ijx", rows, frame.astype(np.float64), cols)


@pytest.fixture(scope="module")
def pong_frame() -> tuple[np.ndarray, np.ndarray]:
    """A native 210x160 Pong screen with the ball in play, and the mask of the ball's pixels."""
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    env = gymnasium.make("ALE/Pong-v5", frameskip=1, repeat_action_probability=0.0)
    frame, _ = env.reset(seed=0)
    for _ in range(300):
        frame, *_ = env.step(0)
        ball = np.all(frame == (236, 236, 236), -1)
        ball[:34] = ball[194:] = False  # the score digits and the walls are not the ball
        if ball.any():
            env.close()
            return frame, ball
    raise AssertionError("the ball never came into play")


def test_resize_is_area_averaging_on_a_pong_frame(pong_frame) -> None:
    frame, _ = pong_frame
    out = resize(frame, [64, 64]).astype(np.float64)
    np.testing.assert_allclose(out, area_reference(frame, (64, 64)), atol=1.0)


def test_the_pong_ball_survives_the_resize(pong_frame) -> None:
    """The ball (about 4 x 2 source pixels, under one 64x64 pixel) keeps its brightness mass
    and most of its contrast: without it the model has nothing to learn Pong from."""
    frame, ball = pong_frame
    background = frame.copy()
    background[ball] = frame[~ball & (np.arange(210)[:, None] > 34)][0]  # the field's colour
    field = background[ball][0].astype(np.float64)
    contrast = 236.0 - field  # (3,) per channel, in source pixels
    delta = resize(frame, [64, 64]).astype(np.float64) - resize(background, [64, 64])
    scale = (210 / 64) * (160 / 64)  # source pixels per target pixel
    # Area averaging keeps the mass: sum over the target = ball pixels x contrast / scale.
    np.testing.assert_allclose(delta.sum((0, 1)), ball.sum() * contrast / scale, rtol=0.1)
    # The brightest ball pixel keeps at least half the contrast (a bilinear filter kept less
    # energy: issue 19), and nothing away from the ball changes.
    assert np.all(delta.max((0, 1)) >= 0.5 * contrast)
    rows, cols = np.nonzero(np.abs(delta).sum(-1) > 1)
    ys, xs = np.nonzero(ball)
    assert rows.min() >= int(ys.min() * 64 / 210) - 1 and rows.max() <= int(ys.max() * 64 / 210) + 1
    assert cols.min() >= int(xs.min() * 64 / 160) - 1 and cols.max() <= int(xs.max() * 64 / 160) + 1
