"""Learning benchmark: train with fixed seeds, evaluate along the way, write the curves.

    python benchmarks/learn.py gym_CartPole-v1 --steps 30000 --every 5000 --seeds 0 1 2 \
        --threshold 450 --minutes 30 --write benchmarks/RESULTS.md

Drives the real CLI, as a user would: `dreamerctl train TASK --steps k --seed s` (no preset unless
`--preset`/`--set` are given), then `dreamerctl eval --checkpoint RUN --json`, then
`dreamerctl train --resume RUN --steps k + every`, and so on. A resumed run keeps its model,
optimisers, replay and RNG (episodes restart, as after any resume). Wall time counts the train
commands only; evaluation time is reported apart. It is the time the run's checkpoints count
(`seconds`: each command's, from building the run to its last save, replay loading included),
so a command killed mid-segment (a session's end) still counts up to its last save, the time
lost after it being redone; runs whose checkpoints lack it fall back to the commands' wall time.

Prints one JSON line per evaluation; with `--write FILE` it also replaces the section between
`<!-- learn:TASK -->` and `<!-- /learn:TASK -->` in FILE (appending one if missing) with a table
of the curves and whether the threshold was met: eval mean >= threshold at some evaluated step
<= --steps, reached within --minutes of training wall time, for every seed.

Keep the printed lines of every table in RESULTS.md in `benchmarks/curves/` (one file per
task and batch of seeds): a table is rebuilt, or extended by new seeds, with `--from-jsonl`, and
a stopped seed goes on with `--continue` while its run directory exists (a seed killed before
its first evaluation has no line: `--continue` resumes the newest run of that task and seed in
--logdir, named on stderr).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

import numpy as np

from dreamerctl.errors import RunError
from dreamerctl.fsutil import atomic_write_text
from dreamerctl.run import report
from dreamerctl.run.checkpoint import read_meta
from dreamerctl.run.rundir import CHECKPOINT, checkpoints_under

# Training-episode returns are averaged over the episodes that ended in the env frames up to each
# evaluated point, in bins of this width: the official score files' protocol
# (dreamerctl/data/README.md), so that a row compares with the official curve at the same frames.
BIN_FRAMES = 10_000


@dataclass
class Point:
    step: int  # agent steps
    train_s: float  # cumulative training wall time
    eval_s: float
    result: dict[str, Any]
    run_s: float | None = None  # the run's checkpoint `seconds` here (None: not counted)


@dataclass
class Curve:
    seed: int
    run_dir: str = ""
    points: list[Point] = field(default_factory=list)

    def reached(self, threshold: float, minutes: float) -> Point | None:
        """The first evaluated point at or above the threshold within the time budget."""
        for point in self.points:
            if point.result["mean"] >= threshold and point.train_s <= minutes * 60:
                return point
        return None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--steps", type=int, required=True, help="agent steps per seed")
    parser.add_argument("--every", type=int, required=True, help="agent steps between evals")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--episodes", type=int, default=10, help="eval episodes per point")
    parser.add_argument("--mode", default="sample", help="eval --mode")
    parser.add_argument("--threshold", type=float, required=True, help="eval mean to reach")
    parser.add_argument("--minutes", type=float, default=float("inf"),
                        help="training wall-time budget for reaching the threshold")
    parser.add_argument("--preset", action="append", default=[], help="passed to train")
    parser.add_argument("--set", action="append", default=[], help="passed to train")
    parser.add_argument("--logdir", type=Path, default=Path("learn_logs"))
    parser.add_argument("--stop-at-threshold", action="store_true",
                        help="stop a seed once its eval mean reaches the threshold")
    parser.add_argument("--parallel", type=int, default=1,
                        help="seeds trained at once, each with cores / parallel torch threads "
                             "(OMP_NUM_THREADS), so that they do not slow each other down")
    parser.add_argument("--from-jsonl", type=Path, nargs="+", metavar="FILE",
                        help="do not train: rebuild the curves from the JSON lines earlier runs "
                             "printed (e.g. seeds run separately), then write as usual")
    parser.add_argument("--continue", dest="continue_from", nargs="+", type=Path, default=[],
                        metavar="FILE",
                        help="go on with the seeds whose JSON lines an earlier, stopped run "
                             "printed: resume each run after its last evaluated point")
    parser.add_argument("--write", type=Path, help="markdown file whose section to replace")
    parser.add_argument("--note", default="", help="a line written under the section title")
    parser.add_argument("--section", help="the section's name in --write's file (default: the "
                        "task; another name keeps a task's tables of different recipes apart)")
    return parser.parse_args(argv)


def dreamerctl(*args: str, threads: int = 0) -> str:
    """Run the CLI (with `threads` OpenMP threads if > 0); stdout on success, SystemExit with its
    stderr tail otherwise."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads > 0 else None
    result = subprocess.run([sys.executable, "-m", "dreamerctl", *args],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.splitlines()[-5:])
        raise SystemExit(f"dreamerctl {' '.join(args)} exited {result.returncode}:\n{tail}")
    return result.stdout


def seed_threads(args: argparse.Namespace) -> int:
    """OpenMP threads per seed: the cores shared among --parallel seeds; 0 (the default) for
    one seed at a time."""
    return max(1, (os.cpu_count() or 1) // args.parallel) if args.parallel > 1 else 0


def run_seed(args: argparse.Namespace, seed: int, threads: int = 0,
             earlier: Curve | None = None) -> Curve:
    """Train and evaluate one seed in segments of --every steps; `earlier` (from --continue) is
    a curve to go on with: its run is resumed after its last point."""
    curve = earlier or Curve(seed)
    if not curve.run_dir and args.continue_from:
        curve.run_dir = unevaluated_run(args.logdir, args.task, seed)
    last = curve.points[-1] if curve.points else None
    train_s = last.train_s if last else 0.0
    step = last.step if last else 0
    if last and args.stop_at_threshold and last.result["mean"] >= args.threshold:
        return curve
    while step < args.steps:
        step = min(step + args.every, args.steps)
        if curve.run_dir:
            cmd = ["train", args.task, "--resume", curve.run_dir, "--steps", str(step)]
        else:
            cmd = ["train", args.task, "--steps", str(step), "--seed", str(seed),
                   "--logdir", str(args.logdir)]
            for preset in args.preset:
                cmd += ["--preset", preset]
            for override in args.set:
                cmd += ["--set", override]
        start = time.monotonic()
        out = dreamerctl(*cmd, threads=threads)
        command_s = time.monotonic() - start
        curve.run_dir = out.strip().splitlines()[-1]
        run_s = run_seconds(curve.run_dir)
        before = last.run_s if last else 0.0
        # The run's own count where it and the previous point have one: it includes a killed
        # command's time up to its last save, which the wall time of this command lacks.
        train_s += run_s - before if run_s and before is not None else command_s
        start = time.monotonic()
        result = json.loads(dreamerctl("eval", "--checkpoint", curve.run_dir, "--episodes",
                                       str(args.episodes), "--seed", str(1000 + seed),
                                       "--mode", args.mode, "--json", threads=threads))
        point = Point(step, train_s, time.monotonic() - start, result, run_s or None)
        curve.points.append(point)
        last = point
        print(json.dumps({"task": args.task, "seed": seed, "step": step,
                          "train_s": round(train_s, 1), "eval_s": round(point.eval_s, 1),
                          "mean": result["mean"], "ci95": [result["ci95_low"],
                                                           result["ci95_high"]],
                          "run_dir": curve.run_dir, "run_s": point.run_s}), flush=True)
        if args.stop_at_threshold and result["mean"] >= args.threshold:
            break
    return curve


def run_seconds(run_dir: str) -> float:
    """The training seconds the run's checkpoint counts (0 for one from before they were)."""
    return read_meta(Path(run_dir) / CHECKPOINT).runner.seconds


def unevaluated_run(logdir: Path, task: str, seed: int) -> str:
    """The newest run of `task` and `seed` under `logdir` (its config.toml says the seed), for a
    seed stopped before its first evaluation; "" when there is none."""
    for checkpoint in checkpoints_under(logdir, task):
        config = tomllib.loads((checkpoint.parent / "config.toml").read_text())
        if config["run"]["seed"] == seed:
            print(f"seed {seed}: no evaluated point yet; resuming {checkpoint.parent}",
                  file=sys.stderr)
            return str(checkpoint.parent)
    return ""


def load_curves(files: list[Path], task: str) -> list[Curve]:
    """Curves from the JSON lines of earlier runs of this script, one per seed (later lines of
    a seed at a step already seen replace the earlier ones), ordered by seed."""
    curves: dict[int, dict[int, Point]] = {}
    run_dirs: dict[int, str] = {}
    for file in files:
        for line in file.read_text().splitlines():
            row = json.loads(line)
            if row["task"] != task:
                continue
            result = {"mean": row["mean"], "ci95_low": row["ci95"][0],
                      "ci95_high": row["ci95"][1]}
            curves.setdefault(row["seed"], {})[row["step"]] = Point(
                row["step"], row["train_s"], row["eval_s"], result, row.get("run_s"))
            run_dirs[row["seed"]] = row["run_dir"]
    return [Curve(seed, run_dirs[seed], [points[k] for k in sorted(points)])
            for seed, points in sorted(curves.items())]


def machine(threads: int) -> str:
    """The machine, with the torch threads of each training process (`threads`, or torch's
    default under this environment's OMP_NUM_THREADS when 0)."""
    import torch
    from benchio import cpu_model  # this folder is on sys.path when run as a script

    threads = threads or torch.get_num_threads()
    return (f"{cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
            f"({threads} threads per training process), Python {platform.python_version()}")


def markdown(args: argparse.Namespace, curves: list[Curve]) -> str:
    extra = " ".join([*(f"--preset {p}" for p in args.preset), *(f"--set {s}" for s in args.set)])
    lines = [f"### `{args.task}`" + (f" ({args.section})" if args.section else ""), ""]
    if args.note:
        lines += [args.note, ""]
    parallel = f" Seeds ran {args.parallel} at a time." if args.parallel > 1 else ""
    lines += [
        f"Machine: {machine(seed_threads(args))}.{parallel} Command: `python benchmarks/learn.py "
        f"{args.task} --steps "
        f"{args.steps} --every {args.every} --seeds {' '.join(map(str, args.seeds))} "
        f"--threshold {args.threshold:g}"
        + (f" --minutes {args.minutes:g}" if args.minutes != float("inf") else "")
        + (f" --parallel {args.parallel}" if args.parallel > 1 else "")
        + (" --stop-at-threshold" if args.stop_at_threshold else "")
        + (f" {extra}" if extra else "") + "`, i.e. `dreamerctl train "
        f"{args.task} --steps N --seed S{(' ' + extra) if extra else ''}` resumed every "
        f"{args.every} steps and `dreamerctl eval --episodes {args.episodes} --mode {args.mode}` "
        "after each segment.",
        "",
        "Eval mean (95% CI) against agent steps; cumulative training wall time in minutes:",
        "",
    ]
    steps = sorted({p.step for c in curves for p in c.points})
    lines.append("| seed | " + " | ".join(f"{s:,}" for s in steps) + " |")
    lines.append("|---|" + "---|" * len(steps))
    for curve in curves:
        by_step = {p.step: p for p in curve.points}
        cells = []
        for s in steps:
            p = by_step.get(s)
            cells.append("" if p is None else
                         f"{p.result['mean']:.1f} [{p.result['ci95_low']:.0f}, "
                         f"{p.result['ci95_high']:.0f}] ({p.train_s / 60:.1f} min)")
        lines.append(f"| {curve.seed} | " + " | ".join(cells) + " |")
    lines.append("")
    met = [c.reached(args.threshold, args.minutes) for c in curves]
    budget = "" if args.minutes == float("inf") else f" and {args.minutes:g} minutes"
    for curve, point in zip(curves, met, strict=True):
        last = max((p.step for p in curve.points), default=0)
        if point is None and last < args.steps:  # stopped early, or still to be continued
            lines.append(f"- seed {curve.seed}: threshold {args.threshold:g} not reached by "
                         f"{last:,} steps, its last evaluation so far (of {args.steps:,}).")
        elif point is None:
            lines.append(f"- seed {curve.seed}: threshold {args.threshold:g} **not reached** "
                         f"within {args.steps:,} steps{budget}.")
        else:
            lines.append(f"- seed {curve.seed}: eval mean {point.result['mean']:.1f} >= "
                         f"{args.threshold:g} at {point.step:,} steps after "
                         f"{point.train_s / 60:.1f} min of training.")
    passed = sum(point is not None for point in met)
    lines += ["", f"**{passed} of {len(curves)} seeds met the threshold.**"]
    lines += training_returns(curves)
    return "\n".join(lines)


def training_returns(curves: list[Curve]) -> list[str]:
    """A table of training-episode returns at each evaluated point, one row per seed, and the
    official DreamerV3 curve at the same env frames where it published one (DMC, Atari100k).
    Read from the run directories' scores.jsonl; empty where no run directory can be read."""
    runs: dict[int, report.Run] = {}
    for curve in curves:
        if not curve.run_dir:  # lines transcribed from a table name none
            continue
        try:
            runs[curve.seed] = report.read_run(Path(curve.run_dir))
        except (RunError, OSError):
            continue
    if not runs:
        return []
    gone = [c.seed for c in curves if c.seed not in runs]
    missing = (f" Seeds {', '.join(map(str, gone))}: no run directory to read (moved or deleted)."
               if gone else "")
    first = next(iter(runs.values()))
    repeat = int(first.config.get("env.action_repeat", 1))
    steps = sorted({p.step for c in curves for p in c.points})
    frames = [s * repeat for s in steps]
    lines = ["", f"Training-episode return (the policy sampling as it collects: the official "
             f"protocol), mean of the episodes that ended in the {BIN_FRAMES:,} env frames up to "
             f"each point (count in brackets); env frames = agent steps x {repeat}.{missing}",
             "",
             "| seed | " + " | ".join(f"{f:,} frames" for f in frames) + " |",
             "|---|" + "---|" * len(steps)]
    means: dict[int, list[float]] = {f: [] for f in frames}
    reached = {c.seed: max((p.step for p in c.points), default=0) * repeat for c in curves}
    for seed, run in runs.items():
        x, y = run.series["episode/score"]
        cells = []
        for f in frames:
            # Past the seed's last evaluated point the window would hold only older episodes.
            inside = (x > f - BIN_FRAMES) & (x <= f) & (f <= reached[seed])
            if not inside.any():
                cells.append("")
                continue
            means[f].append(float(y[inside].mean()))
            cells.append(f"{means[f][-1]:.1f} ({int(inside.sum())})")
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    if len(runs) > 1:  # the row to hold against the official mean: seeds weigh alike
        cells = [f"{fmean(means[f]):.1f}" if len(means[f]) == len(runs) else "" for f in frames]
        lines.append(f"| mean of these {len(runs)} seeds | " + " | ".join(cells) + " |")
    suite = report.official_suite(first)
    official = report.official_curve(suite, first.task) if suite else None
    if official is not None:
        # With its lowest and highest seed: a mean of a few seeds here is compared with a mean
        # of five there, and DMC's sparse tasks spread over most of the score range by seed.
        # A point between its bin ends (Atari's 8,000 frames) gets the bin that holds it, named.
        cells = []
        for f in frames:
            holding = np.flatnonzero((official["x"] >= f) & (official["x"] - BIN_FRAMES < f))
            if not len(holding):
                cells.append("")
                continue
            i, end = int(holding[0]), float(official["x"][holding[0]])
            cells.append(f"{official['mean'][i]:.1f} [{official['low'][i]:.0f}, "
                         f"{official['high'][i]:.0f}]" + ("" if end == f else f" (to {end:,.0f})"))
        lines.append(f"| official ({suite}, mean of {int(official['seeds'])} seeds "
                     "[lowest, highest seed]) | " + " | ".join(cells) + " |")
    return lines


def write_section(path: Path, task: str, body: str) -> None:
    begin, end = f"<!-- learn:{task} -->", f"<!-- /learn:{task} -->"
    text = path.read_text() if path.exists() else ""
    block = f"{begin}\n{body}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write_text(path, text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.every < 1 or args.steps < 1:
        raise SystemExit("error: --steps and --every must be positive")
    if args.parallel < 1:
        raise SystemExit("error: --parallel must be at least 1")
    if args.from_jsonl:
        curves = load_curves(args.from_jsonl, args.task)
        args.seeds = [curve.seed for curve in curves]
    else:
        threads = seed_threads(args)
        earlier = {c.seed: c for c in load_curves(args.continue_from, args.task)}
        with ThreadPoolExecutor(args.parallel) as pool:
            curves = list(pool.map(
                lambda seed: run_seed(args, seed, threads, earlier.get(seed)), args.seeds))
    body = markdown(args, curves)
    if args.write:
        write_section(args.write, args.section or args.task, body)
    print(body, file=sys.stderr)
    met = [c.reached(args.threshold, args.minutes) for c in curves]
    return 0 if all(point is not None for point in met) else 1


if __name__ == "__main__":
    sys.exit(main())
