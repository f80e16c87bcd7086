"""Latent-action export to LeRobot and Minari (``lapo.data.export_formats``), round-tripped
through the importers, and ``lapo data export``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pq = pytest.importorskip("pyarrow.parquet")
h5py = pytest.importorskip("h5py")

from lapo.cli import main  # noqa: E402
from lapo.config import LAM_PRESETS, LAMConfig, VideoImportConfig  # noqa: E402
from lapo.data import DatasetWriter, open_dataset  # noqa: E402
from lapo.data.export_formats import export_lerobot, export_minari  # noqa: E402
from lapo.data.import_lerobot import import_lerobot  # noqa: E402
from lapo.data.import_minari import import_minari  # noqa: E402
from lapo.data.synthetic import sprite_episode, write_sprite_dataset  # noqa: E402
from lapo.models.lam import LatentActionModel  # noqa: E402
from lapo.pipeline.export import latent_labels  # noqa: E402


def _labelled(tmp_path: Path):
    data = tmp_path / "sprites"
    write_sprite_dataset(data, episodes=3, length=7, size=32)
    lam = LatentActionModel(LAMConfig(**LAM_PRESETS["smoke"]), image_size=32).eval()
    dataset = open_dataset(data)
    return dataset, *latent_labels(lam, dataset)


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
    with open_dataset(back) as ds:  # the latent actions come back as the box actions
        assert ds.episodes.tolist() == dataset.episodes.tolist()
        np.testing.assert_array_equal(ds.actions, zeroed)
        assert ds.action_bounds[0].tolist() == zeroed.min(0).tolist()
        assert ds.action_bounds[1].tolist() == zeroed.max(0).tolist()
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
        kept = np.asarray(ds.actions).reshape(3, 7, -1)  # the Box is unbounded: observed bounds
        np.testing.assert_array_equal(kept[:, :6], zeroed.reshape(3, 7, -1)[:, :6])
        assert kept.dtype == np.float32 and ds.continuous_actions
        assert np.isfinite(ds.action_bounds[1] - ds.action_bounds[0]).all()
    with pytest.raises(FileExistsError, match=r"pass overwrite=True \(--overwrite\)"):
        export_minari(dataset, minari, latent, codes, progress=False)
    export_minari(dataset, minari, latent, codes, overwrite=True, progress=False)


def test_export_keeps_true_box_actions(tmp_path: Path) -> None:
    """A dataset with float actions exports them as true_action, and its re-import keeps the
    latent actions as its actions."""
    from lapo.data.synthetic import write_continuous_sprite_dataset

    write_continuous_sprite_dataset(tmp_path / "ds", episodes=2, length=5, size=16)
    dataset = open_dataset(tmp_path / "ds")
    true = np.asarray(dataset.actions)  # (10, 2) float32
    latent = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    lerobot = export_lerobot(dataset, tmp_path / "lr", latent, progress=False)
    info = json.loads((lerobot / "meta/info.json").read_text())
    assert info["features"]["true_action"]["dtype"] == "float32"
    assert info["features"]["true_action"]["shape"] == [2]
    table = pq.read_table(lerobot / "data/chunk-000/episode_000001.parquet")
    np.testing.assert_array_equal(np.array(table.column("true_action").to_pylist()), true[5:])
    minari = export_minari(dataset, tmp_path / "mi", latent, progress=False)
    with h5py.File(minari / "data/main_data.hdf5") as f:
        np.testing.assert_array_equal(f["episode_0/infos/true_action"][()], true[:5])
    import_lerobot(lerobot, tmp_path / "back", config=VideoImportConfig(resolution=(16, 16)),
                   progress=False)  # fmt: skip
    with open_dataset(tmp_path / "back") as back:
        np.testing.assert_array_equal(back.actions, latent)


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
    assert main([*args, "--format", "minari", "--no-progress", "--device", "cpu"]) == 0
    assert json.loads((out / "data/metadata.json").read_text())["total_episodes"] == 6
    assert main([*args, "--format", "minari", "--fps", "10", "--overwrite"]) == 1  # no rate there


def _frames_dataset(path: Path, channels: int, source: dict | None = None):
    rng = np.random.default_rng(1)
    with DatasetWriter(path, frame_shape=(16, 16, channels), source=source) as writer:
        for _ in range(2):
            writer.add_episode(rng.integers(0, 256, (5, 16, 16, channels), dtype=np.uint8))
        writer.close()
    return open_dataset(path)


def test_lerobot_export_takes_grey_frames_refuses_rgba_and_keeps_the_frame_rate(
    tmp_path: Path,
) -> None:
    latent = np.zeros((10, 2), np.float32)
    grey = _frames_dataset(tmp_path / "grey", 1, {"kind": "lerobot", "fps": 10})
    out = export_lerobot(grey, tmp_path / "lr", latent, progress=False)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["fps"] == 10.0 and info["features"]["observation.image"]["shape"] == [16, 16, 3]
    table = pq.read_table(out / "data/chunk-000/episode_000000.parquet")
    np.testing.assert_allclose(table.column("timestamp").to_pylist(), np.arange(5) / 10)
    import av

    video = out / "videos/chunk-000/observation.image/episode_000000.mp4"
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.average_rate == 10
        first = next(container.decode(stream)).to_ndarray(format="rgb24")
    assert np.abs(first[..., 0].astype(int) - first[..., 2]).max() <= 8  # grey in all three
    out = export_lerobot(grey, tmp_path / "lr", latent, fps=30, overwrite=True, progress=False)
    assert json.loads((out / "meta/info.json").read_text())["fps"] == 30.0
    rgba = _frames_dataset(tmp_path / "rgba", 4)
    with pytest.raises(ValueError, match="frames of 4 channels; .* export it as minari"):
        export_lerobot(rgba, tmp_path / "lr4", latent, progress=False)
    assert not (tmp_path / "lr4").exists()
    export_minari(rgba, tmp_path / "mi4", latent, progress=False)  # raw frames: any channels


def test_a_failed_export_leaves_the_earlier_one_and_nothing_else(tmp_path: Path, monkeypatch):
    from lapo.data import export_formats

    dataset = _frames_dataset(tmp_path / "ds", 3)
    latent = np.zeros((10, 2), np.float32)
    out = export_lerobot(dataset, tmp_path / "lr", latent, progress=False)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(export_formats, "_encode_mp4", broken)
    with pytest.raises(OSError, match="disk full"):
        export_lerobot(dataset, out, latent, overwrite=True, progress=False)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert not list(tmp_path.glob(".lr*"))  # no partial folder left
    with pytest.raises(OSError, match="disk full"):
        export_lerobot(dataset, tmp_path / "new", latent, progress=False)
    assert not (tmp_path / "new").exists()  # and a rerun is not blocked


def test_an_export_is_readable_as_a_plain_folder_and_refuses_what_appeared_meanwhile(
    tmp_path: Path, monkeypatch
) -> None:
    import os
    import stat

    from lapo.data import export_formats

    dataset = _frames_dataset(tmp_path / "ds", 3)
    latent = np.zeros((10, 2), np.float32)
    umask = os.umask(0o022)
    try:
        out = export_minari(dataset, tmp_path / "mi", latent, progress=False)
    finally:
        os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755  # not mkdtemp's 0o700
    real = export_formats._write_minari

    def someone_else_writes_there(out_dir, *args):
        real(out_dir, *args)
        (tmp_path / "late").mkdir()
        (tmp_path / "late" / "mine.txt").write_text("a user's file")

    monkeypatch.setattr(export_formats, "_write_minari", someone_else_writes_there)
    with pytest.raises(FileExistsError, match="late exists"):
        export_minari(dataset, tmp_path / "late", latent, progress=False)
    assert (tmp_path / "late" / "mine.txt").read_text() == "a user's file"
    assert not list(tmp_path.glob(".late*"))
