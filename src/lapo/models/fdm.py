"""Latent forward dynamics model (FDM) of LAPO (Schmidt & Jiang, ICLR 2024, section 4.1).

The FDM predicts the next frame ``o_{t+1}`` from the past frames ``o_{t-k} .. o_t`` and the
quantized latent action ``z_t`` of the IDM (``lapo.models.idm``). Paper: "U-Net on a ResNet
backbone, about 8M parameters"; authors' release: base width 24, the latent injected at the input
(tiled over the image) and at the bottleneck, output ``tanh(x) / 2`` so that predictions lie in
the observation range [-0.5, 0.5].

Architecture (our own; the release's block layout is not specified in the paper): a stem conv on
the stacked frames plus the tiled latent, an encoder of pre-activation residual blocks over four
resolutions (64 -> 32 -> 16 -> 8 for Procgen) with widths ``base x mults``, the latent added as a
per-channel bias at the bottleneck, and a decoder that concatenates the encoder's output of the
same resolution (the U-Net skip) in its first block per level.

Design choices, measured on this project's 2-core CPU (``benchmarks/lam_throughput.py``):
- No normalization by default (``norm_groups=0``), as in the IMPALA-CNN of the IDM: the default
  conv initialization keeps the residual branches small at the start (the tests check that a
  few Adam steps reduce the loss), and GroupNorm (``norm_groups=8``) made a paper-size bf16 +
  channels_last training step about 20% slower (two more memory-bound passes per block). If
  training proves unstable, ``norm_groups=8`` is the switch.
- Downsampling by a 3x3 stride-2 conv, upsampling by a 2x2 stride-2 transposed conv; both keep
  channels_last under bf16 autocast, as do the concatenations and the broadcast additions (every
  activation stays channels_last once the module is converted). Replacing them by a 2x2
  stride-2 conv and a 1x1 conv + nearest upsampling saved nothing measurable.
- Most parameters sit at the 8x8 level, where a weight costs 64 multiply-adds per sample (4096
  at 64x64): the paper size has 7.96M parameters at 5.0 GFLOP (forward + backward) per sample.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _norm(groups: int, channels: int) -> nn.Module:
    return nn.GroupNorm(min(groups, channels), channels) if groups > 0 else nn.Identity()


class ResBlock(nn.Module):
    """Pre-activation residual block: ``skip(x) + conv(relu(norm(conv(relu(norm(x))))))``.

    ``skip`` is a 1x1 conv when the widths differ (decoder blocks that take the U-Net skip),
    otherwise the identity. Shapes: ``(B, c_in, H, W)`` -> ``(B, c_out, H, W)``.
    """

    def __init__(self, c_in: int, c_out: int, norm_groups: int = 0) -> None:
        super().__init__()
        self.norm0 = _norm(norm_groups, c_in)
        self.conv0 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm1 = _norm(norm_groups, c_out)
        self.conv1 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, c_in, H, W) -> (B, c_out, H, W)``; see the class docstring."""
        h = self.conv0(F.relu(self.norm0(x)))
        return self.skip(x) + self.conv1(F.relu(self.norm1(h)))


class ForwardDynamicsModel(nn.Module):
    """U-Net: past frames ``o_{t-k} .. o_t`` and latent action ``z_t`` -> predicted ``o_{t+1}``.

    Args:
        context: k, the number of frames before o_t (paper: 1); the input holds k + 1 frames.
        latent_dim: size of the latent action (paper: 128).
        channels: C, channels per frame (3 for RGB).
        base: width of the first level (release: 24).
        mults: width multiplier per resolution; each level after the first halves H and W, so
            H and W must be divisible by ``2 ** (len(mults) - 1)``.
        blocks: residual blocks per level in the encoder; the decoder has as many per level.
        mid_blocks: residual blocks at the bottleneck, after the latent is added.
        tile_channels: channels the latent is projected to and tiled over H x W at the input.
        norm_groups: GroupNorm groups in the residual blocks; 0 for no normalization.
        residual: predict the change instead of the frame: the output is
            ``clamp(o_t + tanh(x), -0.5, 0.5)`` rather than ``tanh(x) / 2``. At initialization
            the prediction is then o_t, so the loss starts at the part of the frame that moves
            and the latent action is needed from the first updates (our option, not the paper's;
            the ``cpu`` preset uses it, see ``lapo.config.LAM_PRESETS``).

    Shapes: ``frames (B, k+1, C, H, W) float`` in [-0.5, 0.5], ``latent (B, latent_dim) float``
    -> ``(B, C, H, W) float32`` in [-0.5, 0.5] (float32 also under bf16 autocast; the last conv
    runs in bf16 there, the tanh in float32).
    """

    def __init__(
        self,
        context: int = 1,
        latent_dim: int = 128,
        channels: int = 3,
        base: int = 24,
        mults: tuple[int, ...] = (1, 2, 4, 8),
        blocks: tuple[int, ...] = (1, 1, 1, 3),
        mid_blocks: int = 4,
        tile_channels: int = 4,
        norm_groups: int = 0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if context < 0 or len(blocks) != len(mults) or min(blocks) < 1:
            raise ValueError(
                f"FDM needs context >= 0 and one entry >= 1 in blocks per entry of mults; got "
                f"context={context}, mults={mults}, blocks={blocks}"
            )
        self.context, self.channels, self.latent_dim = context, channels, latent_dim
        self.residual = residual
        self.stride = 2 ** (len(mults) - 1)  # H and W must be multiples of it
        widths = [base * m for m in mults]
        self.tile = nn.Linear(latent_dim, tile_channels)
        self.stem = nn.Conv2d((context + 1) * channels + tile_channels, widths[0], 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            self.down.append(nn.Sequential(*(ResBlock(w, w, norm_groups) for _ in range(n))))
            if i + 1 < len(widths):
                self.downsample.append(nn.Conv2d(w, widths[i + 1], 3, stride=2, padding=1))
        self.bottleneck = nn.Linear(latent_dim, widths[-1])
        mid = [ResBlock(widths[-1], widths[-1], norm_groups) for _ in range(mid_blocks)]
        self.mid = nn.Sequential(*mid)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
            merge = [ResBlock(2 * w, w, norm_groups)]  # takes the U-Net skip
            self.up.append(
                nn.Sequential(*merge, *(ResBlock(w, w, norm_groups) for _ in range(n - 1)))
            )
            if i > 0:
                self.upsample.append(nn.ConvTranspose2d(w, widths[i - 1], 2, stride=2))
        self.out_norm = _norm(norm_groups, widths[0])
        self.head = nn.Conv2d(widths[0], channels, 3, padding=1)

    def forward(self, frames: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """``(B, k+1, C, H, W)`` frames and ``(B, latent_dim)`` latent -> ``(B, C, H, W)``."""
        b, n, c, h, w = frames.shape
        if (
            n != self.context + 1
            or c != self.channels
            or h % self.stride
            or w % self.stride
            or latent.shape != (b, self.latent_dim)
        ):
            raise ValueError(
                f"FDM expects frames (B, k+1={self.context + 1}, C={self.channels}, H, W) holding "
                f"o_(t-k) .. o_t, H and W multiples of {self.stride}, and latent "
                f"(B, {self.latent_dim}); got {tuple(frames.shape)} and {tuple(latent.shape)}"
            )
        tiled = self.tile(latent)[:, :, None, None].expand(-1, -1, h, w)  # (B, tile, H, W)
        x = torch.cat([frames.reshape(b, n * c, h, w), tiled.to(frames.dtype)], dim=1)
        x = self.stem(x)  # (B, base, H, W)
        skips = []
        for i, level in enumerate(self.down):
            x = level(x)  # (B, widths[i], H / 2^i, W / 2^i)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        x = self.mid(x + self.bottleneck(latent)[:, :, None, None])  # (B, widths[-1], H/8, W/8)
        for i in reversed(range(len(self.up))):
            x = self.up[i](torch.cat([x, skips[i]], dim=1))  # (B, widths[i], H / 2^i, W / 2^i)
            if i > 0:
                x = self.upsample[i - 1](x)
        x = self.head(F.relu(self.out_norm(x)))  # (B, C, H, W)
        if self.residual:
            return (frames[:, -1].float() + torch.tanh(x.float())).clamp(-0.5, 0.5)
        return torch.tanh(x.float()) / 2
