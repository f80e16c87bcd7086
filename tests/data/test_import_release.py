"""Import of the original LAPO release's npz chunks (``lapo.data.import_release``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lapo.data import DatasetError, open_dataset
from lapo.data.import_release import import_lapo_release
from lapo.envs.games import ACTION_MEANINGS


def no_output(out: Path) -> bool:
    """Nothing at ``out``, and no partial directory beside it."""
    return not out.exists() and not list(out.parent.glob(f"{out.name}.partial-*"))


def random_frames(rng: np.random.Generator, n: int, shape=(8, 8, 3)) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def release_chunk(path: Path, rng: np.random.Generator, done_at: list[int], n: int) -> dict:
    """Write a synthetic release chunk; ``ep_returns`` holds 100 + frame index at every frame."""
    chunk = {
        "obs": random_frames(rng, n, (64, 64, 3)),
        "ta": rng.integers(0, 15, size=(n, 1)),
        "done": np.isin(np.arange(n), done_at),
        "rewards": rng.random(n).astype(np.float32),
        "ep_returns": 100.0 + np.arange(n),
        "values": rng.random(n),
    }
    np.savez(path, **chunk)
    return chunk


def test_lapo_release(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "release"
    folder.mkdir()
    c0 = release_chunk(folder / "chunk_000.npz", rng, done_at=[3, 7], n=10)
    c1 = release_chunk(folder / "chunk_001.npz", rng, done_at=[5], n=6)
    out = tmp_path / "ds"
    manifest = import_lapo_release(folder, out, shard_frames=7, progress=True)
    assert manifest["source"]["kind"] == "lapo_release"
    assert manifest["action_space"] == {
        "type": "discrete",
        "n": 15,
        "meanings": list(ACTION_MEANINGS),
    }
    with open_dataset(out) as ds:
        # chunk 0: [0..3] [4..7] done, [8, 9] cut at the chunk's end; chunk 1: [0..5] done
        assert ds.episodes.tolist() == [[0, 4], [4, 4], [8, 2], [10, 6]]
        np.testing.assert_array_equal(ds.episode_returns, [103, 107, np.nan, 105])
        np.testing.assert_array_equal(ds.actions, np.r_[c0["ta"][:, 0], c1["ta"][:, 0]])
        np.testing.assert_array_equal(ds.dones, np.r_[c0["done"], c1["done"]])
        np.testing.assert_array_equal(ds.rewards, np.r_[c0["rewards"], c1["rewards"]])
        np.testing.assert_array_equal(ds.read_frames(0, 16), np.r_[c0["obs"], c1["obs"]])
        assert ds.fields == ("actions", "rewards", "dones")


def test_lapo_release_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    chunk = release_chunk(tmp_path / "good.npz", rng, done_at=[1], n=4)
    del chunk["ep_returns"], chunk["done"]
    np.savez(tmp_path / "bad.npz", **chunk)
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match=r"bad\.npz: missing \['done', 'ep_returns'\].*'obs'"):
        import_lapo_release([tmp_path / "good.npz", tmp_path / "bad.npz"], out, progress=False)
    chunk = release_chunk(tmp_path / "bad.npz", rng, done_at=[1], n=4)
    np.savez(tmp_path / "bad.npz", **{**chunk, "ta": np.full(4, 15)})
    with pytest.raises(DatasetError, match=r"bad\.npz: ta must hold whole numbers in \[0, 15\)"):
        import_lapo_release([tmp_path / "good.npz", tmp_path / "bad.npz"], out, progress=False)
    assert no_output(out)
