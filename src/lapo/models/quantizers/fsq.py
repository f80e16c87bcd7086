"""Finite scalar quantization: Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made
Simple" (arXiv 2309.15505).

Each channel is squashed into a bounded interval and rounded to one of ``L_i`` integer levels
(section 3.1 and the ``bound`` / ``round_ste`` code of the appendix); the product of the levels is
an implicit codebook without parameters, EMA or auxiliary loss. Not part of the LAPO paper: an
alternative to ``VectorQuantizer`` for the latent action.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from lapo.models.quantizers.base import VQOutput, code_perplexity


class FSQ(nn.Module):
    """Finite scalar quantizer over ``groups`` vectors of ``len(levels)`` channels each.

    ``z (B, input_dim)`` is projected linearly to ``(B, groups, C)``, ``C = len(levels)`` (no
    projection when ``input_dim == groups * C``). Per channel with ``L`` levels::

        bounded = tanh(h + shift) * half_l - offset,  half_l = (L - 1)(1 - eps) / 2,
        offset = 0.5 for even L else 0,               shift = atanh(offset / half_l)
        code = round(bounded) / (L // 2)              (straight-through round)

    so ``round(bounded)`` takes exactly L integer values and ``h = 0`` maps to 0 (the paper's
    code writes ``tan`` for the shift, a close approximation of ``atanh`` for small arguments).
    Codes are projected back to ``input_dim``.

    Integer code per group: mixed-radix number of the digits ``round(bounded) + L // 2`` in
    ``[0, L)``, first channel least significant, in ``[0, prod(levels))``. To match
    ``VectorQuantizer`` the groups are the latents of a single implicit codebook:
    ``num_codebooks = 1``, ``num_latents = groups``, ``codebook_size = prod(levels)``.

    Dtypes: computed in float32 with autocast disabled (projections included);
    ``quantized`` is cast to z's dtype; ``lookup(indices, dtype=z.dtype)`` equals it bitwise.
    The straight-through round is ``round(b) + (b - b.detach())``: value exactly ``round(b)``.

    Args:
        input_dim: D, the width of z (128 in the paper's latent action).
        levels: levels per channel, each >= 2; the paper recommends e.g. (8, 5, 5, 5) for 2^10.
        groups: number of quantized vectors per input.
        eps: margin that keeps ``bounded`` inside ``L`` rounding bins.

    Shapes: ``z (B, input_dim) float -> VQOutput(quantized (B, input_dim), indices
    (B, 1, groups) int64, commitment_loss () = 0, perplexity (1,))``.
    """

    def __init__(
        self,
        input_dim: int = 128,
        levels: Sequence[int] = (8, 5, 5, 5),
        groups: int = 8,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        if len(levels) == 0 or min(levels) < 2:
            raise ValueError(f"levels must be a non-empty sequence of integers >= 2, got {levels}")
        if input_dim < 1 or groups < 1:
            raise ValueError("input_dim and groups must be >= 1")
        self.input_dim, self.levels, self.groups = input_dim, tuple(int(x) for x in levels), groups
        self.code_dim = len(self.levels)
        self.num_codebooks, self.num_latents = 1, groups
        self.codebook_size = math.prod(self.levels)
        width = groups * self.code_dim
        needs_projection = width != input_dim
        self.project_in = nn.Linear(input_dim, width) if needs_projection else nn.Identity()
        self.project_out = nn.Linear(width, input_dim) if needs_projection else nn.Identity()

        lv = torch.tensor(self.levels, dtype=torch.float64)
        half_l = (lv - 1) * (1 - eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        basis = torch.tensor([math.prod(self.levels[:i]) for i in range(self.code_dim)])
        # Derived from the arguments, hence not saved in checkpoints: (C,) each.
        self.register_buffer("_half_l", half_l.float(), persistent=False)
        self.register_buffer("_offset", offset.float(), persistent=False)
        self.register_buffer("_shift", torch.atanh(offset / half_l).float(), persistent=False)
        self.register_buffer("_half_width", (lv // 2).float(), persistent=False)
        self.register_buffer("_levels_int", lv.long(), persistent=False)
        self.register_buffer("_basis", basis, persistent=False)  # int64 mixed-radix weights

    def extra_repr(self) -> str:
        return f"input_dim={self.input_dim}, levels={self.levels}, groups={self.groups}"

    def forward(self, z: torch.Tensor) -> VQOutput:
        """Quantize ``z (B, input_dim)``; see the class docstring."""
        if z.dim() != 2 or z.shape[1] != self.input_dim:
            raise ValueError(f"expected z of shape (B, {self.input_dim}), got {tuple(z.shape)}")
        b = z.shape[0]
        with torch.autocast(z.device.type, enabled=False):
            h = self.project_in(z.float()).view(b, self.groups, self.code_dim)  # (B, G, C)
            bounded = torch.tanh(h + self._shift) * self._half_l - self._offset
            rounded = torch.round(bounded)  # integers in [-(L // 2), (L - 1) // 2]
            digits = (rounded + self._half_width).long()  # (B, G, C) in [0, L)
            indices = (digits * self._basis).sum(-1)  # (B, G)
            codes = (rounded + (bounded - bounded.detach())) / self._half_width  # in [-1, 1]
            quantized = self.project_out(codes.reshape(b, -1))  # (B, input_dim)
            perplexity = code_perplexity(indices.reshape(1, -1), self.codebook_size)  # (1,)
        loss = torch.zeros((), dtype=torch.float32, device=z.device)
        return VQOutput(quantized.to(z.dtype), indices.unsqueeze(1), loss, perplexity)

    def lookup(self, indices: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Codes ``(B, 1, groups) int64 -> (B, input_dim)``, float32 unless ``dtype`` is given.

        Equals ``forward(z).quantized`` bitwise for the same indices and ``dtype=z.dtype``.
        """
        if indices.dim() != 3 or indices.shape[1:] != (1, self.groups):
            raise ValueError(
                f"expected indices of shape (B, 1, {self.groups}), got {tuple(indices.shape)}"
            )
        b = indices.shape[0]
        with torch.autocast(indices.device.type, enabled=False):
            digits = (indices.view(b, self.groups, 1) // self._basis) % self._levels_int
            codes = (digits.float() - self._half_width) / self._half_width  # (B, G, C)
            q = self.project_out(codes.reshape(b, -1))
        return q if dtype is None else q.to(dtype)
