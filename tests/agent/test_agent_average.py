"""The moving average of the acting parameters (train.policy_ema, issue 20), by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dreamerctl.agent.average import ParameterAverage


def layer(value: float) -> nn.Linear:
    module = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(value)
    return module


def test_first_update_copies_then_each_update_weighs_decay_to_the_age() -> None:
    live = layer(1.0)
    average = ParameterAverage({"m": live}, decay=0.75)
    with torch.no_grad():
        live.weight.fill_(2.0)
    average.update()  # the first update copies: 2
    assert average.average["m.weight"].item() == 2.0
    with torch.no_grad():
        live.weight.fill_(6.0)
    average.update()  # (0.75 * 2 + 1 * 6) / 1.75
    assert average.average["m.weight"].item() == pytest.approx(7.5 / 1.75)
    average.update()  # (0.5625 * 2 + 0.75 * 6 + 1 * 6) / 2.3125: bias-corrected, not 3.75
    assert average.average["m.weight"].item() == pytest.approx(11.625 / 2.3125)
    assert average.count == 3


def test_after_many_updates_each_moves_the_average_by_one_minus_decay() -> None:
    live = layer(0.0)
    average = ParameterAverage({"m": live}, decay=0.5)
    for _ in range(60):  # 0.5 ** 60: the correction is gone
        average.update()
    with torch.no_grad():
        live.weight.fill_(4.0)
    average.update()
    assert average.average["m.weight"].item() == pytest.approx(2.0)


def test_swapped_in_acts_with_the_average_and_gives_the_live_values_back() -> None:
    live = layer(4.0)
    average = ParameterAverage({"m": live}, decay=0.5)
    with average.swapped_in():  # no update yet: nothing to swap in
        assert live.weight.item() == 4.0
    average.update()
    with torch.no_grad():
        live.weight.fill_(10.0)
    average.update()  # (0.5 * 4 + 1 * 10) / 1.5 = 8
    with average.swapped_in():
        assert live.weight.item() == pytest.approx(8.0)
    assert live.weight.item() == 10.0
    average.copy_in()
    assert live.weight.item() == pytest.approx(8.0)


def test_state_round_trip_and_a_mismatched_model_is_refused() -> None:
    average = ParameterAverage({"m": layer(3.0)}, decay=0.9)
    average.update()
    again = ParameterAverage({"m": layer(0.0)}, decay=0.9)
    again.load_state_dict(average.state_dict())
    assert again.count == 1 and again.average["m.weight"].item() == 3.0
    other = ParameterAverage({"n": layer(0.0)}, decay=0.9)
    with pytest.raises(ValueError, match="does not match"):
        other.load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match="decay"):
        ParameterAverage({"m": layer(0.0)}, decay=1.0)


def test_every_parameter_of_every_module_is_averaged_with_its_own_values() -> None:
    torch.manual_seed(0)
    modules = {"a": nn.Linear(3, 2), "b": nn.Sequential(nn.Linear(2, 5), nn.LayerNorm(5))}
    average = ParameterAverage(modules, decay=0.9)
    first = {f"{k}.{n}": p.detach().clone() for k, m in modules.items()
             for n, p in m.named_parameters()}
    average.update()
    with torch.no_grad():
        for module in modules.values():
            for param in module.parameters():
                param.mul_(3.0).add_(1.0)
    average.update()
    assert set(average.average) == set(first) == {"a.weight", "a.bias", "b.0.weight",
                                                  "b.0.bias", "b.1.weight", "b.1.bias"}
    for name, value in first.items():
        expected = (0.9 * value + (3.0 * value + 1.0)) / 1.9
        torch.testing.assert_close(average.average[name], expected)
