"""Datasets with continuous actions: (N, A) float32 with the box bounds in the manifest."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from lapo.data import DatasetWriter
from lapo.data.reader import LapoDataset

BOX = {"type": "box", "shape": [2], "low": [-2.0, 0.0], "high": [2.0, 1.0]}


def _write(path, actions_per_episode, space=BOX):
    with DatasetWriter(path, frame_shape=(4, 4, 3), fields=("actions", "rewards"),
                       action_space=space) as writer:  # fmt: skip
        for actions in actions_per_episode:
            n = len(actions)
            writer.add_episode(np.zeros((n, 4, 4, 3), np.uint8), actions=actions,
                               rewards=np.zeros(n, np.float32))  # fmt: skip
        return writer.close()


def test_float_actions_round_trip_with_bounds(tmp_path) -> None:
    a = np.array([[-2.0, 0.0], [0.5, 0.25], [2.0, 1.0]], np.float32)
    b = np.array([[1.0, 0.5]], np.float64)  # any float dtype, stored as float32
    _write(tmp_path / "d", [a, b])
    ds = LapoDataset(tmp_path / "d")
    assert ds.actions.shape == (4, 2) and ds.actions.dtype == np.float32
    assert np.array_equal(ds.actions, np.concatenate([a, b]).astype(np.float32))
    assert ds.continuous_actions and ds.num_actions is None
    low, high = ds.action_bounds
    assert low.tolist() == [-2.0, 0.0] and high.tolist() == [2.0, 1.0]
    ds.verify()


@pytest.mark.parametrize(
    ("actions", "message"),
    [
        (np.array([[0.0, 1.5]], np.float32), "bounds"),
        (np.array([[np.nan, 0.0]], np.float32), "finite"),
        (np.array([[0, 1]], np.int64), "finite floats"),
        (np.array([0.0], np.float32), r"shape \(1, 2\)"),
    ],
)
def test_bad_float_actions_are_refused(tmp_path, actions, message) -> None:
    with pytest.raises(ValueError, match=message):
        _write(tmp_path / "d", [actions])


def test_discrete_actions_file_is_unchanged(tmp_path) -> None:
    """A discrete dataset's actions.npy is still the plain (N,) int64 .npy of the values."""
    actions = np.array([0, 3, 14, 2], np.int64)
    manifest = _write(tmp_path / "d", [actions], {"type": "discrete", "n": 15})
    expected = tmp_path / "expected.npy"
    np.save(expected, actions)
    got = (tmp_path / "d" / "actions.npy").read_bytes()
    assert got == expected.read_bytes()
    assert manifest["files"]["actions.npy"]["sha256"] == hashlib.sha256(got).hexdigest()
    ds = LapoDataset(tmp_path / "d")
    assert ds.num_actions == 15 and not ds.continuous_actions and ds.action_bounds is None


def test_info_describes_continuous_actions(tmp_path) -> None:
    from lapo.data.info import describe

    _write(tmp_path / "d", [np.array([[-2.0, 0.0], [2.0, 1.0]], np.float32)])
    text = describe(LapoDataset(tmp_path / "d"))
    assert "actions     2 continuous in [[-2.0, 0.0], [2.0, 1.0]]: mean [0.000, 0.500]" in text


def test_info_shortens_long_action_vectors_and_source_lists() -> None:
    from lapo.data.info import _short

    assert _short([1, 2, 3]) == "[1, 2, 3]"
    names = [f"z{i}" for i in range(128)]  # a latent-action export read back
    assert _short(names) == "[z0, z1, z2, z3, ..., z126, z127] (128 values)"
