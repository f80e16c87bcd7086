"""What every latent action quantizer returns, and the code statistics they share.

The quantizers themselves live one per file beside this one: ``ema_vq`` (the paper's EMA vector
quantizer), ``fsq`` (finite scalar quantization, not in the paper) and ``none`` (the paper's
ablation without quantization). Every quantizer returns a ``VQOutput``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class VQOutput(NamedTuple):
    """What a quantizer returns.

    Attributes:
        quantized: ``(B, D)``, input dtype; forward value is the code vector, gradient w.r.t. the
            input is that of the straight-through estimator.
        indices: ``(B, num_codebooks, num_latents) int64`` code per latent; None without codebook.
        commitment_loss: ``() float32``, already scaled by the commitment cost (0 when unused).
        perplexity: ``(num_codebooks,) float32``, exp(entropy) of this batch's code histogram per
            codebook (between 1 and codebook_size); None without codebook.
    """

    quantized: torch.Tensor
    indices: torch.Tensor | None
    commitment_loss: torch.Tensor
    perplexity: torch.Tensor | None


def code_perplexity(indices: torch.Tensor, codebook_size: int) -> torch.Tensor:
    """``(G, N) int64`` codes in ``[0, codebook_size)`` -> ``(G,) float32`` exp(entropy) per row.

    A row using one code gives 1; a row using all codes equally often gives ``codebook_size``.
    """
    g = indices.shape[0]
    offsets = torch.arange(g, device=indices.device).unsqueeze(1) * codebook_size
    counts = torch.bincount((indices + offsets).flatten(), minlength=g * codebook_size)
    probs = counts.view(g, codebook_size).float()
    probs = probs / probs.sum(-1, keepdim=True).clamp_min(1.0)
    return torch.exp(-torch.special.xlogy(probs, probs).sum(-1))  # 0 log 0 = 0
