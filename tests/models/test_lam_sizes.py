"""The stage-1 network sizes (``lapo.models.lam_sizes``): the IDM and FDM that
``make_lam_nets`` builds, together (shapes, parameter counts, gradients, bf16, errors).

Frames are random in [-0.5, 0.5], the observation range; batch 2 keeps every test light.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lapo.models.fdm import ForwardDynamicsModel
from lapo.models.lam_sizes import LAM_SIZES, make_lam_nets

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/models/conftest.py

LATENT = 128
CL = torch.channels_last


def frames(n: int, size: int = 64, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """``(batch, n, 3, size, size)`` float32 frames uniform in [-0.5, 0.5]."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, n, 3, size, size, generator=g) - 0.5


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def train_loss(idm, fdm, x: torch.Tensor) -> torch.Tensor:
    """FDM MSE against o_{t+1} plus a latent regularizer; the quantizer is the identity."""
    z = idm(x)  # (B, latent)
    return F.mse_loss(fdm(x[:, :-1], z), x[:, -1]) + 0.05 * z.pow(2).mean()


@pytest.mark.parametrize("size", list(LAM_SIZES))
@pytest.mark.parametrize("k", [0, 1, 2])
def test_shapes_and_dtypes(size, k):
    torch.manual_seed(0)
    idm, fdm = make_lam_nets(size, context=k)
    x = frames(k + 2)
    with torch.no_grad():
        z = idm(x)
        pred = fdm(x[:, :-1], z)
    assert z.shape == (2, LATENT) and z.dtype == torch.float32
    assert pred.shape == (2, 3, 64, 64) and pred.dtype == torch.float32


def test_paper_parameter_counts():
    idm, fdm = make_lam_nets("paper")
    print(f"paper: IDM {n_params(idm):,} parameters, FDM {n_params(fdm):,}")
    assert 7_000_000 <= n_params(fdm) <= 9_000_000  # paper: "about 8M"
    # IMPALA x4 trunk 1,555,072 + fc 8192 -> 256 (2,097,408) + head 256 -> 128 (32,896)
    assert n_params(idm) == 3_685_376
    assert n_params(fdm) == 7_957_527
    assert n_params(ForwardDynamicsModel()) == n_params(fdm)  # the defaults are the paper size


def test_idm_multiplier_replaces_the_size_s_own():
    paper_idm, _ = make_lam_nets("paper")
    cpu_idm, cpu_fdm = make_lam_nets("cpu")
    wide_idm, wide_fdm = make_lam_nets("cpu", idm_multiplier=4)
    # both IDMs have 256 features, so x4 on the cpu size is the paper IDM
    assert n_params(cpu_idm) < n_params(wide_idm) == n_params(paper_idm)
    assert n_params(wide_fdm) == n_params(cpu_fdm)  # the FDM keeps the cpu size
    assert n_params(make_lam_nets("cpu", idm_multiplier=0)[0]) == n_params(cpu_idm)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    idm, fdm = make_lam_nets("smoke")
    train_loss(idm, fdm, frames(3)).backward()
    for name, p in [*idm.named_parameters(), *fdm.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("norm_groups", [0, 8])
def test_a_few_adam_steps_reduce_the_loss(norm_groups):
    """Sanity check that the FDM trains without normalization (and with GroupNorm): copy o_t."""
    torch.manual_seed(0)
    idm, fdm = make_lam_nets("smoke", image_size=16, norm_groups=norm_groups)
    opt = torch.optim.Adam([*idm.parameters(), *fdm.parameters()], lr=1e-2)
    x = frames(3, size=16, batch=4)
    x[:, 2] = x[:, 1]  # o_{t+1} = o_t
    losses = []
    for _ in range(30):
        loss = train_loss(idm, fdm, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def _grads(modules) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for m in modules for p in m.parameters()])


@pytest.mark.parametrize("size", list(LAM_SIZES))
def test_bf16_channels_last_matches_fp32(size):
    torch.manual_seed(0)
    idm, fdm = make_lam_nets(size)
    x = frames(3)
    z32 = idm(x)
    pred32 = fdm(x[:, :-1], z32)
    F.mse_loss(pred32, x[:, -1]).backward()
    g32 = _grads([idm, fdm])
    idm.zero_grad(), fdm.zero_grad()
    idm, fdm = idm.to(memory_format=CL), fdm.to(memory_format=CL)
    with torch.autocast("cpu", torch.bfloat16):
        z16 = idm(x)
        pred16 = fdm(x[:, :-1], z16)
    assert z16.dtype == pred16.dtype == torch.float32
    assert pred16.is_contiguous(memory_format=CL)
    F.mse_loss(pred16, x[:, -1]).backward()
    g16 = _grads([idm, fdm])
    assert torch.isfinite(g16).all()
    assert (z16 - z32).norm() / z32.norm() < 0.02  # measured 0.003-0.005
    assert (pred16 - pred32).abs().max() < 0.005  # measured < 0.001 (pixels step by 1/255)
    assert F.cosine_similarity(g16, g32, dim=0) > 0.999  # measured > 0.99998


def test_errors_state_the_expected_shapes():
    idm, fdm = make_lam_nets("smoke", context=1)
    with pytest.raises(ValueError, match=r"k\+2=3"):
        idm(frames(2))
    with pytest.raises(ValueError, match=r"k\+1=2"):
        fdm(frames(3), torch.zeros(2, LATENT))
    with pytest.raises(ValueError, match=r"latent \(B, 128\)"):
        fdm(frames(2), torch.zeros(2, 64))
    with pytest.raises(ValueError, match="multiples of 8"):
        fdm(frames(2, size=60), torch.zeros(2, LATENT))
    with pytest.raises(ValueError, match="paper, cpu, smoke"):
        make_lam_nets("huge")
