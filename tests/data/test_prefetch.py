"""``lapo.data.Prefetcher``: batches read ahead on a thread are exactly those read in the loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from lapo.data import Prefetcher, WindowBatchSampler, WindowIndex, open_dataset
from lapo.data.prefetch import to_device
from lapo.data.synthetic import write_sprite_dataset


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> WindowIndex:
    path = tmp_path_factory.mktemp("prefetch") / "sprites"
    write_sprite_dataset(path, episodes=6, length=12, size=16, seed=0)
    return WindowIndex(open_dataset(path), context=1)


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_prefetched_batches_equal_the_batches_read_in_the_loop(index, depth) -> None:
    sampler = WindowBatchSampler(len(index), 5, seed=3, rank=0, world_size=1)
    threads = set()

    def read(b: int):
        threads.add(threading.get_ident())
        windows = np.asarray(sampler.batch(b))
        return index.read(windows), index.read_current(windows)

    with Prefetcher(read, range(4, 12), "cpu", depth=depth) as batches:
        for b in range(4, 12):  # a resumed run starts at its checkpoint's batch
            frames, current = batches.get(b)
            expected = index.read(np.asarray(sampler.batch(b)))
            assert frames.dtype == torch.uint8 and torch.equal(frames, torch.from_numpy(expected))
            assert torch.equal(current, torch.from_numpy(expected[:, index.context]))
    assert (threading.get_ident() in threads) == (depth == 0)  # depth > 0: a reading thread


def test_asking_out_of_order_is_refused_and_close_stops_reading(index) -> None:
    calls = []

    def read(b: int):
        calls.append(b)
        return (np.full((2,), b),)

    batches = Prefetcher(read, range(100), "cpu", depth=2)
    assert batches.get(0)[0].tolist() == [0, 0]
    with pytest.raises(ValueError, match="asked for batch 5, the next one is 1"):
        batches.get(5)
    batches.close()
    assert max(calls) <= 4  # read at most depth ahead, not the whole range
    with pytest.raises(ValueError, match="depth must be >= 0"):
        Prefetcher(read, range(3), "cpu", depth=-1)


def test_to_device_on_the_cpu_shares_memory() -> None:
    array = np.arange(6, dtype=np.uint8)
    tensor = to_device(array, torch.device("cpu"))
    assert tensor.data_ptr() == array.ctypes.data


def test_read_current_is_o_t_of_each_window(index) -> None:
    windows = np.array([0, 3, len(index) - 1])
    current = index.read_current(windows)
    assert current.flags.c_contiguous
    assert np.array_equal(current, index.read(windows)[:, index.context])
