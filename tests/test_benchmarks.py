"""The benchmark scripts run and report what RESULTS.md is built from (their timings are not
checked here: speed is measured in benchmarks/, never in tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dreamerctl.run.checkpoint import read_meta

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_bench_update_reports_flops_and_peak_fraction() -> None:
    result = script("bench_update.py", "--preset", "debug", "--updates", "1", "--json",
                    "--set", "world_model.deter=64")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["overrides"] == ["world_model.deter=64"]
    # Batches came from a replay on the CPU, as a CPU training run samples them.
    assert report["replay_device"] == "cpu" and report["gpu_peak_mb"] is None
    assert report["ms_per_update"] > 0 and report["updates_per_s"] > 0
    # FLOPs of one update: the matrix products of a debug model on a 2 x 8 batch, forward and
    # backward, are tens of MFLOPs, not zero and not absurd.
    assert 1e6 < report["gflop_per_update"] * 1e9 < 1e11
    assert report["peak_gflop_s_fp32"] > 0 and report["peak_gflop_s_bf16"] > 0
    expected = report["gflop_per_update"] * report["updates_per_s"]
    assert abs(report["achieved_gflop_s"] / expected - 1) < 1e-6
    assert 0 < report["peak_fraction"] < 1.5


def test_learn_writes_curves_and_threshold_verdicts(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmarks\n\nkept text\n")
    args = ["gym_CartPole-v1", "--preset", "debug", "--steps", "40", "--every", "20",
            "--seeds", "0", "--episodes", "2", "--logdir", str(tmp_path / "logs"),
            "--write", str(results)]
    # Threshold 0: every CartPole episode scores at least 1, so it is met at the first point.
    met = script("learn.py", *args, "--threshold", "0")
    assert met.returncode == 0, met.stderr
    points = [json.loads(line) for line in met.stdout.splitlines()]
    assert [p["step"] for p in points] == [20, 40]
    assert all(p["mean"] >= 1 and p["train_s"] > 0 for p in points)
    # The second segment resumed the first run: one run directory.
    assert len({p["run_dir"] for p in points}) == 1
    text = results.read_text()
    assert text.startswith("# Benchmarks\n\nkept text\n")
    assert "<!-- learn:gym_CartPole-v1 -->" in text and "**1 of 1 seeds met" in text
    # The same section, rebuilt from the printed JSON lines without training.
    lines = tmp_path / "points.jsonl"
    lines.write_text(met.stdout)
    rebuilt = tmp_path / "REBUILT.md"
    again = script("learn.py", "gym_CartPole-v1", "--steps", "40", "--every", "20",
                   "--threshold", "0", "--from-jsonl", str(lines), "--write", str(rebuilt))
    assert again.returncode == 0, again.stderr
    assert "**1 of 1 seeds met" in rebuilt.read_text()
    # The Machine line gives the threads of each training process: --parallel splits the cores.
    split = script("learn.py", "gym_CartPole-v1", "--steps", "40", "--every", "20",
                   "--threshold", "0", "--parallel", "2", "--from-jsonl", str(lines),
                   "--write", str(rebuilt))
    assert split.returncode == 0, split.stderr
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert f"({threads} threads per training process), Python" in rebuilt.read_text()
    assert "Seeds ran 2 at a time." in rebuilt.read_text()
    # --section keeps a second recipe's table of the same task apart from the first.
    other = script("learn.py", "gym_CartPole-v1", "--steps", "40", "--every", "20",
                   "--threshold", "0", "--from-jsonl", str(lines), "--write", str(rebuilt),
                   "--section", "pixels")
    assert other.returncode == 0, other.stderr
    text = rebuilt.read_text()
    assert "<!-- learn:gym_CartPole-v1 -->" in text and "<!-- learn:pixels -->" in text
    assert "### `gym_CartPole-v1` (pixels)" in text
    # An unreachable threshold (the same curves): exit 1, the section is replaced, not appended
    # twice.
    missed = script("learn.py", "gym_CartPole-v1", "--steps", "40", "--every", "20",
                    "--threshold", "1000", "--from-jsonl", str(lines), "--write", str(results))
    assert missed.returncode == 1, missed.stderr
    text = results.read_text()
    assert text.count("<!-- learn:gym_CartPole-v1 -->") == 1
    assert "**not reached**" in text and "**0 of 1 seeds met" in text
    # A run still to be continued (points to 40 of --steps 80) is not called a miss of 80.
    going = script("learn.py", "gym_CartPole-v1", "--steps", "80", "--every", "20",
                   "--threshold", "1000", "--from-jsonl", str(lines), "--write", str(results))
    assert going.returncode == 1, going.stderr
    text = results.read_text()
    assert "- seed 0: threshold 1000 not reached by 40 steps, its last evaluation so far " \
        "(of 80)." in text
    assert "within 80 steps" not in text


def test_bench_collect_reports_fps_and_policy_share_per_worker_count() -> None:
    result = script("bench_collect.py", "gym_CartPole-v1", "--workers", "1", "2", "--steps",
                    "20", "--preset", "debug", "--json")
    assert result.returncode == 0, result.stderr
    reports = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["workers"] for r in reports] == [1, 2]
    for report in reports:
        assert report["env_frames_per_s"] > report["frames_per_s_with_policy"] > 0
        assert 0 < report["policy_share"] < 1


def test_learn_continues_a_stopped_run(tmp_path: Path) -> None:
    common = ["gym_CartPole-v1", "--preset", "debug", "--every", "20", "--seeds", "0",
              "--episodes", "1", "--threshold", "10000", "--logdir", str(tmp_path / "logs")]
    first = script("learn.py", *common, "--steps", "20")
    assert first.returncode == 1, first.stderr  # the threshold is out of reach
    (before,) = [json.loads(line) for line in first.stdout.splitlines()]
    lines = tmp_path / "first.jsonl"
    lines.write_text(first.stdout)
    # A segment killed after a save (a session's end): its run went on to 30 with no line.
    killed = subprocess.run([sys.executable, "-m", "dreamerctl", "train", "gym_CartPole-v1",
                             "--resume", before["run_dir"], "--steps", "30"],
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == 0, killed.stderr
    killed_s = read_meta(Path(before["run_dir"]) / "checkpoint.pt").runner.seconds
    results = tmp_path / "RESULTS.md"
    second = script("learn.py", *common, "--steps", "40", "--continue", str(lines),
                    "--write", str(results))
    assert second.returncode == 1, second.stderr
    (after,) = [json.loads(line) for line in second.stdout.splitlines()]
    # The same run, resumed after its last point; training time adds up, the killed command's
    # included: it is the time the run's checkpoint counts.
    assert after["step"] == 40 and after["run_dir"] == before["run_dir"]
    assert 0 < before["run_s"] < killed_s < after["run_s"]
    assert after["train_s"] == pytest.approx(
        before["train_s"] + after["run_s"] - before["run_s"], abs=0.1)
    assert "| seed | 20 | 40 |" in results.read_text()


def test_learn_continues_a_seed_stopped_before_its_first_evaluation(tmp_path: Path) -> None:
    # Two runs killed in their first segment (no JSON line): seeds 1 and then 0 of one task.
    logs = tmp_path / "logs"
    runs = {}
    for seed in (1, 0):
        train = subprocess.run(
            [sys.executable, "-m", "dreamerctl", "train", "gym_CartPole-v1", "--preset", "debug",
             "--steps", "10", "--seed", str(seed), "--logdir", str(logs)],
            capture_output=True, text=True, timeout=600)
        assert train.returncode == 0, train.stderr
        runs[seed] = train.stdout.strip().splitlines()[-1]
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    learn = script("learn.py", "gym_CartPole-v1", "--preset", "debug", "--every", "20",
                   "--steps", "20", "--seeds", "1", "--episodes", "1", "--threshold", "10000",
                   "--logdir", str(logs), "--continue", str(empty))
    assert learn.returncode == 1, learn.stderr
    (point,) = [json.loads(line) for line in learn.stdout.splitlines()]
    # Seed 1's run goes on (not seed 0's, though newer, and no new run); it says so.
    assert point["run_dir"] == runs[1] and point["step"] == 20
    assert f"seed 1: no evaluated point yet; resuming {runs[1]}" in learn.stderr
    assert len(list((logs / "dreamer_gym_CartPole-v1").iterdir())) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where no CUDA is")
def test_gpu_check_without_a_gpu_is_one_error_line() -> None:
    result = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--output",
                             "unused.json"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith("error: gpu_check needs an NVIDIA GPU")
    assert result.stderr.count("\n") == 1
    assert not (ROOT / "unused.json").exists()


def test_gpu_check_selects_the_cuda_tests() -> None:
    """`pytest -m cuda` (what the GPU check runs) finds the CUDA-only tests."""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda",
                             "--collect-only", "-p", "no:cacheprovider"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert "test_replay_on_cuda_samples_what_the_cpu_replay_samples" in result.stdout
    assert "test_resume_on_cuda_goes_on_with_the_gpu_random_state" in result.stdout


def official_cells(suite: str, task: str, frames: list[int]) -> list[str]:
    """'mean [lowest, highest]' over the official seeds at each of `frames`, computed here from
    the shipped score file."""
    import csv
    import gzip

    data = ROOT / "dreamerctl" / "data" / "dreamerv3-official-scores.csv.gz"
    with gzip.open(data, "rt") as f:
        rows = [r for r in csv.DictReader(f) if r["suite"] == suite and r["task"] == task]
    cells = []
    for end in frames:
        scores = [float(r["score"]) for r in rows if float(r["step"]) == end]
        cells.append(f"{sum(scores) / len(scores):.1f} [{min(scores):.0f}, {max(scores):.0f}]")
    return cells


def test_learn_tables_training_returns_against_the_official_curve(tmp_path: Path) -> None:
    """The training-episode table: episodes ending in the 10,000 env frames up to each point,
    frames = agent steps x the run's action repeat, the seeds' mean (each seed weighs alike),
    and the official curve's mean over its seeds with its lowest and highest seed at the same
    frames (computed here from the shipped score file)."""
    lines = tmp_path / "points.jsonl"
    seeds = {3: [(30_000, 100.0), (40_001, 200.0), (50_000, 400.0), (50_002, 900.0),
                 (100_000, 700.0)],
             4: [(45_000, 600.0), (95_000, 500.0)]}
    for seed, episodes in seeds.items():
        run_dir = tmp_path / "logs" / "dreamer_dmc_cartpole_swingup" / f"20261203-00000{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.toml").write_text(
            f'[env]\naction_repeat = 2\nobs_keys = ["vector"]\n[run]\nseed = {seed}\n')
        (run_dir / "metrics.jsonl").write_text("")
        (run_dir / "scores.jsonl").write_text("".join(
            json.dumps({"step": f // 2, "frames": f, "episode/score": s, "episode/length": 500})
            + "\n" for f, s in episodes))
        with lines.open("a") as out:
            out.write("".join(json.dumps(
                {"task": "dmc_cartpole_swingup", "seed": seed, "step": step, "train_s": 1.0,
                 "eval_s": 1.0, "mean": 10.0, "ci95": [5.0, 15.0], "run_dir": str(run_dir)})
                + "\n" for step in ((25_000, 50_000) if seed == 3 else (25_000,))))
    results = tmp_path / "RESULTS.md"
    made = script("learn.py", "dmc_cartpole_swingup", "--steps", "50000", "--every", "25000",
                  "--threshold", "0", "--from-jsonl", str(lines), "--write", str(results))
    assert made.returncode == 0, made.stderr
    text = results.read_text()
    assert "| seed | 50,000 frames | 100,000 frames |" in text
    # (40,000, 50,000]: 200 and 400 (30,000 and 50,002 are outside); (90,000, 100,000]: 700.
    assert "| 3 | 300.0 (2) | 700.0 (1) |" in text
    # Seed 4 stopped at 25,000 steps (50,000 frames): nothing after, though its run has more.
    assert "| 4 | 600.0 (1) |  |" in text
    assert "| mean of these 2 seeds | 450.0 |  |" in text  # not 366.7: seeds weigh alike
    cells = official_cells("dmc_proprio", "dmc_cartpole_swingup", [50_000, 100_000])
    assert ("| official (dmc_proprio, mean of 5 seeds [lowest, highest seed]) | "
            f"{cells[0]} | {cells[1]} |") in text


def test_learn_tables_official_bin_holding_a_point_between_bin_ends(tmp_path: Path) -> None:
    """Atari's points (every 2,000 agent steps at action repeat 4: 8,000 and 16,000 frames) fall
    between the official bins' ends (multiples of 10,000): each gets the bin holding it, named."""
    run_dir = tmp_path / "logs" / "dreamer_atari_boxing" / "20261207-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "config.toml").write_text('[env]\naction_repeat = 4\n[run]\nseed = 0\n')
    (run_dir / "metrics.jsonl").write_text("")
    (run_dir / "scores.jsonl").write_text(json.dumps(
        {"step": 1500, "frames": 6000, "episode/score": 3.0, "episode/length": 1500}) + "\n")
    lines = tmp_path / "points.jsonl"
    lines.write_text("".join(json.dumps(
        {"task": "atari_boxing", "seed": 0, "step": step, "train_s": 1.0, "eval_s": 1.0,
         "mean": 0.0, "ci95": [-1.0, 1.0], "run_dir": str(run_dir)}) + "\n"
        for step in (2000, 4000)))
    results = tmp_path / "RESULTS.md"
    made = script("learn.py", "atari_boxing", "--steps", "4000", "--every", "2000",
                  "--threshold", "-5", "--from-jsonl", str(lines), "--write", str(results))
    assert made.returncode == 0, made.stderr
    cells = official_cells("atari100k", "atari_boxing", [10_000, 20_000])
    assert ("| official (atari100k, mean of 5 seeds [lowest, highest seed]) | "
            f"{cells[0]} (to 10,000) | {cells[1]} (to 20,000) |") in results.read_text()
