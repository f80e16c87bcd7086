"""Action spaces of the environment interface."""

from __future__ import annotations

import numpy as np
import pytest

from lapo.envs import ActionSpec, check_env_name, normalized_return


def test_unit_space_round_trip_and_clipping() -> None:
    spec = ActionSpec(low=(-2.0, 0.0), high=(2.0, 10.0))
    actions = np.array([[-2.0, 0.0], [1.0, 5.0], [2.0, 10.0]], np.float32)
    unit = spec.to_unit(actions)
    assert unit.tolist() == [[-1.0, -1.0], [0.5, 0.0], [1.0, 1.0]]
    assert np.allclose(spec.from_unit(unit), actions)
    assert spec.from_unit(np.array([[5.0, -5.0]])).tolist() == [[2.0, 0.0]]  # clipped


def test_manifest_round_trip() -> None:
    box = ActionSpec(low=(-1.0,), high=(1.0,))
    assert box.manifest() == {"type": "box", "shape": [1], "low": [-1.0], "high": [1.0]}
    assert ActionSpec.from_manifest(box.manifest()) == box
    discrete = ActionSpec(n=3, meanings=("a", "b", "c"))
    assert ActionSpec.from_manifest(discrete.manifest()) == discrete
    assert discrete.dim == 3 and box.dim == 1 and box.continuous and not discrete.continuous


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"n": 0}, {"n": 2, "low": (0.0,), "high": (1.0,)}, {"low": (1.0,), "high": (0.0,)},
     {"low": (0.0,), "high": (np.inf,)}, {"low": (0.0, 0.0), "high": (1.0,)}],
)  # fmt: skip
def test_bad_spaces_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        ActionSpec(**kwargs)


def test_check_actions() -> None:
    box = ActionSpec(low=(-1.0, -1.0), high=(1.0, 1.0))
    box.check_actions(np.zeros((3, 2), np.float32), 3)
    with pytest.raises(ValueError, match=r"float array of shape \(3, 2\)"):
        box.check_actions(np.zeros((3,), np.float32), 3)
    with pytest.raises(ValueError, match="finite"):
        box.check_actions(np.full((3, 2), np.nan, np.float32), 3)
    with pytest.raises(ValueError, match=r"in \[0, 4\)"):
        ActionSpec(n=4).check_actions(np.array([0, 4]), 2)


def test_unknown_env_names_are_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="Procgen game .* or a registered Gymnasium id"):
        check_env_name("nosuchgame")
    assert check_env_name("coinrun") == "coinrun"


def test_control_references_normalize_and_unknown_ids_give_nan() -> None:
    assert normalized_return("Pendulum-v1", -1182.3) == pytest.approx(0.0)
    assert normalized_return("Pendulum-v1", -209.7) == pytest.approx(1.0)
    assert np.isnan(normalized_return("CartPole-v1", 100.0))
    with pytest.raises(ValueError):
        normalized_return("nosuchgame", 1.0)
