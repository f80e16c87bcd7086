"""Shared fixtures of the model tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run on one thread: batch-2 networks gain nothing from a second one, and on a shared
    2-core machine OpenMP threads waiting for a descheduled sibling made the Adam test 70x
    slower (1.3 s instead of 18 ms per step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
