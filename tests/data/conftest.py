"""Shared fixtures of the data tests: frames whose index survives a lossy codec."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def grey():
    """Factory: ``grey(n, start=0, shape=(16, 16)) -> (n, *shape, 3) uint8`` frames."""

    def grey(n: int, start: int = 0, shape=(16, 16)) -> np.ndarray:
        """Frames whose grey level is 8 * (start + index): the index reads back after a codec."""
        levels = (np.arange(start, start + n) * 8).astype(np.uint8)
        return np.broadcast_to(levels[:, None, None, None], (n, *shape, 3)).copy()

    return grey


@pytest.fixture
def level():
    """Factory: ``level(frames) -> list[int]``, the index each ``grey`` frame was made with."""

    def level(frames: np.ndarray) -> list[int]:
        return np.round(frames.reshape(len(frames), -1).mean(1) / 8).astype(int).tolist()

    return level
