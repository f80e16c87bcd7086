"""Latent inverse dynamics model (IDM) of LAPO (Schmidt & Jiang, ICLR 2024, section 4.1).

The IDM sees the past frames, the current frame and the *next* frame, ``o_{t-k} .. o_{t+1}``, and
outputs a continuous latent action ``z_t``; the vector quantizer (``lapo.models.quantizers``) then
bottlenecks it before the forward dynamics model (``lapo.models.fdm``) uses it to predict
``o_{t+1}``. Paper table: IMPALA-CNN with channel multiplier 4 (channels 64, 128, 128), 256
features, k = 1, latent size 128 (2 codebooks x 4 latents x 16 dimensions).
"""

from __future__ import annotations

import torch
from torch import nn

from lapo.models.encoders import ImpalaEncoder


class InverseDynamicsModel(nn.Module):
    """Frames ``o_{t-k} .. o_{t+1}`` stacked on channels -> IMPALA-CNN -> linear -> latent action.

    Args:
        context: k, the number of frames before o_t (paper: 1); the input holds k + 2 frames.
        multiplier: IMPALA channel multiplier (paper: 4).
        latent_dim: size of the continuous latent action (paper: 128).
        channels: C, channels per frame (3 for RGB).
        image_size: H = W of the frames (64 for Procgen).
        features: width of the IMPALA fully connected layer (paper: 256).
        frame_differences: also feed the k + 1 differences of consecutive frames
            ``o_{i+1} - o_i`` as channels (our option, not the paper's). A first conv could
            compute them, but from a random initialization it mixes the large static content of
            the frames with the small moving part; given explicitly, a sprite's displacement is
            what the input shows. On miner (random policy) a supervised action classifier with
            the ``cpu`` IDM stayed at chance (0.06) for 2,700 updates on plain frames and
            reached 0.26 in 2,000 updates with the differences.

    Shapes: ``frames (B, k+2, C, H, W) float`` in [-0.5, 0.5] -> ``(B, latent_dim) float32``.
    The output is float32 also under bf16 autocast, so that the quantizer's distances and the
    losses are computed in full precision (the cast is B x latent_dim elements).
    """

    def __init__(
        self,
        context: int = 1,
        multiplier: int = 4,
        latent_dim: int = 128,
        channels: int = 3,
        image_size: int = 64,
        features: int = 256,
        frame_differences: bool = False,
    ) -> None:
        super().__init__()
        if context < 0:
            raise ValueError(f"context k must be >= 0, got {context}")
        self.context, self.channels, self.latent_dim = context, channels, latent_dim
        self.frame_differences = frame_differences
        in_channels = (2 * context + 3 if frame_differences else context + 2) * channels
        self.encoder = ImpalaEncoder(in_channels, multiplier, features, image_size=image_size)
        self.head = nn.Linear(features, latent_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, k+2, C, H, W)`` frames ``o_{t-k} .. o_{t+1}`` -> ``(B, latent_dim)`` float32."""
        b, n, c, h, w = frames.shape
        if n != self.context + 2 or c != self.channels:
            raise ValueError(
                f"IDM expects frames of shape (B, k+2={self.context + 2}, C={self.channels}, H, W)"
                f" holding o_(t-k) .. o_(t+1); got {tuple(frames.shape)}"
            )
        if self.frame_differences:  # (B, 2k+3, C, H, W): frames, then o_(i+1) - o_i
            frames = torch.cat([frames, frames[:, 1:] - frames[:, :-1]], dim=1)
        x = frames.reshape(b, -1, h, w)  # (B, (k+2)C or (2k+3)C, H, W), oldest frame first
        return self.head(self.encoder(x)).float()  # (B, latent_dim)
