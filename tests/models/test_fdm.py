"""The U-Net FDM (``lapo.models.fdm``).

Frames are random in [-0.5, 0.5], the observation range; batch 2 keeps every test light.
"""

from __future__ import annotations

import pytest
import torch

from lapo.models.fdm import ForwardDynamicsModel
from lapo.models.lam_sizes import LAM_SIZES

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/models/conftest.py

LATENT = 128
CL = torch.channels_last


def frames(n: int, size: int = 64, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """``(batch, n, 3, size, size)`` float32 frames uniform in [-0.5, 0.5]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, 3, size, size, generator=g) - 0.5


def test_fdm_output_within_observation_range():
    torch.manual_seed(0)
    fdm = ForwardDynamicsModel(context=1, **LAM_SIZES["smoke"]["fdm"])
    with torch.no_grad():
        fdm.head.weight.mul_(1e3)  # drive the tanh into saturation
        pred = fdm(frames(2), 100 * torch.randn(2, LATENT))
    assert pred.abs().max() <= 0.5
    assert pred.abs().max() > 0.49  # saturated: the bound is tanh's, not a small output


def test_residual_fdm_starts_at_the_current_frame_and_stays_in_range():
    torch.manual_seed(0)
    fdm = ForwardDynamicsModel(context=1, residual=True, **LAM_SIZES["smoke"]["fdm"])
    x = frames(2)
    with torch.no_grad():
        fdm.head.weight.zero_()
        fdm.head.bias.zero_()
        assert torch.equal(fdm(x, torch.randn(2, LATENT)), x[:, -1])  # no change predicted
        fdm.head.bias.fill_(10.0)  # tanh saturates at +1: o_t + 1, clamped to the range
        pred = fdm(x, torch.randn(2, LATENT))
    assert torch.equal(pred, torch.full_like(pred, 0.5))
    plain = ForwardDynamicsModel(context=1, **LAM_SIZES["smoke"]["fdm"])
    plain.load_state_dict(fdm.state_dict())  # same weights; only the output rule differs
    with torch.no_grad():
        plain.head.bias.zero_()
        assert torch.equal(plain(x, torch.randn(2, LATENT)), torch.zeros_like(pred))  # tanh(0)/2


def test_fdm_depends_on_latent_through_both_injections():
    torch.manual_seed(0)
    fdm = ForwardDynamicsModel(context=1, **LAM_SIZES["smoke"]["fdm"])
    x, z0, z1 = frames(2), torch.randn(2, LATENT), torch.randn(2, LATENT)

    def differs() -> bool:
        with torch.no_grad():
            return not torch.equal(fdm(x, z0), fdm(x, z1))

    assert differs()
    with torch.no_grad():
        fdm.tile.weight.zero_()
    assert differs()  # still injected at the bottleneck
    with torch.no_grad():
        fdm.bottleneck.weight.zero_()
    assert not differs()  # no injection left: the latent has no effect
    torch.manual_seed(0)
    fdm = ForwardDynamicsModel(context=1, **LAM_SIZES["smoke"]["fdm"])
    with torch.no_grad():
        fdm.bottleneck.weight.zero_()
    assert differs()  # the tiled input injection alone


def test_fdm_activations_stay_channels_last_under_bf16():
    torch.manual_seed(0)
    fdm = ForwardDynamicsModel(context=1, **LAM_SIZES["smoke"]["fdm"]).to(memory_format=CL)
    seen = []

    def check(module, inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4:
            seen.append((type(module).__name__, output.is_contiguous(memory_format=CL)))

    for module in fdm.modules():
        module.register_forward_hook(check)
    with torch.autocast("cpu", torch.bfloat16):
        fdm(frames(2), torch.randn(2, LATENT))
    assert len(seen) > 20 and all(ok for _, ok in seen), [name for name, ok in seen if not ok]
