"""What the FDM predicts under chosen latent actions: the data behind the report's FDM grid.

The paper's Figure 1 shows that a latent action changes the predicted next frame the way the true
action would. ``fdm_predictions`` runs a trained ``LatentActionModel``'s FDM on a few windows under
each of K fixed code tuples (e.g. the K most used ones, ``most_used_codes``) and under each
window's own IDM latent; ``lapo.eval.plots.plot_fdm_predictions`` draws the result.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from lapo.models.lam import LatentActionModel, frames_to_float


class FDMSamples(NamedTuple):
    """Output of ``fdm_predictions``.

    Attributes:
        predictions: ``(M, K, H, W, C) uint8``, predicted o_{t+1} of window m under code k.
        own: ``(M, H, W, C) uint8``, predicted o_{t+1} under the window's own quantized IDM latent.
        own_codes: ``(M, G, L) int64`` code indices of the windows' own latents (None without a
            codebook).
    """

    predictions: np.ndarray
    own: np.ndarray
    own_codes: np.ndarray | None


def most_used_codes(indices: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most frequent code tuples among ``indices (N, G, L) int``, most frequent first.

    Returns: ``codes (K, G, L) int64`` and their counts ``(K,) int64``, K = min(k, distinct
        tuples); ties are broken by the smaller tuple (deterministic).
    Raises: ValueError for a wrong shape, no rows or k < 1.
    """
    indices = np.asarray(indices)
    if indices.ndim != 3 or len(indices) == 0 or k < 1:
        raise ValueError(f"expected indices (N > 0, G, L) and k >= 1, got {indices.shape}, k={k}")
    flat = indices.reshape(len(indices), -1).astype(np.int64)
    rows, counts = np.unique(flat, axis=0, return_counts=True)  # rows sorted lexicographically
    order = np.argsort(-counts, kind="stable")[:k]
    return rows[order].reshape(-1, *indices.shape[1:]), counts[order].astype(np.int64)


def format_code(code: np.ndarray) -> str:
    """``(G, L) int`` code tuple -> ``"12 3 40 7 | 5 1 0 9"`` (codebooks separated by ``|``)."""
    return " | ".join(" ".join(str(int(i)) for i in row) for row in np.asarray(code))


def _to_uint8(frames: torch.Tensor) -> np.ndarray:
    """``(..., C, H, W) float`` in [-0.5, 0.5] -> ``(..., H, W, C) uint8``."""
    scaled = ((frames.float() + 0.5) * 255.0).round().clamp(0, 255).to(torch.uint8)
    return scaled.movedim(-3, -1).cpu().numpy()


@torch.no_grad()
def fdm_predictions(
    model: LatentActionModel,
    windows: np.ndarray,
    codes: np.ndarray | None,
    batch_size: int = 64,
) -> FDMSamples:
    """FDM next-frame predictions of each window under each code tuple and under its own latent.

    Runs in eval mode in float32 on the model's device (the mode is restored afterwards).

    Args:
        model: a ``LatentActionModel``.
        windows: ``(M, k+2, H, W, C) uint8``, frames o_{t-k} .. o_{t+1}; o_{t+1} is only read by
            the IDM (for ``own``), never by the FDM.
        codes: ``(K, G, L) int`` code tuples of the model's quantizer (``quantizer.lookup``);
            None or K = 0 gives ``predictions`` with K = 0 (use this for the no-VQ ablation).
        batch_size: windows per forward pass.

    Returns: ``FDMSamples``.
    Raises: ValueError for windows of the wrong shape or dtype, or codes the quantizer cannot look
        up (wrong shape, or a quantizer without codebook).
    """
    k = model.context
    windows_t = torch.as_tensor(np.asarray(windows))
    if windows_t.dtype != torch.uint8 or windows_t.ndim != 5 or windows_t.shape[1] != k + 2:
        raise ValueError(
            f"windows must be (M, k+2={k + 2}, H, W, C) uint8, "
            f"got {tuple(windows_t.shape)} {windows_t.dtype}"
        )
    m = len(windows_t)
    device = next(model.parameters()).device
    lookup = getattr(model.quantizer, "lookup", None)
    num_codes = 0 if codes is None else len(codes)
    if num_codes and lookup is None:
        raise ValueError(f"{type(model.quantizer).__name__} has no codebook: pass codes=None")
    code_vectors = None
    if num_codes:
        code_vectors = lookup(torch.as_tensor(np.asarray(codes), dtype=torch.int64, device=device))
    was_training = model.training
    model.eval()
    try:
        preds, own, own_codes = [], [], []
        for start in range(0, m, batch_size):
            frames = frames_to_float(windows_t[start : start + batch_size].to(device))
            b, past = len(frames), frames[:, :-1]  # (b, k+2, C, H, W), (b, k+1, C, H, W)
            vq = model.quantizer(model.idm(frames))
            own.append(_to_uint8(model.fdm(past, vq.quantized)))
            if vq.indices is not None:
                own_codes.append(vq.indices.cpu().numpy())
            if code_vectors is not None:  # every window x every code: (b * K, ...)
                tiled = past.repeat_interleave(num_codes, dim=0)
                latents = code_vectors.repeat(b, 1)  # (b * K, D), code index fastest
                out = model.fdm(tiled, latents.to(tiled.dtype))  # (b * K, C, H, W)
                preds.append(_to_uint8(out).reshape(b, num_codes, *out.shape[2:], out.shape[1]))
    finally:
        model.train(was_training)
    own_arr = np.concatenate(own)
    if preds:
        predictions = np.concatenate(preds)
    else:
        predictions = np.zeros((m, 0, *own_arr.shape[1:]), dtype=np.uint8)
    return FDMSamples(predictions, own_arr, np.concatenate(own_codes) if own_codes else None)
