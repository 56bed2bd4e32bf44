"""Preset layering, --set parsing and every config error path (SPEC §6)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from dreamerctl.config import build_config, dump_config, preset_dir, preset_names, validate
from dreamerctl.config.loader import config_to_dict, parse_override, saved_config
from dreamerctl.errors import UsageError

SHIPPED = {"default", "atari", "dmc_vision", "dmc_proprio", "gym", "small", "medium", "large",
           "xlarge", "debug", "atari100k", "dmc_vision_500k", "vision_cpu"}


def test_shipped_presets_exist_and_validate() -> None:
    assert set(preset_names()) >= SHIPPED
    for name in SHIPPED - {"default"}:
        build_config("gym_CartPole-v1", [name])


@pytest.mark.parametrize(("task", "recipe", "frames", "ratio"), [
    ("atari_pong", "atari100k", 400_000, 1024),
    ("dmc_walker_walk", "dmc_vision_500k", 500_000, 512),
])
def test_gpu_recipes_have_the_papers_data_budget(task: str, recipe: str, frames: int,
                                                  ratio: int) -> None:
    """README promises the paper's outcome for these recipes at these frame counts."""
    config = build_config(task, [recipe])
    assert config.run.steps * config.env.action_repeat == frames
    assert config.train.train_ratio == ratio
    assert config.world_model.deter == 512 and config.world_model.cnn_depth == 32
    assert config.env.obs_keys == ["image"]


@pytest.mark.parametrize(("task", "repeat"), [("dmc_cartpole_balance", 2), ("atari_pong", 4)])
def test_vision_cpu_is_the_cpu_recipe_over_either_pixel_suite(task: str, repeat: int) -> None:
    """vision_cpu keeps the suite's pixels and action repeat and brings the gym/dmc_proprio
    recipe (README, RESULTS "Learning from pixels on a CPU") with a depth-16 CNN."""
    config = build_config(task, ["vision_cpu"])
    assert config.env.obs_keys == ["image"] and config.env.action_repeat == repeat
    wm, ac, train = config.world_model, config.actor_critic, config.train
    assert (wm.deter, wm.units, wm.stoch, wm.classes, wm.cnn_depth) == (128, 128, 16, 16, 16)
    assert (train.batch_size, train.batch_length, train.train_ratio) == (16, 32, 512)
    assert train.imag_starts == "last" and (ac.critic_lr, ac.actor_lr) == (3e-4, 1e-4)
    assert config.run.precision == "auto" and config.run.prefill == 1024


def test_contract_field_names_exist() -> None:
    config = build_config("atari_pong")
    for section, field in [("run", "steps"), ("run", "seed"), ("run", "device"),
                           ("run", "save_every"), ("env", "num_envs"), ("train", "loop"),
                           ("train", "imag_starts"), ("train", "batch_size"),
                           ("train", "batch_length"), ("train", "train_ratio")]:
        assert hasattr(getattr(config, section), field)


def test_suite_preset_layers_over_default() -> None:
    assert build_config("atari_pong").env.action_repeat == 4
    assert build_config("dmc_walker_walk").env.action_repeat == 2
    assert build_config("dmc_walker_walk").env.obs_keys == ["image"]
    assert build_config("gym_CartPole-v1").env.action_repeat == 1


def test_layering_order_later_wins(tmp_path: Path) -> None:
    first = tmp_path / "first.toml"
    first.write_text("[train]\nbatch_size = 3\nbatch_length = 5\n")
    second = tmp_path / "second.toml"
    second.write_text("[train]\nbatch_size = 7\n")
    config = build_config("atari_pong", ["debug", str(first), str(second)],
                          ["train.batch_length=9"])
    assert config.train.batch_size == 7          # second preset over first
    assert config.train.batch_length == 9        # --set over every preset
    assert config.world_model.deter == 32        # debug still applies
    assert config.env.action_repeat == 4         # suite preset under everything


def test_set_values_are_toml_literals() -> None:
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a.b=3.5") == (["a", "b"], 3.5)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override('a.b="x"') == (["a", "b"], "x")
    assert parse_override("a.b=cpu") == (["a", "b"], "cpu")  # a bare word is a string
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    config = build_config("gym_CartPole-v1", [], ["run.device=cpu", "env.size=[32, 32]"])
    assert config.run.device == "cpu"
    assert config.env.size == [32, 32]


@pytest.mark.parametrize("override, message", [
    ("train.foo=1", "unknown field 'train.foo' (from --set train.foo=1)"),
    ("nothing.here=1", "unknown field 'nothing'"),
    ("run.steps=-5", "invalid value -5 for 'run.steps' (from --set run.steps=-5)"),
    ("train.batch_length=1", "'train.batch_length'"),
    ('run.steps="many"', "invalid value 'many' for 'run.steps'"),
    ("train.loop=fast", "'train.loop'"),
    ("run.precision=fp16", "'run.precision'"),
    # A check across a section's fields names the field, not the whole section's values.
    ("env.size=[20,20]",
     "env.size must be multiples of 16, at least 16 (from --set env.size=[20,20])"),
])
def test_invalid_override_names_field_and_origin(override: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        build_config("gym_CartPole-v1", [], [override])
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_error_names_the_preset_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatch_length = 1\nwhatever = 2\n")
    with pytest.raises(UsageError) as info:
        build_config("gym_CartPole-v1", [str(bad)])
    text = str(info.value)
    assert f"'train.batch_length' (from {bad})" in text
    assert f"unknown field 'train.whatever' (from {bad})" in text


def test_wrong_type_in_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[run]\nsteps = "10"\n')
    with pytest.raises(UsageError, match=r"'run.steps' \(from .*bad.toml\).*valid integer"):
        build_config("gym_CartPole-v1", [str(bad)])


@pytest.mark.parametrize("args, message", [
    ((["nosuchpreset"], []), "unknown preset 'nosuchpreset'"),
    ((["debgu"], []), "did you mean debug"),
    ((["/nowhere/x.toml"], []), "preset file not found: /nowhere/x.toml"),
    (([], ["novalue"]), "--set expects KEY=VALUE"),
    (([], ["=3"]), "--set expects KEY=VALUE"),
])
def test_usage_errors(args: tuple[list[str], list[str]], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        build_config("gym_CartPole-v1", *args)


def test_invalid_toml_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[train\n")
    with pytest.raises(UsageError, match="is not valid TOML"):
        build_config("gym_CartPole-v1", [str(bad)])


def test_unknown_suite() -> None:
    with pytest.raises(UsageError, match="unknown task 'mujoco_ant'"):
        build_config("mujoco_ant")


def test_dumped_config_is_a_preset_again(tmp_path: Path) -> None:
    config = build_config("atari_pong", ["debug"], ["train.batch_size=5", "run.seed=3"])
    path = tmp_path / "config.toml"
    path.write_text(dump_config(config))
    assert validate(tomllib.loads(path.read_text())) == config
    assert build_config("atari_pong", [str(path)]) == config


def test_config_is_frozen() -> None:
    config = build_config("atari_pong")
    with pytest.raises(Exception, match="frozen"):
        config.run.steps = 3  # type: ignore[misc]


def test_presets_are_found_in_the_package() -> None:
    assert (preset_dir() / "default.toml").is_file()


def test_a_second_checkout_reads_its_own_presets(tmp_path: Path) -> None:
    """A clone run from its folder with another checkout's editable install (a frozen clone
    for a learning run) imports its own code, so it must read its own presets too."""
    repo = Path(__file__).resolve().parents[2]
    clone = tmp_path / "clone"
    shutil.copytree(repo / "dreamerctl", clone / "dreamerctl",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(repo / "presets", clone / "presets")
    shutil.copy(repo / "pyproject.toml", clone / "pyproject.toml")
    found = subprocess.run(
        [sys.executable, "-c", "from dreamerctl.config import preset_dir; print(preset_dir())"],
        cwd=clone, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(found) == (clone / "presets").resolve()


def test_size_presets_are_complete_over_the_cpu_sized_gym_preset() -> None:
    # gym.toml shrinks the model for CPUs; a size preset over it gives the recipe's shapes back
    # (its learning rates and batch geometry are the CPU preset's until set with --set).
    assert build_config("gym_CartPole-v1").world_model.deter == 128
    for size in ("small", "medium", "large", "xlarge"):
        over_gym = build_config("gym_CartPole-v1", [size])
        over_atari = build_config("atari_pong", [size])
        # The world model's shapes; its learning rate stays gym's 3e-4 (issue 20).
        assert over_gym.world_model.model_dump(exclude={"lr"}) == \
            over_atari.world_model.model_dump(exclude={"lr"})
        assert over_gym.world_model.lr == 3e-4
        shape = ("units", "layers")
        assert [getattr(over_gym.actor_critic, f) for f in shape] == \
            [getattr(over_atari.actor_critic, f) for f in shape]


def test_saved_config_fills_fields_newer_than_the_run(tmp_path: Path) -> None:
    """A checkpoint written before a field existed still loads (the field takes the default
    preset's value, the old behaviour); a field this version does not know is still an error."""
    from dreamerctl.config import config_to_dict, saved_config

    tree = config_to_dict(build_config("gym_CartPole-v1", ["debug"]))
    del tree["actor_critic"]["replay_value"]
    tree["world_model"]["deter"] = 48
    config = saved_config(tree, "old/checkpoint.pt", ["run.seed=3"])
    assert config.actor_critic.replay_value == 0.0
    assert config.world_model.deter == 48 and config.run.seed == 3
    tree["actor_critic"]["retired_knob"] = 1
    with pytest.raises(UsageError, match=r"unknown field 'actor_critic.retired_knob' \(from "
                                         r"old/checkpoint.pt\)"):
        saved_config(tree, "old/checkpoint.pt")


def test_the_critics_replay_loss_goes_with_either_imagination_start() -> None:
    """replay_value > 0 with imag_starts "last" (bootstrapped with the critic's values) or
    "all" (with the imagined returns), in a new config and as an override of a saved one."""
    for starts in ("last", "all"):
        config = build_config("gym_CartPole-v1", [], [f'train.imag_starts="{starts}"',
                                                      "actor_critic.replay_value=0.3"])
        assert (config.train.imag_starts, config.actor_critic.replay_value) == (starts, 0.3)
    tree = config_to_dict(config)
    config = saved_config(tree, "run/checkpoint.pt", ['train.imag_starts="last"'])
    assert (config.train.imag_starts, config.actor_critic.replay_value) == ("last", 0.3)
