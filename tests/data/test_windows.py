"""Windows o_{t-k} .. o_{t+1}: episode boundaries, counts, splits, sampling and DataLoader use."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
import torch

from lapo.data import (
    LapoDataset,
    WindowBatchSampler,
    WindowDataset,
    WindowIndex,
    collate_windows,
    split_episodes,
)

LENGTHS = (7, 3, 12, 1, 9, 2, 6)  # the default make_dataset lengths


def expected_ts(episodes: np.ndarray, context: int, ids=None) -> np.ndarray:
    """Every valid t (global index of o_t), in window order, computed without WindowIndex."""
    ids = range(len(episodes)) if ids is None else ids
    ts = [
        start + t
        for start, length in episodes[list(ids)]
        for t in range(context, length - 1)  # needs o_{t-k} .. o_{t+1} inside the episode
    ]
    return np.asarray(ts, dtype=np.int64)


# ---------------------------------------------------------------------------- WindowIndex
@pytest.mark.parametrize("context", [0, 1, 2])
def test_window_count(small_dataset, context):
    index = WindowIndex(LapoDataset(small_dataset.path), context=context)
    assert len(index) == index.num_windows == sum(max(n - context - 1, 0) for n in LENGTHS)
    assert index.window_len == context + 2


@pytest.mark.parametrize("context", [0, 1, 2, 5])
def test_windows_never_cross_episodes(small_dataset, context):
    w = small_dataset
    index = WindowIndex(LapoDataset(w.path), context=context)
    windows = index.read(np.arange(len(index)))
    assert windows.shape == (len(index), context + 2, 8, 8, 3) and windows.dtype == np.uint8
    ep, t, g = w.decode(windows)  # each (num_windows, k + 2), from the pixels
    assert (ep == ep[:, :1]).all(), "a window mixes frames of two episodes"
    assert (np.diff(t, axis=1) == 1).all() and (np.diff(g, axis=1) == 1).all()
    assert (w.frame_episode[g] == w.frame_episode[g[:, :1]]).all()
    # every valid window appears exactly once, in order, and holds exactly the written frames
    ts = expected_ts(w.episodes, context)
    np.testing.assert_array_equal(index.frame_index(np.arange(len(index))), ts)
    np.testing.assert_array_equal(g[:, context], ts)
    for i, t_ in enumerate(ts):
        np.testing.assert_array_equal(windows[i], w.frames[t_ - context : t_ + 2])


def test_windows_of_selected_episodes(small_dataset):
    w = small_dataset
    ids = [2, 0, 5, 3]  # unsorted, including episodes too short for any window (3: 1 frame)
    index = WindowIndex(LapoDataset(w.path), context=1, episodes=ids)
    ts = expected_ts(w.episodes, 1, ids)
    assert len(index) == len(ts) == (12 - 2) + (7 - 2) + (2 - 2) + 0
    np.testing.assert_array_equal(index.frame_index(np.arange(len(index))), ts)
    ep, _, _ = w.decode(index.read(np.arange(len(index))))
    assert set(ep[:, 0].tolist()) == {0, 2}


def test_frame_index_of_random_windows(small_dataset):
    index = WindowIndex(LapoDataset(small_dataset.path), context=1)
    ts = expected_ts(small_dataset.episodes, 1)
    picks = np.random.default_rng(0).integers(0, len(index), size=50)
    np.testing.assert_array_equal(index.frame_index(picks), ts[picks])
    assert index.read(np.array([], dtype=np.int64)).shape == (0, 3, 8, 8, 3)


@pytest.mark.parametrize("bad", [[-1], [27], [0, 100]])
def test_frame_index_out_of_range(small_dataset, bad):
    index = WindowIndex(LapoDataset(small_dataset.path), context=1)
    assert len(index) == 27
    with pytest.raises(IndexError, match=r"\[0, 27\)"):
        index.frame_index(np.array(bad))


def test_window_index_rejects_bad_arguments(small_dataset):
    ds = LapoDataset(small_dataset.path)
    with pytest.raises(ValueError, match="context must be >= 0"):
        WindowIndex(ds, context=-1)
    for ids in ([-1], [0, 7], [0.0, 1.0]):  # -1 must not silently mean the last episode
        with pytest.raises(ValueError, match="episode"):
            WindowIndex(ds, episodes=ids)


# ---------------------------------------------------------------------------- splits
@pytest.fixture
def many_episodes(make_dataset):
    return LapoDataset(make_dataset(lengths=[3] * 40, shard_frames=16).path)


def test_split_episodes(many_episodes):
    train, test = split_episodes(many_episodes, test_fraction=0.25, seed=3)
    assert len(test) == 10 and len(train) == 30
    assert train.dtype == test.dtype == np.int64
    assert not set(train) & set(test)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(40))
    assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()  # sorted
    again = split_episodes(many_episodes, test_fraction=0.25, seed=3)
    np.testing.assert_array_equal(again[0], train)
    np.testing.assert_array_equal(again[1], test)
    other = split_episodes(many_episodes, test_fraction=0.25, seed=4)
    assert not np.array_equal(other[1], test)


def test_split_episodes_edge_cases(make_dataset, many_episodes):
    train, test = split_episodes(many_episodes, test_fraction=0.0)
    assert len(test) == 0 and len(train) == 40
    two = LapoDataset(make_dataset(lengths=(4, 4), name="two").path)
    train, test = split_episodes(two, test_fraction=0.01)  # rounds to 0, but at least one
    assert len(test) == 1 and len(train) == 1
    train, test = split_episodes(two, test_fraction=0.99)  # rounds to 2, but one must train
    assert len(test) == 1 and len(train) == 1
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\)"):
            split_episodes(many_episodes, test_fraction=bad)


# ---------------------------------------------------------------------------- labelled subset
def test_labelled_subset(small_dataset):
    index = WindowIndex(LapoDataset(small_dataset.path), context=1)
    a = index.labelled_subset(10, seed=1)
    assert a.shape == (10,) and a.dtype == np.int64
    assert len(set(a.tolist())) == 10 and a.min() >= 0 and a.max() < len(index)
    np.testing.assert_array_equal(index.labelled_subset(10, seed=1), a)
    assert not np.array_equal(index.labelled_subset(10, seed=2), a)
    for small, large in ((0, 5), (3, 10), (10, 27)):  # budgets nest
        np.testing.assert_array_equal(
            index.labelled_subset(small, seed=1), index.labelled_subset(large, seed=1)[:small]
        )
    assert sorted(index.labelled_subset(27, seed=5).tolist()) == list(range(27))
    for bad in (-1, 28):
        with pytest.raises(ValueError, match="only 27 exist"):
            index.labelled_subset(bad)


# ---------------------------------------------------------------------------- batch sampler
def test_batch_sampler_reproducible_and_in_range():
    a = WindowBatchSampler(100, 8, seed=1, num_batches=5)
    b = WindowBatchSampler(100, 8, seed=1, num_batches=5)
    batches = list(a)
    assert len(batches) == len(a) == 5
    assert batches == list(b) == list(a)
    assert all(len(x) == 8 and all(0 <= i < 100 for i in x) for x in batches)
    assert batches != list(WindowBatchSampler(100, 8, seed=2, num_batches=5))
    assert batches[0] != batches[1]


def test_batch_sampler_ranks_differ():
    r0 = list(WindowBatchSampler(10_000, 16, seed=0, rank=0, world_size=2, num_batches=4))
    r1 = list(WindowBatchSampler(10_000, 16, seed=0, rank=1, world_size=2, num_batches=4))
    assert all(a != b for a, b in zip(r0, r1, strict=True))


def test_batch_sampler_resumes():
    full = list(WindowBatchSampler(50, 4, seed=7, num_batches=10))
    resumed = WindowBatchSampler(50, 4, seed=7, start_batch=6, num_batches=10)
    assert len(resumed) == 4
    assert list(resumed) == full[6:]
    endless = iter(WindowBatchSampler(50, 4, seed=7, start_batch=3))
    assert [next(endless) for _ in range(7)] == full[3:]
    assert WindowBatchSampler(50, 4, seed=7).batch(8) == full[8]
    with pytest.raises(TypeError, match="endless"):
        len(WindowBatchSampler(50, 4))


def test_batch_sampler_rejects_bad_arguments():
    for kwargs, match in (
        ({"num_windows": 0, "batch_size": 4}, "num_windows >= 1"),
        ({"num_windows": 5, "batch_size": 0}, "batch_size >= 1"),
        ({"num_windows": 5, "batch_size": 4, "rank": 2, "world_size": 2}, r"rank must be in"),
        ({"num_windows": 5, "batch_size": 4, "rank": -1}, r"rank must be in"),
    ):
        with pytest.raises(ValueError, match=match):
            WindowBatchSampler(**kwargs)


# ---------------------------------------------------------------------------- torch
def test_window_dataset_items(small_dataset):
    w = small_dataset
    index = WindowIndex(LapoDataset(w.path), context=2)
    data = WindowDataset(index)
    ts = expected_ts(w.episodes, 2)
    assert len(data) == len(ts)
    item = data[4]
    assert item["frames"].shape == (4, 8, 8, 3) and item["frames"].dtype == torch.uint8
    assert item["action"].shape == () and item["action"].dtype == torch.int64
    np.testing.assert_array_equal(item["frames"].numpy(), w.frames[ts[4] - 2 : ts[4] + 2])
    assert item["action"].item() == w.actions[ts[4]]
    assert set(WindowDataset(index, with_actions=False)[0]) == {"frames"}


def test_window_dataset_without_actions(make_dataset):
    w = make_dataset(fields=())
    data = WindowDataset(WindowIndex(LapoDataset(w.path)))
    assert not data.with_actions
    assert set(data.__getitems__([0, 1])) == {"frames"}


def load_batches(data, sampler, num_workers):
    loader = torch.utils.data.DataLoader(
        data,
        batch_sampler=sampler,
        collate_fn=collate_windows,
        num_workers=num_workers,
        multiprocessing_context="fork" if num_workers else None,
    )
    return list(loader)


def test_dataloader_workers_match_main_process(small_dataset):
    w = small_dataset
    ds = LapoDataset(w.path)
    ds.read_frames(0, ds.num_frames)  # descriptors already open in the parent before the fork
    index = WindowIndex(ds, context=1)
    data = WindowDataset(index)
    sampler = WindowBatchSampler(len(index), 6, seed=3, num_batches=8)
    serial = load_batches(data, sampler, 0)
    forked = load_batches(data, sampler, 2)
    assert len(serial) == len(forked) == 8
    for b, (x, y) in enumerate(zip(serial, forked, strict=True)):
        assert torch.equal(x["frames"], y["frames"]) and torch.equal(x["action"], y["action"])
        ts = index.frame_index(np.asarray(sampler.batch(b)))
        assert x["frames"].shape == (6, 3, 8, 8, 3)
        expected = np.stack([w.frames[t - 1 : t + 2] for t in ts])
        np.testing.assert_array_equal(y["frames"].numpy(), expected)
        np.testing.assert_array_equal(y["action"].numpy(), ds.actions[ts])
        np.testing.assert_array_equal(y["action"].numpy(), w.actions[ts])


def test_pickled_dataset_reads_the_same(small_dataset):
    w = small_dataset
    ds = LapoDataset(w.path)
    ds.read_frames(0, 10)
    _ = ds.actions  # a memory-mapped field and open descriptors must not be pickled
    clone = pickle.loads(pickle.dumps(ds))
    ds.close()  # the clone owns no descriptors of the original
    np.testing.assert_array_equal(clone.read_frames(0, clone.num_frames), w.frames)
    np.testing.assert_array_equal(clone.actions, w.actions)
    data = pickle.loads(pickle.dumps(WindowDataset(WindowIndex(clone))))
    np.testing.assert_array_equal(data[0]["frames"].numpy(), w.frames[0:3])


def test_dataset_in_spawned_process(small_dataset):
    w = small_dataset
    ds = LapoDataset(w.path)
    ds.read_frames(0, 5)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        frames = pool.submit(ds.read_frames, 3, 31).result(timeout=60)
        windows = pool.submit(WindowIndex(ds).read, np.arange(5)).result(timeout=60)
    np.testing.assert_array_equal(frames, w.frames[3:31])
    np.testing.assert_array_equal(windows, WindowIndex(ds).read(np.arange(5)))


# ---------------------------------------------------------------------------- memory
def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc (Linux)")
def test_rss_stays_flat_while_reading(make_dataset):
    """Reading 24 MB of frames twice must not grow RSS (a memory map would, by ~24 MB)."""
    w = make_dataset(lengths=[100] * 20, frame_shape=(64, 64, 3), shard_frames=256, name="big")
    del w.frames  # drop the 24 MB copy kept for other tests
    ds = LapoDataset(w.path)
    index = WindowIndex(ds, context=1)
    batch = 64
    starts = range(0, len(index), batch)
    index.read(np.arange(batch))  # warm up allocations of one batch
    before = rss_bytes()
    for _ in range(2):
        for s in starts:
            windows = index.read(np.arange(s, min(s + batch, len(index))))
    grown = rss_bytes() - before
    assert windows.shape[1:] == (3, 64, 64, 3)
    assert len(index) * 3 * 64 * 64 * 3 > 2 * 24 * 2**20  # each pass reads every frame ~3 times
    # An mmap-based reader grows by ~26 MiB here (measured), so the bound must stay well below 24.
    assert grown < 8 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB while reading"


def test_batch_sampler_takes_rank_from_torch_distributed(tmp_path):
    """With an initialized process group, ranks default to it and draw different batches."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        sampler = WindowBatchSampler(1000, 8, seed=3)
        assert (sampler.rank, sampler.world_size) == (0, 1)
        other = WindowBatchSampler(1000, 8, seed=3, rank=1, world_size=2)
        assert sampler.batch(0) != other.batch(0)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("context", [0, 1, 2])
def test_one_episode_is_split_at_its_tail_and_no_window_crosses_the_cut(make_dataset, context):
    from lapo.data import split_windows

    w = make_dataset(lengths=(40,), name=f"one{context}")
    ds = LapoDataset(w.path)
    train, test = split_windows(ds, context, test_fraction=0.25, seed=0)
    # 25% of 40 = 10 test frames [30, 40), 30 train frames [0, 30)
    assert np.array_equal(train.frame_index(np.arange(len(train))), np.arange(context, 29))
    assert np.array_equal(test.frame_index(np.arange(len(test))), np.arange(30 + context, 39))
    # several episodes: exactly the episode split
    many = LapoDataset(make_dataset(name=f"many{context}").path)
    train_eps, test_eps = split_episodes(many, 0.25, 0)
    train, test = split_windows(many, context, 0.25, 0)
    assert list(train.episode_ids) == list(train_eps) and list(test.episode_ids) == list(test_eps)


def test_one_episode_too_short_for_two_parts_names_what_it_needs(make_dataset) -> None:
    from lapo.data import DatasetError, split_windows

    ds = LapoDataset(make_dataset(lengths=(5,)).path)
    with pytest.raises(DatasetError, match="one episode of 5 frames.*at least 6 frames"):
        split_windows(ds, 1, 0.5, 0)
