"""The Agent facade: acting, the two training steps, reports, and state for checkpoints.

The rest of dreamerctl calls only this class and `loops.run_updates`. Batches are dicts of numpy
arrays or tensors, (B, T, ...): image uint8, vector float32, action float32 (B, T, A) where
action[:, t] was chosen from observation t, reward float32, is_first / is_last / is_terminal bool.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, get_args

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from dreamerctl.agent.average import ParameterAverage
from dreamerctl.agent.behavior import (
    Behavior,
    Trajectory,
    actor_loss,
    critic_loss,
    imagine,
    replay_boot,
    replay_value_loss,
)
from dreamerctl.agent.optim import Optimizer, frozen
from dreamerctl.agent.precision import resolve_precision
from dreamerctl.agent.rssm import State
from dreamerctl.agent.world_model import WorldModel
from dreamerctl.config.schema import (
    ActorCriticConfig,
    Config,
    RunConfig,
    TrainConfig,
    WorldModelConfig,
)
from dreamerctl.spaces import ACT_MODES, TRAIN_KEYS, ActSpace, Space

log = logging.getLogger("dreamerctl.agent")

Metrics = dict[str, Tensor]
OPENLOOP_SEQUENCES = 6
# run.compile: torch.compile modes for the loss computations ("off": eager).
COMPILE_MODES = get_args(RunConfig.model_fields["compile"].annotation)
PRECISIONS = get_args(RunConfig.model_fields["precision"].annotation)  # run.precision
# train.imag_starts: which replayed states the actor-critic imagines from.
IMAG_STARTS: tuple[str, ...] = get_args(TrainConfig.model_fields["imag_starts"].annotation)


def to_cpu(tree: Any) -> Any:
    """A copy of a nested dict/list/tuple with every tensor detached on the CPU."""
    if isinstance(tree, Tensor):
        return tree.detach().cpu()
    if isinstance(tree, dict):
        return {key: to_cpu(value) for key, value in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(to_cpu(value) for value in tree)
    return tree


def host_array(value: npt.ArrayLike) -> np.ndarray:
    """An array torch can wrap: a copy where numpy's is read-only or has negative strides
    (dm_control's flipped renders, ALE's screen buffers), else the array itself."""
    array = np.asarray(value)
    if array.flags.writeable and all(stride >= 0 for stride in array.strides):
        return array
    return np.array(array, order="C", copy=True)


def select_starts(post: dict[str, Tensor], imag_starts: str) -> dict[str, Tensor]:
    """"all": every (B, T) posterior state (B*T starts once flattened); "last": the last step
    of each sequence, (B, ...)."""
    if imag_starts == "all":
        return post
    if imag_starts == "last":
        return {key: value[:, -1] for key, value in post.items()}
    raise ValueError(f"imag_starts must be one of {IMAG_STARTS}, got {imag_starts!r}")


def flatten_starts(starts: dict[str, Tensor]) -> State:
    """Start states with any leading dims -> h (N, D), z (N, K, C), cont (N,)."""
    lead = starts["h"].shape[:-1]
    out = {"h": starts["h"].reshape(-1, starts["h"].shape[-1]),
           "z": starts["z"].reshape(-1, *starts["z"].shape[-2:])}
    if "cont" in starts:
        out["cont"] = starts["cont"].reshape(-1)
    assert starts["z"].shape[:-2] == lead, "h and z of the starts disagree"
    return out


class Agent(nn.Module):
    def __init__(self, obs_space: dict[str, Space], act_space: ActSpace, wm: WorldModelConfig,
                 ac: ActorCriticConfig, train: TrainConfig, device: torch.device | str = "cpu",
                 precision: str = "fp32", compile: str = "off") -> None:
        super().__init__()
        # The choices are the schema's; a config has been validated against them already, a
        # direct caller gets the same one-line refusal.
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
        self.device = torch.device(device)  # resolved by the caller (run/device.py)
        self.precision = resolve_precision(precision, self.device)  # "auto": fp32 or bf16 here
        self.act_space = act_space
        self.train_config = train
        self.horizon = ac.horizon
        # Built directly on the device: no CPU copy of a large model, and "meta" just counts.
        with torch.device(self.device):
            self.wm = WorldModel(obs_space, act_space, wm)
            self.behavior = Behavior(self.wm.rssm.feat_dim, act_space, ac, wm.bins)
        self.optimizers = {
            "world_model": Optimizer(self.wm.parameters(), wm.lr, wm.eps, wm.grad_clip),
            "actor": Optimizer(self.behavior.actor.parameters(), ac.actor_lr, ac.eps,
                               ac.grad_clip),
            "critic": Optimizer(self.behavior.critic.parameters(), ac.critic_lr, ac.eps,
                                ac.grad_clip),
        }
        self.counters = {"world_model_updates": 0, "actor_critic_updates": 0}
        # What a checkpoint's policy acts with when train.policy_ema > 0 (issue 20); kept out of
        # the module tree so that parameter counts, broadcasts and state_dict stay the model's.
        self.policy_average = (
            ParameterAverage({"wm": self.wm, "actor": self.behavior.actor}, train.policy_ema)
            if train.policy_ema > 0 else None)
        # Consecutive skipped (non-finite) steps of each optimiser, counted on the device.
        self._nonfinite_runs = {name: torch.zeros((), device=self.device)
                                for name in self.optimizers}
        self._debug_logged: set[str] = set()
        # The forward and backward passes of the three losses, compiled on first use when
        # `compile` is not "off" (optimiser steps and the skip decision stay eager).
        self.compile_mode = compile
        self._world_model_loss = self._compiled(self._world_model_loss_eager)
        self._actor_loss = self._compiled(self._actor_loss_eager)
        self._critic_loss = self._compiled(self._critic_loss_eager)

    @classmethod
    def from_config(cls, obs_space: dict[str, Space], act_space: ActSpace, config: Config,
                    device: torch.device | str = "cpu", compile: str | None = None) -> Agent:
        """The agent a resolved config describes (its model, recipe, precision and compile
        mode; `compile` overrides the latter) for these spaces: how every caller builds one."""
        return cls(obs_space, act_space, config.world_model, config.actor_critic, config.train,
                   device=device, precision=config.run.precision,
                   compile=config.run.compile if compile is None else compile)

    @property
    def nonfinite_runs(self) -> dict[str, int]:
        """Consecutive skipped, non-finite steps of each optimiser (reading it syncs)."""
        runs = torch.stack(list(self._nonfinite_runs.values())).tolist()
        return {name: int(run) for name, run in zip(self._nonfinite_runs, runs, strict=True)}

    @property
    def consecutive_nonfinite(self) -> int:
        """The longest current run of skipped, non-finite steps of any one optimiser."""
        return max(self.nonfinite_runs.values())

    # ----------------------------------------------------------------------------- helpers
    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def tensors(self, batch: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Tensor]:
        """The needed entries of a batch as tensors on the device (uint8 images stay uint8)."""
        out = {}
        for key in keys:
            value = batch[key]
            value = value if isinstance(value, Tensor) else torch.from_numpy(host_array(value))
            out[key] = value.to(self.device, non_blocking=True)
        return out

    def _debug_shapes(self, tag: str, **tensors: Tensor) -> None:
        """At the debug log level (`dreamerctl --debug`), log the shapes of a step once."""
        if tag in self._debug_logged or not log.isEnabledFor(logging.DEBUG):
            return
        self._debug_logged.add(tag)
        shapes = ", ".join(f"{name} {tuple(t.shape)}" for name, t in tensors.items())
        log.debug("agent %s: %s", tag, shapes)

    def _compiled(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """`fn` through torch.compile in `compile_mode` ("reduce-overhead" also replays it as
        CUDA graphs on a GPU), or `fn` itself when compiling is off."""
        if self.compile_mode == "off":
            return fn
        mode = None if self.compile_mode == "default" else self.compile_mode
        return torch.compile(fn, mode=mode, dynamic=False)

    def _mark_step(self) -> None:
        """Tell CUDA-graph replays that a new update begins: the previous update's outputs may
        be overwritten (each update is done with them before the next one starts)."""
        if self.compile_mode == "reduce-overhead" and self.device.type == "cuda":
            torch.compiler.cudagraph_mark_step_begin()

    def _skipped(self, name: str, skipped: Tensor) -> Tensor:
        self._nonfinite_runs[name] = (self._nonfinite_runs[name] + 1) * skipped
        return skipped

    # ------------------------------------------------------------------------------ acting
    @torch.no_grad()
    def initial_state(self, n: int) -> dict[str, Tensor]:
        """The policy carry for n envs: h (n, D), z (n, K, C), previous action (n, A)."""
        state = self.wm.rssm.initial(n)
        action = torch.zeros(n, self.act_space.size, device=self.device)
        return {"h": state["h"].float().clone(), "z": state["z"].float().clone(),
                "action": action}

    @torch.no_grad()
    def policy(self, obs: dict[str, np.ndarray], state: dict[str, Tensor] | None,
               mode: str = "sample") -> tuple[np.ndarray, dict[str, Tensor]]:
        """Actions (N, A) float32 for N envs and the new carry. Resets the carry where
        obs["is_first"]; mode "greedy" takes the policy's mode."""
        if mode not in ACT_MODES:
            raise ValueError(f"mode must be one of {ACT_MODES}, got {mode!r}")
        data = self.tensors(obs, (*self.wm.keys, "is_first"))
        if state is None:
            state = self.initial_state(len(data["is_first"]))
        with self.autocast():
            embed = self.wm.encode(data)  # (N, E)
            post = self.wm.rssm.obs_step(state, state["action"], embed, data["is_first"])
            dist = self.behavior.policy(self.wm.rssm.feat(post))
            action = (dist.mode() if mode == "greedy" else dist.sample()).float()
        carry = {"h": post["h"].float(), "z": post["z"].float(), "action": action}
        return action.cpu().numpy(), carry

    @torch.no_grad()
    def reconstruct(self, state: dict[str, Tensor]) -> np.ndarray | None:
        """The decoded image of a carried posterior, uint8 (N, H, W, 3); None without images."""
        if "image" not in self.wm.keys:
            return None
        with self.autocast():
            image = self.wm.image_decoder(self.wm.rssm.feat(state))
        return to_uint8(image)

    # ---------------------------------------------------------------------------- training
    def update_world_model(self, batch: dict[str, Any]) -> tuple[Metrics, dict[str, Tensor]]:
        """`train_world_model` with metrics left as tensors (no host sync for them)."""
        data = self.tensors(batch, (*self.wm.keys, *TRAIN_KEYS))
        self._mark_step()
        losses, total, post = self._world_model_loss(data)
        norm, skipped = self.optimizers["world_model"].step(total)
        self.counters["world_model_updates"] += 1
        metrics = {f"train/loss/{key}": loss.detach().mean() for key, loss in losses.items()}
        metrics["train/grad_norm/world_model"] = norm
        metrics["train/nonfinite"] = self._skipped("world_model", skipped)
        starts = posterior_starts(post, data)
        self._debug_shapes("world model", action=data["action"], h=starts["h"], z=starts["z"])
        return metrics, starts

    def train_world_model(self, batch: dict[str, Any]
                          ) -> tuple[dict[str, float], dict[str, Tensor]]:
        """One world-model update. Returns its metrics and the detached posterior: h (B, T, D),
        z (B, T, K, C), cont (B, T) = 1 - is_terminal."""
        metrics, starts = self.update_world_model(batch)
        return {key: float(value) for key, value in metrics.items()}, starts

    def update_actor_critic(self, post: dict[str, Tensor], imag_starts: str = "all"
                            ) -> Metrics:
        """`train_actor_critic` with metrics left as tensors."""
        starts = select_starts(post, imag_starts)
        flat = flatten_starts(starts)
        behavior = self.behavior
        # The world model (and the critic, for the actor's loss) only carries gradients
        # through: none of its parameters can change or even get a gradient here.
        with frozen(self.wm, behavior.critic):
            traj, a_loss, entropy = self._actor_loss(flat)
            a_norm, a_skipped = self.optimizers["actor"].step(a_loss)
        metrics: Metrics = {}
        c_loss, r_loss = self._critic_loss(traj, post, imag_starts)
        if r_loss is not None:
            metrics["train/loss/critic_replay"] = r_loss.detach()
        c_norm, c_skipped = self.optimizers["critic"].step(c_loss)
        behavior.update_slow_critic()
        if self.policy_average is not None:
            self.policy_average.update()
        self.counters["actor_critic_updates"] += 1
        self._debug_shapes("actor-critic", starts_h=flat["h"], starts_z=flat["z"],
                           imagined_feat=traj.feat, imagined_action=traj.action,
                           returns=traj.ret)
        skipped = self._skipped("actor", a_skipped) + self._skipped("critic", c_skipped)
        return {
            **metrics,
            "train/loss/actor": a_loss.detach(), "train/loss/critic": c_loss.detach(),
            "train/actor_entropy": entropy.detach(),
            "train/retnorm/low": behavior.retnorm.low.clone(),
            "train/retnorm/high": behavior.retnorm.high.clone(),
            "train/retnorm/scale": behavior.retnorm.scale(),
            "train/grad_norm/actor": a_norm, "train/grad_norm/critic": c_norm,
            "train/imag_return_mean": traj.ret.detach().mean(),
            "train/nonfinite": skipped,
        }

    # The loss computations, each one region for torch.compile.
    def _world_model_loss_eager(self, data: dict[str, Tensor]
                                ) -> tuple[dict[str, Tensor], Tensor, State]:
        with self.autocast():
            losses, post = self.wm.loss(data)
            return losses, self.wm.total(losses), post

    def _actor_loss_eager(self, flat: State) -> tuple[Trajectory, Tensor, Tensor]:
        behavior = self.behavior
        with self.autocast():
            with torch.set_grad_enabled(behavior.grad == "dynamics"):
                traj = imagine(self.wm, behavior, flat, self.horizon)
            a_loss, entropy = actor_loss(behavior, traj)
        return traj, a_loss, entropy

    def _critic_loss_eager(self, traj: Trajectory, post: dict[str, Tensor], imag_starts: str
                           ) -> tuple[Tensor, Tensor | None]:
        behavior = self.behavior
        with self.autocast():
            c_loss = critic_loss(behavior, traj)
            if behavior.ac.replay_value > 0:
                # The critic also learns along the replayed (B, T) sequences the starts came
                # from: real rewards and terminations, bootstrapped as replay_boot says.
                replay = {"feat": self.wm.rssm.feat({"h": post["h"], "z": post["z"]}),
                          "reward": post["reward"], "cont": post["cont"],
                          "last": post["last"]}
                boot = replay_boot(behavior, replay["feat"], traj.ret[0], imag_starts)
                r_loss = replay_value_loss(behavior, replay, boot)
                return c_loss + behavior.ac.replay_value * r_loss, r_loss
        return c_loss, None

    def train_actor_critic(self, post: dict[str, Tensor], imag_starts: str = "all"
                           ) -> dict[str, float]:
        """One actor and one critic update imagined from the replayed posterior `post`: h
        (B, T, D), z (B, T, K, C), optionally cont (B, T), and the sequences' reward and last
        (B, T) when actor_critic.replay_value > 0, along which the critic then also learns.
        imag_starts "all" imagines from every state, "last" from each sequence's last one.
        With "all" (and no replay loss) any leading dims work: they are flattened to N starts."""
        return {key: float(value)
                for key, value in self.update_actor_critic(post, imag_starts).items()}

    @torch.no_grad()
    def encode_starts(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The posterior of a fresh batch, without gradient: h (B, T, D), z (B, T, K, C),
        cont (B, T)."""
        data = self.tensors(batch, (*self.wm.keys, *TRAIN_KEYS))
        with self.autocast():
            post, _ = self.wm.observe(data)
        return posterior_starts(post, data)

    # ----------------------------------------------------------------------------- reports
    @torch.no_grad()
    def openloop(self, batch: dict[str, Any], context: int) -> tuple[np.ndarray, np.ndarray] | None:
        """Up to 6 sequences: the posterior's reconstruction of the first `context` steps, then
        the prior rolled open loop with the recorded actions. Returns (true, predicted) uint8
        (N, T, H, W, 3); None without image observations."""
        if "image" not in self.wm.keys:
            return None
        data = {key: value[:OPENLOOP_SEQUENCES]
                for key, value in self.tensors(batch, (*self.wm.keys, *TRAIN_KEYS)).items()}
        length = data["image"].shape[1]
        context = min(max(context, 1), length)
        with self.autocast():
            post, _ = self.wm.observe({key: value[:, :context] for key, value in data.items()})
            frames = [self.wm.image_decoder(self.wm.rssm.feat(post))]
            if context < length:
                start = {"h": post["h"][:, -1], "z": post["z"][:, -1]}
                # The step into t uses a_{t-1}: steps context..T-1 take actions context-1..T-2.
                states = self.wm.rssm.rollout(start, data["action"][:, context - 1:length - 1])
                frames.append(self.wm.image_decoder(self.wm.rssm.feat(states)))
        return data["image"].cpu().numpy(), to_uint8(torch.cat(frames, 1))

    # ------------------------------------------------------------------------------- state
    def save_state(self) -> dict[str, Any]:
        """Everything needed to resume, as CPU tensors, numbers, strings, lists and dicts (loads
        with torch.load(weights_only=True)): parameters, slow critic and return-normaliser
        buffers, optimiser states, counters."""
        state = {
            "modules": to_cpu(self.state_dict()),
            "optimizers": {name: to_cpu(opt.state_dict()) for name, opt in self.optimizers.items()},
            "counters": dict(self.counters),
            "nonfinite_runs": dict(self.nonfinite_runs),
        }
        if self.policy_average is not None:
            state["policy_average"] = self.policy_average.state_dict()
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        self.load_state_dict(state["modules"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.counters.update({key: int(value) for key, value in state["counters"].items()})
        for key, value in state.get("nonfinite_runs", {}).items():
            self._nonfinite_runs[key] = torch.tensor(float(value), device=self.device)
        # A run that turns train.policy_ema on when it resumes starts its average then.
        if self.policy_average is not None and "policy_average" in state:
            self.policy_average.load_state_dict(state["policy_average"])

    def acting_parameters(self) -> contextlib.AbstractContextManager[None]:
        """The parameters a checkpoint's policy acts with, inside the block: the average of
        train.policy_ema where there is one, else the live ones."""
        if self.policy_average is None:
            return contextlib.nullcontext()
        return self.policy_average.swapped_in()

    @property
    def acts_with(self) -> str:
        """Which parameters `acting_parameters` holds: "average" once train.policy_ema has
        averaged an update, else "live"."""
        average = self.policy_average
        return "average" if average is not None and average.count > 0 else "live"


def posterior_starts(post: State, data: dict[str, Tensor]) -> dict[str, Tensor]:
    """Detached start states from a posterior: h (B, T, D) float32, z (B, T, K, C),
    cont (B, T) = 1 - is_terminal, the start's own continuation, and the sequence's reward and
    last = is_last (B, T) for the critic's replay loss."""
    return {"h": post["h"].detach().float(), "z": post["z"].detach().float(),
            "cont": 1.0 - data["is_terminal"].float(), "reward": data["reward"].float(),
            "last": data["is_last"].float()}


def to_uint8(image: Tensor) -> np.ndarray:
    """Decoder means in [-0.5, 0.5] -> uint8 pixels, same shape."""
    return ((image.float() + 0.5) * 255.0).clamp(0, 255).round().to(torch.uint8).cpu().numpy()
