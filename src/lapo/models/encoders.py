"""Image encoders for 64x64 observations: IMPALA-CNN and a Nature-DQN-style CNN.

Each encoder is a convolutional trunk ``conv`` followed by one fully connected layer ``fc`` with
ReLU, so that later stages can freeze the trunk and train ``fc`` and the heads (LAPO online
fine-tuning, paper section 4.3) by composing modules rather than patching them.
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """relu -> conv3x3 -> relu -> conv3x3, plus the input (Espeholt et al. 2018)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W) -> (B, C, H, W)``: ``x + conv1(relu(conv0(relu(x))))``."""
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaStack(nn.Module):
    """conv3x3 -> maxpool 3x3 stride 2 -> 2 residual blocks; halves H and W."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.res0 = ResidualBlock(out_channels)
        self.res1 = ResidualBlock(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, H, W) -> (B, out_channels, ceil(H / 2), ceil(W / 2))``."""
        return self.res1(self.res0(self.pool(self.conv(x))))


class ImpalaEncoder(nn.Module):
    """IMPALA-CNN (Espeholt et al. 2018) as used for Procgen (Cobbe et al. 2020) and by LAPO.

    Channels ``(16, 32, 32) x multiplier`` (the paper uses multiplier 4: 64, 128, 128), then
    ReLU, flatten and a ``features``-wide fully connected layer with ReLU.

    Args:
        in_channels: C of the input, e.g. 3 for one RGB frame, 3 * (k + 2) for stacked frames.
        multiplier: channel multiplier.
        features: output width (256 in the paper).
        image_size: input H = W (64 for Procgen).

    Shapes: ``(B, C, H, W) float`` -> ``(B, features) float``.
    """

    def __init__(
        self, in_channels: int = 3, multiplier: int = 1, features: int = 256, image_size: int = 64
    ) -> None:
        super().__init__()
        channels = [16 * multiplier, 32 * multiplier, 32 * multiplier]
        stacks, c = [], in_channels
        for out in channels:
            stacks.append(ImpalaStack(c, out))
            c = out
        size = image_size
        for _ in channels:
            size = (size + 1) // 2
        self.conv = nn.Sequential(*stacks, nn.ReLU(), nn.Flatten())
        self.fc = nn.Sequential(nn.Linear(c * size * size, features), nn.ReLU())
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, image_size, image_size) float -> (B, features) float`` (after the ReLU
        of ``fc``)."""
        return self.fc(self.conv(x))


class NatureEncoder(nn.Module):
    """Nature-DQN CNN (Mnih et al. 2015): conv 8x8/4 (32), 4x4/2 (64), 3x3/1 (64), fc.

    About 6x cheaper than IMPALA x1 per frame; the fast choice for PPO on 2 CPU cores.

    Shapes: ``(B, C, 64, 64) float`` -> ``(B, features) float``.
    """

    def __init__(
        self, in_channels: int = 3, multiplier: int = 1, features: int = 512, image_size: int = 64
    ) -> None:
        super().__init__()
        c1, c2 = 32 * multiplier, 64 * multiplier
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, c1, 8, stride=4), nn.ReLU(),
            nn.Conv2d(c1, c2, 4, stride=2), nn.ReLU(),
            nn.Conv2d(c2, c2, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )  # fmt: skip
        size = ((image_size - 8) // 4 + 1 - 4) // 2 + 1 - 2
        self.fc = nn.Sequential(nn.Linear(c2 * size * size, features), nn.ReLU())
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, image_size, image_size) float -> (B, features) float`` (after the ReLU
        of ``fc``)."""
        return self.fc(self.conv(x))


ENCODERS: dict[str, type[nn.Module]] = {"impala": ImpalaEncoder, "nature": NatureEncoder}


def make_encoder(
    name: str,
    *,
    in_channels: int = 3,
    multiplier: int = 1,
    features: int = 256,
    image_size: int = 64,
) -> nn.Module:
    """Build encoder ``name`` (``impala`` or ``nature``) for square ``image_size`` inputs.

    The encoder's ``frame_shape`` is ``(image_size, image_size, in_channels)``, the ``(H, W, C)``
    it takes (``lapo.models.frames.model_frame_shape``).

    Raises:
        ValueError: unknown name (the message lists the valid ones); an image too small for the
            Nature-CNN's strides (it needs at least 36 pixels).
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; expected one of: {', '.join(ENCODERS)}")
    if name == "nature" and image_size < 36:
        raise ValueError(f"the nature encoder needs frames of >= 36 pixels, got {image_size}")
    encoder = ENCODERS[name](
        in_channels=in_channels, multiplier=multiplier, features=features, image_size=image_size
    )
    encoder.frame_shape = (image_size, image_size, in_channels)  # (H, W, C) of its input
    return encoder
