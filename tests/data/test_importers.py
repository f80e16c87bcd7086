"""Importers: video folders (PyAV), numpy arrays and the original LAPO release's npz chunks."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from lapo.data import DatasetError, open_dataset
from lapo.data.import_arrays import import_arrays
from lapo.data.import_release import import_lapo_release
from lapo.data.import_video import PartialImportError, import_video_folder
from lapo.envs.games import ACTION_MEANINGS

# --------------------------------------------------------------------------- helpers


def square_frames(n: int, height: int = 32, width: int = 48) -> np.ndarray:
    """``(n, H, W, 3) uint8`` black frames with a 12x12 white square moving 3 px right per frame."""
    frames = np.zeros((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, 8:20, 2 + 3 * i : 14 + 3 * i] = 255
    return frames


def write_video(path: Path, frames: np.ndarray, codec: str = "mpeg4") -> Path:
    """Encode ``(T, H, W, 3) uint8`` frames with PyAV at 10 frames per second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        container.start_encoding()  # writes the header even when there are no frames
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def bright_column(frame: np.ndarray) -> float:
    """Column of the centroid of bright pixels in a ``(H, W, 3)`` frame."""
    mask = frame.mean(-1) > 128
    return float(np.nonzero(mask)[1].mean())


def no_output(out: Path) -> bool:
    """Nothing at ``out``, and no partial directory beside it."""
    return not out.exists() and not list(out.parent.glob(f"{out.name}.partial-*"))


def random_frames(rng: np.random.Generator, n: int, shape=(8, 8, 3)) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# --------------------------------------------------------------------------- video


@pytest.fixture
def video_folder(tmp_path: Path) -> Path:
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


def test_video_without_frames(tmp_path: Path) -> None:
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


# --------------------------------------------------------------------------- arrays


def test_npy_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a, b = random_frames(rng, 5), random_frames(rng, 3)
    src = tmp_path / "src"  # the output may not lie inside an input folder
    src.mkdir()
    np.save(src / "b.npy", b)
    np.save(src / "a.npy", a)
    out = tmp_path / "ds"
    manifest = import_arrays(src, out, shard_frames=4, progress=False)  # folder: sorted
    assert manifest["source"]["files"] == [str((src / n).resolve()) for n in ("a.npy", "b.npy")]
    with open_dataset(out) as ds:
        assert ds.episodes.tolist() == [[0, 5], [5, 3]]
        np.testing.assert_array_equal(ds.read_frames(0, 8), np.concatenate([a, b]))
        assert ds.fields == () and ds.manifest["action_space"] is None


@pytest.mark.parametrize("form", ["mask", "indices"])
def test_npz_round_trip(tmp_path: Path, form: str) -> None:
    rng = np.random.default_rng(1)
    frames, actions = random_frames(rng, 10), rng.integers(0, 6, size=10)
    actions[0] = 5  # max action 5 -> n = 6
    rewards = np.arange(10, dtype=np.float32)
    dones = np.zeros(10, dtype=bool)
    dones[[3, 6]] = True  # episodes [0, 4), [4, 7), [7, 10) (the last one cut)
    starts = np.array([0, 4, 7]) if form == "indices" else np.isin(np.arange(10), [0, 4, 7])
    path = tmp_path / "data.npz"
    np.savez(
        path, frames=frames, actions=actions, rewards=rewards, dones=dones, episode_starts=starts
    )
    frames2 = random_frames(rng, 2)
    more = {"frames": frames2, "actions": [1, 2], "rewards": [1.0, 2.0], "dones": [0, 1]}
    np.savez_compressed(tmp_path / "more.npz", **more)
    out = tmp_path / "ds"
    manifest = import_arrays([path, tmp_path / "more.npz"], out, progress=False)
    assert manifest["action_space"] == {"type": "discrete", "n": 6}
    with open_dataset(out) as ds:
        assert ds.episodes[:, 1].tolist() == [4, 3, 3, 2]
        np.testing.assert_array_equal(ds.read_frames(0, 12), np.concatenate([frames, frames2]))
        np.testing.assert_array_equal(ds.actions, np.r_[actions, 1, 2])
        np.testing.assert_array_equal(ds.rewards, np.r_[rewards, 1, 2])
        np.testing.assert_array_equal(ds.dones, np.r_[dones, False, True])
        np.testing.assert_array_equal(ds.episode_returns, [0 + 1 + 2 + 3, 4 + 5 + 6, np.nan, 3])


def test_num_actions_argument(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", frames=np.zeros((3, 4, 4, 1), np.uint8), actions=[0, 1, 2])
    manifest = import_arrays(tmp_path / "x.npz", tmp_path / "ds", num_actions=15, progress=False)
    assert manifest["action_space"]["n"] == 15
    with pytest.raises(DatasetError, match=r"actions must lie in \[0, 2\)"):
        import_arrays(tmp_path / "x.npz", tmp_path / "ds2", num_actions=2, progress=False)


FRAMES = np.zeros((6, 8, 8, 3), np.uint8)


def test_frame_zero_always_starts_an_episode(tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", frames=FRAMES, episode_starts=[2, 5])
    import_arrays(tmp_path / "x.npz", tmp_path / "ds", progress=True)
    assert open_dataset(tmp_path / "ds").episodes.tolist() == [[0, 2], [2, 3], [5, 1]]


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"frames": FRAMES.astype(np.float32)}, r"must be uint8.*got float32"),
        ({"frames": np.zeros((6, 3, 8, 8), np.uint8)}, r"channel-first.*transpose\(0, 2, 3, 1\)"),
        ({"frames": FRAMES[..., 0]}, r"\(N, H, W, C\).*channel axis"),
        ({"frames": FRAMES, "actions": np.zeros(5, int)}, r"actions must have shape \(6,\)"),
        ({"frames": FRAMES, "actions": np.zeros(6)}, "actions must be signed int or unsigned"),
        ({"frames": FRAMES, "actions": -np.ones(6, int)}, r"actions must lie in \[0\)"),
        ({"frames": FRAMES, "episode_starts": [0, 4, 2]}, "strictly increasing"),
        ({"frames": FRAMES, "episode_starts": [0, 6]}, r"in \[0, 6\)"),
        ({"frames": FRAMES, "episode_starts": np.ones(5, bool)}, "mask must have length 6"),
        ({"frames": FRAMES, "dones": np.eye(6, dtype=bool)[2]}, r"dones\[2\] is True"),
        ({"frames": FRAMES, "action": np.zeros(6, int)}, r"unexpected arrays \['action'\]"),
        ({"obs": FRAMES}, "use import_lapo_release"),
    ],
)
def test_array_errors(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "bad.npz", **arrays)
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match=message) as info:
        import_arrays(tmp_path / "bad.npz", out, progress=False)
    assert "bad.npz" in str(info.value)
    assert no_output(out)


def test_files_must_agree(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", FRAMES)
    np.save(tmp_path / "b.npy", np.zeros((2, 8, 4, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"b\.npy: frames \(8, 4, 3\).*same frame shape"):
        import_arrays([tmp_path / "a.npy", tmp_path / "b.npy"], tmp_path / "ds", progress=False)
    np.savez(tmp_path / "c.npz", frames=FRAMES, actions=np.zeros(6, int))
    with pytest.raises(DatasetError, match=r"c\.npz.*\['actions'\].*same optional arrays"):
        import_arrays([tmp_path / "a.npy", tmp_path / "c.npz"], tmp_path / "ds", progress=False)
    with pytest.raises(DatasetError, match="no such file"):
        import_arrays(tmp_path / "missing.npy", tmp_path / "ds", progress=False)
    assert no_output(tmp_path / "ds")


def test_arrays_overwrite(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", FRAMES)
    out = tmp_path / "ds"
    import_arrays(tmp_path / "a.npy", out, progress=False)
    with pytest.raises(FileExistsError):
        import_arrays(tmp_path / "a.npy", out, progress=False)
    np.save(tmp_path / "bad.npy", FRAMES.astype(np.float64))
    with pytest.raises(DatasetError, match="uint8"):
        import_arrays(tmp_path / "bad.npy", out, overwrite=True, progress=False)
    assert open_dataset(out).num_frames == 6


# --------------------------------------------------------------------------- LAPO release


def release_chunk(path: Path, rng: np.random.Generator, done_at: list[int], n: int) -> dict:
    """Write a synthetic release chunk; ``ep_returns`` holds 100 + frame index at every frame."""
    chunk = {
        "obs": random_frames(rng, n, (64, 64, 3)),
        "ta": rng.integers(0, 15, size=(n, 1)),
        "done": np.isin(np.arange(n), done_at),
        "rewards": rng.random(n).astype(np.float32),
        "ep_returns": 100.0 + np.arange(n),
        "values": rng.random(n),
    }
    np.savez(path, **chunk)
    return chunk


def test_lapo_release(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "release"
    folder.mkdir()
    c0 = release_chunk(folder / "chunk_000.npz", rng, done_at=[3, 7], n=10)
    c1 = release_chunk(folder / "chunk_001.npz", rng, done_at=[5], n=6)
    out = tmp_path / "ds"
    manifest = import_lapo_release(folder, out, shard_frames=7, progress=True)
    assert manifest["source"]["kind"] == "lapo_release"
    assert manifest["action_space"] == {
        "type": "discrete",
        "n": 15,
        "meanings": list(ACTION_MEANINGS),
    }
    with open_dataset(out) as ds:
        # chunk 0: [0..3] [4..7] done, [8, 9] cut at the chunk's end; chunk 1: [0..5] done
        assert ds.episodes.tolist() == [[0, 4], [4, 4], [8, 2], [10, 6]]
        np.testing.assert_array_equal(ds.episode_returns, [103, 107, np.nan, 105])
        np.testing.assert_array_equal(ds.actions, np.r_[c0["ta"][:, 0], c1["ta"][:, 0]])
        np.testing.assert_array_equal(ds.dones, np.r_[c0["done"], c1["done"]])
        np.testing.assert_array_equal(ds.rewards, np.r_[c0["rewards"], c1["rewards"]])
        np.testing.assert_array_equal(ds.read_frames(0, 16), np.r_[c0["obs"], c1["obs"]])
        assert ds.fields == ("actions", "rewards", "dones")


def test_lapo_release_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    chunk = release_chunk(tmp_path / "good.npz", rng, done_at=[1], n=4)
    del chunk["ep_returns"], chunk["done"]
    np.savez(tmp_path / "bad.npz", **chunk)
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match=r"bad\.npz: missing \['done', 'ep_returns'\].*'obs'"):
        import_lapo_release([tmp_path / "good.npz", tmp_path / "bad.npz"], out, progress=False)
    chunk = release_chunk(tmp_path / "bad.npz", rng, done_at=[1], n=4)
    np.savez(tmp_path / "bad.npz", **{**chunk, "ta": np.full(4, 15)})
    with pytest.raises(DatasetError, match=r"bad\.npz: ta must hold whole numbers in \[0, 15\)"):
        import_lapo_release([tmp_path / "good.npz", tmp_path / "bad.npz"], out, progress=False)
    assert no_output(out)
