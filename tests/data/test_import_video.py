"""Video import options: resize geometry (crop, pad, stretch), fps and stride sampling, clips,
single files and unreadable files, on mp4s made here with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from lapo.cli import main
from lapo.config import VideoImportConfig
from lapo.data import open_dataset
from lapo.data.import_video import frame_geometry, import_videos, split_clips


def write_video(path: Path, frames: np.ndarray, rate: int = 10) -> Path:
    """Encode ``(T, H, W, 3) uint8`` frames with PyAV (mpeg4, yuv420p) at ``rate`` per second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def stripes(n: int = 4) -> np.ndarray:
    """32x64 (2:1) frames: left quarter red, middle half green, right quarter blue."""
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :16, 0] = 255
    frame[:, 16:48, 1] = 255
    frame[:, 48:, 2] = 255
    return np.repeat(frame[None], n, axis=0)


def counter(n: int) -> np.ndarray:
    """32x32 frames whose brightness encodes the frame index (8 grey levels apart)."""
    return np.repeat(np.arange(n, dtype=np.uint8)[:, None, None, None] * 8, 32 * 32 * 3).reshape(
        n, 32, 32, 3
    )


def colour(pixel: np.ndarray) -> str:
    """``"r"``, ``"g"``, ``"b"`` or ``"k"`` (black) for an RGB pixel."""
    if pixel.max() < 60:
        return "k"
    return "rgb"[int(np.argmax(pixel))]


def _import(sources, out: Path, **options) -> np.ndarray:
    import_videos(sources, out, VideoImportConfig(**options), progress=False)
    with open_dataset(out) as ds:
        return ds.read_frames(0, ds.num_frames), ds.episodes.tolist()


def test_geometry_of_each_resize_mode() -> None:
    assert frame_geometry((32, 64), (16, 16), "crop").scaled == (16, 32)
    assert frame_geometry((32, 64), (16, 16), "crop").crop == (0, 8)
    assert frame_geometry((32, 64), (16, 16), "pad").scaled == (8, 16)
    assert frame_geometry((32, 64), (16, 16), "pad").pad == (4, 0)
    assert frame_geometry((32, 64), (16, 16), "stretch").scaled == (16, 16)
    assert frame_geometry((1080, 1920), (64, 64), "pad").scaled == (36, 64)


@pytest.mark.parametrize(
    ("mode", "row_middle", "rows_black"),
    [
        ("crop", "gggggggggggggggg", False),  # the centre half: green only, full height
        ("pad", "rrrrggggggggbbbb", True),  # all of it, black bands above and below
        ("stretch", "rrrrggggggggbbbb", False),  # all of it, squashed to a square
    ],
)
def test_resize_modes_keep_the_geometry(
    tmp_path: Path, mode: str, row_middle: str, rows_black: bool
) -> None:
    video = write_video(tmp_path / "wide.mp4", stripes())
    frames, _ = _import(video, tmp_path / "ds", resolution=(16, 16), resize=mode)
    frame = frames[1]
    # columns at a stripe border blur in the codec and scaler: compare the rest
    row = "".join(colour(frame[8, c]) for c in range(16))
    sure = [c for c in range(16) if c not in (3, 4, 11, 12)]
    assert [row[c] for c in sure] == [row_middle[c] for c in sure], row
    top = "".join(colour(frame[r, 8]) for r in (0, 1, 2, 13, 14, 15))
    assert top == ("kkkkkk" if rows_black else "gggggg")


def test_frame_stride_fps_and_clips(tmp_path: Path) -> None:
    video = write_video(tmp_path / "count.mp4", counter(20))  # 10 frames per second, 2 s
    frames, episodes = _import(video, tmp_path / "all", resolution=(8, 8))
    assert episodes == [[0, 20]]
    index = np.round(frames.reshape(len(frames), -1).mean(1) / 8).astype(int)
    assert index.tolist() == list(range(20))
    frames, episodes = _import(video, tmp_path / "stride", resolution=(8, 8), frame_stride=3)
    index = np.round(frames.reshape(len(frames), -1).mean(1) / 8).astype(int)
    assert index.tolist() == [0, 3, 6, 9, 12, 15, 18]
    frames, episodes = _import(video, tmp_path / "fps", resolution=(8, 8), fps=5)
    index = np.round(frames.reshape(len(frames), -1).mean(1) / 8).astype(int)
    assert index.tolist() == list(range(0, 20, 2))
    _, episodes = _import(video, tmp_path / "clips", resolution=(8, 8), clip_frames=6)
    assert episodes == [[0, 6], [6, 6], [12, 6]]  # the last 2 frames (< 6 // 2) are dropped
    _, episodes = _import(video, tmp_path / "clips7", resolution=(8, 8), clip_frames=7)
    assert episodes == [[0, 7], [7, 7], [14, 6]]


def test_split_clips_remainder_rule() -> None:
    frames = np.arange(25)
    assert [len(c) for c in split_clips(frames, 10)] == [10, 10, 5]
    assert [len(c) for c in split_clips(frames[:24], 10)] == [10, 10]
    assert [len(c) for c in split_clips(frames[:7], 10)] == [7]
    assert [len(c) for c in split_clips(frames, None)] == [25]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="fps or frame_stride, not both"):
        VideoImportConfig(fps=5, frame_stride=2)
    with pytest.raises(ValueError, match="resize must be one of crop, pad, stretch"):
        VideoImportConfig(resize="fit")
    with pytest.raises(ValueError, match="clip_frames must be >= 2"):
        VideoImportConfig(clip_frames=1)


def test_cli_single_files_and_unreadable_ones(tmp_path: Path, capsys) -> None:
    a = write_video(tmp_path / "a.mp4", counter(8))
    b = write_video(tmp_path / "b.mp4", counter(5))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 500)
    out = tmp_path / "ds"
    args = ["data", "import", str(a), str(bad), str(b), "--out", str(out), "--no-progress"]
    assert main([*args, "--resolution", "8", "8", "--clip-frames", "4"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lapo: error: imported 2 of 3 video files") and "bad.mp4" in err
    with open_dataset(out) as ds:  # the readable files are imported, in the order given
        assert ds.episodes.tolist() == [[0, 4], [4, 4], [8, 4]]
        assert ds.manifest["source"]["episodes_per_file"] == [2, 1]
    assert main(["data", "import", str(a), "--out", str(tmp_path / "one"), "--no-progress"]) == 0
    with open_dataset(tmp_path / "one") as ds:
        assert ds.frame_shape == (64, 64, 3) and ds.num_frames == 8
