"""bf16 autocast must not change what the world model learns (issue 8): from the same seed and
the same batches, the world-model loss curve over 200 updates in bf16 stays within a stated
tolerance of the fp32 curve. The data has structure to learn (a square moving with the action,
a vector and a reward that follow from it), so both curves fall a long way and a precision bug
that slows or derails learning shows up as a gap between them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import IMAGE, OBS_KINDS, VECTOR, debug_config

from dreamerctl.agent.agent import Agent
from dreamerctl.spaces import ActSpace

UPDATES = 200
BATCH, LENGTH = 4, 16
WINDOW = 20
# Relative gap allowed between the two curves, each averaged over windows of 20 updates (measured:
# at most 0.3% with the debug preset).
TOLERANCE = 0.02


def structured_batches(count: int, seed: int) -> list[dict[str, np.ndarray]]:
    """A 3x3 square on a dark 16x16 image moves one pixel per step in the direction of the
    action (3 discrete actions: left, stay, right); the vector holds its position and the
    reward is its x position. Learnable, so the losses fall."""
    rng = np.random.default_rng(seed)
    size = IMAGE[0]
    batches = []
    for _ in range(count):
        index = rng.integers(0, 3, (BATCH, LENGTH))
        x = np.zeros((BATCH, LENGTH), np.int64)
        x[:, 0] = rng.integers(0, size - 3, BATCH)
        for t in range(1, LENGTH):
            x[:, t] = np.clip(x[:, t - 1] + index[:, t - 1] - 1, 0, size - 3)
        y = rng.integers(0, size - 3, (BATCH, 1)).repeat(LENGTH, 1)
        image = np.full((BATCH, LENGTH, *IMAGE), 20, np.uint8)
        for b in range(BATCH):
            for t in range(LENGTH):
                image[b, t, y[b, t]:y[b, t] + 3, x[b, t]:x[b, t] + 3] = 230
        vector = np.zeros((BATCH, LENGTH, VECTOR), np.float32)
        vector[..., 0] = x / size
        vector[..., 1] = y / size
        is_first = np.zeros((BATCH, LENGTH), bool)
        is_first[:, 0] = True
        flags = np.zeros((BATCH, LENGTH), bool)
        batches.append({
            "image": image, "vector": vector,
            "action": np.eye(3, dtype=np.float32)[index],
            "reward": (x / size).astype(np.float32),
            "is_first": is_first, "is_last": flags, "is_terminal": flags,
        })
    return batches


def loss_curve(precision: str) -> np.ndarray:
    torch.manual_seed(0)
    config = debug_config(f'run.precision="{precision}"')
    agent = Agent.from_config(OBS_KINDS["both"], ActSpace(True, 3), config)
    pool = structured_batches(8, seed=0)
    curve = []
    for i in range(UPDATES):
        metrics, _ = agent.train_world_model(pool[i % len(pool)])
        scales = agent.wm.scales
        curve.append(sum(scales[key.rsplit("/", 1)[1]] * value for key, value in metrics.items()
                         if key.startswith("train/loss/")))
    return np.asarray(curve)


def test_bf16_world_model_loss_curve_stays_within_tolerance_of_fp32() -> None:
    fp32, bf16 = loss_curve("fp32"), loss_curve("bf16")
    assert np.isfinite(fp32).all() and np.isfinite(bf16).all()
    windows = UPDATES // WINDOW
    fp32_w = fp32.reshape(windows, WINDOW).mean(1)
    bf16_w = bf16.reshape(windows, WINDOW).mean(1)
    # Both learn: the last window is well below the first.
    assert fp32_w[-1] < 0.6 * fp32_w[0], fp32_w
    assert bf16_w[-1] < 0.6 * bf16_w[0], bf16_w
    gap = np.abs(bf16_w - fp32_w) / fp32_w
    assert gap.max() <= TOLERANCE, (gap.round(3), fp32_w.round(3), bf16_w.round(3))


def test_auto_precision_is_bf16_only_where_the_cpu_computes_in_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """run.precision = auto: bf16 on a CPU with AMX or AVX512-BF16 (read from its flags), fp32
    on one without, and the log says which and why; a real `auto` agent is built either way."""
    import logging

    from dreamerctl.agent import precision

    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(precision, "CPUINFO", cpuinfo)
    cpu = torch.device("cpu")
    cases = [("flags\t\t: fpu avx2 avx512f avx512bw amx_tile amx_bf16\n", "bf16", "amx_bf16"),
             ("flags\t\t: fpu avx2 avx512f avx512_bf16\n", "bf16", "avx512_bf16"),
             ("flags\t\t: fpu sse2 avx2 fma\n", "fp32", "neither")]
    for flags, expected, why in cases:
        cpuinfo.write_text("processor\t: 0\n" + flags)
        with caplog.at_level(logging.INFO, logger="dreamerctl"):
            caplog.clear()
            assert precision.resolve_precision("auto", cpu) == expected
        assert f"run.precision auto: {expected}" in caplog.text and why in caplog.text
        config = debug_config('run.precision="auto"')
        agent = Agent.from_config(OBS_KINDS["vector"], ActSpace(True, 3), config)
        assert agent.precision == expected
    # An explicit bf16 stays bf16, with a warning where the CPU only emulates it.
    for flags, emulated in [(cases[0][0], False), (cases[2][0], True)]:
        cpuinfo.write_text("processor\t: 0\n" + flags)
        with caplog.at_level(logging.INFO, logger="dreamerctl"):
            caplog.clear()
            assert precision.resolve_precision("bf16", cpu) == "bf16"
        assert ("bf16 is emulated here" in caplog.text) == emulated
    cpuinfo.unlink()
    assert precision.resolve_precision("auto", cpu) == "fp32"  # no flags to read: fp32
    assert precision.resolve_precision("bf16", cpu) == "bf16"  # the explicit choices stay
    assert precision.resolve_precision("fp32", cpu) == "fp32"
