"""LeRobotDataset (v2.1 layout) and Minari (HDF5) import from tiny directories made here, and
export of a dataset with its latent actions to both, read back."""

from __future__ import annotations

import io
import json
from pathlib import Path

import av
import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
h5py = pytest.importorskip("h5py")

from lapo.cli import main  # noqa: E402
from lapo.config import LAM_PRESETS, LAMConfig, VideoImportConfig  # noqa: E402
from lapo.data import DatasetWriter, open_dataset  # noqa: E402
from lapo.data.export_formats import export_lerobot, export_minari  # noqa: E402
from lapo.data.format import DatasetError  # noqa: E402
from lapo.data.import_lerobot import import_lerobot  # noqa: E402
from lapo.data.import_minari import import_minari  # noqa: E402
from lapo.data.optional import require  # noqa: E402
from lapo.data.synthetic import sprite_episode, write_sprite_dataset  # noqa: E402
from lapo.models.lam import LatentActionModel  # noqa: E402
from lapo.pipeline.export import latent_labels  # noqa: E402


def grey(n: int, start: int = 0, shape=(16, 16)) -> np.ndarray:
    """Frames whose grey level is 8 * (start + index): the index reads back after a codec."""
    levels = (np.arange(start, start + n) * 8).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, *shape, 3)).copy()


def level(frames: np.ndarray) -> list[int]:
    return np.round(frames.reshape(len(frames), -1).mean(1) / 8).astype(int).tolist()


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = 4_000_000
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def make_lerobot(root: Path, lengths=(6, 4), continuous: bool = False) -> list[np.ndarray]:
    """A LeRobot v2.1 directory: a video camera (top) and an image camera (wrist, PNG)."""
    features = {
        "observation.images.top": {"dtype": "video", "shape": [16, 32, 3]},
        "observation.images.wrist": {"dtype": "image", "shape": [16, 16, 3]},
        "action": {"dtype": "float32", "shape": [2]} if continuous
        else {"dtype": "int64", "shape": [1], "names": ["a", "b", "c", "d", "e"]},
        "next.reward": {"dtype": "float32", "shape": [1]},
        "frame_index": {"dtype": "int64", "shape": [1]},
    }  # fmt: skip
    info = {"codebase_version": "v2.1", "fps": 10, "chunks_size": 1000,
            "total_episodes": len(lengths),
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/"
                          "episode_{episode_index:06d}.mp4",
            "features": features}  # fmt: skip
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    lines = [json.dumps({"episode_index": e, "length": n}) for e, n in enumerate(lengths)]
    (root / "meta" / "episodes.jsonl").write_text("\n".join(lines))
    actions, start = [], 0
    for e, n in enumerate(lengths):
        top = grey(n, start, (16, 32))
        write_mp4(root / f"videos/chunk-000/observation.images.top/episode_{e:06d}.mp4", top)
        act = (
            np.arange(2 * n, dtype=np.float32).reshape(n, 2) + e
            if continuous
            else (np.arange(n) + e) % 5
        )
        actions.append(act)
        order = np.arange(n)[::-1]  # rows stored out of order: sorted by frame_index on import
        table = pa.table({
            "frame_index": pa.array(order),
            "action": pa.array([list(np.atleast_1d(a)) for a in act[order]]),
            "next.reward": pa.array(order.astype(np.float32) / 10),
            "observation.images.wrist": pa.array(
                [{"bytes": png(f), "path": None} for f in grey(n, start)[order]]
            ),
        })  # fmt: skip
        path = root / f"data/chunk-000/episode_{e:06d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        start += n
    return actions


def test_lerobot_import_video_and_image_cameras(tmp_path: Path) -> None:
    root = tmp_path / "lerobot"
    actions = make_lerobot(root)
    with pytest.raises(DatasetError, match="2 camera features.*--camera KEY"):
        import_lerobot(root, tmp_path / "x", progress=False)
    frames = VideoImportConfig(resolution=(8, 8), resize="stretch")
    for key in ("observation.images.top", "observation.images.wrist"):
        out = tmp_path / key
        import_lerobot(root, out, camera=key, config=frames, progress=False)
        with open_dataset(out) as ds:
            assert ds.episodes.tolist() == [[0, 6], [6, 4]]
            assert level(ds.read_frames(0, 10)) == list(range(10))
            assert ds.actions.tolist() == np.concatenate(actions).tolist()
            assert ds.num_actions == 5
            np.testing.assert_allclose(ds.rewards[:6], np.arange(6) / 10, atol=1e-6)
            assert ds.manifest["source"]["camera"] == key


def test_lerobot_continuous_actions_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "lerobot"
    actions = make_lerobot(root, continuous=True)
    out = tmp_path / "ds"
    args = ["data", "import", str(root), "--out", str(out), "--camera", "observation.images.top"]
    assert main([*args, "--resolution", "8", "8", "--no-progress"]) == 0
    with open_dataset(out) as ds:
        assert ds.fields == ("rewards",) and ds.manifest["source"]["kind"] == "lerobot"
        kept = np.load(out / ds.manifest["source"]["continuous_actions"]["file"])
        ds.verify()  # the extra file is listed with its sha256
    np.testing.assert_array_equal(kept, np.concatenate(actions))


def make_lerobot_v3(root: Path, lengths=(6, 4, 5)) -> list[np.ndarray]:
    """A LeRobot v3.0 directory: every episode in one data file and one video file."""
    info = {"codebase_version": "v3.0", "fps": 10, "chunks_size": 1000,
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": {"observation.images.top": {"dtype": "video", "shape": [16, 16, 3]},
                         "action": {"dtype": "int64", "shape": [1]}}}  # fmt: skip
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "meta" / "info.json").write_text(json.dumps(info))
    total = sum(lengths)
    key = "observation.images.top"
    write_mp4(root / f"videos/{key}/chunk-000/file-000.mp4", grey(total))
    starts = np.cumsum([0, *lengths[:-1]])
    episode = np.repeat(np.arange(len(lengths)), lengths)
    frame = np.concatenate([np.arange(n) for n in lengths])
    actions = (np.arange(total) * 3) % 7
    data = pa.table({"episode_index": episode, "frame_index": frame,
                     "timestamp": (frame / 10).astype(np.float32), "action": actions})  # fmt: skip
    (root / "data/chunk-000").mkdir(parents=True)
    pq.write_table(data.take(np.random.default_rng(0).permutation(total)),
                   root / "data/chunk-000/file-000.parquet")  # fmt: skip
    meta = pa.table({
        "episode_index": np.arange(len(lengths)), "length": np.array(lengths),
        "data/chunk_index": np.zeros(len(lengths), int), "data/file_index": np.zeros(3, int),
        f"videos/{key}/chunk_index": np.zeros(3, int), f"videos/{key}/file_index": np.zeros(3, int),
        f"videos/{key}/from_timestamp": starts / 10, f"videos/{key}/to_timestamp": (starts +
                                                                                   lengths) / 10,
    })  # fmt: skip
    pq.write_table(meta, root / "meta/episodes/chunk-000/file-000.parquet")
    return [actions[s : s + n] for s, n in zip(starts, lengths, strict=True)]


def test_lerobot_v3_several_episodes_per_file(tmp_path: Path) -> None:
    root = tmp_path / "v3"
    actions = make_lerobot_v3(root)
    out = tmp_path / "ds"
    import_lerobot(root, out, config=VideoImportConfig(resolution=(8, 8)), progress=False)
    with open_dataset(out) as ds:
        assert ds.episodes.tolist() == [[0, 6], [6, 4], [10, 5]]
        assert level(ds.read_frames(0, 15)) == list(range(15))  # each row's own frame
        assert ds.actions.tolist() == np.concatenate(actions).tolist()


def make_minari(root: Path, lengths=(5, 3), dict_obs: bool = False) -> list[np.ndarray]:
    data = root / "data"
    data.mkdir(parents=True)
    meta = {"total_episodes": len(lengths), "total_steps": sum(lengths), "data_format": "hdf5",
            "observation_space": json.dumps({"type": "Box", "shape": [16, 16, 3]}),
            "action_space": json.dumps({"type": "Discrete", "n": 4, "start": 0})}  # fmt: skip
    (data / "metadata.json").write_text(json.dumps(meta))
    actions, start = [], 0
    with h5py.File(data / "main_data.hdf5", "w") as f:
        for e, steps in enumerate(lengths):
            g = f.create_group(f"episode_{e}")
            obs = grey(steps + 1, start)
            if dict_obs:
                g.create_group("observations").create_dataset("pixels", data=obs)
                g["observations"].create_dataset("state", data=np.zeros((steps + 1, 2)))
            else:
                g.create_dataset("observations", data=obs)
            act = (np.arange(steps) + e) % 4
            g.create_dataset("actions", data=act)
            g.create_dataset("rewards", data=np.ones(steps))
            g.create_dataset("terminations", data=np.arange(steps) == steps - 1)
            g.create_dataset("truncations", data=np.zeros(steps, bool))
            actions.append(act)
            start += steps + 1
    return actions


@pytest.mark.parametrize("dict_obs", [False, True])
def test_minari_import(tmp_path: Path, dict_obs: bool) -> None:
    root = tmp_path / "minari"
    actions = make_minari(root, dict_obs=dict_obs)
    out = tmp_path / "ds"
    import_minari(root, out, config=VideoImportConfig(resolution=(16, 16)), progress=False)
    with open_dataset(out) as ds:
        assert ds.episodes.tolist() == [[0, 6], [6, 4]]  # T + 1 observations each
        assert level(ds.read_frames(0, 10)) == list(range(10))  # lossless: no resize needed
        # the final observation repeats the last action (it has no successor)
        want = np.concatenate([np.append(a, a[-1]) for a in actions])
        assert ds.actions.tolist() == want.tolist()
        assert ds.dones.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
        assert ds.rewards.tolist() == [1, 1, 1, 1, 1, 0, 1, 1, 1, 0]


def test_minari_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no main_data.hdf5 \\+ metadata.json"):
        import_minari(tmp_path, tmp_path / "ds", progress=False)
    root = tmp_path / "m"
    make_minari(root)
    with h5py.File(root / "data" / "main_data.hdf5", "a") as f:
        del f["episode_1/observations"]
        f["episode_1"].create_dataset("observations", data=np.zeros((4, 3), np.float32))
    with pytest.raises(DatasetError, match=r"episode_1: observations of float32 \(4, 3\)"):
        import_minari(root, tmp_path / "ds", progress=False)
    assert not (tmp_path / "ds").exists()


def _labelled(tmp_path: Path):
    data = tmp_path / "sprites"
    write_sprite_dataset(data, episodes=3, length=7, size=32)
    lam = LatentActionModel(LAMConfig(**LAM_PRESETS["smoke"]), image_size=32).eval()
    dataset = open_dataset(data)
    return dataset, *latent_labels(lam, dataset)


def test_latent_labels_mark_frames_without_a_latent(tmp_path: Path) -> None:
    dataset, latent, codes = _labelled(tmp_path)
    k = LAMConfig(**LAM_PRESETS["smoke"]).context
    valid = np.isfinite(latent).all(1).reshape(3, 7)
    assert (valid == ((np.arange(7) >= k) & (np.arange(7) < 6))).all()
    assert ((codes >= 0).all(1).reshape(3, 7) == valid).all()


def test_export_round_trips(tmp_path: Path) -> None:
    dataset, latent, codes = _labelled(tmp_path)
    valid = np.isfinite(latent).all(1)
    zeroed = np.where(valid[:, None], latent, 0).astype(np.float32)
    lerobot = export_lerobot(dataset, tmp_path / "lr", latent, codes, progress=False)
    table = pq.read_table(lerobot / "data/chunk-000/episode_000001.parquet")
    assert table.column("latent_action.valid").to_pylist() == valid[7:14].tolist()
    assert table.column("true_action").to_pylist() == dataset.actions[7:14].tolist()
    assert np.array(table.column("latent_action.code").to_pylist()).tolist() == codes[7:14].tolist()
    back = tmp_path / "lr-back"
    import_lerobot(lerobot, back, config=VideoImportConfig(resolution=(32, 32)), progress=False)
    with open_dataset(back) as ds:
        assert ds.episodes.tolist() == dataset.episodes.tolist()
        np.testing.assert_array_equal(np.load(back / "continuous_actions.npy"), zeroed)
        diff = np.abs(ds.read_frames(0, 21).astype(int) - dataset.read_frames(0, 21)).mean()
        assert diff < 12  # mpeg4 is lossy; a wrong frame order would differ by far more
    minari = export_minari(dataset, tmp_path / "mi", latent, codes, progress=False)
    with h5py.File(minari / "data/main_data.hdf5") as f:
        assert f["episode_2/actions"].shape == (6, latent.shape[1])
        assert f["episode_2/infos/true_action"][()].tolist() == dataset.actions[14:21].tolist()
    back = tmp_path / "mi-back"
    import_minari(minari, back, config=VideoImportConfig(resolution=(32, 32)), progress=False)
    with open_dataset(back) as ds:
        assert ds.episodes.tolist() == dataset.episodes.tolist()
        assert (ds.read_frames(0, 21) == dataset.read_frames(0, 21)).all()  # lossless
        kept = np.load(back / "continuous_actions.npy").reshape(3, 7, -1)
        np.testing.assert_array_equal(kept[:, :6], zeroed.reshape(3, 7, -1)[:, :6])
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        export_minari(dataset, minari, latent, codes, progress=False)
    export_minari(dataset, minari, latent, codes, overwrite=True, progress=False)


def test_cli_export_with_a_trained_stage_1(tmp_path: Path) -> None:
    from lapo.stages.lam import train_lam

    data = tmp_path / "video"  # no actions: stage 1 skips its (slow) action probes
    rng = np.random.default_rng(0)
    with DatasetWriter(data, frame_shape=(64, 64, 3)) as writer:
        for _ in range(6):
            writer.add_episode(sprite_episode(rng, 8)[0])
        writer.close()
    train_lam(LAMConfig(**LAM_PRESETS["smoke"]), data, tmp_path / "lam", progress=False)
    out = tmp_path / "export"
    args = ["data", "export", str(data), "--lam", str(tmp_path / "lam"), "--out", str(out)]
    assert main([*args, "--format", "minari", "--no-progress"]) == 0
    assert json.loads((out / "data/metadata.json").read_text())["total_episodes"] == 6


def test_missing_extra_is_named() -> None:
    with pytest.raises(ImportError, match=r"pip install 'lapo\[formats\]'"):
        require("lapo_no_such_module", "reading a thing")
