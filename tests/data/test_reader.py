"""LapoDataset (``lapo.data.reader``) on datasets written by DatasetWriter: round trips,
reads into buffers, verify, and what opening refuses."""

from __future__ import annotations

import numpy as np
import pytest

from lapo.data import LapoDataset, open_dataset

FRAME_SHAPE = (8, 8, 3)


# ---------------------------------------------------------------------------- round trip
def test_round_trip_frames_across_shards(small_dataset):
    w = small_dataset
    ds = open_dataset(w.path)
    n = len(w.frames)
    assert (ds.num_frames, ds.num_episodes, ds.frame_shape) == (n, len(w.episodes), FRAME_SHAPE)
    np.testing.assert_array_equal(ds.read_frames(0, n), w.frames)
    # every range that starts and ends anywhere, including across shard boundaries (5 frames)
    for start in range(0, n, 3):
        for stop in (start, start + 1, start + 4, start + 6, start + 11):
            stop = min(stop, n)
            got = ds.read_frames(start, stop)
            assert got.shape == (stop - start, *FRAME_SHAPE) and got.dtype == np.uint8
            np.testing.assert_array_equal(got, w.frames[start:stop])
    _, _, g = w.decode(ds.read_frames(0, n))
    np.testing.assert_array_equal(g, np.arange(n))


def test_round_trip_episodes(small_dataset):
    w = small_dataset
    ds = LapoDataset(w.path)
    np.testing.assert_array_equal(ds.episodes, w.episodes)
    assert ds.episodes.dtype == np.int64
    for e, (start, length) in enumerate(w.episodes):
        np.testing.assert_array_equal(ds.episode_frames(e), w.frames[start : start + length])


def test_round_trip_transitions(small_dataset):
    w = small_dataset
    ds = LapoDataset(w.path)
    assert ds.fields == ("actions", "rewards", "dones")
    assert ds.has_actions and ds.num_actions == 15
    for name, dtype in (("actions", np.int64), ("rewards", np.float32), ("dones", np.bool_)):
        got = getattr(ds, name)
        assert got.dtype == dtype and got.shape == (len(w.frames),)
        np.testing.assert_array_equal(got, getattr(w, name))


def test_round_trip_episode_returns_none_is_nan(make_dataset):
    w = make_dataset(lengths=(3, 4, 5, 2), returns=[1.5, None, -2.0, None])
    ds = LapoDataset(w.path)
    np.testing.assert_array_equal(ds.episode_returns, [1.5, np.nan, -2.0, np.nan])
    assert w.manifest["episode_returns"] == [1.5, None, -2.0, None]
    assert w.manifest["mean_episode_return"] == pytest.approx(-0.25)


def test_all_returns_unknown(make_dataset):
    w = make_dataset(lengths=(3, 4), returns=[None, None])
    assert w.manifest["mean_episode_return"] is None
    assert np.isnan(LapoDataset(w.path).episode_returns).all()


def test_frames_only_dataset(make_dataset):
    w = make_dataset(lengths=(4, 6), fields=())
    ds = LapoDataset(w.path)
    assert ds.fields == () and not ds.has_actions and ds.num_actions is None
    assert not any((w.path / f"{name}.npy").exists() for name in ("actions", "rewards", "dones"))
    with pytest.raises(KeyError, match="actions"):
        _ = ds.actions
    np.testing.assert_array_equal(ds.read_frames(0, 10), w.frames)


def test_subset_of_fields(make_dataset):
    w = make_dataset(lengths=(4, 6), fields=("rewards",))
    ds = LapoDataset(w.path)
    assert ds.fields == ("rewards",) and not ds.has_actions
    np.testing.assert_array_equal(ds.rewards, w.rewards)
    with pytest.raises(KeyError, match="dones"):
        _ = ds.dones


def test_read_frames_into_out_and_errors(small_dataset):
    w = small_dataset
    ds = LapoDataset(w.path)
    out = np.zeros((6, *FRAME_SHAPE), dtype=np.uint8)
    assert ds.read_frames(3, 9, out=out) is out
    np.testing.assert_array_equal(out, w.frames[3:9])
    assert ds.read_frames(4, 4).shape == (0, *FRAME_SHAPE)
    for start, stop in ((-1, 2), (0, len(w.frames) + 1), (5, 4)):
        with pytest.raises(IndexError, match="outside"):
            ds.read_frames(start, stop)


def test_read_frames_rejects_unusable_out(small_dataset):
    ds = LapoDataset(small_dataset.path)
    bad = [
        np.zeros((4, *FRAME_SHAPE), dtype=np.uint8),  # wrong length
        np.zeros((3, *FRAME_SHAPE), dtype=np.float32),  # wrong dtype
        np.zeros((3, 8, 8, 6), dtype=np.uint8)[..., ::2],  # not contiguous
    ]
    for out in bad:
        with pytest.raises(ValueError, match="out"):
            ds.read_frames(0, 3, out=out)


def test_close_and_reopen_descriptors(small_dataset):
    w = small_dataset
    with LapoDataset(w.path) as ds:
        np.testing.assert_array_equal(ds.read_frames(0, 12), w.frames[:12])
        ds.close()
        np.testing.assert_array_equal(ds.read_frames(2, 14), w.frames[2:14])  # reopened
    assert "frames=40" in repr(ds) and "episodes=7" in repr(ds)


def test_verify_passes_and_reports_every_file(small_dataset):
    w = small_dataset
    seen = []
    LapoDataset(w.path).verify(progress=lambda name, nbytes: seen.append((name, nbytes)))
    expected = [(s["file"], s["bytes"]) for s in w.manifest["shards"]]
    expected += [(name, e["bytes"]) for name, e in w.manifest["files"].items()]
    assert seen == expected
    assert len(seen) == 8 + 4  # 40 frames in shards of 5; episodes + 3 transition arrays


def test_open_missing_directory(tmp_path):
    from lapo.data import DatasetError

    with pytest.raises(DatasetError, match="no such dataset directory"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "frames.npz").write_bytes(b"")  # raw data given where a dataset belongs
    with pytest.raises(DatasetError, match=r"a file, not a lapo dataset directory; import it"):
        open_dataset(tmp_path / "frames.npz")
    (tmp_path / "videos").mkdir()
    with pytest.raises(DatasetError, match=r"imported first: lapo data import .*videos --out"):
        open_dataset(tmp_path / "videos")
