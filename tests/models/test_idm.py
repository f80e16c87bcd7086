"""The latent IDM (``lapo.models.idm``).

Frames are random in [-0.5, 0.5], the observation range; batch 2 keeps every test light.
"""

from __future__ import annotations

import pytest
import torch

from lapo.models.idm import InverseDynamicsModel
from lapo.models.lam_sizes import LAM_SIZES

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/models/conftest.py

LATENT = 128


def frames(n: int, size: int = 64, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """``(batch, n, 3, size, size)`` float32 frames uniform in [-0.5, 0.5]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, 3, size, size, generator=g) - 0.5


@pytest.mark.parametrize("k", [0, 1])
def test_idm_frame_differences_are_the_consecutive_changes(k):
    torch.manual_seed(0)
    idm = InverseDynamicsModel(context=k, latent_dim=LATENT, frame_differences=True,
                               **LAM_SIZES["smoke"]["idm"])  # fmt: skip
    first = idm.encoder.conv[0].conv
    assert first.in_channels == (2 * k + 3) * 3  # k + 2 frames and k + 1 differences
    with torch.no_grad():
        first.weight[:, : (k + 2) * 3].zero_()  # only the difference channels remain
    x = frames(k + 2)
    with torch.no_grad():
        out = idm(x)
        # the same constant added to every frame leaves every difference, so the output, as is
        assert torch.allclose(idm(x + 0.25), out, atol=1e-5)
        moved = x.clone()
        moved[:, -1] = moved[:, -1].roll(3, dims=-1)  # o_(t+1) changes: so does o_(t+1) - o_t
        assert not torch.allclose(idm(moved), out, atol=1e-3)
    plain = InverseDynamicsModel(context=k, latent_dim=LATENT, **LAM_SIZES["smoke"]["idm"])
    assert plain.encoder.conv[0].conv.in_channels == (k + 2) * 3


@pytest.mark.parametrize("k", [0, 1])
def test_idm_uses_next_frame(k):
    torch.manual_seed(0)
    idm = InverseDynamicsModel(context=k, **LAM_SIZES["smoke"]["idm"])
    x = frames(k + 2)
    y = x.clone()
    y[:, -1] = frames(1, seed=1)[:, 0]  # only o_{t+1} changes
    with torch.no_grad():
        assert not torch.allclose(idm(x), idm(y))
