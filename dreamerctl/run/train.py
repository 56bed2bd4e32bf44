"""`dreamerctl train`: collect with the policy, store in replay, update at the train ratio
(SPEC §4), and keep the run directory of SPEC §5 current: config, metrics, scores, open-loop videos,
checkpoints. SIGINT and SIGTERM save a checkpoint and end with exit 130.

Under torchrun (issue 9) every rank runs a Trainer: its own envs and replay, the shared model
kept identical by the agent's gradient averaging, and the decisions that depend on clocks or
signals taken together once per loop iteration (`World.max`). Rank 0 alone writes the run
directory; steps, frames and the train ratio count the agent steps of all ranks.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dreamerctl.config import Config, build_config, config_to_dict, dump_config, saved_config
from dreamerctl.config.loader import Override
from dreamerctl.errors import Interrupted, RunError, UsageError, shared
from dreamerctl.fsutil import (
    atomic_write_text,
    folder_problem,
    nearest_existing,
    remove_stale_temporaries,
)
from dreamerctl.run import rundir
from dreamerctl.run.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from dreamerctl.run.distributed import World, join, state_digest
from dreamerctl.run.events import Events, open_events, require_tensorboard
from dreamerctl.run.progress import ProgressReporter
from dreamerctl.run.stats import EpisodeTracker, TrainRatioClock
from dreamerctl.run.threads import SMALL_MODEL
from dreamerctl.spaces import STEP_KEYS, record_spaces

log = logging.getLogger("dreamerctl")

OPENLOOP_CONTEXT = 5


def train_from_cli(task: str, presets: list[str], overrides: Sequence[Override], logdir: Path,
                   resume: str | None) -> Path | None:
    """Start a new run, or continue one with `resume` (a checkpoint, run directory or 'latest').

    Under torchrun every rank calls this: rank 0 builds the config and picks the run directory
    (or reads the checkpoint) and hands them to the others. Returns the run directory on rank 0
    and None on the other ranks, which have nothing to print.
    """
    world = join()
    clean = False
    run_dir = None
    try:
        config, run_dir, data = world.from_main(
            lambda: prepare(task, presets, overrides, logdir, resume))
        if nothing_to_train(config, run_dir, data, world.main):
            clean = True
            return run_dir if world.main and data is not None else None
        Trainer(task, config, run_dir, resume=data, world=world).run()
        clean = True
    except Exception as e:
        if resume is None and run_dir is not None and world.main:
            remove_if_empty(run_dir)  # the setup failed before writing anything
        lost = world.explain(e)  # a rank that died before training began
        if lost is None:
            raise
        raise lost from e
    finally:
        world.leave(clean)
    return run_dir if world.main else None


def prepare(task: str, presets: list[str], overrides: Sequence[Override], logdir: Path,
            resume: str | None) -> tuple[Config, Path, dict[str, Any] | None]:
    """The config, the run directory and, when resuming, the loaded checkpoint."""
    from dreamerctl.envs import check_task

    if resume is None:
        check_task(task)
        config = build_config(task, presets, overrides)
        if config.run.tensorboard:
            require_tensorboard()
        check_writable(logdir)
        return config, rundir.new_run_dir(logdir, task), None
    if presets:
        raise UsageError("--preset cannot change a resumed run; use --set KEY=VALUE")
    path = rundir.resolve_checkpoint(resume, logdir, task)
    data = load_checkpoint(path)
    if data["task"] != task:
        raise UsageError(f"checkpoint {path} is for task {data['task']}, not {task}")
    config = saved_config(data["config"], str(path), overrides)
    if config.run.tensorboard:
        require_tensorboard()
    check_writable(path.parent)
    return config, path.parent, data


def nothing_to_train(config: Config, run_dir: Path, data: dict[str, Any] | None,
                     main: bool) -> bool:
    """Whether `--steps` leaves nothing to do (issue 23): then no run directory is made for a
    new run and a resumed run's checkpoint stays as it is, instead of an untrained or
    rewritten checkpoint becoming `latest`."""
    steps = config.run.steps
    if data is None and steps == 0:
        if main:
            log.warning("--steps 0: nothing to train, so no run directory was made")
            remove_if_empty(run_dir)
        return True
    if data is not None and steps <= int(data["step"]):
        if main:
            log.warning("%s is at step %d and --steps %d is the total, not more steps: "
                        "nothing to train, the checkpoint is unchanged (give --steps above %d)",
                        run_dir, data["step"], steps, data["step"])
        return True
    return False


def remove_if_empty(run_dir: Path) -> None:
    """Remove a new run directory (and its task folder) that nothing was written to."""
    for folder in (run_dir, run_dir.parent):
        try:
            folder.rmdir()  # only ever removes an empty folder
        except OSError:
            return


def check_writable(folder: Path) -> None:
    """Fail before training when the logdir cannot take a run: a file where a folder is needed
    is a usage error (exit 2); a read-only or (nearly) full one a run-time failure (exit 1)."""
    existing = nearest_existing(folder)
    if not existing.is_dir():
        where = "is an existing file" if existing == folder else f"lies under the file {existing}"
        raise UsageError(f"logdir {folder} {where}, not a folder")
    if folder_problem(folder) is not None:
        raise RunError(f"logdir {folder} is not writable")
    free = shutil.disk_usage(existing).free
    if free < 50 * 2**20:
        raise RunError(f"logdir {folder} has only {free // 2**20} MiB free")


class Trainer:
    """One training run in one run directory (one rank's part of it under torchrun)."""

    def __init__(self, task: str, config: Config, run_dir: Path,
                 resume: dict[str, Any] | None = None, world: World | None = None) -> None:
        self.task = task
        self.config = config
        self.run_dir = run_dir
        self.resume = resume
        self.world = world or World()
        self.signal: int | None = None
        # The signal the loop stops for, 0 while none: with several ranks the one any rank got
        # (torchrun forwards a signal to each worker, but not at the same moment).
        self.stop_signal = 0
        self.step = 0            # agent steps over all envs of all ranks
        self.updates = 0         # updates of each rank (all ranks update in lockstep)
        self.replayed = 0        # replayed steps over all ranks, for the achieved train ratio
        self.episodes = 0
        self.ready_step: int | None = None  # agent step at which updates began
        self.ready = False       # every rank's replay holds a batch
        self.moved_replay: Path | None = None  # where a world-size change put the old replay
        # Episodes finished here and not yet written (with several ranks, until they are
        # gathered at the next metrics line or checkpoint): (step, frames, score, length).
        self.pending: list[tuple[int, int, float, int]] = []
        self.window = Window()
        self.events = Events()  # TensorBoard, opened in build() where run.tensorboard asks
        self.best_eval: float | None = None  # the best eval mean of this run (run.eval_every)
        cfg = config.train
        # The replayed steps of one update are those of all ranks, W x B x T (SPEC §4's ratio
        # over all ranks' agent steps): the updates per loop iteration stay what one process does.
        self.clock = TrainRatioClock(
            cfg.train_ratio / (cfg.batch_size * cfg.batch_length * self.world.size))

    # ----------------------------------------------------------------------------------- setup
    def build(self) -> None:
        import torch

        from dreamerctl.agent.agent import Agent
        from dreamerctl.envs import ParallelEnvs
        from dreamerctl.replay import Replay, check_memory, format_bytes, place_replay
        from dreamerctl.run.device import pick_device
        from dreamerctl.run.threads import apply_threads

        run, env, train = self.config.run, self.config.env, self.config.train
        world = self.world
        self.device = world.device(pick_device(run.device))
        seed = world.seed(run.seed)
        torch.manual_seed(run.seed)  # the same initial parameters on every rank
        random.seed(seed)
        self.rng = np.random.default_rng(seed)
        # A resumed run starts fresh episodes; offset the env seeds so they differ from the
        # first, and per rank so that ranks collect different episodes.
        env_seed = world.seed(run.seed * 1000 + (self.resume["step"] if self.resume else 0))
        self.envs = ParallelEnvs(self.task, env, env.num_envs, seed=env_seed)
        self.agent = Agent.from_config(self.envs.obs_space, self.envs.act_space, self.config,
                                       device=self.device)
        apply_threads(run.threads, self.agent, processes=world.local_size, quiet=not world.main)
        if run.compile != "off" and world.main:
            log.info("run.compile = %s: the first updates compile the losses, which takes "
                     "minutes on a CPU", run.compile)
        if world.distributed:
            world.broadcast_state(self.agent)
            if not world.main:
                torch.manual_seed(seed)  # its own actions and imagined samples
        spaces = record_spaces(self.envs.obs_space, self.envs.act_space)
        self.replay_keys = [*self.envs.obs_space, *STEP_KEYS]  # what one env step stores
        needed = Replay.bytes_needed(spaces, train.replay_capacity)
        replay_device = place_replay(train.replay_device, self.device, needed)
        if replay_device == "cpu":
            # The ranks of one node share its memory, each with a replay of its own.
            check_memory(needed * world.local_size, capacity=train.replay_capacity)
        if world.main:
            self.announce(format_bytes(needed), replay_device)
        if train.replay_capacity // env.num_envs < train.batch_length:
            raise UsageError(
                f"train.replay_capacity {train.replay_capacity} is too small for "
                f"{env.num_envs} envs and train.batch_length {train.batch_length}"
            )
        keep_replay = self.resume is None or self.same_world(self.resume)
        if not keep_replay:
            self.discard_replay()
        self.replay = Replay(spaces, env.num_envs, train.replay_capacity, train.batch_size,
                             train.batch_length, seed=seed,
                             directory=world.replay_dir(self.run_dir), chunk=train.replay_chunk,
                             device=replay_device)
        if self.resume is not None:
            self.restore(self.resume, keep_replay)
        self.events = open_events(run.tensorboard, self.run_dir, world.main)
        if world.main:
            atomic_write_text(self.run_dir / rundir.CONFIG, dump_config(self.config))
            for name in (rundir.METRICS, rundir.SCORES):
                (self.run_dir / name).touch()

    def announce(self, replay_bytes: str, replay_device: str) -> None:
        """The start summary on stderr (issue 23): where the run goes, what it trains on what,
        for how long, and the replay's full size; a warning where a pixel model meets a CPU."""
        run, env = self.config.run, self.config.env
        params = sum(p.numel() for p in self.agent.parameters() if p.requires_grad)
        log.info("run directory: %s", self.run_dir)
        log.info("%s on %s: %.2fM parameters, %d agent steps (%d env frames), replay up to "
                 "%d steps = %s on %s", self.task, self.device, params / 1e6, run.steps,
                 run.steps * env.action_repeat, self.config.train.replay_capacity,
                 replay_bytes, replay_device)
        train = self.config.train
        updates = int(max(0, run.steps - max(run.prefill, train.batch_size * train.batch_length))
                      * train.train_ratio / (train.batch_size * train.batch_length))
        pixels = "image" in self.envs.obs_space and params > SMALL_MODEL
        if self.device.type == "cpu" and pixels and updates >= 1000:
            log.warning("a %.1fM-parameter model learning from pixels on a CPU: the %s updates "
                        "of this run take seconds each, days in all. On a CPU, DMC tasks learn "
                        "from vectors with --preset dmc_proprio; pixels want a GPU",
                        params / 1e6, f"{updates:,}")

    def same_world(self, data: dict[str, Any]) -> bool:
        """Whether the checkpoint was written by as many ranks as this run has."""
        return int(data["runner"].get("world_size", 1)) == self.world.size

    def discard_replay(self) -> None:
        """Set aside the replay a run with another number of ranks left: its streams do not map
        onto this run's ranks. Nothing is deleted: rank 0 renames replay/ to
        replay-<W>ranks-<time>/ while the others wait; a rank whose folder is on a disk of its
        own node (not shared with rank 0) renames that folder the same way."""
        old = int(self.resume["runner"].get("world_size", 1)) if self.resume else 1
        suffix = f"-{old}ranks-{time.strftime('%Y%m%d-%H%M%S')}"
        if self.world.main:
            self.moved_replay = move_aside(self.run_dir / "replay", suffix)
        self.world.any(False)  # a barrier: no rank writes chunks before the old ones are moved
        if not self.world.main:
            move_aside(self.world.replay_dir(self.run_dir), suffix)

    def restore(self, data: dict[str, Any], keep_replay: bool) -> None:
        self.agent.load_state(data["agent"])
        counters = data["runner"]
        train = self.config.train
        self.step = int(data["step"])
        self.updates = int(counters["updates"])
        self.replayed = int(counters.get("replayed",
                                         self.updates * train.batch_size * train.batch_length))
        self.episodes = int(counters["episodes"])
        self.ready_step = counters["ready_step"]
        self.clock.remainder = float(counters["clock_remainder"])
        best = counters.get("best_eval")  # runs saved before run.eval_every have none
        self.best_eval = None if best is None else float(best)
        loaded = 0
        if keep_replay:
            loaded = self.load_replay()
            part = rank_state(data, self.world.rank)
            self.replay.load_state_dict(part["replay"])
            self.set_rng_state(part["rng"])
        elif self.world.main:
            log.warning(
                "%s was written by %d rank(s) and this run has %d: the model, optimisers, "
                "normaliser and counters are restored, but the replay is rebuilt (it starts "
                "empty; the old one was moved to %s)", self.run_dir / rundir.CHECKPOINT,
                int(counters.get("world_size", 1)), self.world.size,
                self.moved_replay or "nowhere: there was none")
        if self.world.main:
            snapshots = self.run_dir / rundir.SNAPSHOTS
            for folder in (self.run_dir, *([snapshots] if snapshots.is_dir() else [])):
                for tmp in remove_stale_temporaries(folder):
                    log.info("removed %s, left by a save that was killed", tmp.name)
            for name in (rundir.METRICS, rundir.SCORES, rundir.EVALS):
                drop_after(self.run_dir / name, self.step, self.config.env.action_repeat)
        log.info("resumed %s at step %d with %d replay steps", self.run_dir, self.step, loaded)

    def load_replay(self) -> int:
        """Load the replay chunks; damaged ones are skipped, each with a `warning:` line."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = self.replay.load()
        for warning in caught:
            log.warning("%s", warning.message)
        return loaded

    def rng_state(self) -> dict[str, Any]:
        """The random states that drive training: torch's (and, on a GPU, that device's), the
        runner's numpy generator and Python's."""
        import torch

        state = {"torch": torch.get_rng_state(), "numpy": self.rng.bit_generator.state,
                 "python": list(random.getstate())}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def set_rng_state(self, rng: dict[str, Any]) -> None:
        """Restore `rng_state()`; a GPU state is restored only on a GPU (a run moved between
        devices goes on with that device's seeded generator)."""
        import torch

        torch.set_rng_state(rng["torch"])
        if self.device.type == "cuda" and "cuda" in rng:
            torch.cuda.set_rng_state(rng["cuda"], self.device)
        self.rng.bit_generator.state = rng["numpy"]
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))

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
                if self.stop_signal:
                    name = signal.Signals(self.stop_signal).name
                    if not self.save():
                        raise shared(Interrupted(f"interrupted by {name}; {self.kept_message()}"))
                    raise shared(Interrupted(
                        f"interrupted by {name}; checkpoint saved to "
                        f"{self.run_dir / rundir.CHECKPOINT}"
                    ))
                if not self.save():
                    raise shared(RunError(
                        f"saving the final checkpoint failed; {self.kept_message()}"))
                self.report()
            finally:
                self.envs.close()
                self.events.close()
        except Exception as e:
            # Another rank died or hung: say which, instead of gloo's or NCCL's message.
            lost = self.world.explain(e)
            if lost is None:
                raise
            raise RunError(f"{lost}; {self.kept_message()}") from e
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
        run, world = self.config.run, self.world
        tracker = EpisodeTracker(self.config.env.num_envs)
        self.window = Window()
        last_save = last_log = time.monotonic()
        saved = False
        next_report = self.next_report()
        next_eval = (self.step // run.eval_every + 1) * run.eval_every if run.eval_every else 0
        next_keep = (self.step // run.keep_every + 1) * run.keep_every if run.keep_every else 0
        obs = self.envs.reset()
        state = None
        rates: dict[str, float] = {}
        # A signal during the build stops the run before its first step, on every rank.
        (self.stop_signal,) = world.max(self.signal or 0)
        # Steps before the first update go many times faster than those after it: the ETA is
        # measured from the first update of this session (a resumed run's comes at once).
        updates_before = self.updates
        with ProgressReporter(f"train {self.task}", run.steps, interval=run.log_every,
                              enabled=world.main, start=self.step, warmup=True) as bar:
            while self.step < run.steps and not self.stop_signal:
                obs, state = self.collect(tracker, obs, state)
                self.train_due(self.config.env.num_envs * world.size, self.window)
                if not bar.warm and self.updates > updates_before:
                    bar.warmed_up(self.step)
                now = time.monotonic()
                # Clocks and signals differ between ranks: every rank acts on what any rank saw,
                # in one collective per iteration, so none enters a collective the others skip.
                self.stop_signal, log_due, save_due, stop = world.max(
                    self.signal or 0, now - last_log >= run.log_every,
                    now - last_save >= run.save_every,
                    self.agent.consecutive_nonfinite >= self.config.train.max_nonfinite)
                if log_due or self.step >= run.steps or stop:
                    rates = self.log_metrics(self.window, now - last_log)
                    self.window, last_log = Window(scores=self.window.scores[-1:]), now
                if stop:
                    raise shared(RunError(
                        f"{self.agent.consecutive_nonfinite} consecutive updates had non-finite "
                        f"losses or gradients, stopping; {self.kept_message()}"
                    ))
                # The fields in order of interest: a narrow terminal drops the last ones.
                fields: dict[str, Any] = {"score": self.last_score(self.window), **rates,
                                          "updates": self.updates}
                bar.update(self.step, **fields)
                # A new run saves right after its first update, so that `latest` means it
                # from then on rather than after run.save_every (issue 23). Updates happen in
                # lockstep, so every rank agrees.
                first = self.resume is None and not saved and self.updates > 0
                if save_due or first:
                    self.save()
                    last_save, saved = time.monotonic(), True
                if next_report is not None and self.step >= next_report:
                    self.report()
                    next_report = self.next_report()
                if run.eval_every and self.step >= next_eval:
                    self.evaluate()
                    next_eval = (self.step // run.eval_every + 1) * run.eval_every
                if run.keep_every and self.step >= next_keep:
                    self.keep_snapshot()
                    next_keep = (self.step // run.keep_every + 1) * run.keep_every

    def collect(self, tracker: EpisodeTracker, obs: dict[str, np.ndarray],
                state: Any) -> tuple[dict[str, np.ndarray], Any]:
        """One step of this rank's envs: note finished episodes, act, store, step."""
        num = self.config.env.num_envs
        for episode in tracker.update(obs):
            self.pending.append((self.step, self.frames, episode.score, episode.length))
        if not self.world.distributed:
            self.flush_episodes(self.window)  # several ranks gather theirs when they log
        if self.step < self.config.run.prefill:
            action = self.envs.act_space.sample(self.rng, num)
        else:
            action, state = self.agent.policy(obs, state, mode="sample")
        self.replay.add({**{key: obs[key] for key in self.replay_keys}, "action": action})
        obs = self.envs.step(action)
        self.step += num * self.world.size  # the agent steps of all ranks, taken in lockstep
        self.window.steps += num * self.world.size
        return obs, state

    def train_due(self, steps: int, window: Window) -> None:
        from dreamerctl.agent.loops import run_updates

        if self.step < self.config.run.prefill or not self.replay_ready():
            return
        if self.ready_step is None:
            self.ready_step = self.step
        count = self.clock.due(steps)
        if count == 0:
            return
        train = self.config.train
        metrics = run_updates(self.agent, self.replay.sample, count, train.loop, train.imag_starts)
        self.updates += count
        self.replayed += count * train.batch_size * train.batch_length * self.world.size
        window.add(metrics, count)

    def replay_ready(self) -> bool:
        """Whether updates may start: every rank's replay holds a batch. Agreed by all ranks
        (a rank that updated alone would wait in its gradient all_reduce); once true it stays
        true, as replays only grow, so the collective stops once training has begun."""
        if not self.ready:
            (not_ready,) = self.world.any(not self.replay.ready)
            self.ready = not not_ready
        return self.ready

    def next_report(self) -> int | None:
        every = self.config.run.report_every
        return None if every <= 0 else (self.step // every + 1) * every

    # ---------------------------------------------------------------------------------- output
    def last_score(self, window: Window) -> float | None:
        return window.scores[-1] if window.scores else None

    def flush_episodes(self, window: Window) -> None:
        """Write the finished episodes to scores.jsonl (rank 0, the episodes of every rank,
        gathered) and count them; every rank gets the scores for the window's mean."""
        if self.world.distributed:
            gathered = self.world.all_gather(self.pending)
            episodes = sorted(episode for part in gathered for episode in part)
        else:
            episodes = self.pending
        self.pending = []
        for step, frames, score, length in episodes:
            self.episodes += 1
            window.scores.append(score)
            if self.world.main:
                row = {"step": step, "frames": frames, "episode/score": score,
                       "episode/length": length}
                rundir.append_jsonl(self.run_dir / rundir.SCORES, row)
                self.events.scalars(row, frames)

    def log_metrics(self, window: Window, seconds: float) -> dict[str, float]:
        """Write one metrics line (rank 0: losses averaged over all ranks' updates, rates and
        sizes summed over ranks); returns the rates shown beside the progress bar."""
        train = self.config.train
        self.flush_episodes(window)
        merged, replay_size = window, len(self.replay)
        if self.world.distributed:
            parts = self.world.all_gather((window.sums, window.updates, len(self.replay)))
            merged = Window.merge([(sums, updates) for sums, updates, _ in parts])
            replay_size = sum(size for _, _, size in parts)
        if not self.world.main:
            return {}
        record: dict[str, Any] = {"step": self.step, "frames": self.frames, **merged.means()}
        record["fps/env"] = window.steps * self.config.env.action_repeat / max(seconds, 1e-9)
        record["fps/train"] = merged.updates * train.batch_size * train.batch_length / max(
            seconds, 1e-9)
        record["train/updates"] = self.updates
        record["train/updates_per_s"] = window.updates / max(seconds, 1e-9)
        if self.ready_step is not None and self.step > self.ready_step:
            record["train/ratio_achieved"] = self.replayed / (self.step - self.ready_step)
        record["replay/size"] = replay_size
        record["episode/count"] = self.episodes
        if window.scores:
            record["episode/score_mean"] = float(np.mean(window.scores))
        rundir.append_jsonl(self.run_dir / rundir.METRICS, record)
        self.events.scalars(record, self.frames)
        return {"updates/s": record["train/updates_per_s"], "env fps": record["fps/env"]}

    def save(self) -> bool:
        """Write the checkpoint; a failed write keeps the previous one, warns and returns False.

        With several ranks every rank takes part: each flushes its replay chunks and hands its
        replay sampler and RNG states (and a digest of its parameters) to rank 0, which writes
        the shared model once with every rank's part; all ranks learn whether it worked."""
        self.replay.flush()
        self.flush_episodes(self.window)
        mine: dict[str, Any] = {"replay": self.replay.state_dict(), "rng": self.rng_state()}
        parts = [mine]
        if self.world.distributed:
            mine["digest"] = state_digest(self.agent.state_dict())
            parts = self.world.all_gather(mine)
            self.check_identical([part["digest"] for part in parts])
        ok = True
        if self.world.main:
            ok = self.write_checkpoint(parts)
        return self.world.broadcast(ok)

    def check_identical(self, digests: list[str]) -> None:
        """Parameters must be bitwise equal on every rank; if they ever drift apart (a
        nondeterministic kernel, a bug), say so and continue from rank 0's."""
        if len(set(digests)) == 1:
            return
        if self.world.main:
            log.warning("parameters differ across ranks (digests %s); continuing from rank 0's",
                        ", ".join(digest[:12] for digest in digests))
        self.world.broadcast_state(self.agent)

    def write_checkpoint(self, parts: list[dict[str, Any]]) -> bool:
        payload = {
            "task": self.task,
            "step": self.step,
            "frames": self.frames,
            "obs_space": {key: space.to_dict() for key, space in self.envs.obs_space.items()},
            "act_space": self.envs.act_space.to_dict(),
            "config": config_to_dict(self.config),
            "agent": self.agent.save_state(),
            "runner": {"updates": self.updates, "episodes": self.episodes,
                       "best_eval": self.best_eval,
                       "ready_step": self.ready_step, "clock_remainder": self.clock.remainder,
                       "replayed": self.replayed, "world_size": self.world.size},
            "replay": parts[0]["replay"],
            "rng": parts[0]["rng"],
            "saved_at": time.time(),
        }
        if self.world.distributed:
            payload["ranks"] = parts  # rank r's replay sampler, RNG states and digest
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

    def keep_snapshot(self) -> None:
        """Save, then keep a copy as checkpoints/checkpoint_<step>.pt (run.keep_every), the
        oldest beyond run.keep_last removed: score against training step, one checkpoint each
        (`dreamerctl compare RUN/checkpoints/*.pt`)."""
        if not self.save() or not self.world.main:
            return
        path = rundir.snapshot_path(self.run_dir, self.step)
        path.parent.mkdir(exist_ok=True)
        copy_checkpoint(self.run_dir / rundir.CHECKPOINT, path)
        kept = rundir.snapshots(self.run_dir)
        keep = self.config.run.keep_last
        for old in kept[:-keep] if keep else []:
            old.unlink(missing_ok=True)

    def evaluate(self) -> None:
        """run.eval_episodes episodes of the current policy in fresh envs (sampled actions, as
        `dreamerctl eval`), appended to eval.jsonl; a new best mean also saves the checkpoint
        and keeps a copy as checkpoint_best.pt. Rank 0 evaluates while the others wait. The
        training RNG streams are left as they were, so evaluating changes no training step."""
        import torch

        from dreamerctl.run.evaluate import run_episodes, summarize

        run = self.config.run
        better = False
        if self.world.main:
            seed = run.seed * 1000 + 7
            devices = [self.device] if self.device.type == "cuda" else []
            state = np.random.get_state(), random.getstate()
            with torch.random.fork_rng(devices=devices):
                scores, lengths = run_episodes(self.agent, self.task, self.config.env,
                                               run.eval_episodes, seed, "sample",
                                               f"eval {self.task}", progress=False)
            np.random.set_state(state[0])
            random.setstate(state[1])
            result = summarize(scores, lengths, seed)
            row = {"step": self.step, "frames": self.frames, "mode": "sample", "seed": seed,
                   **result}
            rundir.append_jsonl(self.run_dir / rundir.EVALS, row)
            self.events.scalars({f"eval/{k}": result[k] for k in ("mean", "std")}, self.frames)
            log.info("eval at step %d: mean %.1f over %d episodes (95%% CI %.1f-%.1f)",
                     self.step, result["mean"], result["episodes"], result["ci95_low"],
                     result["ci95_high"])
            better = self.best_eval is None or result["mean"] > self.best_eval
            if better:
                self.best_eval = result["mean"]
        if self.world.broadcast(better) and self.save() and self.world.main:
            copy_checkpoint(self.run_dir / rundir.CHECKPOINT, self.run_dir / rundir.BEST)

    def report(self) -> None:
        """The open-loop video of SPEC §5: true / predicted / error rows (rank 0's replay)."""
        from dreamerctl.video import openloop_grid, write_mp4

        if not self.world.main or not self.replay.ready or "image" not in self.envs.obs_space:
            return
        batch = self.replay.sample()
        context = min(OPENLOOP_CONTEXT, self.config.train.batch_length - 1)
        result = self.agent.openloop(batch, context)
        if result is None:
            return
        folder = self.run_dir / "openloop"
        folder.mkdir(exist_ok=True)
        frames = openloop_grid(result[0], result[1], context)
        write_mp4(folder / f"openloop_{self.step}.mp4", frames, fps=10)
        self.events.video("openloop", frames, self.frames, fps=10)


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

    @classmethod
    def merge(cls, parts: list[tuple[dict[str, float], int]]) -> Window:
        """One window of the (sums, updates) of several ranks: its means are over all their
        updates."""
        merged = cls()
        for sums, updates in parts:
            merged.updates += updates
            for key, value in sums.items():
                merged.sums[key] = merged.sums.get(key, 0.0) + value
        return merged


def rank_state(data: dict[str, Any], rank: int) -> dict[str, Any]:
    """Rank `rank`'s replay sampler and RNG states in a checkpoint (top level with one rank)."""
    if "ranks" in data:
        return data["ranks"][rank]
    return {"replay": data["replay"], "rng": data["rng"]}


def move_aside(folder: Path, suffix: str) -> Path | None:
    """Rename `folder` to `folder` + `suffix` (its data kept, out of the way); None if there is
    no such folder."""
    if not folder.is_dir():
        return None
    target = folder.with_name(folder.name + suffix)
    folder.rename(target)
    return target


def drop_after(path: Path, step: int, action_repeat: int) -> None:
    """Keep only complete lines up to agent step `step`: a resumed run redoes what came after its
    checkpoint, so those lines (and a torn last line) must not stay twice. Lines of an older
    dreamerctl are rewritten with today's `step` and `frames` (rundir.read_records)."""
    if not path.exists():
        return
    records = rundir.read_records(path, action_repeat)
    kept = [r for r in records if isinstance(r.get("step"), int | float) and r["step"] <= step]
    atomic_write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
