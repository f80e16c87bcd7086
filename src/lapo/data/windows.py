"""Windows of consecutive frames (o_{t-k}, ..., o_t, o_{t+1}) that never cross an episode.

LAPO's IDM sees k past frames, the current frame and the next one (paper section 4.1; k=1 by
default), so a window for frame t is the ``k + 2`` frames ``[t - k, t + 1]`` of one episode.
Windows are numbered ``0 .. num_windows - 1`` through a per-episode cumulative count, so memory is
O(episodes), not O(frames).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from lapo.data.format import DatasetError
from lapo.data.reader import LapoDataset


def split_episodes(
    dataset: LapoDataset, test_fraction: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split episode ids into train and test sets, reproducibly.

    Args:
        test_fraction: fraction of episodes (rounded, at least 1 when the dataset has >= 2
            episodes) held out for testing.
        seed: permutation seed.

    Returns:
        ``(train_ids, test_ids)``, sorted ``int64`` arrays of episode indices.

    Raises:
        ValueError: ``test_fraction`` outside ``[0, 1)``.
    """
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    n = dataset.num_episodes
    n_test = round(n * test_fraction)
    if test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def split_windows(
    dataset: LapoDataset, context: int = 1, test_fraction: float = 0.1, seed: int = 0
) -> tuple[WindowIndex, WindowIndex]:
    """Train and test windows: whole episodes held out (``split_episodes``), or, for a dataset
    of one episode (any single imported video), the tail of that episode.

    With one episode of T frames the first ``T - round(T * test_fraction)`` frames are the train
    part and the rest the test part (each at least ``k + 2`` frames, so both hold a window); no
    window crosses the cut. With several episodes it is exactly ``split_episodes``.

    Returns:
        ``(train_index, test_index)``.

    Raises:
        ValueError: ``test_fraction`` outside ``[0, 1)``.
        DatasetError: no window fits in a part; for one episode, the message says how many
            frames it has and how many a train and a test part need.
    """
    if dataset.num_episodes >= 2 or test_fraction == 0:
        train_eps, test_eps = split_episodes(dataset, test_fraction, seed)
        return WindowIndex(dataset, context, train_eps), WindowIndex(dataset, context, test_eps)
    if not 0.0 <= test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    length = int(dataset.episodes[0, 1])
    need = context + 2
    n_test = min(max(round(length * test_fraction), need), length - need)
    if n_test < need:
        raise DatasetError(
            f"{dataset.path}: one episode of {length} frames; holding out its tail for testing "
            f"needs at least {2 * need} frames ({need} to train on and {need} to test on, "
            f"context k={context}); record or import more frames"
        )
    cut = length - n_test
    train = WindowIndex(dataset, context, spans=[(0, cut)])
    test = WindowIndex(dataset, context, spans=[(cut, n_test)])
    return train, test


class WindowIndex:
    """All valid window positions t in a set of episodes, for ``context`` past frames k.

    Args:
        dataset: an open dataset.
        context: k, frames before o_t (the window holds ``k + 2`` frames).
        episodes: episode ids to draw from (default: all).
        spans: instead of ``episodes``, ``(start, length)`` rows of frames, each inside one
            episode (a part of it, as ``split_windows`` makes of a one-episode dataset).

    Raises:
        DatasetError: no selected episode has the ``k + 2`` frames one window needs.
        ValueError: negative ``context`` or episode ids that are not in the dataset.
    """

    def __init__(
        self,
        dataset: LapoDataset,
        context: int = 1,
        episodes: Sequence[int] | None = None,
        *,
        spans: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        self.dataset = dataset
        self.context = context
        self.window_len = context + 2
        if spans is not None:
            self._from_spans(np.asarray(spans, dtype=np.int64).reshape(-1, 2))
            return
        ids = np.arange(dataset.num_episodes) if episodes is None else np.asarray(episodes)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"episodes must be a 1-D sequence of integer ids, got {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= dataset.num_episodes):
            # negative ids would otherwise silently wrap around to episodes from the end
            raise ValueError(
                f"episode ids must be in [0, {dataset.num_episodes}), "
                f"got range [{ids.min()}, {ids.max()}]"
            )
        self.episode_ids = ids.astype(np.int64)
        self._index(*dataset.episodes[self.episode_ids].T, what="episode(s)")

    def _from_spans(self, spans: np.ndarray) -> None:
        ends = np.cumsum(self.dataset.episodes[:, 1])
        starts, lengths = spans.T
        episode = np.searchsorted(ends, starts, side="right")
        inside = (
            (lengths >= 1)
            & (starts >= 0)
            & (episode < len(ends))
            & (starts + lengths <= ends[np.minimum(episode, len(ends) - 1)])
        )
        if not inside.all():
            raise ValueError("spans must be (start, length >= 1) rows inside one episode each")
        self.episode_ids = episode.astype(np.int64)
        self._index(starts, lengths, what="span(s)")

    def _index(self, starts: np.ndarray, lengths: np.ndarray, what: str) -> None:
        context = self.context
        counts = np.maximum(lengths - context - 1, 0)
        self._first_t = starts + context  # first valid t of each episode
        self._cum = np.cumsum(counts)
        self.num_windows = int(self._cum[-1]) if len(counts) else 0
        if self.num_windows == 0:
            held = len(lengths) == 0 and self.dataset.num_episodes == 1
            hint = " (one episode: use split_windows, which holds out its tail)" if held else ""
            raise DatasetError(
                f"{self.dataset.path}: no window of {self.window_len} frames (context "
                f"k={context}) fits in the {len(lengths)} selected {what}; the longest has "
                f"{int(lengths.max()) if len(lengths) else 0} frames{hint}"
            )

    def __len__(self) -> int:
        return self.num_windows

    def frame_index(self, windows: np.ndarray) -> np.ndarray:
        """Map window numbers ``(B,)`` to the global frame index t of o_t ``(B,) int64``."""
        windows = np.asarray(windows, dtype=np.int64)
        if windows.size and (windows.min() < 0 or windows.max() >= self.num_windows):
            raise IndexError(f"window index out of range [0, {self.num_windows})")
        ep = np.searchsorted(self._cum, windows, side="right")
        before = np.where(ep > 0, self._cum[ep - 1], 0)
        return self._first_t[ep] + (windows - before)

    def read(self, windows: np.ndarray) -> np.ndarray:
        """Frames of the given windows: ``(B, k + 2, H, W, C) uint8``, o_{t-k} .. o_{t+1}."""
        ts = self.frame_index(windows)
        out = np.empty((len(ts), self.window_len, *self.dataset.frame_shape), dtype=np.uint8)
        for i, t in enumerate(ts):
            self.dataset.read_frames(int(t) - self.context, int(t) + 2, out=out[i])
        return out

    def read_current(self, windows: np.ndarray) -> np.ndarray:
        """o_t alone of the given windows: ``(B, H, W, C) uint8``, C-contiguous (one frame read
        per window instead of ``k + 2``; what a policy sees)."""
        ts = self.frame_index(windows)
        out = np.empty((len(ts), *self.dataset.frame_shape), dtype=np.uint8)
        for i, t in enumerate(ts):
            self.dataset.read_frames(int(t), int(t) + 1, out=out[i : i + 1])
        return out

    def labelled_subset(self, n: int, seed: int = 0) -> np.ndarray:
        """Draw ``n`` distinct windows reproducibly: the small labelled set of stage 3.

        The same ``(n, seed)`` always gives the same windows, and a larger ``n`` with the same
        seed extends a smaller one (a prefix of one permutation), so label-budget sweeps nest.

        Returns:
            ``(n,) int64`` window numbers (use ``frame_index`` for frames, then true actions).

        Raises:
            ValueError: ``n`` exceeds the number of windows.
        """
        if not 0 <= n <= self.num_windows:
            raise ValueError(f"asked for {n} labelled transitions, only {self.num_windows} exist")
        return np.random.default_rng(seed).permutation(self.num_windows)[:n]


class WindowDataset(torch.utils.data.Dataset):
    """Torch map-style dataset of windows; item i is window i of ``index``.

    Items are dicts: ``frames`` ``(k + 2, H, W, C) uint8`` tensor and, when the dataset has true
    actions, ``action`` (int64 scalar: a_t, the action between o_t and o_{t+1}). Batched fetches
    (``__getitems__``) are used by DataLoader with a batch sampler, one read call per window.
    Safe with DataLoader workers (fork or spawn): file descriptors are reopened per process.
    """

    def __init__(self, index: WindowIndex, with_actions: bool = True) -> None:
        self.index = index
        self.with_actions = with_actions and index.dataset.has_actions

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        batch = self.__getitems__([i])
        return {k: v[0] for k, v in batch.items()}

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        windows = np.asarray(indices, dtype=np.int64)
        out = {"frames": torch.from_numpy(self.index.read(windows))}
        if self.with_actions:
            ts = self.index.frame_index(windows)
            out["action"] = torch.from_numpy(np.asarray(self.index.dataset.actions[ts]))
        return out


def collate_windows(batch):
    """DataLoader ``collate_fn`` for ``WindowDataset.__getitems__`` (batch already stacked)."""
    return batch


class WindowBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Endless (or ``num_batches`` long) uniform random batches of window numbers.

    Batch b of rank r is drawn from a generator seeded by ``(seed, r, b)``, so
    (1) ranks of a ``torch.distributed`` job draw disjoint random streams from one dataset and
    (2) resuming at batch b (``start_batch``) continues exactly, with no replay of earlier draws.

    Args:
        num_windows: size of the window index.
        batch_size: windows per batch (per rank).
        seed: base seed.
        rank, world_size: this process's place in a distributed job; by default taken from
            ``torch.distributed`` when it is initialized, else a single process (0 of 1).
        start_batch: first batch number (the data-order state to store in checkpoints).
        num_batches: stop after this many batches in total; None for endless.
    """

    def __init__(
        self,
        num_windows: int,
        batch_size: int,
        *,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        start_batch: int = 0,
        num_batches: int | None = None,
    ) -> None:
        if num_windows < 1 or batch_size < 1:
            raise ValueError(
                f"need num_windows >= 1 and batch_size >= 1, got {num_windows} and {batch_size}"
            )
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        if world_size is None:
            world_size = torch.distributed.get_world_size() if distributed else 1
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.num_windows, self.batch_size = num_windows, batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.start_batch, self.num_batches = start_batch, num_batches

    def batch(self, b: int) -> list[int]:
        """Window numbers of batch ``b`` for this rank."""
        rng = np.random.default_rng([self.seed, self.rank, b])
        return rng.integers(0, self.num_windows, size=self.batch_size).tolist()

    def __iter__(self) -> Iterator[list[int]]:
        b = self.start_batch
        while self.num_batches is None or b < self.num_batches:
            yield self.batch(b)
            b += 1

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless WindowBatchSampler has no length")
        return max(self.num_batches - self.start_batch, 0)
