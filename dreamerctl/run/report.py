"""What `dreamerctl report` shows, as data: the series of one or several run directories, seeds
grouped, the config fields in which runs differ, and the official DreamerV3 curve of a task.

A run's series come from its own files (SPEC §5): `episode/score` and `episode/length` from
scores.jsonl, every numeric key of metrics.jsonl, and `eval/mean` (with its CI) from eval.jsonl
where one exists. x is always env frames, the `frames` of those files (rundir.read_records). The
page itself is built by `dreamerctl.page`; this module knows nothing about HTML or plots.
"""

from __future__ import annotations

import csv
import gzip
import io
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from dreamerctl.errors import RunError
from dreamerctl.run import rundir

# Config fields that say how a run was driven, not what it trained: runs that differ only in
# these (and the seed) are seeds of one experiment. run.steps changes at every resume.
NOT_THE_RECIPE = ("run.seed", "run.steps", "run.device", "run.threads", "run.save_every",
                  "run.log_every", "run.report_every")
OFFICIAL = "dreamerv3-official-scores.csv.gz"


@dataclass
class Run:
    """One run directory's series: name -> (x env frames, y), both float arrays."""

    run_dir: Path
    task: str
    config: dict[str, Any]  # flattened: "section.field" -> value
    series: dict[str, tuple[np.ndarray, np.ndarray]]
    videos: list[tuple[int, Path]] = field(default_factory=list)  # (agent step, open-loop MP4)
    # Episodes `dreamerctl record` played with one of this run's checkpoints: rows of
    # episodes.jsonl (episode, score, length, path, ...), found with report --videos.
    recorded: list[dict[str, Any]] = field(default_factory=list)

    @property
    def seed(self) -> int:
        return int(self.config.get("run.seed", 0))

    @property
    def label(self) -> str:
        return f"{self.task} seed {self.seed} ({self.run_dir.name})"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def resolve_run_dirs(specs: Sequence[str], logdir: Path) -> list[Path]:
    """RUN_DIR, CHECKPOINT or `latest` -> run directories, in order, without repeats."""
    found: list[Path] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if spec == "latest":
            run_dir = rundir.latest_checkpoint(logdir).run_dir
        elif path.is_file():
            run_dir = rundir.run_dir_of(path)
        elif path.is_dir() and (path / rundir.METRICS).is_file():
            run_dir = path
        elif path.is_dir():
            raise RunError(f"not a run directory (no {rundir.METRICS}): {path}"
                           f"{rundir.runs_inside(path)}")
        else:
            raise RunError(f"run directory or checkpoint not found: {path}")
        if run_dir.resolve() not in [p.resolve() for p in found]:
            found.append(run_dir)
    return found


def xy(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    points = [(r["frames"], r[key]) for r in records
              if isinstance(r.get(key), int | float) and isinstance(r.get("frames"), int | float)]
    points.sort(key=lambda p: p[0])
    array = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return array[:, 0], array[:, 1]


def read_run(run_dir: Path) -> Run:
    config_path = run_dir / rundir.CONFIG
    try:
        config = flatten(tomllib.loads(config_path.read_text()))
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise RunError(f"cannot read the config of run {run_dir}: {e}") from None
    task = rundir.task_of_run_dir(run_dir) or "unknown"
    series: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    repeat = int(config.get("env.action_repeat", 1))
    scores = rundir.read_records(run_dir / rundir.SCORES, repeat)
    for key in ("episode/score", "episode/length"):
        series[key] = xy(scores, key)
    metrics = rundir.read_jsonl(run_dir / rundir.METRICS)
    counted_frames = rundir.with_counts(metrics, repeat)  # a run of dreamerctl 0.1.0
    keys = sorted({key for record in metrics for key, value in record.items()
                   if key not in ("step", "frames") and isinstance(value, int | float)})
    for key in keys:
        series[key] = xy(metrics, key)
    evals = rundir.read_records(run_dir / rundir.EVALS, repeat)
    if evals:
        for key in ("mean", "ci95_low", "ci95_high"):
            series[f"eval/{key}"] = xy(evals, key)
    # Open-loop videos are named by agent step; dreamerctl 0.1.0 named them by env frames.
    per = repeat if counted_frames else 1
    videos = sorted((video_number(path) // per, path)
                    for path in (run_dir / "openloop").glob("openloop_*.mp4"))
    return Run(run_dir, task, config, series, videos)


def attach_recordings(runs: Sequence[Run], folders: Sequence[Path]) -> None:
    """Give each run the recorded episodes of `folders` (their episodes.jsonl, as `record`
    writes it) that a checkpoint of that run played, and whose MP4 is still there."""
    by_dir = {run.run_dir.resolve(): run for run in runs}
    for folder in folders:
        listing = folder / "episodes.jsonl"
        if not listing.is_file():
            raise RunError(f"--videos {folder} holds no episodes.jsonl (what `dreamerctl "
                           "record` writes beside its videos)")
        for row in rundir.read_jsonl(listing):
            checkpoint, video = row.get("checkpoint"), Path(str(row.get("path", "")))
            if not checkpoint:
                continue  # a random agent's episodes belong to no run
            run = by_dir.get(Path(checkpoint).resolve().parent)
            if not video.is_absolute():
                video = folder / video.name
            if run is not None and video.is_file():
                run.recorded.append({**row, "path": str(video)})


def video_number(path: Path) -> int:
    try:
        return int(path.stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return 0


def group_key(run: Run) -> tuple[str, tuple[tuple[str, str], ...]]:
    recipe = tuple(sorted((k, repr(v)) for k, v in run.config.items() if k not in NOT_THE_RECIPE))
    return run.task, recipe


def group_seeds(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs of the same task and recipe (all but the seed and how they were driven), in the
    order of their first run."""
    groups: dict[tuple[str, tuple[tuple[str, str], ...]], list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)
    return list(groups.values())


def differences(runs: Sequence[Run]) -> dict[str, list[Any]]:
    """Config fields whose values are not the same in every run: field -> value per run."""
    keys = sorted({key for run in runs for key in run.config})
    out = {}
    for key in keys:
        values = [run.config.get(key) for run in runs]
        if any(repr(v) != repr(values[0]) for v in values[1:]):
            out[key] = values
    return out


def smooth(y: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last `window` points at each point (fewer at the start)."""
    if len(y) == 0:
        return y
    cumsum = np.cumsum(np.insert(y, 0, 0.0))
    counts = np.minimum(np.arange(1, len(y) + 1), window)
    ends = np.arange(1, len(y) + 1)
    return (cumsum[ends] - cumsum[ends - counts]) / counts


def band(runs: Sequence[Run], key: str, bins: int = 40) -> dict[str, np.ndarray] | None:
    """Mean, min and max over runs of `key`, each run first averaged in `bins` equal bins of
    frames up to the shortest run's last frame (so that every bin has every seed)."""
    curves = [c for run in runs if (c := run.series.get(key)) is not None and len(c[0])]
    if len(curves) < 2:
        return None
    end = min(c[0][-1] for c in curves)
    if end <= 0:
        return None
    edges = np.linspace(0.0, end, bins + 1)
    per_run = []
    for x, y in curves:
        index = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        inside = x <= end
        sums = np.bincount(index[inside], weights=y[inside], minlength=bins)
        counts = np.bincount(index[inside], minlength=bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            per_run.append(sums / counts)
    stack = np.vstack(per_run)
    keep = ~np.isnan(stack).any(0)
    centres = (edges[:-1] + edges[1:]) / 2
    return {"x": centres[keep], "mean": stack[:, keep].mean(0), "low": stack[:, keep].min(0),
            "high": stack[:, keep].max(0), "runs": np.array(len(curves))}


def official_suite(run: Run) -> str | None:
    """The official score file's suite for a run: Atari100k, DMC from vectors or pixels."""
    if run.task.startswith("atari_"):
        return "atari100k"
    if run.task.startswith("dmc_"):
        keys = run.config.get("env.obs_keys", [])
        return "dmc_vision" if keys == ["image"] else "dmc_proprio"
    return None


def official_rows() -> list[dict[str, str]]:
    data = resources.files("dreamerctl.data").joinpath(OFFICIAL).read_bytes()
    return list(csv.DictReader(io.StringIO(gzip.decompress(data).decode())))


def official_curve(suite: str, task: str) -> dict[str, np.ndarray] | None:
    """The official DreamerV3 curve of `task` in `suite`: x (its steps), mean, min and max over
    its seeds of the binned training-episode scores; None where it published none."""
    from dreamerctl.envs.dmc import ALIASES

    if task.startswith("dmc_") and task[4:] in ALIASES:  # dmc_cup_catch: dmc_ball_in_cup_catch
        task = "dmc_" + "_".join(ALIASES[task[4:]])
    by_step: dict[float, list[float]] = {}
    for row in official_rows():
        if row["suite"] == suite and row["task"] == task:
            by_step.setdefault(float(row["step"]), []).append(float(row["score"]))
    if not by_step:
        return None
    steps = sorted(by_step)
    values = [np.asarray(by_step[s]) for s in steps]
    return {"x": np.asarray(steps), "mean": np.array([v.mean() for v in values]),
            "low": np.array([v.min() for v in values]),
            "high": np.array([v.max() for v in values]),
            "seeds": np.array(max(len(v) for v in values))}


def export_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Every point of every series: run, task, seed, series, frames, value (for --csv/--json)."""
    rows: list[dict[str, Any]] = []
    for run in runs:
        for name, (x, y) in run.series.items():
            rows.extend({"run": str(run.run_dir), "task": run.task, "seed": run.seed,
                         "series": name, "frames": float(a), "value": float(b)}
                        for a, b in zip(x, y, strict=True))
    return rows
