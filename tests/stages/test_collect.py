"""lapo collect: recording Procgen with a random policy into a dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lapo.config import CollectConfig
from lapo.data import WindowIndex, open_dataset
from lapo.eval.actors import RandomPolicy
from lapo.stages.collect import collect, make_policy


def test_collect_records_exact_frames_and_consistent_episodes(tmp_path: Path) -> None:
    config = CollectConfig(
        env="coinrun", frames=3000, out=tmp_path / "ds", num_envs=8, seed=3, shard_frames=1000
    )
    summary = collect(config, progress=False)
    ds = open_dataset(config.out)
    assert summary.frames == ds.num_frames == 3000
    assert ds.num_episodes == summary.episodes
    assert ds.fields == ("actions", "rewards", "dones")
    assert ds.manifest["source"]["game"] == "coinrun"
    assert ds.manifest["action_space"]["n"] == 15
    returns = ds.episode_returns
    complete = ~np.isnan(returns)
    assert complete.sum() == summary.complete_episodes > 0
    for e in range(ds.num_episodes):
        start, length = ds.episodes[e]
        dones = np.asarray(ds.dones[start : start + length])
        rewards = np.asarray(ds.rewards[start : start + length])
        # only the last frame of a complete episode carries done, and its return is the reward sum
        assert not dones[:-1].any()
        assert dones[-1] == complete[e]
        if complete[e]:
            assert rewards.sum() == pytest.approx(returns[e], abs=1e-4)
    assert np.allclose(sorted(returns[complete]), sorted(summary.episode_returns))
    # consecutive frames inside an episode are real successive observations (they differ)
    ep = int(np.argmax(ds.episodes[:, 1]))
    frames = ds.episode_frames(ep)
    assert frames.shape[1:] == (64, 64, 3) and frames.dtype == np.uint8
    assert (frames[1:] != frames[:-1]).any(axis=(1, 2, 3)).mean() > 0.5
    assert len(WindowIndex(ds, context=1)) > 0
    ds.verify()


def test_collect_is_reproducible_for_a_seed(tmp_path: Path) -> None:
    out = []
    for name in ("a", "b"):
        config = CollectConfig(env="miner", frames=400, out=tmp_path / name, num_envs=4, seed=7)
        collect(config, progress=False)
        ds = open_dataset(config.out)
        out.append((ds.read_frames(0, ds.num_frames), np.asarray(ds.actions)))
    assert np.array_equal(out[0][0], out[1][0])
    assert np.array_equal(out[0][1], out[1][1])


def test_collect_refuses_existing_output_before_work(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="already exists"):
        collect(CollectConfig(env="miner", frames=100, out=target, num_envs=2), progress=False)
    assert (target / "keep.txt").read_text() == "precious"


def test_collect_overwrite_replaces_dataset(tmp_path: Path) -> None:
    target = tmp_path / "ds"
    collect(CollectConfig(env="miner", frames=100, out=target, num_envs=2), progress=False)
    collect(
        CollectConfig(env="miner", frames=150, out=target, num_envs=2, overwrite=True),
        progress=False,
    )
    assert open_dataset(target).num_frames == 150
    assert not list(tmp_path.glob("ds.*")), "temporary or old directories left behind"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"frames": 0}, "frames must be >= 1"),
        ({"num_envs": 0}, "num_envs must be >= 1"),
        ({"seed": -1}, "seed must be in"),
    ],
)
def test_config_rejects_bad_values(tmp_path: Path, kwargs: dict, message: str) -> None:
    base = {"env": "miner", "frames": 10, "out": tmp_path / "x"}
    with pytest.raises(ValueError, match=message):
        CollectConfig(**{**base, **kwargs})


def test_unknown_game_lists_valid_games(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bigfish.*starpilot"):
        collect(CollectConfig(env="mario", frames=10, out=tmp_path / "x"), progress=False)
    assert not (tmp_path / "x").exists()


def test_policy_specs(tmp_path: Path) -> None:
    policy = make_policy("random", seed=1)
    actions = policy.act(np.zeros((1000, 64, 64, 3), np.uint8))
    assert actions.shape == (1000,) and actions.min() >= 0 and actions.max() <= 14
    assert len(np.unique(actions)) == 15
    assert np.array_equal(
        RandomPolicy(seed=1).act(np.zeros((50, 1))), RandomPolicy(seed=1).act(np.zeros((50, 1)))
    )
    with pytest.raises(FileNotFoundError, match="'scripted' or a policy checkpoint: .*missing"):
        make_policy(str(tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        make_policy(str(tmp_path))  # an existing folder is not called "not found"
