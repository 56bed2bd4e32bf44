"""Configuration: pydantic models, preset loading and layering, --set parsing."""

from dreamerctl.config.loader import (
    apply_overrides,
    build_config,
    config_to_dict,
    dump_config,
    preset_dir,
    preset_names,
    saved_config,
    validate,
)
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
    "apply_overrides",
    "build_config",
    "config_to_dict",
    "dump_config",
    "preset_dir",
    "preset_names",
    "saved_config",
    "validate",
]
