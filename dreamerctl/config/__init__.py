"""Configuration: pydantic models, preset loading and layering, --set parsing."""

from dreamerctl.config.loader import build_config, dump_config, preset_dir, preset_names, validate
from dreamerctl.config.schema import (
    ActorCriticConfig,
    Config,
    EnvConfig,
    RunConfig,
    TrainConfig,
    WorldModelConfig,
)

__all__ = [
    "ActorCriticConfig",
    "Config",
    "EnvConfig",
    "RunConfig",
    "TrainConfig",
    "WorldModelConfig",
    "build_config",
    "dump_config",
    "preset_dir",
    "preset_names",
    "validate",
]
