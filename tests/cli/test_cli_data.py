"""``lapo collect`` and ``lapo data`` (``lapo.cli.data``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lapo.cli import main
from lapo.data import DatasetWriter


def _small_dataset(path: Path) -> None:
    rng = np.random.default_rng(0)
    with DatasetWriter(
        path,
        frame_shape=(8, 8, 3),
        fields=("actions",),
        action_space={"type": "discrete", "n": 15},
        source={"kind": "test"},
    ) as w:
        for length in (5, 7):
            w.add_episode(
                rng.integers(0, 256, (length, 8, 8, 3), dtype=np.uint8),
                actions=rng.integers(0, 15, length),
            )


def test_data_info_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _small_dataset(tmp_path / "ds")
    assert main(["data", "info", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "12 x (8, 8, 3) uint8" in out and "2 (length min 5" in out
    assert main(["data", "verify", "--no-progress", str(tmp_path / "ds")]) == 0
    assert "all sha256 match" in capsys.readouterr().out


def test_verify_reports_altered_shard(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _small_dataset(tmp_path / "ds")
    shard = tmp_path / "ds" / "frames" / "shard-00000.npy"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["data", "verify", "--no-progress", str(tmp_path / "ds")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lapo: error:") and "shard-00000.npy" in err and "sha256" in err


def test_info_on_missing_dataset_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["data", "info", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such dataset directory" in err


def test_collect_bad_game_is_refused_by_parser(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["collect", "--env", "mario", "--frames", "10", "--out", "x"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "expected a Procgen game (bigfish," in err and "got 'mario'" in err


def test_import_refuses_options_its_format_does_not_use(tmp_path: Path, capsys) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", frames=frames, actions=np.array([0, 1, 2, 1, 0, 2]))
    base = ["data", "import", str(tmp_path / "a.npz"), "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "x"), "--fps", "5"]) == 1
    assert "--fps does not apply to arrays sources (only to video)" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x"), "--clip-frames", "5", "--camera", "c"]) == 1
    err = capsys.readouterr().err
    assert "--clip-frames, --camera do not apply to arrays sources (only to lerobot, minari," in err
    assert main([*base, "--out", str(tmp_path / "x"), "--resize", "pad"]) == 1
    assert "--resize says how arrays are resized to --resolution H W" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main([*base, "--out", str(tmp_path / "x"), "--num-actions", "7"]) == 0
    from lapo.data import open_dataset

    with open_dataset(tmp_path / "x") as dataset:
        assert dataset.manifest["action_space"]["n"] == 7  # not max + 1 = 3
    assert main([*base, "--out", str(tmp_path / "y"), "--num-actions", "2"]) == 1
    assert "discrete actions must lie in [0, 2), got range [0, 2]" in capsys.readouterr().err


def test_arrays_are_resized_with_resolution(tmp_path: Path) -> None:
    """84x84 Atari-like frames and a 40x60 file, both to 64x64 (crop); stored as they come
    without --resolution."""
    from lapo.data import open_dataset

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "a.npz", frames=rng.integers(0, 256, (4, 84, 84, 3), dtype=np.uint8))
    stripes = np.zeros((3, 40, 60, 3), np.uint8)
    stripes[:, :, 30:] = 255  # right half white: crop keeps the centre 40x40, then scales
    np.savez(tmp_path / "b.npz", frames=stripes)
    args = ["data", "import", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "x"), "--resolution", "64", "64"]) == 0
    with open_dataset(tmp_path / "x") as dataset:
        assert dataset.frame_shape == (64, 64, 3) and dataset.episodes.tolist() == [[0, 4], [4, 3]]
        frame = dataset.read_frames(4, 5)[0]
        assert frame[:, :28].max() < 20 and frame[:, 36:].min() > 235  # black left, white right
        assert dataset.manifest["source"]["resolution"] == [64, 64]
    assert main([*args, "--out", str(tmp_path / "y")]) == 1  # different sizes, not resized
    np.savez(tmp_path / "g.npz", frames=np.zeros((2, 8, 8, 1), np.uint8))
    grey = ["data", "import", str(tmp_path / "g.npz"), "--out", str(tmp_path / "z")]
    assert main([*grey, "--resolution", "4", "4"]) == 1
    assert not (tmp_path / "z").exists()
    assert main(grey) == 0


def test_a_zero_frame_stride_is_refused(tmp_path: Path, capsys, write_video) -> None:
    videos = tmp_path / "v"
    videos.mkdir()
    write_video(videos / "a.mp4", np.zeros((6, 16, 16, 3), np.uint8), rate=15)
    argv = ["data", "import", str(videos), "--out", str(tmp_path / "x"), "--frame-stride", "0"]
    assert main([*argv, "--no-progress"]) == 1
    assert "frame_stride must be >= 1, got 0" in capsys.readouterr().err
