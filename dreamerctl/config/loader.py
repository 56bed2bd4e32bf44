"""Preset loading and layering: default, suite preset, each --preset in order, each --set.

Every leaf value remembers where it came from, so a validation error names the field and the
preset file (or --set) that gave it.
"""

from __future__ import annotations

import copy
import difflib
import tomllib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import ValidationError

from dreamerctl.config.schema import Config
from dreamerctl.errors import UsageError

SUITE_PRESETS = {"atari": "atari", "dmc": "dmc_vision", "gym": "gym"}

Tree = dict[str, Any]
# `--set KEY=VALUE` text, or (KEY=VALUE, the option it came from) for shortcuts like --device.
Override = str | tuple[str, str]


def preset_dir() -> Path:
    """The presets of the code that runs: the checkout's presets/ beside its pyproject.toml when
    this package is imported from a checkout (a second clone run with another clone's editable
    install must not read that clone's presets), else the installed ones."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "presets" / "default.toml").is_file():
        return root / "presets"
    return Path(str(resources.files("dreamerctl.presets")))


def preset_names() -> list[str]:
    return sorted(p.stem for p in preset_dir().glob("*.toml"))


def suite_preset(task: str) -> str:
    suite = task.split("_", 1)[0]
    if suite not in SUITE_PRESETS or "_" not in task:
        raise UsageError(
            f"unknown task '{task}': tasks look like atari_<game>, dmc_<domain>_<task> "
            "or gym_<EnvId>"
        )
    return SUITE_PRESETS[suite]


def resolve_preset(name: str) -> Path:
    """A preset name from presets/, or a path to a TOML file."""
    path = Path(name).expanduser()
    if path.suffix == ".toml" or "/" in name:
        if not path.is_file():
            raise UsageError(f"preset file not found: {path}")
        return path
    candidate = preset_dir() / f"{name}.toml"
    if not candidate.is_file():
        close = difflib.get_close_matches(name, preset_names(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown preset '{name}'{hint}; presets: {', '.join(preset_names())}")
    return candidate


def read_toml(path: Path) -> Tree:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"preset {path} is not valid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"cannot read preset {path}: {e.strerror}") from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=value` -> (["a", "b"], value); the value is a TOML literal, else a bare string."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UsageError(f"--set expects KEY=VALUE with a dotted key, got '{text}'")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key.split("."), value


def merge(base: Tree, delta: Tree, sources: dict[str, str], origin: str, prefix: str = "") -> None:
    """Deep-merge `delta` into `base` in place, recording `origin` for every leaf it sets."""
    for key, value in delta.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value, sources, origin, f"{path}.")
        else:
            base[key] = value
            sources[path] = origin


def source_of(path: str, sources: dict[str, str]) -> str:
    """The origin of a field path, or of its nearest recorded parent or child."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        if ".".join(parts[:i]) in sources:
            return sources[".".join(parts[:i])]
    children = [origin for key, origin in sources.items() if key.startswith(f"{path}.")]
    return children[-1] if children else "defaults"


def describe_errors(error: ValidationError, sources: dict[str, str]) -> str:
    lines = []
    for item in error.errors():
        path = ".".join(str(part) for part in item["loc"] if not isinstance(part, int))
        origin = source_of(path, sources)
        if item["type"] == "value_error" and isinstance(item.get("input"), dict):
            # A check across fields of a section: its message starts with the field it is about.
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"{message} (from {source_of(message.split(' ', 1)[0], sources)})")
        elif item["type"] == "extra_forbidden":
            lines.append(f"unknown field '{path}' (from {origin})")
        elif item["type"] == "missing":
            lines.append(f"missing field '{path}' (from {origin})")
        else:
            value = item.get("input")
            message = item["msg"].removeprefix("Value error, ")
            lines.append(f"invalid value {value!r} for '{path}' (from {origin}): {message}")
    return "\n".join(lines)


def build_config(
    task: str | None,
    presets: list[str] | tuple[str, ...] = (),
    overrides: Sequence[Override] = (),
) -> Config:
    """Layer default, the task's suite preset, `presets` in order and `overrides`, then validate."""
    sources: dict[str, str] = {}
    tree: Tree = {}
    layers = ["default"]
    if task is not None:
        layers.append(suite_preset(task))
    for name in layers:
        path = resolve_preset(name)
        merge(tree, read_toml(path), sources, str(path))
    for name in presets:
        path = resolve_preset(name)
        merge(tree, read_toml(path), sources, str(path))
    return apply_overrides(tree, overrides, sources)


def apply_overrides(
    tree: Tree, overrides: Sequence[Override], sources: dict[str, str] | None = None
) -> Config:
    """Apply `--set KEY=VALUE` overrides to a config tree and validate the result. An override
    may be a (KEY=VALUE, origin) pair, e.g. from `--device`: errors then name that option."""
    sources = {} if sources is None else sources
    for item in overrides:
        text, origin = (item, f"--set {item}") if isinstance(item, str) else item
        keys, value = parse_override(text)
        delta: Tree = {}
        node = delta
        for part in keys[:-1]:
            node = node.setdefault(part, {})
        node[keys[-1]] = value
        merge(tree, delta, sources, origin)
    return validate(tree, sources)


def saved_config(saved: Tree, origin: str, overrides: Sequence[Override] = ()) -> Config:
    """Read a config that a run saved (a checkpoint's), with `--set` overrides on top.

    Fields added to dreamerctl after it was written take their values from the `default`
    preset, which keeps a new field's default at the old behaviour; unknown (removed or renamed)
    fields stay errors that name `origin`."""
    sources: dict[str, str] = {}
    tree: Tree = {}
    default = resolve_preset("default")
    merge(tree, read_toml(default), sources, f"{default}, for a field newer than {origin}")
    merge(tree, copy.deepcopy(saved), sources, origin)
    return apply_overrides(tree, overrides, sources)


def validate(tree: Tree, sources: dict[str, str] | None = None) -> Config:
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise UsageError(describe_errors(e, sources or {})) from None


def config_to_dict(config: Config) -> Tree:
    return config.model_dump(mode="json")


def dump_config(config: Config) -> str:
    """TOML text of the resolved config; loading it with --preset gives the same config."""
    return tomli_w.dumps(config_to_dict(config))
