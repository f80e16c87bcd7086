"""The identity bottleneck (``lapo.models.quantizers.none``)."""

from __future__ import annotations

import torch

from lapo.models.quantizers import NoQuantizer


def test_no_quantizer_returns_input_and_passes_gradient() -> None:
    nq = NoQuantizer(input_dim=128)
    assert list(nq.parameters()) == [] and list(nq.buffers()) == []
    z = torch.randn(8, 128, requires_grad=True)
    out = nq(z)
    assert out.quantized is z and out.indices is None and out.perplexity is None
    assert out.commitment_loss.item() == 0.0 and out.commitment_loss.dtype == torch.float32
    upstream = torch.randn(8, 128)
    (grad,) = torch.autograd.grad(out.quantized, z, upstream)
    assert torch.equal(grad, upstream)
