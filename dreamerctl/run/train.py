"""`dreamerctl train`: collect with the policy, store in replay, update at the train ratio
(SPEC §4), and keep the run directory of SPEC §5 current: config, metrics, scores, open-loop videos,
checkpoints. SIGINT and SIGTERM save a checkpoint and end with exit 130.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from dreamerctl.config import Config, apply_overrides, build_config, config_to_dict, dump_config
from dreamerctl.errors import Interrupted, RunError, UsageError
from dreamerctl.run import rundir
from dreamerctl.run.checkpoint import (
    load_checkpoint,
    remove_stale_temporaries,
    save_checkpoint,
)
from dreamerctl.run.progress import ProgressReporter
from dreamerctl.run.stats import EpisodeTracker, TrainRatioClock

log = logging.getLogger("dreamerctl")

STEP_SPACES = {
    "reward": ((), "float32"),
    "is_first": ((), "bool"),
    "is_last": ((), "bool"),
    "is_terminal": ((), "bool"),
}
OPENLOOP_CONTEXT = 5


def train_from_cli(task: str, presets: list[str], overrides: list[str], logdir: Path,
                   resume: str | None) -> Path:
    """Start a new run, or continue one with `resume` (a checkpoint, run directory or 'latest')."""
    from dreamerctl.envs import check_task

    if resume is None:
        check_task(task)
        config = build_config(task, presets, overrides)
        check_writable(logdir)
        return Trainer(task, config, rundir.new_run_dir(logdir, task)).run()
    if presets:
        raise UsageError("--preset cannot change a resumed run; use --set KEY=VALUE")
    path = rundir.resolve_checkpoint(resume, logdir, task)
    data = load_checkpoint(path)
    if data["task"] != task:
        raise UsageError(f"checkpoint {path} is for task {data['task']}, not {task}")
    sources = {key: str(path) for key in data["config"]}
    config = apply_overrides(dict(data["config"]), overrides, sources)
    check_writable(path.parent)
    return Trainer(task, config, path.parent, resume=data).run()


def check_writable(folder: Path) -> None:
    """Fail before training when the logdir cannot take a run: a file where a folder is needed
    is a usage error (exit 2); a read-only or (nearly) full one a run-time failure (exit 1)."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        where = "is an existing file" if existing == folder else f"lies under the file {existing}"
        raise UsageError(f"logdir {folder} {where}, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunError(f"logdir {folder} is not writable")
    free = shutil.disk_usage(existing).free
    if free < 50 * 2**20:
        raise RunError(f"logdir {folder} has only {free // 2**20} MiB free")


class Trainer:
    """One training run in one run directory."""

    def __init__(self, task: str, config: Config, run_dir: Path,
                 resume: dict[str, Any] | None = None) -> None:
        self.task = task
        self.config = config
        self.run_dir = run_dir
        self.resume = resume
        self.signal: int | None = None
        self.step = 0            # agent steps over all envs
        self.updates = 0
        self.episodes = 0
        self.ready_step: int | None = None  # agent step at which updates began
        cfg = config.train
        self.clock = TrainRatioClock(cfg.train_ratio / (cfg.batch_size * cfg.batch_length))

    # ----------------------------------------------------------------------------------- setup
    def build(self) -> None:
        import torch

        from dreamerctl.agent.agent import Agent
        from dreamerctl.envs import ParallelEnvs
        from dreamerctl.replay import Replay, check_memory, format_bytes
        from dreamerctl.run.device import pick_device

        run, env, train = self.config.run, self.config.env, self.config.train
        self.device = pick_device(run.device)
        torch.manual_seed(run.seed)
        random.seed(run.seed)
        self.rng = np.random.default_rng(run.seed)
        # A resumed run starts fresh episodes; offset the env seeds so they differ from the first.
        env_seed = run.seed * 1000 + (self.resume["step"] if self.resume else 0)
        self.envs = ParallelEnvs(self.task, env, env.num_envs, seed=env_seed)
        self.agent = Agent(self.envs.obs_space, self.envs.act_space, self.config.world_model,
                           self.config.actor_critic, train, device=self.device,
                           precision=run.precision)
        spaces = {key: (tuple(space.shape), space.dtype)
                  for key, space in self.envs.obs_space.items()}
        spaces["action"] = ((self.envs.act_space.size,), "float32")
        spaces.update(STEP_SPACES)
        self.replay_keys = [*self.envs.obs_space, *STEP_SPACES]  # what one env step stores
        needed = Replay.bytes_needed(spaces, train.replay_capacity)
        check_memory(needed, capacity=train.replay_capacity)
        log.info("replay: capacity %d steps, %s at full capacity", train.replay_capacity,
                 format_bytes(needed))
        if train.replay_capacity // env.num_envs < train.batch_length:
            raise UsageError(
                f"train.replay_capacity {train.replay_capacity} is too small for "
                f"{env.num_envs} envs and train.batch_length {train.batch_length}"
            )
        self.replay = Replay(spaces, env.num_envs, train.replay_capacity, train.batch_size,
                             train.batch_length, seed=run.seed,
                             directory=self.run_dir / "replay", chunk=train.replay_chunk)
        if self.resume is not None:
            self.restore(self.resume)
        (self.run_dir / rundir.CONFIG).write_text(dump_config(self.config))
        for name in (rundir.METRICS, rundir.SCORES):
            (self.run_dir / name).touch()

    def restore(self, data: dict[str, Any]) -> None:
        import torch

        self.agent.load_state(data["agent"])
        counters = data["runner"]
        self.step = int(data["step"])
        self.updates = int(counters["updates"])
        self.episodes = int(counters["episodes"])
        self.ready_step = counters["ready_step"]
        self.clock.remainder = float(counters["clock_remainder"])
        loaded = self.load_replay()
        for tmp in remove_stale_temporaries(self.run_dir):
            log.info("removed %s, left by a save that was killed", tmp.name)
        self.replay.load_state_dict(data["replay"])
        rng = data["rng"]
        torch.set_rng_state(rng["torch"])
        self.rng.bit_generator.state = rng["numpy"]
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        drop_after(self.run_dir / rundir.METRICS, self.frames)
        drop_after(self.run_dir / rundir.SCORES, self.frames)
        log.info("resumed %s at step %d with %d replay steps", self.run_dir, self.step, loaded)

    def load_replay(self) -> int:
        """Load the replay chunks; damaged ones are skipped, each with a `warning:` line."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = self.replay.load()
        for warning in caught:
            log.warning("%s", warning.message)
        return loaded

    @property
    def frames(self) -> int:
        return self.step * self.config.env.action_repeat

    # ------------------------------------------------------------------------------------ loop
    def run(self) -> Path:
        """Build, train, save; returns the run directory. SIGINT and SIGTERM stop the loop
        after the current step or update and raise Interrupted once the checkpoint is saved;
        from the first one on, both stay ignored (the process is exiting with 130)."""
        previous = {sig: signal.signal(sig, self.on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.build()
            try:
                self.loop()
                if self.signal is not None:
                    name = signal.Signals(self.signal).name
                    if not self.save():
                        raise Interrupted(f"interrupted by {name}; {self.kept_message()}")
                    raise Interrupted(
                        f"interrupted by {name}; checkpoint saved to "
                        f"{self.run_dir / rundir.CHECKPOINT}"
                    )
                if not self.save():
                    raise RunError(f"saving the final checkpoint failed; {self.kept_message()}")
                self.report()
            finally:
                self.envs.close()
        finally:
            for sig, handler in previous.items():
                # After an interrupt the process is on its way out with exit 130: a further
                # Ctrl-C or SIGTERM must not turn that into a traceback or a kill mid-exit.
                signal.signal(sig, signal.SIG_IGN if self.signal is not None else handler)
        return self.run_dir

    def on_signal(self, signum: int, frame: Any) -> None:
        # Only a flag: the loop finishes the step or update it is in, then saves. A second
        # signal during the save changes nothing, so it cannot tear the checkpoint.
        if self.signal is None:
            log.warning("%s received: saving a checkpoint, then stopping",
                        signal.Signals(signum).name)
        self.signal = signum

    def loop(self) -> None:
        run, num = self.config.run, self.config.env.num_envs
        tracker = EpisodeTracker(num)
        window = Window()
        last_save = last_log = time.monotonic()
        next_report = self.next_report()
        obs = self.envs.reset()
        state = None
        rates: dict[str, float] = {}
        with ProgressReporter(f"train {self.task}", run.steps, interval=run.log_every) as bar:
            while self.step < run.steps and self.signal is None:
                for episode in tracker.update(obs):
                    self.log_episode(episode.score, episode.length)
                    window.scores.append(episode.score)
                if self.step < run.prefill:
                    action = self.envs.act_space.sample(self.rng, num)
                else:
                    action, state = self.agent.policy(obs, state, mode="sample")
                self.replay.add({**{key: obs[key] for key in self.replay_keys}, "action": action})
                obs = self.envs.step(action)
                self.step += num
                window.steps += num
                self.train_due(num, window)
                now = time.monotonic()
                stop = self.agent.consecutive_nonfinite >= self.config.train.max_nonfinite
                if now - last_log >= run.log_every or self.step >= run.steps or stop:
                    rates = self.log_metrics(window, now - last_log)
                    window, last_log = Window(scores=window.scores[-1:]), now
                if stop:
                    raise RunError(
                        f"{self.agent.consecutive_nonfinite} consecutive updates had non-finite "
                        f"losses or gradients, stopping; {self.kept_message()}"
                    )
                bar.update(self.step, updates=self.updates, score=self.last_score(window),
                           **rates)
                if now - last_save >= run.save_every:
                    self.save()
                    last_save = time.monotonic()
                if next_report is not None and self.step >= next_report:
                    self.report()
                    next_report = self.next_report()

    def train_due(self, steps: int, window: Window) -> None:
        from dreamerctl.agent.loops import run_updates

        if self.step < self.config.run.prefill or not self.replay.ready:
            return
        if self.ready_step is None:
            self.ready_step = self.step
        count = self.clock.due(steps)
        if count == 0:
            return
        train = self.config.train
        metrics = run_updates(self.agent, self.replay.sample, count, train.loop, train.imag_starts)
        self.updates += count
        window.add(metrics, count)

    def next_report(self) -> int | None:
        every = self.config.run.report_every
        return None if every <= 0 else (self.step // every + 1) * every

    # ---------------------------------------------------------------------------------- output
    def last_score(self, window: Window) -> float | None:
        return window.scores[-1] if window.scores else None

    def log_episode(self, score: float, length: int) -> None:
        self.episodes += 1
        rundir.append_jsonl(self.run_dir / rundir.SCORES, {
            "step": self.frames, "episode/score": score, "episode/length": length})

    def log_metrics(self, window: Window, seconds: float) -> dict[str, float]:
        """Write one metrics line; returns the rates shown beside the progress bar."""
        train = self.config.train
        record: dict[str, Any] = {"step": self.frames, **window.means()}
        record["fps/env"] = window.steps * self.config.env.action_repeat / max(seconds, 1e-9)
        record["fps/train"] = window.updates * train.batch_size * train.batch_length / max(
            seconds, 1e-9)
        record["train/updates"] = self.updates
        record["train/updates_per_s"] = window.updates / max(seconds, 1e-9)
        if self.ready_step is not None and self.step > self.ready_step:
            replayed = self.updates * train.batch_size * train.batch_length
            record["train/ratio_achieved"] = replayed / (self.step - self.ready_step)
        record["replay/size"] = len(self.replay)
        record["episode/count"] = self.episodes
        if window.scores:
            record["episode/score_mean"] = float(np.mean(window.scores))
        rundir.append_jsonl(self.run_dir / rundir.METRICS, record)
        return {"env_fps": record["fps/env"], "upd_s": record["train/updates_per_s"]}

    def save(self) -> bool:
        """Write the checkpoint; a failed write keeps the previous one, warns and returns False."""
        import torch

        self.replay.flush()
        payload = {
            "task": self.task,
            "step": self.step,
            "frames": self.frames,
            "obs_space": {key: space.to_dict() for key, space in self.envs.obs_space.items()},
            "act_space": self.envs.act_space.to_dict(),
            "config": config_to_dict(self.config),
            "agent": self.agent.save_state(),
            "runner": {"updates": self.updates, "episodes": self.episodes,
                       "ready_step": self.ready_step, "clock_remainder": self.clock.remainder},
            "replay": self.replay.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state,
                    "python": list(random.getstate())},
            "saved_at": time.time(),
        }
        path = self.run_dir / rundir.CHECKPOINT
        try:
            save_checkpoint(path, payload)
        except OSError as e:
            log.warning("saving %s failed (%s); %s", path, e.strerror or e, self.kept_message())
            return False
        log.debug("saved %s at step %d", path, self.step)
        return True

    def kept_message(self) -> str:
        """Which checkpoint a failure leaves behind, for warnings and errors."""
        path = self.run_dir / rundir.CHECKPOINT
        if not path.is_file():
            return f"no checkpoint has been saved in {self.run_dir}"
        return f"the last good checkpoint is kept in {path}"

    def report(self) -> None:
        """The open-loop video of SPEC §5: true / predicted / error rows."""
        from dreamerctl.video import openloop_grid, write_mp4

        if not self.replay.ready or "image" not in self.envs.obs_space:
            return
        batch = self.replay.sample()
        context = min(OPENLOOP_CONTEXT, self.config.train.batch_length - 1)
        result = self.agent.openloop(batch, context)
        if result is None:
            return
        folder = self.run_dir / "openloop"
        folder.mkdir(exist_ok=True)
        frames = openloop_grid(result[0], result[1], context)
        write_mp4(folder / f"openloop_{self.frames}.mp4", frames, fps=10)


class Window:
    """Metrics gathered between two log lines."""

    def __init__(self, scores: list[float] | None = None) -> None:
        self.sums: dict[str, float] = {}
        self.updates = 0
        self.steps = 0
        self.scores: list[float] = list(scores or [])

    def add(self, metrics: dict[str, float], count: int) -> None:
        self.updates += count
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + float(value) * count

    def means(self) -> dict[str, float]:
        if not self.updates:
            return {}
        return {key: value / self.updates for key, value in self.sums.items()}



def drop_after(path: Path, frames: int) -> None:
    """Keep only complete lines up to `frames`: a resumed run redoes what came after its
    checkpoint, so those lines (and a torn last line) must not stay twice."""
    if not path.exists():
        return
    records = rundir.read_jsonl(path)
    kept = [r for r in records if isinstance(r.get("step"), int | float) and r["step"] <= frames]
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as f:
        for record in kept:
            f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
