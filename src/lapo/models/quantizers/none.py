"""No quantization: the LAPO paper's ablation without vector quantization (Section 6.3), where
the IDM's continuous latent goes straight to the FDM."""

from __future__ import annotations

import torch
from torch import nn

from lapo.models.quantizers.base import VQOutput


class NoQuantizer(nn.Module):
    """The paper's ablation without vector quantization: the IDM's raw latent goes to the FDM.

    No codebook, no parameters, no buffers: ``quantized`` is the input tensor itself (same object,
    so gradients pass 1:1), ``indices`` and ``perplexity`` are None, the commitment loss is a
    float32 zero.

    Args:
        input_dim: if given, the width D that inputs must have.

    Shapes: ``z (B, D) -> VQOutput(z, None, (), None)``.
    """

    def __init__(self, input_dim: int | None = None) -> None:
        super().__init__()
        self.input_dim = input_dim

    def forward(self, z: torch.Tensor) -> VQOutput:
        """``z (B, D) -> VQOutput(z, None, zero, None)``, ``zero`` a float32 scalar on z's device.

        Raises:
            ValueError: ``input_dim`` is set and ``z`` is not ``(B, input_dim)``.
        """
        if self.input_dim is not None and (z.dim() != 2 or z.shape[1] != self.input_dim):
            raise ValueError(f"expected z of shape (B, {self.input_dim}), got {tuple(z.shape)}")
        zero = torch.zeros((), dtype=torch.float32, device=z.device)
        return VQOutput(quantized=z, indices=None, commitment_loss=zero, perplexity=None)
