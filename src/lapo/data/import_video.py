"""Import a folder of video files as an action-free lapo dataset (one episode per file).

LAPO learns latent actions from observation sequences alone (paper section 4), so plain video is
a valid stage-1 dataset: every decoded frame is kept, in decoding order, resized to a fixed
resolution with FFmpeg's scaler (through PyAV) and converted to RGB. No actions, rewards or
dones are stored, and episode returns are unknown (None).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm.auto import tqdm

from lapo.data.format import DatasetError
from lapo.data.writer import DEFAULT_SHARD_FRAMES, DatasetWriter, check_output_dir

#: Accepted file extensions, lower case without the dot (file names are matched case-insensitively).
VIDEO_EXTENSIONS: tuple[str, ...] = (
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ogv", "flv", "wmv", "ts", "gif",
)  # fmt: skip

#: FFmpeg scaling algorithm: area averaging, which does not alias when shrinking frames.
INTERPOLATION = "AREA"


def _check_resolution(resolution: Sequence[int]) -> tuple[int, int]:
    try:
        height, width = resolution
    except (TypeError, ValueError):
        raise ValueError(f"resolution must be (height, width), got {resolution!r}") from None
    for size in (height, width):
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(
                f"resolution must be two positive integers (height, width), got {resolution!r}"
            )
    return int(height), int(width)


def find_videos(
    folder: str | os.PathLike, extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> list[Path]:
    """Video files directly inside ``folder`` (not in subfolders), sorted by name.

    A file counts as video when its name ends with one of ``extensions`` (case-insensitive, with
    or without the leading dot). Hidden files (name starting with ".", such as macOS's "._x.mp4"
    resource forks) are skipped.

    Returns:
        Sorted list of ``Path`` objects.

    Raises:
        DatasetError: ``folder`` is not a directory, or it holds no video file (the message lists
            the accepted extensions).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: no such folder (expected a folder of video files)")
    endings = tuple("." + e.lower().lstrip(".") for e in extensions)
    videos = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(endings)
    )
    if not videos:
        raise DatasetError(
            f"{folder}: no video files found (looked for {', '.join(endings)}, "
            "case-insensitive, not in subfolders)"
        )
    return videos


def decode_video(
    path: str | os.PathLike, resolution: tuple[int, int], progress: bool = False
) -> np.ndarray:
    """Decode every frame of the first video stream of ``path``, resized and converted to RGB.

    The whole video is held in memory at the target resolution (``T * H * W * 3`` bytes; an hour
    at 30 frames per second and 64x64 is about 1.3 GB). Frames are stretched to ``resolution``
    (the aspect ratio is not preserved).

    Args:
        path: video file.
        resolution: ``(H, W)`` in pixels.
        progress: show a tqdm bar of decoded frames.

    Returns:
        ``(T, H, W, 3) uint8`` RGB frames, T >= 1.

    Raises:
        DatasetError: PyAV cannot open or decode the file, it has no video stream, or it has no
            frames; the message names the file.
    """
    height, width = resolution
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DatasetError(f"{path}: the file has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            total = stream.frames or None  # 0 when the container does not say
            with tqdm(
                total=total, desc=Path(path).name, unit="frame", leave=False, disable=not progress
            ) as bar:
                for frame in container.decode(stream):
                    rgb = frame.to_ndarray(
                        width=width, height=height, format="rgb24", interpolation=INTERPOLATION
                    )
                    frames.append(rgb)  # (H, W, 3) uint8
                    bar.update(1)
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetError(f"{path}: PyAV cannot decode this file as video ({exc})") from exc
    if not frames:
        raise DatasetError(f"{path}: the video has no frames (an empty or truncated file?)")
    return np.stack(frames)


def import_video_folder(
    folder: str | os.PathLike,
    out: str | os.PathLike,
    *,
    resolution: Sequence[int] = (64, 64),
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    overwrite: bool = False,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    progress: bool = True,
) -> dict[str, Any]:
    """Import every video file in ``folder`` as one episode each, with no actions.

    Files are taken from ``folder`` itself (not from subfolders), sorted by name; see
    ``find_videos`` for what counts as a video. Each is decoded in full with PyAV (every frame,
    no resampling of the frame rate), resized to ``resolution`` with FFmpeg's area scaler and
    stored as RGB. One video at a time is held in memory (see ``decode_video``).

    Args:
        folder: folder of video files.
        out: dataset directory to create.
        resolution: ``(H, W)`` of the stored frames, in pixels.
        extensions: accepted file name endings (case-insensitive).
        overwrite: replace an existing dataset at ``out`` (only once the import has succeeded).
        shard_frames: frames per shard file.
        progress: show tqdm progress bars (videos, and frames decoded per video).

    Returns:
        The manifest (see ``lapo.data.format``); its source is ``{"kind": "video", "folder":
        absolute folder, "files": [names relative to folder], "resolution": [H, W]}``.

    Raises:
        DatasetError: ``folder`` is missing or has no video file (raised before any work), or a
            file cannot be decoded or has no frames (the message names it; nothing is written
            at ``out`` and an existing dataset there is left intact).
        ValueError: ``resolution`` is not two positive integers.
        FileExistsError: ``out`` exists and ``overwrite`` is False, or ``overwrite`` is True but
            ``out`` is not a lapo dataset or run directory (raised before any work).
        ValueError: ``out`` is, contains or lies inside a source (raised before any work).
        lapo.safety.InUseError: another lapo process is writing ``out``.
    """
    height, width = _check_resolution(resolution)
    videos = find_videos(folder, extensions)
    check_output_dir(out, overwrite, inputs=[folder, *videos])
    folder = Path(folder).resolve()
    source = {
        "kind": "video",
        "folder": str(folder),
        "files": [p.name for p in videos],
        "resolution": [height, width],
    }
    with DatasetWriter(
        out,
        frame_shape=(height, width, 3),
        source=source,
        shard_frames=shard_frames,
        overwrite=overwrite,
    ) as writer:
        for path in tqdm(videos, desc="videos", unit="video", disable=not progress):
            writer.add_episode(decode_video(path, (height, width), progress=progress))
        return writer.close()
