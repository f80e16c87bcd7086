"""Shared fixtures: small datasets written with ``DatasetWriter`` whose contents are known exactly.

Every frame is random noise except its first two pixels, which stamp where it came from:
pixel ``[0, 0]`` holds ``(episode % 256, t % 256, t // 256)`` with t the frame's index within its
episode, pixel ``[0, 1]`` holds the global frame index in base 256. ``Written.decode`` reads the
stamp back, so a test can check which frames a reader returned without trusting the reader.
"""

from __future__ import annotations

import os

# Before anything imports torch: libgomp, PyTorch's OpenMP runtime, reads this once when it is
# loaded. With its default policy a thread that finishes its share of a parallel region spins for
# the next one; on 2 cores shared with another job (or with the subprocesses and procgen workers
# these tests start) the spinning thread takes the core the working one needs, and a loop of small
# ops runs many times slower (``probe_accuracy`` on 64 latents, 2 threads, a nice-5 training job
# on both cores: 15-47 s with the default policy, 1.1 s with PASSIVE). PASSIVE makes idle threads
# sleep; it changes no result (the work is split the same way). An explicit setting in the
# environment wins; subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist (README's `-n auto`: one worker per core) each worker computes on one
# thread, so that workers do not fight over the cores; subprocesses inherit it.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lapo.data import DatasetWriter  # noqa: E402

ALL_FIELDS = ("actions", "rewards", "dones")
NUM_ACTIONS = 15


def pytest_collection_modifyitems(config, items) -> None:
    """Run the ``slow`` tests first: xdist hands out tests in collection order, so a test of
    minutes that came last would leave the other workers idle at the end."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable sort


@dataclass
class Written:
    """A dataset written by ``make_dataset`` and the exact arrays that went into it.

    Attributes:
        path: dataset directory.
        frames: ``(N, H, W, C) uint8``, all frames in order.
        episodes: ``(E, 2) int64``, start and length per episode.
        frame_episode: ``(N,) int64``, episode id of every frame.
        actions, rewards, dones: ``(N,)`` per-transition arrays (None if not written).
        returns: episode returns as given to the writer (None where unknown).
        manifest: what ``DatasetWriter.close`` returned.
    """

    path: Path
    frames: np.ndarray
    episodes: np.ndarray
    frame_episode: np.ndarray
    actions: np.ndarray | None
    rewards: np.ndarray | None
    dones: np.ndarray | None
    returns: list[float | None]
    manifest: dict

    @staticmethod
    def decode(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stamps ``(episode % 256, t, global index)`` of ``(..., H, W, C)`` frames, each ``(...)``.

        Used to check which frames a reader returned without trusting the reader.
        """
        frames = frames.astype(np.int64)
        ep = frames[..., 0, 0, 0]
        t = frames[..., 0, 0, 1] + 256 * frames[..., 0, 0, 2]
        g = frames[..., 0, 1, 0] + 256 * frames[..., 0, 1, 1] + 65536 * frames[..., 0, 1, 2]
        return ep, t, g


def random_frames(
    rng: np.random.Generator, episode: int, length: int, start: int, shape: Sequence[int]
) -> np.ndarray:
    """``(length, H, W, C) uint8`` noise stamped with episode, in-episode and global index."""
    frames = rng.integers(0, 256, size=(length, *shape), dtype=np.uint8)
    t = np.arange(length)
    g = start + t
    frames[:, 0, 0] = np.stack([np.full(length, episode % 256), t % 256, t // 256], axis=1)
    frames[:, 0, 1] = np.stack([g % 256, (g // 256) % 256, g // 65536], axis=1)
    return frames


def write_dataset(
    path: Path,
    lengths: Sequence[int],
    *,
    shard_frames: int = 5,
    fields: Sequence[str] = ALL_FIELDS,
    frame_shape: Sequence[int] = (8, 8, 3),
    returns: Sequence[float | None] | None = None,
    seed: int = 0,
    overwrite: bool = False,
) -> Written:
    """Write episodes of the given lengths to ``path`` and return what was written."""
    rng = np.random.default_rng(seed)
    if returns is None:  # every third episode has an unknown return (a cut episode)
        returns = [None if e % 3 == 2 else float(rng.normal()) for e in range(len(lengths))]
    frames, actions, rewards, dones, episodes = [], [], [], [], []
    start = 0
    with DatasetWriter(
        path,
        frame_shape=frame_shape,
        fields=fields,
        source={"test": "conftest", "seed": seed},
        action_space={"type": "discrete", "n": NUM_ACTIONS} if "actions" in fields else None,
        shard_frames=shard_frames,
        overwrite=overwrite,
    ) as writer:
        for e, length in enumerate(lengths):
            ep_frames = random_frames(rng, e, length, start, frame_shape)
            ep = {
                "actions": rng.integers(0, NUM_ACTIONS, size=length),
                "rewards": rng.normal(size=length).astype(np.float32),
                "dones": np.arange(length) == length - 1 if e % 2 == 0 else np.zeros(length, bool),
            }
            given = {name: ep[name] for name in fields}
            writer.add_episode(ep_frames, episode_return=returns[e], **given)
            frames.append(ep_frames)
            actions.append(ep["actions"])
            rewards.append(ep["rewards"])
            dones.append(ep["dones"])
            episodes.append((start, length))
            start += length
        manifest = writer.close()
    episodes = np.asarray(episodes, dtype=np.int64)
    return Written(
        path=Path(path),
        frames=np.concatenate(frames),
        episodes=episodes,
        frame_episode=np.repeat(np.arange(len(lengths)), lengths),
        actions=np.concatenate(actions) if "actions" in fields else None,
        rewards=np.concatenate(rewards) if "rewards" in fields else None,
        dones=np.concatenate(dones) if "dones" in fields else None,
        returns=list(returns),
        manifest=manifest,
    )


@pytest.fixture
def make_dataset(tmp_path):
    """Factory: ``make_dataset(lengths=(...), name="ds", **kwargs) -> Written`` in ``tmp_path``.

    Defaults: 8x8x3 frames, 5 frames per shard (episodes span shards), actions, rewards and
    dones, episode lengths ``(7, 3, 12, 1, 9, 2, 6)`` (includes episodes too short for a window).
    """

    def make(lengths: Sequence[int] = (7, 3, 12, 1, 9, 2, 6), name: str = "ds", **kwargs):
        return write_dataset(tmp_path / name, lengths, **kwargs)

    return make


@pytest.fixture
def small_dataset(make_dataset) -> Written:
    """The default ``make_dataset()`` dataset."""
    return make_dataset()


@pytest.fixture
def write_video():
    """Factory: ``write_video(path, frames, rate=10, codec="mpeg4") -> path``.

    Encodes ``frames``, ``(T, H, W, 3) uint8``, with PyAV at ``rate`` frames per second
    (yuv420p, 4 Mbit/s), creating missing parent folders; with no frames it still writes the
    container's header (an empty, readable video). The one video writer of the tests.
    """
    import av

    def write(path: Path, frames: np.ndarray, rate: int = 10, codec: str = "mpeg4") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "yuv420p"
            stream.bit_rate = 4_000_000
            container.start_encoding()  # writes the header even when there are no frames
            for image in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            container.mux(stream.encode())
        return path

    return write
