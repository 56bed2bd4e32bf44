"""`dreamerctl train`: collect with the policy, store in replay, update at the train ratio
(SPEC §4), and keep the run directory of SPEC §5 current: config, metrics, scores, open-loop videos,
checkpoints. SIGINT and SIGTERM save a checkpoint and end with exit 130.

The loop is here; its collaborators each own one concept: `prepare` (the run directory and config
of a new or resumed run), `metrics` (scores.jsonl and metrics.jsonl), `checkpoint` (the payload
and how it is written), `stats` (the train-ratio clock, episode scores).

Under torchrun (issue 9) every rank runs a Trainer: its own envs and replay, the shared model
kept identical by the agent's gradient averaging, and the decisions that depend on clocks or
signals taken together once per loop iteration (`World.max`). Rank 0 alone writes the run
directory; steps, frames and the train ratio count the agent steps of all ranks.
"""

from __future__ import annotations

import logging
import random
import signal
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import numpy as np

from dreamerctl.config import Config, config_to_dict, dump_config
from dreamerctl.config.loader import Override
from dreamerctl.errors import Interrupted, RunError, UsageError, shared
from dreamerctl.fsutil import atomic_write_text
from dreamerctl.run import rundir
from dreamerctl.run.checkpoint import (
    Counters,
    Payload,
    capture_rng,
    copy_checkpoint,
    restore_rng,
    save_checkpoint,
)
from dreamerctl.run.distributed import World, join, state_digest
from dreamerctl.run.events import Events, open_events
from dreamerctl.run.metrics import MetricsLog, Window
from dreamerctl.run.prepare import (
    nothing_to_train,
    prepare,
    remove_if_empty,
    set_aside_replay,
    tidy_resumed_run,
)
from dreamerctl.run.progress import ProgressReporter
from dreamerctl.run.stats import EpisodeTracker, TrainRatioClock
from dreamerctl.run.threads import SMALL_MODEL
from dreamerctl.spaces import STEP_KEYS, record_spaces

if TYPE_CHECKING:
    from torch import Tensor

log = logging.getLogger("dreamerctl")

OPENLOOP_CONTEXT = 5


def train_run(task: str, presets: list[str], overrides: Sequence[Override], logdir: Path,
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
        config, run_dir, payload = world.from_main(
            lambda: prepare(task, presets, overrides, logdir, resume))
        if nothing_to_train(config, run_dir, payload, world.main):
            clean = True
            return run_dir if world.main and payload is not None else None
        Trainer(task, config, run_dir, resume=payload, world=world).run()
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


class Every:
    """Due each time a counter reaches the next multiple of `every` (never where `every` <= 0)."""

    def __init__(self, every: int, start: int) -> None:
        self.every = every
        self.next = (start // every + 1) * every if every > 0 else None

    def due(self, count: int) -> bool:
        if self.next is None or count < self.next:
            return False
        self.next = (count // self.every + 1) * self.every
        return True


class Trainer:
    """One training run in one run directory (one rank's part of it under torchrun)."""

    def __init__(self, task: str, config: Config, run_dir: Path,
                 resume: Payload | None = None, world: World | None = None) -> None:
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
        self.counters = Counters(world_size=self.world.size)
        self.started = time.monotonic()  # counters.seconds counts this command's time from here
        self.ready = False       # every rank's replay holds a batch
        self.moved_replay: Path | None = None  # where a world-size change put the old replay
        self.window = Window()
        self.events = Events()  # TensorBoard, opened in build() where run.tensorboard asks
        cfg = config.train
        self.batch_steps = cfg.batch_size * cfg.batch_length
        self.metrics = MetricsLog(run_dir, self.world, self.events, config.env.action_repeat,
                                  self.batch_steps)
        # The replayed steps of one update are those of all ranks, W x B x T (SPEC §4's ratio
        # over all ranks' agent steps): the updates per loop iteration stay what one process does.
        self.clock = TrainRatioClock(cfg.train_ratio / (self.batch_steps * self.world.size))

    @property
    def frames(self) -> int:
        return self.step * self.config.env.action_repeat

    # ----------------------------------------------------------------------------------- setup
    def build(self) -> None:
        import torch

        from dreamerctl.agent.agent import Agent
        from dreamerctl.envs import ParallelEnvs
        from dreamerctl.replay import Replay, check_memory, format_bytes, place_replay
        from dreamerctl.run.allocator import keep_freed_memory
        from dreamerctl.run.device import pick_device
        from dreamerctl.run.threads import apply_threads

        keep_freed_memory(quiet=not self.world.main)  # before the replay and the model exist
        run, env, train = self.config.run, self.config.env, self.config.train
        world = self.world
        self.device = world.device(pick_device(run.device))
        seed = world.seed(run.seed)
        torch.manual_seed(run.seed)  # the same initial parameters on every rank
        random.seed(seed)
        self.rng = np.random.default_rng(seed)
        # A resumed run starts fresh episodes; offset the env seeds so they differ from the
        # first, and per rank so that ranks collect different episodes.
        env_seed = world.seed(run.seed * 1000 + (self.resume.step if self.resume else 0))
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
        old_world = self.resume.runner.world_size if self.resume else world.size
        if old_world != world.size:
            self.moved_replay = set_aside_replay(world, self.run_dir, old_world)
        self.replay = Replay(spaces, env.num_envs, train.replay_capacity, train.batch_size,
                             train.batch_length, seed=seed,
                             directory=world.replay_dir(self.run_dir), chunk=train.replay_chunk,
                             device=replay_device)
        if self.resume is not None:
            self.restore(self.resume, keep_replay=old_world == world.size)
        self.events = self.metrics.events = open_events(run.tensorboard, self.run_dir,
                                                         world.main)
        if world.main:
            atomic_write_text(self.run_dir / rundir.CONFIG, dump_config(self.config))
            for name in (rundir.METRICS, rundir.SCORES):
                (self.run_dir / name).touch()

    def announce(self, replay_bytes: str, replay_device: str) -> None:
        """The start summary on stderr (issue 23): where the run goes, what it trains on what,
        for how long, and the replay's full size; a warning where a pixel model meets a CPU."""
        run, env, train = self.config.run, self.config.env, self.config.train
        params = sum(p.numel() for p in self.agent.parameters() if p.requires_grad)
        log.info("run directory: %s", self.run_dir)
        log.info("%s on %s: %.2fM parameters, %d agent steps (%d env frames), replay up to "
                 "%d steps = %s on %s", self.task, self.device, params / 1e6, run.steps,
                 run.steps * env.action_repeat, train.replay_capacity, replay_bytes,
                 replay_device)
        updates = int(max(0, run.steps - max(run.prefill, self.batch_steps))
                      * train.train_ratio / self.batch_steps)
        pixels = "image" in self.envs.obs_space and params > SMALL_MODEL
        if self.device.type == "cpu" and pixels and updates >= 1000:
            log.warning("a %.1fM-parameter model learning from pixels on a CPU: the %s updates "
                        "of this run take seconds each, days in all. On a CPU, DMC tasks learn "
                        "from vectors with --preset dmc_proprio, and from pixels with the "
                        "CPU-sized --preset vision_cpu; larger pixel models want a GPU",
                        params / 1e6, f"{updates:,}")

    def restore(self, payload: Payload, keep_replay: bool) -> None:
        self.agent.load_state(payload.agent)
        self.step = payload.step
        self.counters = replace(payload.runner, world_size=self.world.size)
        self.clock.remainder = payload.runner.clock_remainder
        loaded = 0
        if keep_replay:
            loaded = self.load_replay()
            part = payload.rank_state(self.world.rank)
            self.replay.load_state_dict(part["replay"])
            restore_rng(part["rng"], self.device, self.rng)
        elif self.world.main:
            log.warning(
                "%s was written by %d rank(s) and this run has %d: the model, optimisers, "
                "normaliser and counters are restored, but the replay is rebuilt (it starts "
                "empty; the old one was moved to %s)", self.run_dir / rundir.CHECKPOINT,
                payload.runner.world_size, self.world.size,
                self.moved_replay or "nowhere: there was none")
        if self.world.main:
            tidy_resumed_run(self.run_dir, self.step, self.config.env.action_repeat)
        log.info("resumed %s at step %d with %d replay steps", self.run_dir, self.step, loaded)

    def load_replay(self) -> int:
        """Load the replay chunks; damaged ones are skipped, each with a `warning:` line."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = self.replay.load()
        for warning in caught:
            log.warning("%s", warning.message)
        return loaded

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
                self.finish()
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

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: the loop finishes the step or update it is in, then saves. A second
        # signal during the save changes nothing, so it cannot tear the checkpoint.
        if self.signal is None:
            log.warning("%s received: saving a checkpoint, then stopping",
                        signal.Signals(signum).name)
        self.signal = signum

    def loop(self) -> None:
        run, world, num = self.config.run, self.world, self.config.env.num_envs
        tracker = EpisodeTracker(num)
        self.window = Window()
        last_save = last_log = time.monotonic()
        saved = False
        duties = [(Every(run.report_every, self.step), self.report),
                  (Every(run.eval_every, self.step), self.evaluate),
                  (Every(run.keep_every, self.step), self.keep_snapshot)]
        obs, state = self.envs.reset(), None
        rates: dict[str, float] = {}
        # A signal during the build stops the run before its first step, on every rank.
        (self.stop_signal,) = world.max(self.signal or 0)
        # Steps before the first update go many times faster than those after it: the ETA is
        # measured from the first update of this session (a resumed run's comes at once).
        updates_before, step_before = self.counters.updates, self.step
        with ProgressReporter(f"train {self.task}", run.steps, interval=run.log_every,
                              enabled=world.main, start=self.step, warmup=True) as bar:
            while self.step < run.steps and not self.stop_signal:
                obs, state = self.collect(tracker, obs, state)
                self.train_due(num * world.size)
                if not bar.warm and self.counters.updates > updates_before:
                    bar.warmed_up(self.step)
                now = time.monotonic()
                # Clocks and signals differ between ranks: every rank acts on what any rank saw,
                # in one collective per iteration, so none enters a collective the others skip.
                self.stop_signal, log_due, save_due, stop = world.max(
                    self.signal or 0, now - last_log >= run.log_every,
                    now - last_save >= run.save_every,
                    self.agent.consecutive_nonfinite >= self.config.train.max_nonfinite)
                if log_due or self.step >= run.steps or stop:
                    rates = self.metrics.log(self.window, now - last_log, self.step,
                                             self.counters, len(self.replay))
                    self.window, last_log = Window(scores=self.window.scores[-1:]), now
                if stop:
                    raise shared(RunError(
                        f"{self.agent.consecutive_nonfinite} consecutive updates had non-finite "
                        f"losses or gradients, stopping; {self.kept_message()}"))
                # The fields in order of interest: a narrow terminal drops the last ones.
                fields: dict[str, Any] = {"score": self.window.last_score, **rates,
                                          "updates": self.counters.updates}
                bar.update(self.step, **fields)
                # A new run saves right after its first update, so that `latest` means it
                # from then on rather than after run.save_every (issue 23). Updates happen in
                # lockstep, so every rank agrees.
                if save_due or (self.resume is None and not saved and self.counters.updates):
                    self.save()
                    last_save, saved = time.monotonic(), True
                for every, duty in duties:
                    if every.due(self.step):
                        duty()
            if self.step > step_before:
                # The observation the last step returned is noted and stored like every other:
                # an episode that ends on the run's last step is scored, and the replay keeps
                # its final transition (a resumed run starts new episodes after it).
                self.observe(tracker, obs, state)

    def collect(self, tracker: EpisodeTracker, obs: dict[str, np.ndarray],
                state: dict[str, Tensor] | None
                ) -> tuple[dict[str, np.ndarray], dict[str, Tensor] | None]:
        """One step of this rank's envs: note finished episodes, act, store, step."""
        action, state = self.observe(tracker, obs, state)
        obs = self.envs.step(action)
        num = self.config.env.num_envs
        self.step += num * self.world.size  # the agent steps of all ranks, taken in lockstep
        self.window.steps += num * self.world.size
        return obs, state

    def observe(self, tracker: EpisodeTracker, obs: dict[str, np.ndarray],
                state: dict[str, Tensor] | None
                ) -> tuple[np.ndarray, dict[str, Tensor] | None]:
        """Note the episodes `obs` finishes, choose the actions and store both in the replay."""
        num = self.config.env.num_envs
        for episode in tracker.update(obs):
            self.metrics.finished(self.step, episode.score, episode.length)
        if not self.world.distributed:  # several ranks gather theirs when they log
            self.metrics.flush_episodes(self.window, self.counters)
        if self.step < self.config.run.prefill:
            action = self.envs.act_space.sample(self.rng, num)
        else:
            action, state = self.agent.policy(obs, state, mode="sample")
        self.replay.add({**{key: obs[key] for key in self.replay_keys}, "action": action})
        return action, state

    def train_due(self, steps: int) -> None:
        """The updates the train-ratio clock owes for `steps` new agent steps, once the prefill
        is done and every rank's replay holds a batch."""
        from dreamerctl.agent.loops import run_updates

        if self.step < self.config.run.prefill or not self.replay_ready():
            return
        if self.counters.ready_step is None:
            self.counters.ready_step = self.step
        count = self.clock.due(steps)
        if count == 0:
            return
        train = self.config.train
        metrics = run_updates(self.agent, self.replay.sample, count, train.loop, train.imag_starts)
        self.counters.updates += count
        self.counters.replayed += count * self.batch_steps * self.world.size
        self.window.add(metrics, count)

    def replay_ready(self) -> bool:
        """Whether updates may start: every rank's replay holds a batch. Agreed by all ranks
        (a rank that updated alone would wait in its gradient all_reduce); once true it stays
        true, as replays only grow, so the collective stops once training has begun."""
        if not self.ready:
            (not_ready,) = self.world.any(not self.replay.ready)
            self.ready = not not_ready
        return self.ready

    def finish(self) -> None:
        """After the loop: the final checkpoint and open-loop video, or, after a signal, the
        checkpoint and Interrupted (exit 130)."""
        if self.stop_signal:
            name = signal.Signals(self.stop_signal).name
            if not self.save():
                raise shared(Interrupted(f"interrupted by {name}; {self.kept_message()}"))
            raise shared(Interrupted(
                f"interrupted by {name}; checkpoint saved to {self.run_dir / rundir.CHECKPOINT}"))
        if not self.save():
            raise shared(RunError(f"saving the final checkpoint failed; {self.kept_message()}"))
        self.report()

    # ----------------------------------------------------------------------------- checkpoints
    def save(self) -> bool:
        """Write the checkpoint; a failed write keeps the previous one, warns and returns False.

        With several ranks every rank takes part: each flushes its replay chunks and hands its
        replay sampler and RNG states (and a digest of its parameters) to rank 0, which writes
        the shared model once with every rank's part; all ranks learn whether it worked."""
        self.replay.flush()
        self.metrics.flush_episodes(self.window, self.counters)
        mine: dict[str, Any] = {"replay": self.replay.state_dict(),
                                "rng": capture_rng(self.device, self.rng)}
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
        payload = Payload(
            task=self.task, step=self.step, frames=self.frames,
            obs_space=self.envs.obs_space, act_space=self.envs.act_space,
            config=config_to_dict(self.config), agent=self.agent.save_state(),
            runner=replace(self.counters, clock_remainder=self.clock.remainder,
                           seconds=self.counters.seconds + time.monotonic() - self.started),
            replay=parts[0]["replay"], rng=parts[0]["rng"],
            saved_at=time.time(),
            # rank r's replay sampler, RNG states and digest
            ranks=parts if self.world.distributed else None)
        path = self.run_dir / rundir.CHECKPOINT
        try:
            save_checkpoint(path, payload.to_payload())
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

    # ---------------------------------------------------------------------------------- output
    def evaluate(self) -> None:
        """run.eval_episodes episodes of the current policy in fresh envs (sampled actions, as
        `dreamerctl eval`), appended to eval.jsonl; a new best mean also saves the checkpoint
        and keeps a copy as checkpoint_best.pt. Rank 0 evaluates while the others wait. The
        training RNG streams are left as they were, so evaluating changes no training step."""
        import torch

        from dreamerctl.run.evaluate import run_episodes, score_summary

        run = self.config.run
        better = False
        if self.world.main:
            seed = run.seed * 1000 + 7
            devices = [self.device] if self.device.type == "cuda" else []
            state = np.random.get_state(), random.getstate()
            with torch.random.fork_rng(devices=devices), self.agent.acting_parameters():
                scores, lengths = run_episodes(self.agent, self.task, self.config.env,
                                               run.eval_episodes, seed, "sample",
                                               f"eval {self.task}", progress=False)
            np.random.set_state(state[0])
            random.setstate(state[1])
            result = score_summary(scores, lengths, seed)
            row = {"step": self.step, "frames": self.frames, "mode": "sample",
                   "parameters": self.agent.acts_with, "seed": seed, **result}
            rundir.append_jsonl(self.run_dir / rundir.EVALS, row)
            self.events.scalars({f"eval/{k}": result[k] for k in ("mean", "std")}, self.frames)
            log.info("eval at step %d: mean %.1f over %d episodes (95%% CI %.1f-%.1f)",
                     self.step, result["mean"], result["episodes"], result["ci95_low"],
                     result["ci95_high"])
            best = self.counters.best_eval
            better = best is None or result["mean"] > best
            if better:
                self.counters.best_eval = result["mean"]
        if self.world.broadcast(better) and self.save() and self.world.main:
            copy_checkpoint(self.run_dir / rundir.CHECKPOINT, self.run_dir / rundir.BEST)

    def report(self) -> None:
        """The open-loop video of SPEC §5: true / predicted / error rows (rank 0's replay)."""
        from dreamerctl.video import label_rows, openloop_grid, write_mp4

        if not self.world.main or not self.replay.ready or "image" not in self.envs.obs_space:
            return
        batch = self.replay.sample()
        context = min(OPENLOOP_CONTEXT, self.config.train.batch_length - 1)
        result = self.agent.openloop(batch, context)
        if result is None:
            return
        folder = self.run_dir / "openloop"
        folder.mkdir(exist_ok=True)
        frames = label_rows(openloop_grid(result[0], result[1], context),
                            ["true", "model", "error"])
        write_mp4(folder / f"openloop_{self.step}.mp4", frames, fps=10)
        self.events.video("openloop", frames, self.frames, fps=10)
