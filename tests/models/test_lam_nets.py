"""LAPO stage-1 networks: the latent IDM (``lapo.models.idm``) and U-Net FDM (``lapo.models.fdm``).

Frames are random in [-0.5, 0.5], the observation range; batch 2 keeps every test light.
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from lapo.models.fdm import ForwardDynamicsModel
from lapo.models.idm import InverseDynamicsModel
from lapo.models.lam_sizes import LAM_SIZES, make_lam_nets

LATENT = 128
CL = torch.channels_last


@pytest.fixture(autouse=True)
def one_thread():
    """Run on one thread: batch-2 networks gain nothing from a second one, and on a shared
    2-core machine OpenMP threads waiting for a descheduled sibling made the Adam test 70x
    slower (1.3 s instead of 18 ms per step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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


def test_fdm_output_within_observation_range():
    torch.manual_seed(0)
    fdm = ForwardDynamicsModel(context=1, **LAM_SIZES["smoke"]["fdm"])
    with torch.no_grad():
        fdm.head.weight.mul_(1e3)  # drive the tanh into saturation
        pred = fdm(frames(2), 100 * torch.randn(2, LATENT))
    assert pred.abs().max() <= 0.5
    assert pred.abs().max() > 0.49  # saturated: the bound is tanh's, not a small output


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


@pytest.mark.parametrize("k", [0, 1])
def test_idm_uses_next_frame(k):
    torch.manual_seed(0)
    idm = InverseDynamicsModel(context=k, **LAM_SIZES["smoke"]["idm"])
    x = frames(k + 2)
    y = x.clone()
    y[:, -1] = frames(1, seed=1)[:, 0]  # only o_{t+1} changes
    with torch.no_grad():
        assert not torch.allclose(idm(x), idm(y))


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
