"""The one check of frames handed to a model's public entry point: shape and dtype against the
resolution the model was built for, failing with a sentence instead of a matmul shape error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def check_frames(
    frames: np.ndarray | torch.Tensor,
    frame_shape: Sequence[int] | None,
    what: str,
    leading: str = "N",
) -> None:
    """Raise unless ``frames`` is ``(N, *frame_shape) uint8``.

    Args:
        frames: the frames given, numpy or torch.
        frame_shape: ``(H, W, C)`` the model expects; None: only the rank and dtype are checked.
        what: the entry point, for the message (e.g. ``"LatentActionModel.label"``).
        leading: name of the leading dimension in the message (``N`` or ``T``).

    Raises:
        ValueError: another rank, dtype or frame shape; the message says what was expected
            and what came (and that the data must be imported at the model's resolution).
    """
    if not isinstance(frames, np.ndarray | torch.Tensor):
        raise ValueError(
            f"{what} expects a ({leading}, H, W, C) uint8 numpy array or tensor of frames, got "
            f"{type(frames).__name__} (stack a list of frames with np.stack)"
        )
    shape = tuple(int(s) for s in frames.shape)
    dtype = str(frames.dtype).replace("torch.", "")
    want = "H, W, C" if frame_shape is None else ", ".join(str(s) for s in frame_shape)
    if (
        dtype != "uint8"
        or len(shape) != 4
        or (frame_shape is not None and shape[1:] != tuple(frame_shape))
    ):
        raise ValueError(
            f"{what} expects ({leading}, {want}) uint8 frames (height, width, channels of the "
            f"frames the model was trained on), got {dtype} {shape}"
            + (
                "; import or resize the frames at the model's resolution"
                if len(shape) == 4 and frame_shape is not None and shape[1:] != tuple(frame_shape)
                else ""
            )
        )


def model_frame_shape(net: nn.Module) -> tuple[int, ...] | None:
    """``(H, W, C)`` of the frames ``net`` takes: the ``frame_shape`` of ``net`` or of its first
    submodule that has one (encoders built by ``make_encoder``); None when none says."""
    for module in net.modules():
        shape = getattr(module, "frame_shape", None)
        if shape is not None:
            return tuple(shape)
    return None
