"""The validated, frozen configuration. Every field has its default in presets/default.toml.

Sections map one to one onto components: `run` (the runner), `env` (environments), `world_model`,
`actor_critic` and `train` (the update loop). Each component receives only its own section.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RunConfig(Section):
    steps: int = Field(ge=0, description="Agent steps to train (env frames / action repeat).")
    seed: int = Field(ge=0)
    device: Literal["auto", "cpu", "cuda"]
    precision: Literal["fp32", "bf16", "auto"] = Field(
        description="fp32, bf16 autocast, or auto: bf16 where the hardware computes in it "
        "natively (AMX or AVX512-BF16 CPUs, bf16 GPUs), else fp32."
    )
    threads: Literal["auto"] | int = Field(
        description="torch intra-op threads: auto (one for small models, else the usable "
        "cores) or a number."
    )
    compile: Literal["off", "default", "reduce-overhead", "max-autotune"] = Field(
        description="torch.compile mode for the forward and backward passes of the losses; "
        "reduce-overhead also replays them as CUDA graphs on a GPU."
    )
    save_every: float = Field(gt=0, description="Seconds between checkpoints.")
    tensorboard: bool = Field(description="Also write TensorBoard events to tensorboard/.")

    @field_validator("threads", mode="before")
    @classmethod
    def _check_threads(cls, threads: Any) -> Any:
        if threads == "auto" or (type(threads) is int and threads >= 1):
            return threads
        raise ValueError("must be \"auto\" or a number of threads, at least 1")
    report_every: int = Field(ge=0, description="Agent steps between open-loop videos.")
    log_every: float = Field(gt=0, description="Seconds between metrics lines.")
    prefill: int = Field(ge=0, description="Random-policy agent steps before the first update.")
    keep_every: int = Field(ge=0, description="Agent steps between kept snapshots "
                            "checkpoints/checkpoint_<step>.pt; 0 = none.")
    keep_last: int = Field(ge=0, description="Snapshots kept (the newest); 0 = all.")
    eval_every: int = Field(ge=0, description="Agent steps between evaluations during "
                            "training (eval.jsonl, checkpoint_best.pt); 0 = none.")
    eval_episodes: int = Field(ge=1, description="Episodes per evaluation during training.")


class AtariConfig(Section):
    noops: int = Field(ge=0)
    sticky: bool
    full_action_space: bool
    life_done: bool
    max_frames: int = Field(gt=0, description="Time limit in emulator frames.")


class DmcConfig(Section):
    camera: int = Field(ge=-1, description="-1 picks the task's default (quadruped: 2, else 0).")
    render_size: list[int] = Field(min_length=2, max_length=2)


class GymConfig(Section):
    kwargs: dict[str, Any] = Field(
        description="gymnasium.make keyword arguments of gym_ tasks, e.g. {is_slippery = false}."
    )

    @field_validator("kwargs")
    @classmethod
    def _check_kwargs(cls, kwargs: dict[str, Any]) -> dict[str, Any]:
        owned = {"render_mode": "dreamerctl renders rgb_array frames itself",
                 "max_episode_steps": "set env.time_limit (agent steps) instead",
                 "disable_env_checker": "dreamerctl checks the spaces itself"}
        for key, why in owned.items():
            if key in kwargs:
                raise ValueError(f"env.gym.kwargs.{key} cannot be set: {why}")
        return kwargs


class EnvConfig(Section):
    num_envs: int = Field(ge=1)
    parallel: bool
    size: list[int] = Field(min_length=2, max_length=2)
    action_repeat: int = Field(ge=1)
    time_limit: int = Field(ge=0, description="Agent steps per episode; 0 = the suite's own.")
    obs_keys: list[Literal["image", "vector"]] = Field(min_length=1)
    atari: AtariConfig
    dmc: DmcConfig
    gym: GymConfig

    @model_validator(mode="after")
    def _check_size(self) -> EnvConfig:
        if any(s < 16 or s % 16 for s in self.size):
            raise ValueError("env.size must be multiples of 16, at least 16")
        return self


class LossScales(Section):
    image: float = Field(ge=0)
    vector: float = Field(ge=0)
    reward: float = Field(ge=0)
    cont: float = Field(ge=0)
    dyn: float = Field(ge=0)
    rep: float = Field(ge=0)


class WorldModelConfig(Section):
    deter: int = Field(ge=1)
    hidden: int = Field(ge=1, description="GRU input / image-posterior hidden units.")
    stoch: int = Field(ge=1, description="Number of categorical latents.")
    classes: int = Field(ge=2)
    units: int = Field(ge=1)
    layers: int = Field(ge=1)
    cnn_depth: int = Field(ge=1)
    kernel: int = Field(ge=2)
    unimix: float = Field(ge=0, lt=1)
    initial: Literal["learned", "zeros"]
    free_bits: float = Field(ge=0)
    bins: int = Field(ge=3)
    loss_scales: LossScales
    cont_terminal_weight: float = Field(
        ge=1, description="Weight of a terminal step in the continue loss (1: the paper). Deaths "
        "that are rare in the replay (a cart leaving CartPole's track) count this many times."
    )
    lr: float = Field(gt=0)
    eps: float = Field(gt=0)
    grad_clip: float = Field(gt=0)


class ActorCriticConfig(Section):
    units: int = Field(ge=1)
    layers: int = Field(ge=1)
    horizon: int = Field(ge=1)
    discount_horizon: float = Field(gt=1, description="Discount is 1 - 1 / discount_horizon.")
    lam: float = Field(ge=0, le=1)
    imag_cont: Literal["mean", "mode"] = Field(
        description="Continuation in imagination: the continue head's probability or its mode."
    )
    entropy: float = Field(ge=0)
    reward_deadzone: float = Field(
        ge=0, description="Imagined rewards with |r| below this count as 0 (0: off, the paper). "
        "For sparse 0/1 rewards with terminal failures, e.g. 0.01 on FrozenLake."
    )
    actor_grad_discrete: Literal["reinforce", "dynamics"]
    actor_grad_continuous: Literal["reinforce", "dynamics"]
    min_std: float = Field(gt=0)
    max_std: float = Field(gt=0)
    unimix: float = Field(ge=0, lt=1)
    slow_critic_rate: float = Field(gt=0, le=1)
    slow_reg: float = Field(ge=0)
    replay_value: float = Field(
        ge=0, description="Scale of the critic's loss on replay sequences (0: off, the 2023 "
        "recipe; 0.3 in the 2024 code). Its targets bootstrap with the imagined returns "
        "(imag_starts \"all\") or with the critic's own values (\"last\")."
    )
    retnorm_decay: float = Field(ge=0, lt=1)
    retnorm_low: float = Field(ge=0, le=1)
    retnorm_high: float = Field(ge=0, le=1)
    retnorm_max: float = Field(gt=0, description="S = max(retnorm_max, P_high - P_low).")
    actor_lr: float = Field(gt=0)
    critic_lr: float = Field(gt=0)
    eps: float = Field(gt=0)
    grad_clip: float = Field(gt=0)


class TrainConfig(Section):
    loop: Literal["coupled", "sample_starts"]
    imag_starts: Literal["all", "last"]
    batch_size: int = Field(ge=1)
    batch_length: int = Field(ge=2)
    train_ratio: float = Field(gt=0)
    replay_capacity: int = Field(ge=1, description="Replay capacity in agent steps.")
    replay_chunk: int = Field(ge=1, description="Steps per saved replay chunk.")
    replay_device: Literal["auto", "cpu", "cuda"] = Field(
        description="Where the replay lives and batches are gathered; auto: the training GPU "
        "when the full replay takes at most a third of its memory, else the CPU."
    )
    max_nonfinite: int = Field(ge=1)
    policy_ema: float = Field(
        ge=0, lt=1, description="Decay per update of a moving average of the world model's and "
        "actor's parameters that eval, record, compare and run.eval_every act with (0: off, "
        "the last parameters act, as in the paper). Training collects with the live ones."
    )


class Config(Section):
    run: RunConfig
    env: EnvConfig
    world_model: WorldModelConfig
    actor_critic: ActorCriticConfig
    train: TrainConfig
