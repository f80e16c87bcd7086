"""The EMA vector quantizer (``lapo.models.quantizers.ema_vq``) against hand computations,
brute force and invariants, and its codebook perplexity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lapo.models.quantizers import VectorQuantizer, code_perplexity


def _set_codebook(vq: VectorQuantizer, embed: torch.Tensor) -> None:
    """Put ``embed (G, K, dim)`` into ``vq`` with a consistent EMA state (N_k = 1, m_k = e_k)."""
    vq.embed.copy_(embed)
    vq.embed_sum.copy_(embed)
    vq.cluster_size.fill_(1.0)


def _spread_vq(seed: int = 0, **kwargs) -> VectorQuantizer:
    """Paper-sized VQ with a unit-normal codebook (the default init is tiny: +-5/64)."""
    torch.manual_seed(seed)
    vq = VectorQuantizer(**kwargs)
    _set_codebook(vq, torch.randn_like(vq.embed))
    return vq


@pytest.mark.parametrize("training", [False, True])
def test_vq_lookup_reproduces_quantized_bitwise(training: bool) -> None:
    vq = _spread_vq().train(training)
    z = torch.randn(32, 128)
    for _ in range(2):  # the second step also runs on a codebook changed by the first
        out = vq(z)
        assert out.quantized.dtype == torch.float32
        assert out.indices.shape == (32, 2, 4) and out.indices.dtype == torch.int64
        assert torch.equal(vq.lookup(out.indices), out.quantized)


def test_vq_chooses_nearest_code_like_numpy_brute_force() -> None:
    vq = _spread_vq().eval()
    z = torch.randn(64, 128)
    out = vq(z)
    x = z.double().numpy().reshape(64, 2, 4, 16)
    e = vq.embed.double().numpy()  # (G, K, dim)
    d2 = ((x[:, :, :, None, :] - e[None, :, None, :, :]) ** 2).sum(-1)  # (B, G, L, K)
    expected = d2.argmin(-1)
    np.testing.assert_array_equal(out.indices.numpy(), expected)
    chosen = e[np.arange(2)[None, :, None], expected]  # (B, G, L, dim)
    np.testing.assert_array_equal(out.quantized.numpy(), chosen.reshape(64, 128).astype(np.float32))


def test_vq_ema_update_matches_hand_computation() -> None:
    eps = 1e-5
    vq = VectorQuantizer(1, 1, codebook_size=2, dim=1, decay=0.5, eps=eps).train()
    _set_codebook(vq, torch.tensor([[[0.0], [10.0]]]))
    out = vq(torch.tensor([[1.0], [2.0], [9.0]]))  # codes 0, 0, 1
    assert out.indices.flatten().tolist() == [0, 0, 1]
    # N = 0.5 * 1 + 0.5 * n,  n = (2, 1);  m = 0.5 * e + 0.5 * s,  s = (1 + 2, 9)
    n_ema = np.array([0.5 * 1 + 0.5 * 2, 0.5 * 1 + 0.5 * 1])  # (1.5, 1.0)
    m_ema = np.array([0.5 * 0 + 0.5 * 3, 0.5 * 10 + 0.5 * 9])  # (1.5, 9.5)
    total = n_ema.sum()
    smoothed = (n_ema + eps) / (total + 2 * eps) * total
    expected = m_ema / smoothed  # about (1.0, 9.5)
    assert vq.cluster_size.flatten().tolist() == [1.5, 1.0]
    assert vq.embed_sum.flatten().tolist() == [1.5, 9.5]
    np.testing.assert_allclose(vq.embed.flatten().numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(expected, [1.0, 9.5], atol=1e-4)
    # the output is read from the updated codebook
    assert torch.equal(out.quantized.flatten(), vq.embed.flatten()[[0, 0, 1]])


def test_vq_commitment_loss_and_its_gradient_on_hand_case() -> None:
    vq = VectorQuantizer(1, 1, codebook_size=2, dim=1, commitment_cost=0.05).eval()
    _set_codebook(vq, torch.tensor([[[0.0], [10.0]]]))
    z = torch.tensor([[1.0], [2.0], [9.0]], requires_grad=True)
    out = vq(z)  # q = (0, 0, 10): mse = (1 + 4 + 1) / 3 = 2
    assert out.commitment_loss.item() == pytest.approx(0.05 * 2.0)
    (grad,) = torch.autograd.grad(out.commitment_loss, z)  # 2 beta (z - q) / n, not into q
    np.testing.assert_allclose(grad.flatten().numpy(), [0.1 / 3, 0.2 / 3, -0.1 / 3], rtol=1e-6)


def test_perplexity_uniform_use_is_codebook_size_and_single_code_is_one() -> None:
    assert code_perplexity(torch.tensor([[0, 1, 2, 3], [2, 2, 2, 2]]), 4).tolist() == [4.0, 1.0]
    vq = VectorQuantizer(2, 1, codebook_size=4, dim=2).eval()
    codes = torch.tensor([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    _set_codebook(vq, torch.stack([codes, codes]))
    z = torch.cat([codes, codes[[1, 1, 1, 1]]], dim=1)  # codebook 0: all four; codebook 1: one
    np.testing.assert_allclose(vq(z).perplexity.numpy(), [4.0, 1.0], rtol=1e-6)


@pytest.mark.parametrize("training", [False, True])
def test_vq_straight_through_gradient_is_identity(training: bool) -> None:
    vq = _spread_vq().train(training)
    z = torch.randn(16, 128, requires_grad=True)
    out = vq(z)
    upstream = torch.randn(16, 128)
    (grad,) = torch.autograd.grad(out.quantized, z, upstream)
    assert torch.equal(grad, upstream)
    assert not vq.embed.requires_grad and len(list(vq.parameters())) == 0


def test_vq_eval_mode_does_not_change_state() -> None:
    vq = _spread_vq(restart_dead_codes=True).eval()
    vq.usage_ema.zero_()  # everything "dead": still nothing may change in eval mode
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(32, 128))
    for name, value in vq.state_dict().items():
        assert torch.equal(value, before[name]), name
    vq.train()(torch.randn(32, 128))
    assert not torch.equal(vq.embed, before["embed"])  # whereas training mode does


def test_vq_usage_ema_and_num_used_codes() -> None:
    vq = VectorQuantizer(1, 2, codebook_size=4, dim=1, usage_decay=0.9).train()
    _set_codebook(vq, torch.tensor([[[0.0], [10.0], [20.0], [30.0]]]))
    vq(torch.tensor([[0.1, 0.2], [-0.1, 9.0]]))  # shares: code 0: 3/4, code 1: 1/4
    expected = 0.9 * 0.25 + 0.1 * np.array([0.75, 0.25, 0.0, 0.0])
    np.testing.assert_allclose(vq.usage().numpy()[0], expected, rtol=1e-6)
    assert vq.num_used_codes(threshold=0.26).tolist() == [1]  # usage (0.3, 0.25, 0.225, 0.225)
    assert vq.num_used_codes(threshold=0.24).tolist() == [2]
    assert vq.num_used_codes(threshold=0.2).tolist() == [4]


@pytest.mark.parametrize("enabled", [True, False])
def test_vq_dead_code_restart(enabled: bool) -> None:
    vq = VectorQuantizer(
        1, 1, codebook_size=4, dim=2, restart_dead_codes=enabled, dead_code_threshold=0.5
    ).train()
    far = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0], [100.0, 100.0]])
    _set_codebook(vq, far.unsqueeze(0))
    vq.usage_ema[0, 0] = 0.0  # usage stays below 0.5, but chosen in this batch: alive
    vq.usage_ema[0, 3] = 0.0  # low usage and never chosen: dead
    z = torch.randn(8, 2) * 0.3
    out = vq(z)
    assert (out.indices == 0).any() and not (out.indices == 3).any()
    code3 = vq.embed[0, 3]
    assert not (z == vq.embed[0, 0]).all(-1).any()  # code 0 got its EMA step, no restart
    if enabled:
        assert (z == code3).all(-1).any()  # exactly one of the batch's latents
        assert vq.cluster_size[0, 3].item() == 1.0 and vq.usage_ema[0, 3].item() == 0.25
        assert torch.equal(vq.embed_sum[0, 3], code3)
    else:
        np.testing.assert_allclose(code3.numpy(), [100.0, 100.0], rtol=1e-3)
        assert vq.usage_ema[0, 3].item() == 0.0


@pytest.mark.parametrize("enabled", [True, False])
def test_vq_restarts_revive_a_codebook_collapsed_at_initialization(enabled: bool) -> None:
    # What a fresh IDM does on maze: its latents differ little from input to input and sit far
    # from the small initial codes (uniform in +-5/K), so every latent picks the same code from
    # the first update on and the other codes are never chosen again.
    torch.manual_seed(0)
    vq = VectorQuantizer(1, 1, codebook_size=64, dim=16, decay=0.95,
                         restart_dead_codes=enabled).train()  # fmt: skip
    offset = torch.randn(16)
    perplexity = []
    for _ in range(400):  # the usage EMA of an unused code falls below 1e-3 after ~275 updates
        perplexity.append(float(vq(offset + 0.01 * torch.randn(64, 16)).perplexity[0]))
    assert perplexity[200] == 1.0
    if enabled:
        assert perplexity[-1] > 16.0, perplexity[-1]
    else:
        assert max(perplexity) == 1.0


def test_vq_bf16_autocast_gives_fp32_indices_for_well_separated_inputs() -> None:
    vq = _spread_vq().eval()
    target = torch.randint(0, 64, (32, 2, 4))
    z = vq.lookup(target) + 0.01 * torch.randn(32, 128)
    assert torch.equal(vq(z).indices, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z.bfloat16())
    assert torch.equal(out.indices, target)
    assert out.quantized.dtype == torch.bfloat16 and out.commitment_loss.dtype == torch.float32
    assert torch.equal(out.quantized, vq.lookup(out.indices, dtype=torch.bfloat16))


def test_vq_distances_stay_fp32_under_autocast() -> None:
    # Random latents have near ties; bf16 distances flip some argmins (about 18 of 4096 here).
    vq = _spread_vq().eval()
    z = torch.randn(512, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = vq(z)
    assert torch.equal(out.indices, vq(z).indices)
    assert out.quantized.dtype == torch.float32


def test_vq_rejects_wrong_shapes() -> None:
    vq = VectorQuantizer()
    with pytest.raises(ValueError, match=r"\(B, 128\)"):
        vq(torch.randn(4, 127))
    with pytest.raises(ValueError, match=r"\(B, 2, 4\)"):
        vq.lookup(torch.zeros(4, 8, dtype=torch.long))


SMALL = dict(num_codebooks=2, num_latents=2, codebook_size=8, dim=4, decay=0.9)  # D = 16


def _rank_batch(step: int, rank: int) -> torch.Tensor:
    return torch.randn(16, 16, generator=torch.Generator().manual_seed(100 * step + rank))


def _make_pair() -> tuple[VectorQuantizer, VectorQuantizer]:
    """A plain VQ and one restarting dead codes, with codes 0-1 parked far away and dead."""
    torch.manual_seed(0)
    plain = VectorQuantizer(**SMALL).train()
    restart = VectorQuantizer(**SMALL, restart_dead_codes=True).train()
    _set_codebook(restart, torch.randn_like(restart.embed))
    restart.embed[:, :2] = 1e3
    restart.embed_sum[:, :2] = 1e3
    restart.usage_ema[:, :2] = 0.0
    return plain, restart


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        plain, restart = _make_pair()
        torch.manual_seed(1 + rank)  # different restart picks per rank unless broadcast
        for step in range(3):
            z = _rank_batch(step, rank)
            plain(z)
            restart(z)
        state = {"plain": plain.state_dict(), "restart": restart.state_dict()}
        torch.save(state, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_vq_ddp_keeps_codebooks_identical_and_equal_to_one_process(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    for module in ("plain", "restart"):
        for name, value in r0[module].items():
            assert torch.equal(value, r1[module][name]), (module, name)
    assert (r0["restart"]["embed"][:, :2].abs() < 100).all()  # the parked codes were restarted

    plain, _ = _make_pair()  # one process on both ranks' data
    for step in range(3):
        plain(torch.cat([_rank_batch(step, 0), _rank_batch(step, 1)]))
    assert torch.equal(plain.cluster_size, r0["plain"]["cluster_size"])
    assert torch.equal(plain.usage_ema, r0["plain"]["usage_ema"])
    for name in ("embed", "embed_sum"):
        torch.testing.assert_close(getattr(plain, name), r0["plain"][name], rtol=1e-6, atol=1e-6)
    assert not torch.equal(plain.embed, _make_pair()[0].embed)  # the updates did move codes
