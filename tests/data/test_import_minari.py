"""Minari (HDF5) import (``lapo.data.import_minari``) from tiny directories made here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from lapo.config import VideoImportConfig  # noqa: E402
from lapo.data import open_dataset  # noqa: E402
from lapo.data.format import DatasetError  # noqa: E402
from lapo.data.import_minari import import_minari  # noqa: E402


@pytest.fixture
def make_minari(grey):
    """Factory fixture: the function below, with the shared grey frames."""

    def make_minari(
        root: Path, lengths=(5, 3), dict_obs: bool = False, box: dict | None = None
    ) -> list[np.ndarray]:
        """Discrete actions, or with ``box`` (a serialized Box of 3 dimensions) float actions:
        dimension 0 in [-0.5, 0.5], 1 in [-3, 3] by episode, 2 constant 0.25."""
        data = root / "data"
        data.mkdir(parents=True)
        space = box or {"type": "Discrete", "n": 4, "start": 0}
        meta = {"total_episodes": len(lengths), "total_steps": sum(lengths), "data_format": "hdf5",
                "observation_space": json.dumps({"type": "Box", "shape": [16, 16, 3]}),
                "action_space": json.dumps(space)}  # fmt: skip
        (data / "metadata.json").write_text(json.dumps(meta))
        actions, start = [], 0
        with h5py.File(data / "main_data.hdf5", "w") as f:
            for e, steps in enumerate(lengths):
                g = f.create_group(f"episode_{e}")
                obs = grey(steps + 1, start)
                if dict_obs:
                    g.create_group("observations").create_dataset("pixels", data=obs)
                    g["observations"].create_dataset("state", data=np.zeros((steps + 1, 2)))
                else:
                    g.create_dataset("observations", data=obs)
                act = (np.arange(steps) + e) % 4
                if box is not None:
                    act = np.c_[np.linspace(-0.5, 0.5, steps), np.full(steps, 6.0 * e - 3),
                                np.full(steps, 0.25)].astype(np.float32)  # fmt: skip
                g.create_dataset("actions", data=act)
                g.create_dataset("rewards", data=np.ones(steps))
                g.create_dataset("terminations", data=np.arange(steps) == steps - 1)
                g.create_dataset("truncations", data=np.zeros(steps, bool))
                actions.append(act)
                start += steps + 1
        return actions

    return make_minari


@pytest.mark.parametrize("dict_obs", [False, True])
def test_minari_import(tmp_path: Path, dict_obs: bool, make_minari, level) -> None:
    root = tmp_path / "minari"
    actions = make_minari(root, dict_obs=dict_obs)
    out = tmp_path / "ds"
    import_minari(root, out, config=VideoImportConfig(resolution=(16, 16)), progress=False)
    with open_dataset(out) as ds:
        assert ds.episodes.tolist() == [[0, 6], [6, 4]]  # T + 1 observations each
        assert level(ds.read_frames(0, 10)) == list(range(10))  # lossless: no resize needed
        # the final observation repeats the last action (it has no successor)
        want = np.concatenate([np.append(a, a[-1]) for a in actions])
        assert ds.actions.tolist() == want.tolist()
        assert ds.dones.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
        assert ds.rewards.tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 0]


def test_minari_refuses_what_it_cannot_read(tmp_path: Path, make_minari) -> None:
    with pytest.raises(DatasetError, match="no main_data.hdf5 \\+ metadata.json"):
        import_minari(tmp_path, tmp_path / "ds", progress=False)
    root = tmp_path / "m"
    make_minari(root)
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        del f["episode_1/observations"]
        f["episode_1"].create_dataset("observations", data=np.zeros((4, 3), np.float32))
    with pytest.raises(DatasetError, match=r"episode_1: observations of float32 \(4, 3\)"):
        import_minari(root, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def test_minari_box_actions_become_box_actions(tmp_path: Path, make_minari) -> None:
    root = tmp_path / "minari"
    box = {"type": "Box", "dtype": "float32", "shape": [3],
           "low": [-1.0, float("-inf"), -3.4e38], "high": [1.0, float("inf"), 3.4e38]}  # fmt: skip
    actions = make_minari(root, box=box)  # json writes the infinities as -Infinity / Infinity
    out = tmp_path / "ds"
    import_minari(root, out, config=VideoImportConfig(resolution=(16, 16)), progress=False)
    with open_dataset(out) as ds:
        assert ds.fields == ("actions", "rewards", "dones") and ds.continuous_actions
        assert ds.actions.dtype == np.float32 and ds.actions.shape == (10, 3)
        want = np.concatenate([np.r_[a, a[-1:]] for a in actions])  # final obs repeats the last
        np.testing.assert_array_equal(ds.actions, want)
        low, high = ds.action_bounds
        # the Box's finite bounds; observed where infinite or too wide for float32; the
        # constant dimension widened by 1
        assert low.tolist() == [-1.0, -3.0, -0.25] and high.tolist() == [1.0, 3.0, 0.75]
        assert not (out / "continuous_actions.npy").exists()
        scaled = 2 * (ds.actions - low) / (high - low) - 1  # as stage 3 scales them
        assert np.isfinite(scaled).all() and np.abs(scaled).max() <= 1
    box["high"][0] = 0.25  # actions beyond the Box's own bounds widen them to the data
    root2 = tmp_path / "minari2"
    make_minari(root2, box=box)
    import_minari(
        root2, tmp_path / "ds2", progress=False, config=VideoImportConfig(resolution=(16, 16))
    )
    with open_dataset(tmp_path / "ds2") as ds:
        assert ds.action_bounds[1].tolist() == [0.5, 3.0, 0.75]
