"""The latent action model of LAPO stage 1 (paper section 4.1): IDM -> quantizer -> FDM.

The IDM sees o_{t-k} .. o_{t+1} and outputs a continuous latent action z_t; the quantizer is the
information bottleneck; the FDM predicts o_{t+1} from o_{t-k} .. o_t and the quantized z_t. Both
networks train jointly on the next-frame MSE; true actions are never used.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from lapo.device import autocast
from lapo.models.frames import check_frames
from lapo.models.lam_sizes import LAM_SIZES, make_lam_nets
from lapo.models.quantizers import VQOutput, make_quantizer


def frames_to_float(frames: torch.Tensor) -> torch.Tensor:
    """``(..., H, W, C) uint8`` -> ``(..., C, H, W) float32`` in [-0.5, 0.5] (as the release)."""
    return frames.movedim(-1, -3).float().div_(255.0).sub_(0.5)


#: IDM windows per forward pass when labelling on an accelerator (CUDA, MPS): large enough to
#: keep a GPU busy, small enough for the paper-size IDM's activations (no gradients) to fit.
ACCELERATOR_LABEL_BATCH = 2048


def check_lam_frames(config, frame_shape: tuple[int, ...], where: str = "frames") -> None:
    """Refuse frames the latent action model of ``config`` cannot take, before any work.

    The IDM and FDM are built for square frames (H = W) and the FDM's U-Net halves H and W once
    per level, so H must be a multiple of ``2 ** (levels - 1)`` (8 for every size preset).

    Args:
        config: ``lapo.config.LAMConfig``.
        frame_shape: ``(H, W, C)`` of the data.
        where: what holds the frames, for the message (e.g. the dataset path).

    Raises:
        ValueError: saying the shape expected and the shape found.
    """
    stride = 2 ** (len(LAM_SIZES[config.size]["fdm"]["mults"]) - 1)
    shape = tuple(int(n) for n in frame_shape)
    h, w, c = shape if len(shape) == 3 else (0, -1, 0)
    if h != w or h < stride or h % stride or c < 1:
        raise ValueError(
            f"{where}: the latent action model (size {config.size!r}) needs square frames "
            f"(H, W, C) with H = W a multiple of {stride}, e.g. (64, 64, 3); got {shape}. "
            "Import them at such a size (lapo data import --resolution 64 64)"
        )


class LAMOutput(NamedTuple):
    """What ``LatentActionModel.forward`` returns.

    Attributes:
        prediction: ``(B, C, H, W) float``, predicted o_{t+1} in [-0.5, 0.5].
        latent: ``(B, D) float``, the IDM's continuous (pre-quantization) latent action z_t.
        vq: the quantizer's output (quantized latent, code indices, commitment loss, perplexity).
    """

    prediction: torch.Tensor
    latent: torch.Tensor
    vq: VQOutput


class LatentActionModel(nn.Module):
    """IDM + quantizer + FDM, built from a ``LAMConfig``.

    Args:
        config: ``lapo.config.LAMConfig``.
        channels: C of a frame; image_size: H = W.
    """

    def __init__(self, config, channels: int = 3, image_size: int = 64) -> None:
        super().__init__()
        self.context = config.context
        self.latent_dim = config.latent_dim
        self.frame_shape = (image_size, image_size, channels)  # (H, W, C) of the frames it sees
        self.idm, self.fdm = make_lam_nets(
            config.size,
            context=config.context,
            latent_dim=config.latent_dim,
            channels=channels,
            image_size=image_size,
            frame_differences=config.idm_frame_differences,
            idm_multiplier=config.idm_multiplier,
            residual=config.fdm_residual,
        )
        kwargs = {}
        if config.quantizer == "vq":
            kwargs = dict(
                num_codebooks=config.num_codebooks,
                num_latents=config.num_latents,
                codebook_size=config.codebook_size,
                dim=config.code_dim,
                commitment_cost=config.commitment_cost,
                decay=config.ema_decay,
                restart_dead_codes=config.restart_dead_codes,
            )
        elif config.quantizer == "fsq":
            kwargs = dict(input_dim=config.latent_dim)
        self.quantizer = make_quantizer(config.quantizer, **kwargs)

    def forward(self, frames: torch.Tensor) -> LAMOutput:
        """``frames (B, k+2, C, H, W) float`` in [-0.5, 0.5], o_{t-k} .. o_{t+1}."""
        latent = self.idm(frames)  # (B, D)
        vq = self.quantizer(latent)
        prediction = self.fdm(frames[:, :-1], vq.quantized)  # (B, C, H, W)
        return LAMOutput(prediction, latent, vq)

    @torch.no_grad()
    def label(
        self, frames: np.ndarray | torch.Tensor, batch_size: int | None = None, bf16: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Latent actions of every transition of one frame sequence, computed on the model's
        device (the frames are copied there once; windows are cut on the device).

        Args:
            frames: ``(T, H, W, C) uint8``, consecutive frames of one episode (T >= k + 2), on
                any device.
            batch_size: windows per IDM forward pass; None: 256 on the CPU,
                ``ACCELERATOR_LABEL_BATCH`` on an accelerator.
            bf16: autocast to bf16 where the model's device computes it natively
                (``lapo.device.autocast``).

        Returns:
            ``latents (T - k - 1, D) float32`` (continuous, pre-quantization) for t = k .. T-2,
            and ``codes (T - k - 1, G, L) int64`` (None without a discrete quantizer), both as
            NumPy arrays on the host.

        Raises:
            ValueError: fewer than k + 2 frames, or not ``(T, *self.frame_shape) uint8`` (the
                message says which shape was expected).
        """
        frames = torch.as_tensor(frames)
        k = self.context
        check_frames(frames, self.frame_shape, "LatentActionModel.label", leading="T")
        if len(frames) < k + 2:
            raise ValueError(
                f"label expects (T >= {k + 2}, H, W, C) uint8 frames, "
                f"got {frames.dtype} {tuple(frames.shape)}"
            )
        device = next(self.parameters()).device
        if batch_size is None:
            batch_size = 256 if device.type == "cpu" else ACCELERATOR_LABEL_BATCH
        frames = frames.to(device, non_blocking=True)  # T frames once, not (k + 2) x T
        windows = frames.unfold(0, k + 2, 1).movedim(-1, 1)  # (T-k-1, k+2, H, W, C)
        was_training = self.training
        self.eval()
        latents, codes = [], []
        for start in range(0, len(windows), batch_size):
            chunk = frames_to_float(windows[start : start + batch_size])  # on the device
            with autocast(device, bf16):
                latent = self.idm(chunk)
                vq = self.quantizer(latent)
            latents.append(latent.float())
            if vq.indices is not None:
                codes.append(vq.indices)
        self.train(was_training)
        latents = torch.cat(latents).cpu().numpy()
        return latents, (torch.cat(codes).cpu().numpy() if codes else None)
