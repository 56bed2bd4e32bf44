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
