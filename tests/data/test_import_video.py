"""Video import (``lapo.data.import_video``): folders of videos, resize geometry (crop, pad,
stretch), fps and stride sampling, clips, single files, empty, corrupt and unreadable files, on
videos made here with PyAV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lapo.cli import main
from lapo.config import VideoImportConfig
from lapo.data import DatasetError, open_dataset
from lapo.data.import_video import (
    PartialImportError,
    frame_geometry,
    import_video_folder,
    import_videos,
    split_clips,
)


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
    tmp_path: Path, mode: str, row_middle: str, rows_black: bool, write_video
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


def test_frame_stride_fps_and_clips(tmp_path: Path, write_video) -> None:
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
    with pytest.raises(
        ValueError, match=r"fps or frame_stride \(--fps or --frame-stride\), not both"
    ):
        VideoImportConfig(fps=5, frame_stride=2)
    with pytest.raises(ValueError, match="resize must be one of crop, pad, stretch"):
        VideoImportConfig(resize="fit")
    with pytest.raises(ValueError, match=r"clip_frames \(--clip-frames\) must be >= 2"):
        VideoImportConfig(clip_frames=1)


def test_cli_single_files_and_unreadable_ones(tmp_path: Path, capsys, write_video) -> None:
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


def square_frames(n: int, height: int = 32, width: int = 48) -> np.ndarray:
    """``(n, H, W, 3) uint8`` black frames with a 12x12 white square moving 3 px right per frame."""
    frames = np.zeros((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, 8:20, 2 + 3 * i : 14 + 3 * i] = 255
    return frames


def bright_column(frame: np.ndarray) -> float:
    """Column of the centroid of bright pixels in a ``(H, W, 3)`` frame."""
    mask = frame.mean(-1) > 128
    return float(np.nonzero(mask)[1].mean())


def no_output(out: Path) -> bool:
    """Nothing at ``out``, and no partial directory beside it."""
    return not out.exists() and not list(out.parent.glob(f"{out.name}.partial-*"))


@pytest.fixture
def video_folder(tmp_path: Path, write_video) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "a.mp4", square_frames(12))
    write_video(folder / "b.AVI", square_frames(7))  # extensions are case-insensitive
    (folder / "notes.txt").write_text("not a video")
    (folder / "._a.mp4").write_bytes(b"macOS resource fork, skipped")
    return folder


def test_video_import(video_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    manifest = import_video_folder(
        video_folder, out, resolution=(16, 16), resize="stretch", progress=True
    )
    assert manifest["source"] == {
        "kind": "video",
        "files": [str(video_folder.resolve() / n) for n in ("a.mp4", "b.AVI")],
        "episodes_per_file": [1, 1],
        "failed": [],
        "resolution": [16, 16],
        "resize": "stretch",
        "fps": None,
        "frame_stride": 1,
        "clip_frames": None,
    }
    with open_dataset(out) as ds:
        assert ds.frame_shape == (16, 16, 3)
        assert ds.episodes.tolist() == [[0, 12], [12, 7]]
        assert ds.fields == () and ds.num_actions is None
        assert np.isnan(ds.episode_returns).all()
        frames = ds.episode_frames(0)
    # The square's centre moves from x=8 to x=41 of 48 px, i.e. 2.67 to 13.67 of 16 px.
    columns = np.array([bright_column(f) for f in frames])
    expected = (8 + 3 * np.arange(12)) * 16 / 48 - 0.5
    assert np.abs(columns - expected).max() < 1.0
    assert (np.diff(columns) > 0).all()


def test_video_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file or folder"):
        import_video_folder(tmp_path / "missing", tmp_path / "ds", progress=False)
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError, match=r"no video files.*\.mp4.*\.webm"):
        import_video_folder(tmp_path, tmp_path / "ds", progress=False)
    assert no_output(tmp_path / "ds")


@pytest.mark.parametrize("resolution", [(0, 16), (16,), "64", (16.0, 16), (True, 16)])
def test_video_bad_resolution(video_folder: Path, tmp_path: Path, resolution) -> None:
    with pytest.raises(ValueError, match="resolution"):
        import_video_folder(video_folder, tmp_path / "ds", resolution=resolution, progress=False)


def test_video_corrupt_file_is_named_and_the_others_imported(
    video_folder: Path, tmp_path: Path
) -> None:
    (video_folder / "c.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    out = tmp_path / "ds"
    with pytest.raises(PartialImportError, match=r"imported 2 of 3.*c\.mp4.*cannot decode") as e:
        import_video_folder(video_folder, out, resolution=(16, 16), progress=False)
    assert [Path(f).name for f, _ in e.value.failures] == ["c.mp4"]
    with open_dataset(out) as ds:  # the readable files are all there
        assert ds.episodes.tolist() == [[0, 12], [12, 7]]
        assert [Path(f["file"]).name for f in ds.manifest["source"]["failed"]] == ["c.mp4"]


def test_video_without_frames(tmp_path: Path, write_video) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_video(folder / "empty.avi", square_frames(0))
    with pytest.raises(DatasetError, match=r"empty\.avi.*no frames"):
        import_video_folder(folder, tmp_path / "ds", progress=False)
    assert no_output(tmp_path / "ds")


def test_overwrite_and_failed_import_keeps_dataset(video_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = import_video_folder(video_folder, out, resolution=(16, 16), progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        import_video_folder(video_folder, out, resolution=(8, 8), progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "c.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(DatasetError, match=r"no video file could be read.*c\.mp4"):
        import_video_folder(bad, out, resolution=(8, 8), overwrite=True, progress=False)
    assert json.loads((out / "manifest.json").read_text()) == first
    open_dataset(out).verify()  # the old dataset is intact
    second = import_video_folder(
        video_folder, out, resolution=(8, 8), overwrite=True, progress=False
    )
    assert second["frame_shape"] == [8, 8, 3] and open_dataset(out).frame_shape == (8, 8, 3)
