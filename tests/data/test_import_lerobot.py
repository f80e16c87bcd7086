"""LeRobotDataset import (``lapo.data.import_lerobot``, v2.1 and v3 layouts) from tiny
directories made here."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

from lapo.cli import main  # noqa: E402
from lapo.config import VideoImportConfig  # noqa: E402
from lapo.data import open_dataset  # noqa: E402
from lapo.data.format import DatasetError  # noqa: E402
from lapo.data.import_lerobot import import_lerobot  # noqa: E402


def png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def make_lerobot(write_video, grey):
    """Factory fixture: the function below, with the shared video writer and grey frames."""

    def make_lerobot(root: Path, lengths=(6, 4), continuous: bool = False) -> list[np.ndarray]:
        """A LeRobot v2.1 directory: a video camera (top) and an image camera (wrist, PNG)."""
        features = {
            "observation.images.top": {"dtype": "video", "shape": [16, 32, 3]},
            "observation.images.wrist": {"dtype": "image", "shape": [16, 16, 3]},
            "action": {"dtype": "float32", "shape": [3], "names": ["x", "y", "grip"]} if continuous
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
            write_video(root / f"videos/chunk-000/observation.images.top/episode_{e:06d}.mp4", top)
            act = (  # continuous: two varying dimensions and a constant one
                np.c_[np.arange(2 * n, dtype=np.float32).reshape(n, 2) + e, np.full(n, 0.25)]
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

    return make_lerobot


def test_lerobot_import_video_and_image_cameras(tmp_path: Path, make_lerobot, level) -> None:
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


def test_lerobot_float_actions_become_box_actions(tmp_path: Path, make_lerobot, capsys) -> None:
    root = tmp_path / "lerobot"
    actions = np.concatenate(make_lerobot(root, continuous=True))  # (10, 3)
    out = tmp_path / "ds"
    args = ["data", "import", str(root), "--out", str(out), "--camera", "observation.images.top"]
    assert main([*args, "--resolution", "8", "8", "--no-progress"]) == 0
    with open_dataset(out) as ds:
        assert ds.fields == ("actions", "rewards") and ds.manifest["source"]["kind"] == "lerobot"
        assert ds.actions.dtype == np.float32 and ds.actions.shape == (10, 3)
        np.testing.assert_array_equal(ds.actions, actions)
        low, high = ds.action_bounds  # observed min/max; the constant 0.25 widened by 1
        assert low.tolist() == [0.0, 1.0, -0.25] and high.tolist() == [10.0, 11.0, 0.75]
        assert ds.manifest["action_space"]["names"] == ["x", "y", "grip"]
        assert ds.continuous_actions and ds.num_actions is None
        assert not (out / "continuous_actions.npy").exists()
        ds.verify()
    assert main(["data", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "actions     3 continuous in [[0.0, 1.0, -0.25], [10.0, 11.0, 0.75]]" in info
    assert "names [x, y, grip]" in info


def test_lerobot_non_finite_float_action_is_refused(tmp_path: Path, make_lerobot) -> None:
    root = tmp_path / "lerobot"
    make_lerobot(root, continuous=True)
    path = root / "data/chunk-000/episode_000001.parquet"
    table = pq.read_table(path)
    bad = [[float("nan"), 0.0, 0.25]] + table.column("action").to_pylist()[1:]
    pq.write_table(table.set_column(1, "action", pa.array(bad)), path)
    out = tmp_path / "ds"
    with pytest.raises(DatasetError, match=r"episode 1 frame \d: action \[nan, 0.0, 0.25\] is not"):
        import_lerobot(root, out, camera="observation.images.top", progress=False)
    assert not out.exists()


def test_dataset_with_the_old_side_file_still_reads(tmp_path: Path) -> None:
    """What LeRobot / Minari imports wrote before float actions became ``actions``."""
    from lapo.data import DatasetWriter
    from lapo.data.import_lerobot import CONTINUOUS_ACTIONS
    from lapo.data.info import describe

    side = np.arange(8, dtype=np.float32).reshape(4, 2)
    source = {"kind": "lerobot", "continuous_actions": {"file": CONTINUOUS_ACTIONS, "dim": 2}}
    with DatasetWriter(tmp_path / "old", frame_shape=(4, 4, 3), source=source) as writer:
        writer.add_episode(np.zeros((4, 4, 4, 3), np.uint8))
        writer.add_file(CONTINUOUS_ACTIONS, side)
        writer.close()
    with open_dataset(tmp_path / "old") as ds:
        ds.verify()
        assert not ds.has_actions and ds.action_bounds is None
        np.testing.assert_array_equal(np.load(tmp_path / "old" / CONTINUOUS_ACTIONS), side)
        assert "2 continuous in the side file continuous_actions.npy" in describe(ds)


@pytest.fixture
def make_lerobot_v3(write_video, grey):
    """Factory fixture: the function below, with the shared video writer and grey frames."""

    def make_lerobot_v3(root: Path, lengths=(6, 4, 5)) -> list[np.ndarray]:
        """A LeRobot v3.0 directory: every episode in one data file and one video file."""
        info = {"codebase_version": "v3.0", "fps": 10, "chunks_size": 1000,
                "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
                "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/"
                              "file-{file_index:03d}.mp4",
                "features": {"observation.images.top": {"dtype": "video", "shape": [16, 16, 3]},
                             "action": {"dtype": "int64", "shape": [1]}}}  # fmt: skip
        (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
        (root / "meta" / "info.json").write_text(json.dumps(info))
        total = sum(lengths)
        key = "observation.images.top"
        write_video(root / f"videos/{key}/chunk-000/file-000.mp4", grey(total))
        starts = np.cumsum([0, *lengths[:-1]])
        episode = np.repeat(np.arange(len(lengths)), lengths)
        frame = np.concatenate([np.arange(n) for n in lengths])
        actions = (np.arange(total) * 3) % 7
        data = pa.table({"episode_index": episode, "frame_index": frame,
                         "timestamp": (frame / 10).astype(np.float32),
                         "action": actions})  # fmt: skip
        (root / "data/chunk-000").mkdir(parents=True)
        pq.write_table(data.take(np.random.default_rng(0).permutation(total)),
                       root / "data/chunk-000/file-000.parquet")  # fmt: skip
        meta = pa.table({
            "episode_index": np.arange(len(lengths)), "length": np.array(lengths),
            "data/chunk_index": np.zeros(len(lengths), int), "data/file_index": np.zeros(3, int),
            f"videos/{key}/chunk_index": np.zeros(3, int),
            f"videos/{key}/file_index": np.zeros(3, int),
            f"videos/{key}/from_timestamp": starts / 10,
            f"videos/{key}/to_timestamp": (starts + lengths) / 10,
        })  # fmt: skip
        pq.write_table(meta, root / "meta/episodes/chunk-000/file-000.parquet")
        return [actions[s : s + n] for s, n in zip(starts, lengths, strict=True)]

    return make_lerobot_v3


def test_lerobot_v3_several_episodes_per_file(tmp_path: Path, make_lerobot_v3, level) -> None:
    root = tmp_path / "v3"
    actions = make_lerobot_v3(root)
    out = tmp_path / "ds"
    import_lerobot(root, out, config=VideoImportConfig(resolution=(8, 8)), progress=False)
    with open_dataset(out) as ds:
        assert ds.episodes.tolist() == [[0, 6], [6, 4], [10, 5]]
        assert level(ds.read_frames(0, 15)) == list(range(15))  # each row's own frame
        assert ds.actions.tolist() == np.concatenate(actions).tolist()
