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

    def make_minari(root: Path, lengths=(5, 3), dict_obs: bool = False) -> list[np.ndarray]:
        data = root / "data"
        data.mkdir(parents=True)
        meta = {"total_episodes": len(lengths), "total_steps": sum(lengths), "data_format": "hdf5",
                "observation_space": json.dumps({"type": "Box", "shape": [16, 16, 3]}),
                "action_space": json.dumps({"type": "Discrete", "n": 4, "start": 0})}  # fmt: skip
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
