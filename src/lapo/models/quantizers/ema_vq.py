"""EMA vector quantization: van den Oord et al. 2017, "Neural Discrete Representation Learning"
(VQ-VAE), with the codebook learned by exponential moving averages (appendix A.1; also Razavi et
al. 2019, VQ-VAE-2).

Nearest-neighbour assignment (eq. 2), straight-through gradient and commitment loss (eq. 3).
LAPO (Schmidt & Jiang 2024, Section 4.1 and the Stage 1 table) quantizes the IDM's latent action
with it: 2 codebooks x 4 latents x 16 dims, 64 codes each, commitment 0.05, decay 0.999.
Distances, codebook and EMA statistics are float32 even under autocast; ``quantized`` has the
dtype of the input.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from lapo.models.quantizers.base import VQOutput, code_perplexity


def _world_size() -> int:
    """Number of ranks when ``torch.distributed`` is initialized, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


def _all_reduce_sum(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Sum each tensor over all ranks (one collective); the identity without distributed."""
    if _world_size() == 1:
        return list(tensors)
    flat = torch.cat([t.flatten() for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    parts = flat.split([t.numel() for t in tensors])
    return [part.view_as(t) for part, t in zip(parts, tensors, strict=True)]


class VectorQuantizer(nn.Module):
    """Multi-codebook vector quantizer with EMA codebook updates (VQ-VAE, appendix A.1).

    ``z`` of shape ``(B, D)``, ``D = num_codebooks * num_latents * dim``, is viewed as
    ``(B, num_codebooks, num_latents, dim)``; every latent of codebook g is replaced by its nearest
    entry (Euclidean) of codebook g, a ``(codebook_size, dim)`` table. (The LAPO release views the
    same 128 numbers as ``(codebooks, dim, latents)``; after a learned linear layer the two layouts
    are equivalent.)

    Training mode, per codebook, with batch counts ``n_k`` and sums ``s_k`` of the latents
    assigned to code k (summed over ranks when ``torch.distributed`` is initialized)::

        N_k <- decay N_k + (1 - decay) n_k           m_k <- decay m_k + (1 - decay) s_k
        e_k <- m_k / N~_k,   N~_k = (N_k + eps) / (sum_j N_j + K eps) * sum_j N_j  (Laplace)

    Assignments use the codebook before the update; ``quantized`` and the commitment loss use the
    codebook after it, so that ``lookup(indices)`` reproduces ``quantized`` exactly in both modes
    (the release reads the old codebook; the two differ by a step of size ``1 - decay``).
    Initial state: codes uniform in ``+-5/K`` (as the release), ``N_k = 1``, ``m_k = e_k``, so
    that the first update is an ordinary EMA step. (The release starts from ``N_k = 0`` without
    bias correction, so its first update divides old codes by about ``(1 - decay) n_k``, unused
    ones by about ``eps``; it also stores the smoothed counts. The smoothing itself is not in the
    VQ-VAE paper but in its authors' Sonnet implementation, which the release follows.)

    Dtypes: distances, argmin, codebook and statistics are float32 with autocast disabled
    locally. ``quantized`` has z's dtype: ``lookup(indices, dtype=z.dtype)`` bitwise. Its value is
    the code vector itself, written ``q + (z - z.detach())`` rather than ``z + (q - z).detach()``:
    the same gradient (identity), but no rounding of ``z + (q - z)``, also in bfloat16.

    Args:
        num_codebooks, num_latents, codebook_size, dim: see above (paper: 2, 4, 64, 16).
        commitment_cost: beta of VQ-VAE eq. 3; loss = beta * mean((z - sg[q])^2).
        decay: EMA decay of counts and sums (gamma of appendix A.1).
        eps: Laplace smoothing of the counts.
        restart_dead_codes: reset dead codes to random latents of the current batch (off in the
            ``paper`` setting). A code is dead when its usage EMA is below
            ``dead_code_threshold`` and no latent chose it in this batch.
        dead_code_threshold: in units of ``usage()``: fraction of a codebook's assignments.
        usage_decay: decay of the usage EMA (faster than ``decay``, so that dead codes show up
            within a few hundred steps).

    Shapes: ``z (B, D) float -> VQOutput``; ``lookup: (B, num_codebooks, num_latents) int64 ->
    (B, D)``.
    """

    def __init__(
        self,
        num_codebooks: int = 2,
        num_latents: int = 4,
        codebook_size: int = 64,
        dim: int = 16,
        commitment_cost: float = 0.05,
        decay: float = 0.999,
        eps: float = 1e-5,
        restart_dead_codes: bool = False,
        dead_code_threshold: float = 1e-3,
        usage_decay: float = 0.99,
    ) -> None:
        super().__init__()
        if min(num_codebooks, num_latents, codebook_size, dim) < 1:
            raise ValueError("num_codebooks, num_latents, codebook_size and dim must be >= 1")
        if not (0.0 <= decay < 1.0 and 0.0 <= usage_decay < 1.0):
            raise ValueError(f"decays must lie in [0, 1), got {decay} and {usage_decay}")
        self.num_codebooks, self.num_latents = num_codebooks, num_latents
        self.codebook_size, self.dim = codebook_size, dim
        self.commitment_cost, self.decay, self.eps = commitment_cost, decay, eps
        self.restart_dead_codes = restart_dead_codes
        self.dead_code_threshold, self.usage_decay = dead_code_threshold, usage_decay
        g, k = num_codebooks, codebook_size
        embed = torch.empty(g, k, dim).uniform_(-5.0 / k, 5.0 / k)
        self.register_buffer("embed", embed)  # (G, K, dim) codebooks e_k
        self.register_buffer("cluster_size", torch.ones(g, k))  # (G, K) EMA counts N_k
        self.register_buffer("embed_sum", embed.clone())  # (G, K, dim) EMA sums m_k
        self.register_buffer("usage_ema", torch.full((g, k), 1.0 / k))  # (G, K), rows sum to 1

    @property
    def input_dim(self) -> int:
        """D = num_codebooks * num_latents * dim."""
        return self.num_codebooks * self.num_latents * self.dim

    def extra_repr(self) -> str:
        return (
            f"num_codebooks={self.num_codebooks}, num_latents={self.num_latents}, "
            f"codebook_size={self.codebook_size}, dim={self.dim}, decay={self.decay}, "
            f"commitment_cost={self.commitment_cost}, restart_dead_codes={self.restart_dead_codes}"
        )

    def forward(self, z: torch.Tensor) -> VQOutput:
        """Quantize ``z (B, D)``; in training mode also update the codebooks (no gradient)."""
        if z.dim() != 2 or z.shape[1] != self.input_dim:
            raise ValueError(f"expected z of shape (B, {self.input_dim}), got {tuple(z.shape)}")
        b, g, n_lat, d = z.shape[0], self.num_codebooks, self.num_latents, self.dim
        with torch.autocast(z.device.type, enabled=False):
            x = z.detach().to(self.embed.dtype).view(b, g, n_lat, d)
            x = x.transpose(0, 1).reshape(g, b * n_lat, d)  # (G, N, dim), N = B * num_latents
            codes = self._nearest(x)  # (G, N)
            if self.training:
                self._ema_update(x, codes)
            indices = codes.view(g, b, n_lat).transpose(0, 1).contiguous()  # (B, G, L)
            q = self.lookup(indices)  # (B, D) float32, no grad
            loss = self.commitment_cost * F.mse_loss(z.to(q.dtype), q)
            perplexity = code_perplexity(codes, self.codebook_size)  # (G,)
        quantized = q.to(z.dtype) + (z - z.detach())  # value q, d quantized / d z = identity
        return VQOutput(quantized, indices, loss, perplexity)

    def lookup(self, indices: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Code vectors of ``indices (B, num_codebooks, num_latents) int64`` -> ``(B, D)``.

        Float32 (the codebook's dtype) unless ``dtype`` is given; equals ``forward(z).quantized``
        bitwise for ``dtype=z.dtype`` when called right after that forward.
        """
        if indices.dim() != 3 or indices.shape[1:] != (self.num_codebooks, self.num_latents):
            raise ValueError(
                f"expected indices of shape (B, {self.num_codebooks}, {self.num_latents}), "
                f"got {tuple(indices.shape)}"
            )
        rows = torch.arange(self.num_codebooks, device=indices.device).view(1, -1, 1)
        q = self.embed[rows, indices].reshape(indices.shape[0], -1)  # (B, G, L, dim) -> (B, D)
        return q if dtype is None else q.to(dtype)

    def usage(self) -> torch.Tensor:
        """``(num_codebooks, codebook_size)`` EMA of each code's share of its codebook's choices."""
        return self.usage_ema.clone()

    def num_used_codes(self, threshold: float | None = None) -> torch.Tensor:
        """``(num_codebooks,) int64``: codes whose usage EMA is at least ``threshold``.

        ``threshold`` defaults to ``dead_code_threshold``.
        """
        threshold = self.dead_code_threshold if threshold is None else threshold
        return (self.usage_ema >= threshold).sum(-1)

    def _nearest(self, x: torch.Tensor) -> torch.Tensor:
        """``(G, N, dim) float32 -> (G, N) int64``: argmin_k ||x - e_k||^2 per codebook."""
        e = self.embed  # (G, K, dim)
        # ||x||^2 is the same for every k and left out: ||e_k||^2 - 2 x . e_k, shape (G, N, K)
        dist2 = torch.baddbmm((e * e).sum(-1).unsqueeze(1), x, e.transpose(1, 2), alpha=-2.0)
        return dist2.argmin(-1)

    @torch.no_grad()
    def _ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """EMA step of counts, sums, codebook and usage from latents ``x (G, N, dim)``.

        Collective when distributed: every rank must run it (train-mode forward) equally often.
        """
        one_hot = F.one_hot(codes, self.codebook_size).to(x.dtype)  # (G, N, K)
        counts = one_hot.sum(1)  # (G, K) n_k
        sums = torch.bmm(one_hot.transpose(1, 2), x)  # (G, K, dim) s_k
        counts, sums = _all_reduce_sum(counts, sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1.0 - self.decay)
        total = self.cluster_size.sum(-1, keepdim=True)  # (G, 1)
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.embed.copy_(self.embed_sum / smoothed.unsqueeze(-1))
        share = counts / counts.sum(-1, keepdim=True).clamp_min(1.0)  # (G, K)
        self.usage_ema.mul_(self.usage_decay).add_(share, alpha=1.0 - self.usage_decay)
        if self.restart_dead_codes:
            self._restart(x, counts)

    def _restart(self, x: torch.Tensor, counts: torch.Tensor) -> None:
        """Move dead codes onto random latents of the batch ``x (G, N, dim)``.

        ``counts (G, K)`` are the (all-reduced) batch counts. When distributed, rank 0's picks are
        broadcast, so codebooks stay identical. A restarted code gets ``N_k = 1``, ``m_k = e_k``
        and the uniform usage ``1 / K``.
        """
        dead = (self.usage_ema < self.dead_code_threshold) & (counts == 0)  # (G, K)
        if not bool(dead.any()):  # the same on every rank: usage and counts are global
            return
        g, n, d = x.shape
        pick = torch.randint(n, (g, self.codebook_size), device=x.device)  # (G, K)
        candidates = torch.gather(x, 1, pick.unsqueeze(-1).expand(-1, -1, d)).contiguous()
        if _world_size() > 1:
            dist.broadcast(candidates, src=0)
        mask = dead.unsqueeze(-1)  # (G, K, 1)
        self.embed.copy_(torch.where(mask, candidates, self.embed))
        self.embed_sum.copy_(torch.where(mask, candidates, self.embed_sum))
        self.cluster_size.masked_fill_(dead, 1.0)
        self.usage_ema.masked_fill_(dead, 1.0 / self.codebook_size)
