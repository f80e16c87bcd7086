"""Window sampling throughput and resident memory on a large dataset (foundation benchmarks).

Builds (or reuses, with --data) a dataset of --frames 64x64x3 frames (default 1,048,576 frames,
about 12.9 GB on disk), then samples random windows (o_{t-1}, o_t, o_{t+1}) for --seconds in
two ways and prints windows/s, MB/s and the process's peak resident memory (VmHWM):
  * direct: WindowIndex.read in the main process, batches of 128;
  * DataLoader: WindowDataset + WindowBatchSampler with 2 workers (fork).
The target is a peak RSS under 2 GB whatever the dataset size.

Usage: python benchmarks/window_sampling.py [--data DIR] [--frames N] [--seconds S] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lapo.data import (
    DatasetWriter,
    WindowBatchSampler,
    WindowDataset,
    WindowIndex,
    collate_windows,
    open_dataset,
)


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM on Linux
    except OSError:
        pass


def build(path: Path, frames: int) -> None:
    """Write a dataset of random-looking episodes of 200-1000 frames (a pool of noise frames)."""
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, size=(1024, 64, 64, 3), dtype=np.uint8)
    written, start = 0, time.perf_counter()
    with DatasetWriter(
        path,
        frame_shape=(64, 64, 3),
        fields=("actions",),
        action_space={"type": "discrete", "n": 15},
        source={"kind": "benchmark"},
    ) as w:
        while written < frames:
            length = int(min(rng.integers(200, 1000), frames - written))
            idx = rng.integers(0, len(pool) - length) if length < len(pool) else 0
            frames_ep = np.resize(pool[idx:], (length, 64, 64, 3))
            w.add_episode(frames_ep, actions=rng.integers(0, 15, size=length))
            written += length
    print(f"built {frames} frames in {time.perf_counter() - start:.0f} s")


def sample_direct(index: WindowIndex, seconds: float, batch: int = 128) -> tuple[float, float]:
    sampler = WindowBatchSampler(len(index), batch, seed=1)
    n, start = 0, time.perf_counter()
    for b in sampler:
        index.read(np.asarray(b))
        n += batch
        if time.perf_counter() - start > seconds:
            break
    return n, time.perf_counter() - start


def sample_loader(index: WindowIndex, seconds: float, batch: int = 128) -> tuple[float, float]:
    loader = torch.utils.data.DataLoader(
        WindowDataset(index),
        batch_sampler=WindowBatchSampler(len(index), batch, seed=2),
        collate_fn=collate_windows,
        num_workers=2,
        prefetch_factor=4,
    )
    n, start = 0, time.perf_counter()
    for out in loader:
        n += len(out["frames"])
        if time.perf_counter() - start > seconds:
            break
    return n, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="existing dataset to sample from")
    parser.add_argument("--frames", type=int, default=1 << 20)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--keep", action="store_true", help="keep the generated dataset")
    args = parser.parse_args()

    tmp = None
    path = args.data
    if path is None:
        tmp = Path(tempfile.mkdtemp(prefix="lapo-bench-", dir="/var/tmp"))
        path = tmp / "ds"
        build(path, args.frames)
    try:
        dataset = open_dataset(path)
        index = WindowIndex(dataset, context=1)
        window_mb = 3 * 64 * 64 * 3 / 1e6
        print(
            f"dataset: {dataset.num_frames} frames, {dataset.num_frames * 12288 / 1e9:.1f} GB "
            f"of frames, {len(index)} windows"
        )
        reset_peak_rss()
        before = rss_mb()
        n, dt = sample_direct(index, args.seconds)
        print(
            f"direct:     {n / dt:9.0f} windows/s {n * window_mb / dt:8.0f} MB/s  "
            f"RSS {before:.0f} -> {rss_mb():.0f} MB, peak {rss_mb('VmHWM'):.0f} MB"
        )
        reset_peak_rss()
        n, dt = sample_loader(index, args.seconds)
        print(
            f"DataLoader: {n / dt:9.0f} windows/s {n * window_mb / dt:8.0f} MB/s  "
            f"(2 workers) main-process peak RSS {rss_mb('VmHWM'):.0f} MB"
        )
    finally:
        if tmp is not None and not args.keep:
            shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
