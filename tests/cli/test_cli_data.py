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
