"""``lapo data import``'s configuration for video files."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

from lapo.config.checks import check_types

#: ``VideoImportConfig.resize`` modes.
RESIZE_MODES = ("crop", "pad", "stretch")


@dataclass(frozen=True)
class VideoImportConfig:
    """``lapo data import`` of video files: how frames are sampled, resized and cut.

    Attributes:
        resolution: ``(H, W)`` of the stored frames, in pixels.
        resize: ``crop`` (default): scale so the frame covers ``resolution`` and cut the centre,
            keeping the aspect ratio and using every stored pixel; ``pad``: scale so the whole
            frame fits and fill the rest black (nothing is lost, but a 16:9 clip at 64x64 uses
            only 56% of the pixels, a 2.35:1 clip 43%); ``stretch``: scale each side on its
            own (distorts the geometry unless the aspect ratios match).
        fps: keep frames at most this many per second of video time (by presentation time;
            frames are dropped, never duplicated); None: every frame. Excludes
            ``frame_stride`` > 1.
        frame_stride: keep every n-th decoded frame (1: every frame).
        clip_frames: cut each video into episodes of this many kept frames (the remainder
            becomes one more episode when it has at least half as many, else it is dropped);
            None: one episode per video.
    """

    resolution: tuple[int, int] = (64, 64)
    resize: str = "crop"
    fps: float | None = None
    frame_stride: int = 1
    clip_frames: int | None = None

    def __post_init__(self) -> None:
        check_types(self)
        try:
            height, width = self.resolution
        except (TypeError, ValueError):
            raise ValueError(
                f"resolution must be (height, width), got {self.resolution!r}"
            ) from None
        for size in (height, width):
            if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
                raise ValueError(
                    f"resolution must be two positive integers (height, width), "
                    f"got {self.resolution!r}"
                )
        object.__setattr__(self, "resolution", (int(height), int(width)))
        if self.resize not in RESIZE_MODES:
            raise ValueError(
                f"resize must be one of {', '.join(RESIZE_MODES)}, got {self.resize!r}"
            )
        if self.fps is not None and not 0 < self.fps < float("inf"):
            raise ValueError(f"fps must be a finite number > 0 (None: every frame), got {self.fps}")
        if isinstance(self.frame_stride, bool) or self.frame_stride < 1:
            raise ValueError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if self.fps is not None and self.frame_stride != 1:
            raise ValueError("give fps or frame_stride (--fps or --frame-stride), not both")
        if self.clip_frames is not None and self.clip_frames < 2:
            raise ValueError(
                f"clip_frames (--clip-frames) must be >= 2 (None: whole videos), got "
                f"{self.clip_frames}"
            )
