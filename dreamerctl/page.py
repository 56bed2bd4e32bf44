"""The `dreamerctl report` page: one self-contained HTML file, plots as inline SVG drawn by
matplotlib, videos referenced by relative paths, so that it opens from disk, offline.
"""

from __future__ import annotations

import html
import io
import os
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dreamerctl.errors import UsageError
from dreamerctl.fsutil import atomic_write_text, folder_problem
from dreamerctl.run.report import (
    Run,
    band,
    differences,
    group_seeds,
    official_curve,
    official_suite,
    smooth,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MARKER = "<!-- dreamerctl report -->"
# The training panels, in order: (title, series keys drawn in it).
PANELS: list[tuple[str, list[str]]] = [
    ("world model losses", ["train/loss/image", "train/loss/vector", "train/loss/reward",
                            "train/loss/cont", "train/loss/dyn", "train/loss/rep"]),
    ("actor-critic losses", ["train/loss/actor", "train/loss/critic"]),
    ("actor entropy", ["train/actor_entropy"]),
    ("return range (normaliser)", ["train/retnorm/low", "train/retnorm/high",
                                   "train/retnorm/scale"]),
    ("imagined return", ["train/imag_return_mean"]),
    ("gradient norms", ["train/grad_norm/world_model", "train/grad_norm/actor",
                        "train/grad_norm/critic"]),
    ("env fps", ["fps/env"]),
    ("updates/s", ["train/updates_per_s"]),
    ("achieved train ratio", ["train/ratio_achieved"]),
    ("episode length", ["episode/length"]),
]
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; }
.panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(370px, 1fr)); }
.videos { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } figcaption { font-size: 0.85em; color: #555; }
figure svg { max-width: 100%; height: auto; }
pre { font-size: 0.8em; background: #f6f6f6; padding: 8px; max-height: 400px; overflow: auto; }
"""


def check_output(output: Path) -> None:
    """Refuse before any work where the page cannot be written, or would replace a file that
    is not an earlier report."""
    if output.is_dir():
        raise UsageError(f"--output {output} is a folder; give a file name such as report.html")
    if output.exists():
        try:
            head = output.read_text(errors="replace")[:200]
        except OSError as e:
            raise UsageError(f"cannot read --output {output}: {e.strerror}") from None
        if MARKER not in head:
            raise UsageError(f"--output {output} exists and is not a dreamerctl report; "
                             "choose another name")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write to --output {output}: no folder {folder}")
    problem = folder_problem(folder)
    if problem is not None:
        raise UsageError(f"cannot write to --output folder {folder}: {problem}")


def svg(figure: Figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # without the XML prolog and doctype


def new_figure(width: float = 5.0, height: float = 3.0) -> tuple[Figure, Axes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 8})
    figure, axes = plt.subplots(figsize=(width, height))
    axes.grid(alpha=0.3)
    return figure, axes


def score_figure(task: str, groups: list[list[Run]]) -> str:
    """Training-episode scores against env frames: raw points and a smoothed line per run, a
    mean with a min-max band per group of seeds, eval results, the official curve dashed."""
    figure, axes = new_figure(9.0, 4.0)
    colours = iter(f"C{i}" for i in range(10_000))
    for group in groups:
        colour = next(colours)
        grouped = band(group, "episode/score")
        for run in group:
            x, y = run.series["episode/score"]
            axes.scatter(x, y, s=6, alpha=0.4, color=colour, linewidths=0)
            if grouped is None and len(y):
                axes.plot(x, smooth(y, max(1, len(y) // 20)), color=colour, lw=1.5,
                          label=f"{run.label}")
            if "eval/mean" in run.series and len(run.series["eval/mean"][0]):
                ex, ey = run.series["eval/mean"]
                low, high = run.series["eval/ci95_low"][1], run.series["eval/ci95_high"][1]
                axes.errorbar(ex, ey, yerr=[ey - low, high - ey], fmt="o", ms=3, color=colour,
                              capsize=2, label=f"eval, seed {run.seed}")
        if grouped is not None:
            seeds = ", ".join(str(run.seed) for run in group)
            axes.plot(grouped["x"], grouped["mean"], color=colour, lw=1.8,
                      label=f"{task}: mean of {len(group)} runs (seeds {seeds})")
            axes.fill_between(grouped["x"], grouped["low"], grouped["high"], color=colour,
                              alpha=0.2, lw=0)
            # The band stops at the shortest seed's last frame: a seed that went further (runs
            # continued over days) goes on as its own smoothed line.
            end = min(f for run in group if (f := last_score_frame(run)) > 0)  # as band()
            for run in group:
                x, y = run.series["episode/score"]
                if len(x) and x[-1] > end:
                    line = smooth(y, max(1, len(y) // 20))
                    after = x >= end
                    axes.plot(x[after], line[after], ":", color=colour, lw=1.2,
                              label=f"seed {run.seed}, past the other seeds' last frame")
    suite = official_suite(groups[0][0])
    official = official_curve(suite, task) if suite else None
    if official is not None:
        axes.plot(official["x"], official["mean"], "k--", lw=1.2,
                  label=f"official DreamerV3 ({suite}, mean of {int(official['seeds'])} seeds)")
        axes.fill_between(official["x"], official["low"], official["high"], color="k",
                          alpha=0.07, lw=0)
        frames = max(last_frame(run) for group in groups for run in group)
        # The runs' range, not the paper's 1M frames, but at least its first point.
        axes.set_xlim(0, max(frames, official["x"][0]) * 1.05)
    axes.set_xlabel("env frames")
    axes.set_ylabel("training-episode score")
    axes.set_title(task)
    axes.legend(fontsize=7, loc="best")
    return svg(figure)


def last_score_frame(run: Run) -> float:
    scores = run.series.get("episode/score")
    return float(scores[0][-1]) if scores is not None and len(scores[0]) else 0.0


def last_frame(run: Run) -> float:
    return max((float(x[-1]) for x, _ in run.series.values() if len(x)), default=0.0)


# Panels of magnitudes whose first updates are thousands of times the later ones: on a linear
# scale everything after them is a flat line at zero, so they are drawn on a log scale when
# their values are all positive and span more than LOG_SPAN. Rates and returns stay linear.
LOG_PANELS = ("world model losses", "gradient norms")
LOG_SPAN = 100.0


def wants_log_scale(ys: Sequence[np.ndarray]) -> bool:
    """Whether values `ys` are all positive (the finite ones) and span over LOG_SPAN."""
    finite = [y[np.isfinite(y)] for y in ys]
    values = np.concatenate(finite) if finite else np.array([])
    return bool(values.size and values.min() > 0 and values.max() > LOG_SPAN * values.min())


def panel_figure(title: str, keys: list[str], runs: Sequence[Run],
                 numbers: Sequence[int]) -> str | None:
    """One training panel: `keys` of each run, labelled by its number in the runs table; one of
    LOG_PANELS on a log scale where its values ask for one (`wants_log_scale`)."""
    present = [k for k in keys if any(len(run.series.get(k, ((), ()))[0]) for run in runs)]
    if not present:
        return None
    figure, axes = new_figure()
    ys = [run.series[key][1] for run in runs for key in present if key in run.series]
    if title in LOG_PANELS and wants_log_scale(ys):
        axes.set_yscale("log")
        title += " (log scale)"
    for i, (run, number) in enumerate(zip(runs, numbers, strict=True)):
        for j, key in enumerate(present):
            if key not in run.series:
                continue
            x, y = run.series[key]
            style = ["-", "--", ":", "-."][j % 4]
            name = key.rsplit("/", 1)[-1] if len(present) > 1 else key
            label = f"{name}" + (f" [{number}]" if len(runs) > 1 else "")
            axes.plot(x, y, style, color=f"C{i}" if len(runs) > 1 else f"C{j}", lw=1,
                      label=label)
    axes.set_title(title)
    axes.set_xlabel("env frames")
    if len(present) > 1 or len(runs) > 1:
        axes.legend(fontsize=6)
    return svg(figure)


def video_tag(video: Path, output: Path, caption: str) -> str:
    """A playable video, referenced relative to the page (so page and logdir can move
    together)."""
    href = urllib.parse.quote(os.path.relpath(video.resolve(), output.resolve().parent))
    return (f"<figure><video controls loop muted src='{href}'></video>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def video_tags(runs: Sequence[Run], output: Path) -> str:
    parts = []
    for i, run in enumerate(runs):
        if not (run.videos or run.recorded):
            continue
        parts.append(f"<h3>[{i}] {html.escape(run.label)}</h3><div class='videos'>")
        parts.extend(video_tag(video, output, f"open loop at step {step:,}: true / predicted / "
                               "error") for step, video in run.videos)
        for row in run.recorded:
            cut = ", cut by --max-steps" if row.get("truncated") else ""
            name = Path(row["checkpoint"]).name
            parts.append(video_tag(Path(row["path"]), output,
                                   f"recorded episode {row.get('episode')}: score "
                                   f"{row.get('score')}, {row.get('length')} steps{cut} "
                                   f"({name})"))
        parts.append("</div>")
    return "".join(parts) or "<p>No open-loop videos yet (written every run.report_every " \
                             "agent steps and at the end of a run), and no recorded episodes " \
                             "(<code>--videos DIR</code>).</p>"


def runs_table(runs: Sequence[Run]) -> str:
    rows = ["<tr><th>#</th><th>run</th><th>task</th><th>seed</th><th>env frames</th>"
            "<th>episodes</th><th>last score</th></tr>"]
    for i, run in enumerate(runs):
        y = run.series["episode/score"][1]
        frames = last_frame(run)
        last = f"{y[-1]:.1f}" if len(y) else ""
        rows.append(f"<tr><td>{i}</td><td>{html.escape(str(run.run_dir))}</td>"
                    f"<td>{html.escape(run.task)}</td><td>{run.seed}</td>"
                    f"<td>{int(frames):,}</td><td>{len(y)}</td><td>{last}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def config_section(runs: Sequence[Run]) -> str:
    parts = []
    if len(runs) > 1:
        diff = differences(runs)
        if diff:
            head = "".join(f"<th>[{i}]</th>" for i in range(len(runs)))
            rows = "".join(f"<tr><td>{html.escape(key)}</td>"
                           + "".join(f"<td>{html.escape(repr(v))}</td>" for v in values)
                           + "</tr>" for key, values in diff.items())
            parts.append(f"<h3>Fields that differ</h3><table><tr><th>field</th>{head}</tr>"
                         f"{rows}</table>")
        else:
            parts.append("<p>The runs have the same config.</p>")
    for i, run in enumerate(runs):
        text = (run.run_dir / "config.toml").read_text()
        parts.append(f"<details><summary>[{i}] config.toml of {html.escape(run.label)}"
                     f"</summary><pre>{html.escape(text)}</pre></details>")
    return "".join(parts)


def build_page(runs: Sequence[Run], output: Path) -> str:
    tasks: dict[str, list[list[Run]]] = {}
    for group in group_seeds(runs):
        tasks.setdefault(group[0].task, []).append(group)
    sections = []
    for task, groups in tasks.items():
        members = [run for group in groups for run in group]
        numbers = [runs.index(run) for run in members]
        panels = [panel_figure(title, keys, members, numbers) for title, keys in PANELS]
        index = ", ".join(f"[{number}]" for number in numbers)
        sections.append(f"<h2>{html.escape(task)}</h2>"
                        f"<figure>{score_figure(task, groups)}</figure>"
                        f"<h3>Training of {index}</h3><div class='panels'>"
                        + "".join(f"<figure>{p}</figure>" for p in panels if p is not None)
                        + "</div>")
    title = ", ".join(tasks)
    return (f"<!DOCTYPE html>\n{MARKER}\n<html><head><meta charset='utf-8'>"
            f"<title>dreamerctl report: {html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<h1>dreamerctl report: {html.escape(title)}</h1>{runs_table(runs)}"
            + "".join(sections) +
            f"<h2>Videos</h2>{video_tags(runs, output)}"
            f"<h2>Config</h2>{config_section(runs)}"
            "<p><small>The official curves are the 2024 DreamerV3 code's training-episode "
            "scores (danijar/dreamerv3, scores/; Copyright (c) 2024 Danijar Hafner, MIT "
            "licence).</small></p></body></html>\n")


def write_page(runs: Sequence[Run], output: Path) -> Path:
    atomic_write_text(output, build_page(runs, output))
    return output


def as_json(runs: Sequence[Run]) -> list[dict[str, Any]]:
    return [{"run_dir": str(run.run_dir), "task": run.task, "seed": run.seed,
             "videos": [{"step": step, "path": str(v)} for step, v in run.videos],
             "recorded": run.recorded,
             "series": {name: {"frames": x.tolist(), "value": y.tolist()}
                        for name, (x, y) in run.series.items()}} for run in runs]
