"""Loading a trained agent from a checkpoint and acting with it in one env (record) or many."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dreamerctl.config import Config, EnvConfig, saved_config
from dreamerctl.errors import DreamerError, RunError, UsageError
from dreamerctl.run import rundir
from dreamerctl.run.checkpoint import Payload, read_meta, read_payload
from dreamerctl.spaces import ACT_MODES, ACT_PARAMETERS, ActSpace, Space

if TYPE_CHECKING:
    from torch import Tensor

    from dreamerctl.agent.agent import Agent


class RandomPolicy:
    """Uniform random actions (one-hot for discrete spaces, uniform in [-1, 1] otherwise): the
    baseline a trained agent is judged against. It acts both ways an agent does: `policy` for a
    batch of envs (eval, compare) and `act` for one env (record, as its Actor)."""

    def __init__(self, act_space: ActSpace, seed: int) -> None:
        self.act_space = act_space
        self.rng = np.random.default_rng(seed)

    def policy(self, obs: dict[str, np.ndarray], state: object,
               mode: str = "sample") -> tuple[np.ndarray, None]:
        return self.act_space.sample(self.rng, len(obs["is_first"])), None

    def reset(self) -> None:
        pass

    def act(self, obs: dict[str, Any]) -> np.ndarray:
        return self.act_space.sample(self.rng)

    def panel(self) -> list[tuple[str, np.ndarray]] | None:
        return None


class Loaded:
    """A checkpoint's agent with its config, task and spaces."""

    def __init__(self, path: Path, payload: Payload, agent: Agent, config: Config,
                 parameters: str) -> None:
        self.path = path
        self.agent = agent
        self.config = config
        # Which parameters the agent holds: "average" (train.policy_ema's) or "live".
        self.parameters = parameters
        self.task = payload.task
        self.step = payload.step
        self.frames = payload.frames
        self.obs_space: dict[str, Space] = payload.obs_space
        self.act_space: ActSpace = payload.act_space
        # Rank 0's replay counters when it was saved (diagnose reads the replay as it was then).
        self.replay_state: dict[str, Any] = payload.rank_state(0).get("replay", {})


def checkpoint_config(path: Path, tree: dict[str, Any]) -> Config:
    """The config saved in the checkpoint at `path` (fields newer than it take their defaults)."""
    try:
        return saved_config(tree, str(path))
    except DreamerError as e:
        raise RunError(f"checkpoint {path} has a config this dreamerctl cannot read: {e}") from None


def load_agent(path: Path, device: str = "auto", parameters: str = "average") -> Loaded:
    """Build the agent a checkpoint describes and load its weights (weights_only).
    `parameters`: "average" takes those a policy acts with, the moving average where
    train.policy_ema kept one (else the live ones); "live" the last trained ones, as training
    collected with them (diagnose, and `--parameters live` for an A/B of the two)."""
    check_parameters(parameters)
    payload = read_payload(path)
    from dreamerctl.agent.agent import Agent
    from dreamerctl.run.allocator import keep_freed_memory
    from dreamerctl.run.device import pick_device
    from dreamerctl.run.threads import apply_threads

    keep_freed_memory(quiet=True)
    config = checkpoint_config(path, payload.config)
    # Compiling pays for long training runs, not for acting: a loaded agent runs eagerly.
    agent = Agent.from_config(payload.obs_space, payload.act_space, config, pick_device(device),
                              compile="off")
    apply_threads(config.run.threads, agent, quiet=True)
    try:
        agent.load_state(payload.agent)
    except (KeyError, RuntimeError, ValueError) as e:
        raise RunError(f"checkpoint {path} does not match its own model: {e}") from None
    used = agent.acts_with if parameters == "average" else "live"
    if used == "average" and agent.policy_average is not None:
        agent.policy_average.copy_in()
    agent.eval()
    return Loaded(path, payload, agent, config, used)


def check_spaces(task: str, env_cfg: EnvConfig, loaded: Loaded) -> None:
    """`--task` may replace the checkpoint's task only when the spaces match."""
    from dreamerctl.envs import make_env

    env = make_env(task, env_cfg, seed=0)
    try:
        obs, act = env.obs_space, env.act_space
    finally:
        env.close()
    problems = []
    if set(obs) != set(loaded.obs_space):
        problems.append(f"observation keys {sorted(obs)} vs {sorted(loaded.obs_space)}")
    for key in set(obs) & set(loaded.obs_space):
        if obs[key] != loaded.obs_space[key]:
            problems.append(f"{key} {describe(obs[key])} vs {describe(loaded.obs_space[key])}")
    if act != loaded.act_space:
        problems.append(f"actions {describe_act(act)} vs {describe_act(loaded.act_space)}")
    if problems:
        raise UsageError(
            f"task {task} does not fit checkpoint of {loaded.task}: " + "; ".join(problems)
        )


def describe(space: Space) -> str:
    return f"{tuple(space.shape)} {space.dtype}"


def describe_act(space: ActSpace) -> str:
    return f"{space.size} {'discrete' if space.discrete else 'continuous'}"


def task_and_env(loaded: Loaded, task: str | None) -> tuple[str, EnvConfig]:
    env_cfg = loaded.config.env
    if task is None or task == loaded.task:
        return loaded.task, env_cfg
    from dreamerctl.envs import check_task

    check_task(task)
    check_spaces(task, env_cfg, loaded)
    return task, env_cfg


class AgentActor:
    """Acts in one env with a loaded agent; `panel()` shows what the agent sees and the world
    model's reconstruction of it (record --with-model)."""

    def __init__(self, agent: Agent, mode: str, with_model: bool) -> None:
        self.agent = agent
        self.mode = mode
        self.with_model = with_model
        self.state: dict[str, Tensor] | None = None  # the agent's carry (Agent.policy)
        self.last_obs: dict[str, np.ndarray] | None = None

    def reset(self) -> None:
        self.state = None

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        batch = {key: np.asarray(value)[None] for key, value in obs.items()}
        action, self.state = self.agent.policy(batch, self.state, mode=self.mode)
        self.last_obs = obs
        return action[0]

    def panel(self) -> list[tuple[str, np.ndarray]] | None:
        """(label, image) pairs shown beside the frame: what the agent sees, and what its world
        model makes of it."""
        if (not self.with_model or self.last_obs is None or self.state is None
                or "image" not in self.last_obs):
            return None
        seen = np.asarray(self.last_obs["image"])
        size = "x".join(map(str, seen.shape[:2]))
        recon = self.agent.reconstruct(self.state)
        if recon is None:
            return [(f"agent input {size}", seen)]
        return [(f"agent input {size}", seen), ("model reconstruction", recon[0])]


def load_actor(path: Path, task: str | None, seed: int, mode: str, device: str,
               with_model: bool, parameters: str = "average"
               ) -> tuple[AgentActor, str, EnvConfig, str]:
    """The actor, task, env config and parameters used (`Loaded.parameters`) for `record` with
    the checkpoint at `path`."""
    import torch

    check_mode(mode)
    loaded = load_agent(path, device, parameters)
    if with_model and "image" not in loaded.obs_space:
        raise UsageError(f"--with-model shows the world model's view of image observations, "
                         f"but {path} sees only vectors: leave --with-model out")
    chosen, env_cfg = task_and_env(loaded, task)
    torch.manual_seed(seed)
    return AgentActor(loaded.agent, mode, with_model), chosen, env_cfg, loaded.parameters


def random_agent_setup(checkpoint: str, logdir: Path,
                       task: str | None) -> tuple[str, EnvConfig, Path | None]:
    """Where `--random-agent` acts: the task, its env config and the checkpoint (None for
    `--checkpoint none`). Without a checkpoint that is `task` with its suite's defaults; with
    one, the run's task and env settings (another `task` gets its suite's defaults), so that
    a random baseline sees the episodes the agent saw. No model is loaded."""
    from dreamerctl.config import build_config
    from dreamerctl.envs import check_task

    if checkpoint == "none":
        if task is None:
            raise UsageError("--checkpoint none needs --random-agent and --task")
        check_task(task)
        return task, build_config(task).env, None
    try:
        path = rundir.resolve_checkpoint(checkpoint, logdir, task=task)
    except RunError as e:
        if checkpoint != "latest":
            raise
        hint = f" --task {task}" if task else " --task TASK"
        raise RunError(f"{e}; a random agent needs no checkpoint: --checkpoint none "
                       f"--random-agent{hint}") from None
    meta = read_meta(path)
    chosen = task or meta.task
    check_task(chosen)
    env_cfg = (checkpoint_config(path, meta.config).env if chosen == meta.task
               else build_config(chosen).env)
    return chosen, env_cfg, path


def check_parameters(parameters: str) -> None:
    if parameters not in ACT_PARAMETERS:
        raise UsageError(f"unknown --parameters '{parameters}': use {' or '.join(ACT_PARAMETERS)}")


def check_mode(mode: str) -> None:
    if mode not in ACT_MODES:
        raise UsageError(f"unknown --mode '{mode}': use {' or '.join(ACT_MODES)}")
