"""FSQ (``lapo.models.quantizers.fsq``) against hand computations and invariants."""

from __future__ import annotations

import pytest
import torch

from lapo.models.quantizers import FSQ


@pytest.mark.parametrize("input_dim", [128, 32])  # with and without projection (8 groups x 4)
def test_fsq_lookup_round_trip_bitwise(input_dim: int) -> None:
    torch.manual_seed(0)
    fsq = FSQ(input_dim=input_dim)
    z = torch.randn(16, input_dim) * 2
    out = fsq(z)
    assert out.indices.shape == (16, 1, 8) and out.indices.dtype == torch.int64
    assert ((out.indices >= 0) & (out.indices < 1000)).all()
    assert torch.equal(fsq.lookup(out.indices), out.quantized)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = fsq(z.bfloat16())
    assert out16.quantized.dtype == torch.bfloat16
    assert torch.equal(fsq.lookup(out16.indices, dtype=torch.bfloat16), out16.quantized)


def test_fsq_hand_values_and_mixed_radix_indices() -> None:
    fsq = FSQ(input_dim=4, levels=(8, 5, 5, 5), groups=1)  # no projection
    out = fsq(torch.tensor([[0.0] * 4, [20.0] * 4, [-20.0] * 4]))
    # digits (4, 2, 2, 2), (7, 4, 4, 4), (0, 0, 0, 0) with basis (1, 8, 40, 200)
    assert out.indices.flatten().tolist() == [500, 999, 0]
    expected = [[0.0] * 4, [0.75, 1.0, 1.0, 1.0], [-1.0] * 4]
    assert out.quantized.tolist() == expected
    assert out.commitment_loss.item() == 0.0
    assert out.perplexity.item() == pytest.approx(3.0)


def test_fsq_reaches_exactly_every_level() -> None:
    fsq = FSQ(input_dim=4, levels=(8, 5, 4, 3), groups=1)
    z = torch.linspace(-6, 6, 2001).unsqueeze(1).repeat(1, 4)
    q = fsq(z).quantized
    for c, levels in enumerate((8, 5, 4, 3)):
        assert q[:, c].unique().numel() == levels


def test_fsq_round_is_straight_through() -> None:
    fsq = FSQ(input_dim=4, levels=(8, 5, 5, 5), groups=1)
    z = torch.randn(32, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(fsq(z).quantized.sum(), z)
    expected = (1 - torch.tanh(z.detach() + fsq._shift) ** 2) * fsq._half_l / fsq._half_width
    torch.testing.assert_close(grad, expected)
