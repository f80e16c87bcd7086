"""Numpy array import (``lapo.data.import_arrays``): npy and npz round trips and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lapo.data import DatasetError, open_dataset
from lapo.data.import_arrays import import_arrays


def no_output(out: Path) -> bool:
    """Nothing at ``out``, and no partial directory beside it."""
    return not out.exists() and not list(out.parent.glob(f"{out.name}.partial-*"))


def random_frames(rng: np.random.Generator, n: int, shape=(8, 8, 3)) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def test_npy_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = random_frames(rng, 5), random_frames(rng, 3)
    src = tmp_path / "src"  # the output may not lie inside an input folder
    src.mkdir()
    np.save(src / "b.npy", b)
    np.save(src / "a.npy", a)
    out = tmp_path / "ds"
    manifest = import_arrays(src, out, shard_frames=4, progress=False)  # folder: sorted
    assert manifest["source"]["files"] == [str((src / n).resolve()) for n in ("a.npy", "b.npy")]
    with open_dataset(out) as ds:
        assert ds.episodes.tolist() == [[0, 5], [5, 3]]
        np.testing.assert_array_equal(ds.read_frames(0, 8), np.concatenate([a, b]))
        assert ds.fields == () and ds.manifest["action_space"] is None


@pytest.mark.parametrize("form", ["mask", "indices"])
def test_npz_round_trip(tmp_path: Path, form: str) -> None:
    rng = np.random.default_rng(1)
    frames, actions = random_frames(rng, 10), rng.integers(0, 6, size=10)
    actions[0] = 5  # max action 5 -> n = 6
    rewards = np.arange(10, dtype=np.float32)
    dones = np.zeros(10, dtype=bool)
    dones[[3, 6]] = True  # episodes [0, 4), [4, 7), [7, 10) (the last one cut)
    starts = np.array([0, 4, 7]) if form == "indices" else np.isin(np.arange(10), [0, 4, 7])
    path = tmp_path / "data.npz"
    np.savez(
        path, frames=frames, actions=actions, rewards=rewards, dones=dones, episode_starts=starts
    )
    frames2 = random_frames(rng, 2)
    more = {"frames": frames2, "actions": [1, 2], "rewards": [1.0, 2.0], "dones": [0, 1]}
    np.savez_compressed(tmp_path / "more.npz", **more)
    out = tmp_path / "ds"
    manifest = import_arrays([path, tmp_path / "more.npz"], out, progress=False)
    assert manifest["action_space"] == {"type": "discrete", "n": 6}
    with open_dataset(out) as ds:
        assert ds.episodes[:, 1].tolist() == [4, 3, 3, 2]
        np.testing.assert_array_equal(ds.read_frames(0, 12), np.concatenate([frames, frames2]))
        np.testing.assert_array_equal(ds.actions, np.r_[actions, 1, 2])
        np.testing.assert_array_equal(ds.rewards, np.r_[rewards, 1, 2])
        np.testing.assert_array_equal(ds.dones, np.r_[dones, False, True])
        np.testing.assert_array_equal(ds.episode_returns, [0 + 1 + 2 + 3, 4 + 5 + 6, np.nan, 3])


def test_num_actions_argument(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", frames=np.zeros((3, 4, 4, 1), np.uint8), actions=[0, 1, 2])
    manifest = import_arrays(tmp_path / "x.npz", tmp_path / "ds", num_actions=15, progress=False)
    assert manifest["action_space"]["n"] == 15
    with pytest.raises(DatasetError, match=r"discrete actions must lie in \[0, 2\)"):
        import_arrays(tmp_path / "x.npz", tmp_path / "ds2", num_actions=2, progress=False)


FRAMES = np.zeros((6, 8, 8, 3), np.uint8)
NAN_ACTIONS = np.zeros((6, 2))
NAN_ACTIONS[2, 1] = np.nan
INF_ACTIONS = np.zeros((6, 2))
INF_ACTIONS[0] = np.inf, np.nan
BOUNDS = {"action_low": [0.0, 0.0], "action_high": [2.0, 2.0]}


def test_frame_zero_always_starts_an_episode(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", frames=FRAMES, episode_starts=[2, 5])
    import_arrays(tmp_path / "x.npz", tmp_path / "ds", progress=True)
    assert open_dataset(tmp_path / "ds").episodes.tolist() == [[0, 2], [2, 3], [5, 1]]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"frames": FRAMES.astype(np.float32)}, r"must be uint8.*got float32"),
        ({"frames": np.zeros((6, 3, 8, 8), np.uint8)}, r"channel-first.*transpose\(0, 2, 3, 1\)"),
        ({"frames": FRAMES[..., 0]}, r"\(N, H, W, C\).*channel axis"),
        ({"frames": FRAMES, "actions": np.zeros(5, int)}, r"actions must have shape \(6,\)"),
        ({"frames": FRAMES, "actions": np.zeros(6)}, r"float actions must have shape \(6, A\)"),
        ({"frames": FRAMES, "actions": np.zeros((5, 2))}, r"shape \(6, A\).*got \(5, 2\)"),
        (
            {"frames": FRAMES, "actions": np.zeros((6, 2), int)},
            r"discrete actions are \(N,\) ints, continuous",
        ),
        ({"frames": FRAMES, "actions": NAN_ACTIONS}, r"actions\[2\] = \[0.0, nan\] is not finite"),
        ({"frames": FRAMES, "actions": INF_ACTIONS}, r"actions\[0\] = \[inf, nan\] is not"),
        ({"frames": FRAMES, "actions": np.ones((6, 2)), "action_low": [0, 0]}, "needs its partner"),
        (
            {"frames": FRAMES, "actions": np.ones((6, 2)), **BOUNDS, "action_high": [1, 1, 1]},
            r"action_high must be \(2,\) numbers",
        ),
        (
            {"frames": FRAMES, "actions": np.ones((6, 2)), **BOUNDS, "action_high": [0.5, 2]},
            r"actions\[:, 0\] range \[1.0, 1.0\] lies outside action_low/action_high \[0.0, 0.5\]",
        ),
        (
            {"frames": FRAMES, "actions": np.ones((6, 2)), **BOUNDS, "action_low": [3, 0]},
            r"action_low <= action_high",
        ),
        ({"frames": FRAMES, "actions": np.zeros(6, int), **BOUNDS}, "only for float"),
        (
            {"frames": FRAMES, "actions": -np.ones(6, int)},
            r"discrete actions must be >= 0, got range \[-1, -1\]",
        ),
        ({"frames": FRAMES, "episode_starts": [0, 4, 2]}, "strictly increasing"),
        ({"frames": FRAMES, "episode_starts": [0, 6]}, r"in \[0, 6\)"),
        ({"frames": FRAMES, "episode_starts": np.ones(5, bool)}, "mask must have length 6"),
        (
            {"frames": FRAMES, "dones": np.eye(6, dtype=bool)[2], "episode_starts": [0]},
            r"dones\[2\] is True",
        ),
        ({"frames": FRAMES, "action": np.zeros(6, int)}, r"unexpected arrays \['action'\]"),
        ({"obs": FRAMES}, "use import_lapo_release"),
    ],
)
def test_array_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match=message) as info:
        import_arrays(tmp_path / "bad.npz", out, progress=False)
    assert "bad.npz" in str(info.value)
    assert no_output(out)


def test_dones_end_episodes_without_episode_starts(tmp_path: Path) -> None:
    """D4RL-style files: frames, actions and dones; an episode ends at each done."""
    dones = np.array([0, 0, 1, 0, 1, 0], bool)
    np.savez(tmp_path / "d.npz", frames=FRAMES, actions=np.arange(6) % 3, dones=dones)
    import_arrays(tmp_path / "d.npz", tmp_path / "ds", progress=False)
    with open_dataset(tmp_path / "ds") as ds:
        assert ds.episodes.tolist() == [[0, 3], [3, 2], [5, 1]]
        np.testing.assert_array_equal(ds.dones, dones)


def test_a_file_named_twice_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", FRAMES)
    with pytest.raises(DatasetError, match=r"a\.npy: named twice among the sources"):
        import_arrays([tmp_path / "a.npy", tmp_path], tmp_path / "ds", progress=False)
    assert no_output(tmp_path / "ds")


def test_files_must_agree(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", FRAMES)
    np.save(tmp_path / "b.npy", np.zeros((2, 8, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"b\.npy: frames \(8, 4, 3\).*same frame shape"):
        import_arrays([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "ds", progress=False)
    np.savez(tmp_path / "c.npz", frames=FRAMES, actions=np.zeros(6, int))
    with pytest.raises(DatasetError, match=r"c\.npz.*\['actions'\].*same optional arrays"):
        import_arrays([tmp_path / "a.npy", tmp_path / "c.npz"], tmp_path / "ds", progress=False)
    with pytest.raises(DatasetError, match="no such file"):
        import_arrays(tmp_path / "missing.npy", tmp_path / "ds", progress=False)
    assert no_output(tmp_path / "ds")


def test_arrays_overwrite(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", FRAMES)
    out = tmp_path / "ds"
    import_arrays(tmp_path / "a.npy", out, progress=False)
    with pytest.raises(FileExistsError):
        import_arrays(tmp_path / "a.npy", out, progress=False)
    np.save(tmp_path / "bad.npy", FRAMES.astype(np.float64))
    with pytest.raises(DatasetError, match="uint8"):
        import_arrays(tmp_path / "bad.npy", out, overwrite=True, progress=False)
    assert open_dataset(out).num_frames == 6


def test_mixed_import_sources_name_the_odd_one(tmp_path: Path) -> None:
    from lapo.data.sniff import detect_import_format

    video, notes, arr = tmp_path / "v.mp4", tmp_path / "notes.txt", tmp_path / "a.npy"
    for path in (video, notes, arr):
        path.write_bytes(b"")  # the kind is told from the name; nothing is read
    with pytest.raises(ValueError, match=r"notes\.txt: unsupported source"):
        detect_import_format([video, notes])
    with pytest.raises(ValueError, match=r"different importers \(v\.mp4: video, a\.npy: arrays\)"):
        detect_import_format([video, arr])
    assert detect_import_format([video, video]) == "video"
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "c.webm").write_bytes(b"")
    assert detect_import_format([tmp_path / "clips", video]) == "video"  # the README's quickstart
    with pytest.raises(ValueError, match=r"\(clips: video, a\.npy: arrays\)"):
        detect_import_format([tmp_path / "clips", arr])


def test_float_actions_become_box_actions(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    actions = np.c_[rng.uniform(-1, 1, (6, 2)), np.full(6, 3.0)]  # (6, 3) float64
    np.savez(tmp_path / "x.npz", frames=FRAMES, actions=actions, episode_starts=[0, 4])
    np.savez(tmp_path / "y.npz", frames=FRAMES[:2], actions=actions[:2] * 2)
    manifest = import_arrays([tmp_path / "x.npz", tmp_path / "y.npz"], tmp_path / "ds",
                             progress=False)  # fmt: skip
    both = np.r_[actions, actions[:2] * 2].astype(np.float32)
    want_low, want_high = both.min(0), both.max(0)  # observed over every file
    assert manifest["action_space"]["type"] == "box" and manifest["action_space"]["shape"] == [3]
    with open_dataset(tmp_path / "ds") as ds:
        assert ds.actions.dtype == np.float32 and ds.actions.shape == (8, 3)
        np.testing.assert_array_equal(ds.actions, both)
        assert ds.episodes.tolist() == [[0, 4], [4, 2], [6, 2]]
        low, high = ds.action_bounds
        np.testing.assert_array_equal(low[:2], want_low[:2])
        np.testing.assert_array_equal(high[:2], want_high[:2])
        assert (low[2], high[2]) == (3.0, 6.0)  # constant in each file, not over both
    # one file, a constant dimension: widened by 1 around it
    np.savez(tmp_path / "c.npz", frames=FRAMES, actions=np.full((6, 1), -2.0, np.float32))
    import_arrays(tmp_path / "c.npz", tmp_path / "c", progress=False)
    with open_dataset(tmp_path / "c") as ds:
        low, high = ds.action_bounds
        assert (low.tolist(), high.tolist()) == ([-2.5], [-1.5])
        assert np.isfinite(2 * (ds.actions - low) / (high - low) - 1).all()
    with pytest.raises(ValueError, match="num_actions is for integer actions"):
        import_arrays(tmp_path / "c.npz", tmp_path / "c2", num_actions=3, progress=False)


def test_float_actions_with_given_bounds(tmp_path: Path) -> None:
    actions = np.linspace(0, 1, 12).reshape(6, 2)
    bounds = {"action_low": [-1.0, -np.inf], "action_high": [1.0, 5.0]}  # inf: observed
    np.savez(tmp_path / "x.npz", frames=FRAMES, actions=actions, **bounds)
    manifest = import_arrays(tmp_path / "x.npz", tmp_path / "ds", progress=False)
    assert manifest["action_space"]["low"] == [-1.0, actions[:, 1].min().astype(np.float32)]
    assert manifest["action_space"]["high"] == [1.0, 1.0]
    np.savez(tmp_path / "y.npz", frames=FRAMES, actions=actions, **BOUNDS)  # other bounds
    with pytest.raises(DatasetError, match=r"y\.npz: actions .* differ from the first file"):
        import_arrays([tmp_path / "x.npz", tmp_path / "y.npz"], tmp_path / "d2", progress=False)
    np.savez(tmp_path / "z.npz", frames=FRAMES, actions=np.zeros(6, int))  # ints: discrete
    with pytest.raises(DatasetError, match=r"z\.npz: actions .* differ from the first file"):
        import_arrays([tmp_path / "x.npz", tmp_path / "z.npz"], tmp_path / "d3", progress=False)
    assert no_output(tmp_path / "d2") and no_output(tmp_path / "d3")


def test_arrays_given_in_memory_import_like_a_file(tmp_path: Path) -> None:
    actions = np.arange(len(FRAMES)) % 3
    manifest = import_arrays({"frames": FRAMES, "actions": actions}, tmp_path / "ds",
                             progress=False)  # fmt: skip
    assert manifest["source"]["files"] == ["(in memory)"]
    with open_dataset(tmp_path / "ds") as dataset:
        np.testing.assert_array_equal(dataset.read_frames(0, len(FRAMES)), FRAMES)
        np.testing.assert_array_equal(np.asarray(dataset.actions), actions)
    with pytest.raises(DatasetError, match="^arrays given in memory: frames must be uint8"):
        import_arrays({"frames": FRAMES.astype(np.float32)}, tmp_path / "f", progress=False)
    with pytest.raises(DatasetError, match="expected the keys frames, actions.*got frame"):
        import_arrays({"frame": FRAMES}, tmp_path / "k", progress=False)
    assert not (tmp_path / "f").exists() and not (tmp_path / "k").exists()
