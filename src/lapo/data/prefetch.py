"""Batches read ahead on a background thread and handed to the device without a stall.

Stages 1 and 2 read each batch of uint8 windows from the memory-mapped dataset (so datasets larger
than RAM keep working: only the batches in flight are in memory) and then compute on it. On an
accelerator the read would leave it idle; ``Prefetcher`` reads the next ``depth`` batches on one
background thread while the device computes, pins them (CUDA) so that the host-to-device copy runs
asynchronously (``non_blocking``), and leaves the float conversion to the device. Batch ``b`` is a
pure function of ``b`` (``make_batch``), so the batches, and on the CPU every result, are exactly
those of reading in the loop.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """``array`` as a tensor on ``device``: pinned and copied without blocking on CUDA; on the
    CPU the array's own memory, no copy."""
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


class Prefetcher:
    """The batches ``make_batch(b)`` for ``b`` in ``batches``, read up to ``depth`` ahead.

    Args:
        make_batch: ``b -> tuple of np.ndarray`` (e.g. uint8 frames ``(B, k+2, H, W, C)`` and
            targets); called on the background thread, in the order of ``batches``. It must not
            touch torch's global RNG (``WindowBatchSampler.batch`` does not).
        batches: batch numbers, in the order the caller will ask for them.
        device: where ``get`` puts the tensors.
        depth: batches read ahead (>= 1); 0 reads each batch in ``get`` itself (no thread).

    ``get(b)`` returns the tensors of the next batch, which must be ``b``; ``close`` (or the
    ``with`` block's end) stops the thread and drops what was read ahead.

    Raises:
        ValueError: a negative ``depth``; ``get`` asked for another batch than the next one.
    """

    def __init__(
        self,
        make_batch: Callable[[int], tuple[np.ndarray, ...]],
        batches: Iterable[int],
        device: torch.device | str,
        depth: int = 2,
    ) -> None:
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        self.make_batch, self.device, self.depth = make_batch, torch.device(device), depth
        self._order: Iterator[int] = iter(batches)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lapo-prefetch") if depth else None
        self._ahead: deque[tuple[int, Future]] = deque()
        self._fill()

    def _fill(self) -> None:
        while self._pool is not None and len(self._ahead) < self.depth:
            b = next(self._order, None)
            if b is None:
                return
            self._ahead.append((b, self._pool.submit(self.make_batch, b)))

    def get(self, b: int) -> tuple[torch.Tensor, ...]:
        """The tensors of batch ``b`` on the device (uint8 stays uint8: convert on the device)."""
        if self._pool is None:
            expected = next(self._order, None)
            arrays = self.make_batch(b) if expected == b else None
        else:
            expected, future = self._ahead.popleft() if self._ahead else (None, None)
            arrays = future.result() if expected == b else None
            self._fill()
        if arrays is None:
            raise ValueError(f"asked for batch {b}, the next one is {expected}")
        return tuple(to_device(a, self.device) for a in arrays)

    def close(self) -> None:
        """Stop reading ahead (waits for the batch being read, drops the others)."""
        if self._pool is not None:
            for _, future in self._ahead:
                future.cancel()
            self._ahead.clear()
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
