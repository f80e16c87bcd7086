"""Import video files as an action-free lapo dataset (one episode per file, or per clip).

LAPO learns latent actions from observation sequences alone (paper section 4), so plain video is
a valid stage-1 dataset: decoded frames are kept in presentation order (all of them, or sampled
by ``fps`` / ``frame_stride``), resized to a fixed resolution with FFmpeg's scaler (through
PyAV; ``crop``, ``pad`` or ``stretch``, see ``VideoImportConfig``), converted to RGB and cut into
episodes of ``clip_frames``. No actions, rewards or dones are stored, and episode returns are
unknown (None).

A file that cannot be read does not stop the import: the others are imported, and then
``PartialImportError`` names every unreadable file with its reason (``lapo data import`` exits
1 after writing the dataset of the readable ones, so a script notices).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from tqdm.auto import tqdm

from lapo.config import VideoImportConfig
from lapo.data.format import DatasetError
from lapo.data.writer import DEFAULT_SHARD_FRAMES, DatasetWriter, check_output_dir

#: Accepted file extensions, lower case without the dot (file names are matched case-insensitively).
VIDEO_EXTENSIONS: tuple[str, ...] = (
    "mp4", "m4v", "mov", "mkv", "webm", "avi", "mpg", "mpeg", "ogv", "flv", "wmv", "ts", "gif",
)  # fmt: skip

#: FFmpeg scaling algorithm: area averaging, which does not alias when shrinking frames.
INTERPOLATION = "AREA"


class PartialImportError(DatasetError):
    """Some video files could not be read; the others were imported.

    Attributes:
        manifest: the written dataset's manifest (its source lists the failures under
            ``failed``).
        failures: ``[(path, reason), ...]`` of the unreadable files.
    """

    def __init__(self, message: str, manifest: dict, failures: list[tuple[str, str]]) -> None:
        super().__init__(message)
        self.manifest = manifest
        self.failures = failures


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


def video_sources(
    sources: Sequence[str | os.PathLike], extensions: Sequence[str] = VIDEO_EXTENSIONS
) -> list[Path]:
    """The video files of ``sources``: a file named is taken as it is (whatever its extension);
    a folder gives its video files (``find_videos``). Order: as given, each folder sorted.

    Raises:
        DatasetError: a source does not exist, a folder holds no video file, or a file is named
            twice.
    """
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_file():
            files.append(source)
        elif source.is_dir():
            files.extend(find_videos(source, extensions))
        else:
            raise DatasetError(f"{source}: no such file or folder (expected video files)")
    seen: set[Path] = set()
    for f in files:
        if f.resolve() in seen:
            raise DatasetError(f"{f}: named twice among the sources")
        seen.add(f.resolve())
    if not files:
        raise DatasetError("no video sources given")
    return files


@dataclass(frozen=True)
class Geometry:
    """How one decoded frame becomes a stored one.

    Attributes:
        scaled: ``(h, w)`` FFmpeg scales the frame to.
        crop: ``(top, left)`` of the stored window inside the scaled frame (``crop``), else 0s.
        pad: ``(top, left)`` of the scaled frame inside the stored one (``pad``), else 0s.
    """

    scaled: tuple[int, int]
    crop: tuple[int, int] = (0, 0)
    pad: tuple[int, int] = (0, 0)


def frame_geometry(source: tuple[int, int], resolution: tuple[int, int], mode: str) -> Geometry:
    """Scaled size and offsets that resize a ``source (h, w)`` frame to ``resolution (H, W)``.

    ``crop``: scale by ``max(H/h, W/w)`` (the frame covers the target; aspect ratio kept), cut
    the centre. ``pad``: scale by ``min(H/h, W/w)`` (the frame fits; aspect ratio kept), centre
    it on black. ``stretch``: scale to ``(H, W)``. Scaled sizes are rounded, at least 1 pixel.

    Raises:
        ValueError: an unknown mode.
    """
    (h, w), (height, width) = source, resolution
    if mode == "stretch":
        return Geometry((height, width))
    if mode not in ("crop", "pad"):
        raise ValueError(f"resize must be crop, pad or stretch, got {mode!r}")
    scale = (max if mode == "crop" else min)(height / h, width / w)
    sh, sw = max(1, round(h * scale)), max(1, round(w * scale))
    if mode == "crop":
        sh, sw = max(sh, height), max(sw, width)
        return Geometry((sh, sw), crop=((sh - height) // 2, (sw - width) // 2))
    sh, sw = min(sh, height), min(sw, width)
    return Geometry((sh, sw), pad=((height - sh) // 2, (width - sw) // 2))


def _resized(frame: av.VideoFrame, config: VideoImportConfig) -> np.ndarray:
    """One decoded frame as ``(H, W, 3) uint8`` RGB at ``config.resolution``."""
    height, width = config.resolution
    geometry = frame_geometry((frame.height, frame.width), config.resolution, config.resize)
    sh, sw = geometry.scaled
    rgb = frame.to_ndarray(width=sw, height=sh, format="rgb24", interpolation=INTERPOLATION)
    if config.resize == "crop":
        top, left = geometry.crop
        return np.ascontiguousarray(rgb[top : top + height, left : left + width])
    if config.resize == "pad":
        top, left = geometry.pad
        canvas = np.zeros((height, width, 3), np.uint8)
        canvas[top : top + sh, left : left + sw] = rgb
        return canvas
    return rgb


def resize_frames(frames: np.ndarray, config: VideoImportConfig) -> np.ndarray:
    """``(N, h, w, 3) uint8`` RGB frames at ``config.resolution`` by ``config.resize``, with the
    scaler video frames go through (``(N, H, W, 3) uint8``); frames already at the resolution
    are returned as they are (contiguous)."""
    height, width = config.resolution
    if len(frames) == 0:
        return np.zeros((0, height, width, 3), np.uint8)
    if frames.shape[1:3] == (height, width):
        return np.ascontiguousarray(frames)
    return np.stack(
        [_resized(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), "rgb24"), config)
         for f in frames]
    )  # fmt: skip


def _sampled(frames: Iterator[av.VideoFrame], config: VideoImportConfig, rate) -> Iterator:
    """The frames ``config.fps`` / ``config.frame_stride`` keep, in order.

    With ``fps``, frame i is kept when its presentation time (``frame.time``, else i / the
    stream's average rate) reaches the next slot ``t_0 + n / fps`` of the n frames kept so far.
    """
    if config.fps is None:
        for i, frame in enumerate(frames):
            if i % config.frame_stride == 0:
                yield frame
        return
    start, kept = None, 0
    for i, frame in enumerate(frames):
        t = frame.time if frame.time is not None else i / float(rate or 30)
        start = t if start is None else start
        if t - start >= kept / config.fps - 1e-6:
            kept += 1
            yield frame


def decode_video(
    path: str | os.PathLike,
    resolution: tuple[int, int] | VideoImportConfig = (64, 64),
    progress: bool = False,
) -> np.ndarray:
    """``decode_video_times(path, resolution, progress)[0]``: the frames only (see there)."""
    return decode_video_times(path, resolution, progress)[0]


def decode_video_times(
    path: str | os.PathLike,
    resolution: tuple[int, int] | VideoImportConfig = (64, 64),
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode the first video stream of ``path``: sampled, resized and converted to RGB.

    The kept frames are held in memory at the target resolution (``T * H * W * 3`` bytes; an
    hour at 30 frames per second and 64x64 is about 1.3 GB).

    Args:
        path: video file.
        resolution: ``(H, W)`` in pixels (every frame, stretched: the behaviour before
            ``VideoImportConfig``), or a ``VideoImportConfig``.
        progress: show a tqdm bar of decoded frames.

    Returns:
        ``(T, H, W, 3) uint8`` RGB frames, T >= 1, and ``(T,) float64`` their presentation
        times in seconds (``frame.time``; i / the stream's average rate when unknown).

    Raises:
        DatasetError: PyAV cannot open or decode the file, it has no video stream, or no frame
            is kept; the message names the file.
    """
    config = (
        resolution
        if isinstance(resolution, VideoImportConfig)
        else VideoImportConfig(resolution=tuple(resolution), resize="stretch")
    )
    frames: list[np.ndarray] = []
    times: list[float] = []
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
                decoded = container.decode(stream)
                rate = float(stream.average_rate or 30)
                for frame in _sampled(decoded, config, stream.average_rate):
                    frames.append(_resized(frame, config))  # (H, W, 3) uint8
                    times.append(frame.time if frame.time is not None else len(times) / rate)
                    bar.update(1)
    except (av.error.FFmpegError, OSError) as exc:
        raise DatasetError(f"{path}: PyAV cannot decode this file as video ({exc})") from exc
    if not frames:
        raise DatasetError(f"{path}: the video has no frames (an empty or truncated file?)")
    return np.stack(frames), np.asarray(times, np.float64)


def split_clips(frames: np.ndarray, clip_frames: int | None) -> list[np.ndarray]:
    """Cut ``(T, ...)`` frames into consecutive clips of ``clip_frames`` (None: one clip).

    The remainder is a last, shorter clip when it has at least ``clip_frames // 2`` frames,
    else it is dropped (with no whole clip, the frames are one clip).
    """
    if clip_frames is None or len(frames) <= clip_frames:
        return [frames]
    clips = [frames[i : i + clip_frames] for i in range(0, len(frames), clip_frames)]
    if len(clips[-1]) < clip_frames and len(clips[-1]) < clip_frames // 2:
        clips.pop()
    return clips


def import_videos(
    sources: Sequence[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    config: VideoImportConfig | None = None,
    *,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    overwrite: bool = False,
    shard_frames: int = DEFAULT_SHARD_FRAMES,
    progress: bool = True,
) -> dict[str, Any]:
    """Import video files (files and folders of them) as episodes with no actions.

    Each file is decoded in full with PyAV (``decode_video``), then cut into clips
    (``split_clips``); each clip is one episode. One video is held in memory at a time.

    Args:
        sources: video files and/or folders of them (``video_sources``).
        out: dataset directory to create.
        config: sampling, resizing and clipping (default ``VideoImportConfig()``: 64x64,
            ``crop``, every frame, one episode per file).
        extensions: file name endings that count as video inside folders (case-insensitive).
        overwrite: replace an existing dataset at ``out`` (only once the import has written).
        shard_frames: frames per shard file.
        progress: show tqdm progress bars (videos, and frames decoded per video).

    Returns:
        The manifest (see ``lapo.data.format``); its source is ``{"kind": "video", "files":
        [absolute paths imported], "episodes_per_file", "failed": [{"file", "error"}], and the
        config's fields}``.

    Raises:
        DatasetError: a source is missing or a folder has no video file (raised before any
            work); no file could be read (the message names each; nothing is written).
        PartialImportError: some files could not be read (named with their reasons); the
            dataset of the others is written at ``out`` first.
        ValueError: a bad ``config``; ``out`` is, contains or lies inside a source.
        FileExistsError: ``out`` exists and ``overwrite`` is False, or ``overwrite`` is True but
            ``out`` is not a lapo dataset or run directory (raised before any work).
        lapo.safety.InUseError: another lapo process is writing ``out``.
    """
    config = config or VideoImportConfig()
    if isinstance(sources, str | os.PathLike):
        sources = [sources]
    videos = video_sources(sources, extensions)
    check_output_dir(out, overwrite, inputs=[*sources, *videos])
    height, width = config.resolution
    failures: list[tuple[str, str]] = []
    imported: list[str] = []
    per_file: list[int] = []
    with DatasetWriter(
        out, frame_shape=(height, width, 3), source={"kind": "video"}, shard_frames=shard_frames,
        overwrite=overwrite,
    ) as writer:  # fmt: skip
        for path in tqdm(videos, desc="videos", unit="video", disable=not progress):
            try:
                frames = decode_video(path, config, progress=progress)
            except DatasetError as exc:
                failures.append((str(path), str(exc)))
                continue
            clips = split_clips(frames, config.clip_frames)
            for clip in clips:
                writer.add_episode(clip)
            imported.append(str(Path(path).resolve()))
            per_file.append(len(clips))
        listed = "; ".join(reason for _, reason in failures)
        if not imported:
            raise DatasetError(f"no video file could be read ({len(failures)} tried): {listed}")
        writer.source = {
            "kind": "video",
            "files": imported,
            "episodes_per_file": per_file,
            "failed": [{"file": f, "error": e} for f, e in failures],
            "resolution": [height, width],
            "resize": config.resize,
            "fps": config.fps,
            "frame_stride": config.frame_stride,
            "clip_frames": config.clip_frames,
        }
        manifest = writer.close()
    if failures:
        raise PartialImportError(
            f"imported {len(imported)} of {len(videos)} video files into {out} "
            f"({manifest['num_frames']} frames, {manifest['num_episodes']} episodes); "
            f"could not read {len(failures)}: {listed}",
            manifest,
            failures,
        )
    return manifest


def import_video_folder(
    folder: str | os.PathLike, out: str | os.PathLike, *, resolution: Sequence[int] = (64, 64),
    resize: str = "crop", **kwargs,
) -> dict[str, Any]:  # fmt: skip
    """``import_videos([folder], out, VideoImportConfig(resolution, resize), **kwargs)``."""
    config = VideoImportConfig(resolution=_resolution(resolution), resize=resize)
    return import_videos([folder], out, config, **kwargs)


def _resolution(resolution: Any) -> Any:
    try:
        return tuple(resolution)
    except TypeError:
        return resolution
