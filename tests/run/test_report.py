"""dreamerctl report on real debug runs: series, seed groups, the official curve, videos, the
page in a real browser, and the bad inputs."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamerctl.run import rundir
from dreamerctl.run.report import band, official_curve, smooth
from dreamerctl.run.train import train_run
from tests.helpers import assert_one_error, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two CartPole seeds of one recipe and a Pong run with open-loop videos."""
    root = tmp_path_factory.mktemp("runs")
    found = []
    for task, seed, extra in [("gym_CartPole-v1", 0, []), ("gym_CartPole-v1", 1, []),
                              ("atari_pong", 0, ["run.report_every=20"])]:
        found.append(train_run(task, ["debug"], ["run.steps=40", 'run.device="cpu"',
                                                      f"run.seed={seed}", *extra], root, None))
    return found


def counts(path: Path, key: str) -> int:
    return sum(1 for record in rundir.read_jsonl(path) if isinstance(record.get(key), int | float))


def test_json_has_every_series_with_every_point(runs: list[Path]) -> None:
    result = run_cli("report", *map(str, runs), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [Path(run["run_dir"]) for run in data] == runs
    for run in data:
        run_dir = Path(run["run_dir"])
        series = run["series"]
        assert len(series["episode/score"]["frames"]) == counts(run_dir / "scores.jsonl",
                                                                "episode/score")
        metric_keys = {key for record in rundir.read_jsonl(run_dir / "metrics.jsonl")
                       for key in record if key not in ("step", "frames")}
        assert metric_keys <= set(series)
        for key in metric_keys:
            assert len(series[key]["value"]) == counts(run_dir / "metrics.jsonl", key)
            assert series[key]["frames"] == sorted(series[key]["frames"])
    assert all(len(run["series"]["episode/score"]["value"]) > 0 for run in data[:2])
    # Pong: report_every 20 in 40 steps, then the end; named by agent step.
    assert [video["step"] for video in data[2]["videos"]] == [20, 40]


def test_a_run_of_dreamerctl_0_1_reads_as_today(runs: list[Path], tmp_path: Path) -> None:
    """Before issue 23, `step` in the JSONL files and open-loop names counted env frames (with no
    `frames` key, and eval.jsonl's agent step as `agent_step`): such a run reports the same
    series and video steps, and a resume rewrites its lines in today's form."""
    from dreamerctl.run.prepare import drop_after
    from dreamerctl.run.report import read_run

    old = tmp_path / runs[2].name
    shutil.copytree(runs[2], old)
    for name in (rundir.METRICS, rundir.SCORES):
        lines = [{**{k: v for k, v in r.items() if k != "frames"}, "step": r["frames"]}
                 for r in rundir.read_jsonl(old / name)]
        (old / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
    for video in (old / "openloop").glob("openloop_*.mp4"):
        video.rename(video.with_name(f"openloop_{4 * int(video.stem.split('_')[1])}.mp4"))
    (old / rundir.EVALS).write_text(json.dumps({"step": 80, "agent_step": 20, "mean": 1.0}))
    assert {v.name for v in (old / "openloop").iterdir()} == {"openloop_80.mp4",
                                                                 "openloop_160.mp4"}
    today, before = read_run(runs[2]), read_run(old)
    assert [step for step, _ in before.videos] == [step for step, _ in today.videos] == [20, 40]
    assert set(before.series) - {"eval/mean", "eval/ci95_low", "eval/ci95_high"} == \
        set(today.series)
    for name, (x, y) in today.series.items():
        assert before.series[name][0].tolist() == x.tolist(), name
        assert np.array_equal(before.series[name][1], y, equal_nan=True), name
    assert before.series["eval/mean"][0].tolist() == [80.0]  # x: frames

    # Cut at the run's first metrics line (how many lines a run logs depends on its speed:
    # run.log_every is in seconds).
    cut = rundir.read_jsonl(runs[2] / rundir.METRICS)[0]["step"]
    expected = [r for r in rundir.read_jsonl(runs[2] / rundir.METRICS) if r["step"] <= cut]
    drop_after(old / rundir.METRICS, cut, 4)
    drop_after(old / rundir.EVALS, 30, 4)
    kept = rundir.read_jsonl(old / rundir.METRICS)
    assert kept and all(r["frames"] == 4 * r["step"] and r["step"] <= cut for r in kept)
    assert [r["step"] for r in kept] == [r["step"] for r in expected]
    assert rundir.read_jsonl(old / rundir.EVALS) == [{"step": 20, "frames": 80, "mean": 1.0}]


def test_csv_is_every_point_of_the_json(runs: list[Path]) -> None:
    as_json = json.loads(run_cli("report", *map(str, runs), "--json").stdout)
    result = run_cli("report", *map(str, runs), "--csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["run", "task", "seed", "series", "frames", "value"]
    assert len(rows) == sum(len(s["value"]) for run in as_json for s in run["series"].values())


def test_page_for_one_run_and_for_three(runs: list[Path], tmp_path: Path) -> None:
    one = run_cli("report", str(runs[0] / "checkpoint.pt"), "-o", str(tmp_path / "one.html"))
    assert one.returncode == 0, one.stderr
    assert one.stdout == f"{tmp_path / 'one.html'}\n"
    page = (tmp_path / "one.html").read_text()
    assert page.count("<svg") >= 5 and "seed 0" in page
    out = tmp_path / "sub folder" / "three [x].html"
    out.parent.mkdir()
    three = run_cli("report", *map(str, runs), "--output", str(out))
    assert three.returncode == 0, three.stderr
    page = out.read_text()
    # The two CartPole seeds are one group, drawn as a mean with a band.
    assert "mean of 2 runs (seeds 0, 1)" in page
    # Pong gets the official Atari100k curve; CartPole has none.
    assert "official DreamerV3 (atari100k" in page and page.count("official DreamerV3 (") == 1
    # The fields in which the runs differ, and each config whole.
    assert "run.seed" in page and "env.action_repeat" in page and page.count("<details>") == 3
    # Every referenced video exists, relative to the page, and all of the run's are there.
    sources = [urllib.parse.unquote(s) for s in re.findall(r"src='([^']+)'", page)]
    assert len(sources) == 2
    for source in sources:
        assert (out.parent / source).resolve().is_file()
    assert {(out.parent / s).resolve() for s in sources} == {
        p.resolve() for p in (runs[2] / "openloop").glob("*.mp4")}


def test_latest_and_refusals(runs: list[Path], tmp_path: Path) -> None:
    env = {"DREAMERCTL_LOGDIR": str(runs[0].parent.parent)}
    result = run_cli("report", "latest", "--json", env=env)
    assert result.returncode == 0 and Path(json.loads(result.stdout)[0]["run_dir"]) == runs[2]
    assert_one_error(run_cli("report", str(tmp_path / "nope")), 1, "not found")
    assert_one_error(run_cli("report", str(tmp_path)), 1, "not a run directory")
    assert_one_error(run_cli("report", str(runs[0]), "--json", "--csv"), 2, "exclude each other")
    precious = tmp_path / "notes.html"
    precious.write_text("<html>mine</html>")
    assert_one_error(run_cli("report", str(runs[0]), "-o", str(precious)), 2,
                     "is not a dreamerctl report")
    assert precious.read_text() == "<html>mine</html>"
    again = tmp_path / "again.html"
    assert run_cli("report", str(runs[0]), "-o", str(again)).returncode == 0
    assert run_cli("report", str(runs[1]), "-o", str(again)).returncode == 0  # a report: replaced
    assert "seed 1" in again.read_text()


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (Debian package chromium)")
def test_page_opens_in_a_real_browser(runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert run_cli("report", *map(str, runs), "-o", str(out)).returncode == 0
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                    f"--screenshot={shot}", out.as_uri()], capture_output=True, timeout=120)
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert pixels.shape == (1600, 1200)
    assert pixels.std() > 20  # text, axes and curves, not a blank or error page
    assert (pixels < 128).mean() > 0.01


def test_smooth_band_and_official_curve_by_hand() -> None:
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2), [1.0, 2.0, 4.0, 6.0])
    from dreamerctl.run.report import Run

    def run(x: list[float], y: list[float]) -> Run:
        return Run(Path("r"), "t", {}, {"s": (np.array(x), np.array(y))})

    grouped = band([run([1, 3], [10, 20]), run([1, 3, 9], [30, 40, 99])], "s", bins=2)
    assert grouped is not None
    # Up to the shorter run's last frame (3): bins [0, 1.5) and [1.5, 3].
    np.testing.assert_allclose(grouped["x"], [0.75, 2.25])
    np.testing.assert_allclose(grouped["mean"], [20.0, 30.0])
    np.testing.assert_allclose(grouped["low"], [10.0, 20.0])
    np.testing.assert_allclose(grouped["high"], [30.0, 40.0])
    pong = official_curve("atari100k", "atari_pong")
    assert pong is not None and pong["x"][0] == 10_000 and int(pong["seeds"]) >= 5
    assert -21 <= pong["mean"][0] <= -19  # Pong starts near the random agent's -21
    assert official_curve("atari100k", "gym_CartPole-v1") is None
    # dreamerctl's alias names the official file's task.
    cup = official_curve("dmc_proprio", "dmc_cup_catch")
    assert cup is not None
    np.testing.assert_array_equal(cup["mean"],
                                  official_curve("dmc_proprio", "dmc_ball_in_cup_catch")["mean"])


def test_recorded_episodes_are_shown_with_their_run(runs: list[Path], tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    played = run_cli("record", "--checkpoint", str(runs[0]), "--max-steps", "5", "--episodes",
                     "2", "--output", str(videos))
    assert played.returncode == 0, played.stderr
    out = tmp_path / "page" / "report.html"
    out.parent.mkdir()
    result = run_cli("report", str(runs[0]), str(runs[1]), "--videos", str(videos), "-o",
                     str(out))
    assert result.returncode == 0, result.stderr
    page = out.read_text()
    sources = [urllib.parse.unquote(s) for s in re.findall(r"src='([^']+)'", page)]
    assert sorted((out.parent / s).resolve() for s in sources) == sorted(
        p.resolve() for p in videos.glob("*.mp4"))
    assert page.count("recorded episode ") == 2 and "cut by --max-steps" in page
    data = json.loads(run_cli("report", str(runs[0]), str(runs[1]), "--videos", str(videos),
                              "--json").stdout)
    assert [len(run["recorded"]) for run in data] == [2, 0]  # seed 1's run played nothing
    missing = run_cli("report", str(runs[0]), "--videos", str(tmp_path))
    assert_one_error(missing, 1, "holds no episodes.jsonl")


def test_a_loss_panel_spanning_decades_of_positive_values_is_drawn_on_a_log_scale() -> None:
    from dreamerctl.page import panel_figure, wants_log_scale
    from dreamerctl.run.report import Run

    early_spike = np.array([2000.0, 40.0, 9.0, 4.0])  # a world-model loss's first updates
    assert wants_log_scale([early_spike, np.array([1.0, np.nan])])
    assert not wants_log_scale([np.array([3.0, 250.0])])  # within two decades
    assert not wants_log_scale([early_spike, np.array([-0.5, 1.0])])  # an entropy can be < 0
    assert not wants_log_scale([early_spike, np.array([0.0])])
    assert not wants_log_scale([])

    def run(values: np.ndarray) -> Run:
        return Run(Path("r"), "t", {}, {"train/loss/image": (np.arange(4.0), values)})

    spiky = panel_figure("world model losses", ["train/loss/image"], [run(early_spike)], [0])
    flat = panel_figure("world model losses", ["train/loss/image"],
                        [run(np.array([9.0, 8.0, 7.0, 6.0]))], [0])
    rate = panel_figure("updates/s", ["train/loss/image"], [run(early_spike)], [0])
    assert spiky is not None and flat is not None and rate is not None
    assert "world model losses (log scale)" in spiky
    assert "log scale" not in flat and "world model losses" in flat
    assert "log scale" not in rate  # rates and returns stay linear whatever their span


def test_a_seed_longer_than_the_others_goes_on_past_the_band() -> None:
    from dreamerctl.page import score_figure
    from dreamerctl.run.report import Run

    def run(seed: int, frames: int) -> Run:
        x = np.arange(1.0, frames + 1)
        return Run(Path(f"r{seed}"), "t", {"run.seed": seed},
                   {"episode/score": (x, np.sin(x) + x / 10)})

    longer = score_figure("t", [[run(0, 200), run(1, 80)]])
    assert "mean of 2 runs (seeds 0, 1)" in longer
    assert "seed 0, past the other seeds' last frame" in longer
    assert "seed 1, past" not in longer
    even = score_figure("t", [[run(0, 80), run(1, 80)]])
    assert "past the other seeds" not in even
