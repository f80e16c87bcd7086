"""Latent-quality probes of a saved latent action model (``lapo probe-lam``)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lapo.config import LAM_PRESETS, LAMConfig
from lapo.data import DatasetWriter, WindowIndex, open_dataset, split_episodes
from lapo.data.synthetic import sprite_episode, write_sprite_dataset
from lapo.eval.latent_quality import probe_lam, summary_line
from lapo.eval.probes import probe_accuracy
from lapo.models.lam import frames_to_float
from lapo.stages.lam import train_lam


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    """A smoke-size model trained on 12 sprite episodes: (run directory, its dataset)."""
    root = tmp_path_factory.mktemp("probe")
    write_sprite_dataset(root / "train", episodes=12, length=16, size=32, seed=0)
    config = dataclasses.replace(LAMConfig(**LAM_PRESETS["smoke"]), test_fraction=0.25)
    train_lam(config, root / "train", root / "run", progress=False)
    return root / "run", root / "train"


def test_on_the_training_data_only_held_out_episodes_are_probed(trained) -> None:
    run, data = trained
    result = probe_lam(run, data, samples=10_000)
    dataset = open_dataset(data)
    test_eps = split_episodes(dataset, 0.25, 0)[1]
    assert result["held_out_split"] is True
    assert result["num_samples"] == len(WindowIndex(dataset, 1, test_eps))  # 3 episodes x 14
    assert result["num_samples"] == 3 * 14


def test_a_second_recording_is_probed_whole_with_the_frame_difference_of_those_windows(
    trained, tmp_path: Path
) -> None:
    run, _ = trained
    write_sprite_dataset(tmp_path / "other", episodes=60, length=16, size=32, seed=1)
    result = probe_lam(run, tmp_path / "other", samples=600, out=tmp_path / "q.json")
    assert result["held_out_split"] is False and result["num_samples"] == 600
    assert json.loads((tmp_path / "q.json").read_text())["num_samples"] == 600
    # the reference probe sees the 4x-pooled o_(t+1) - o_t of exactly the probed windows
    dataset = open_dataset(tmp_path / "other")
    index = WindowIndex(dataset, 1)
    windows = np.sort(index.labelled_subset(600, seed=123))
    frames = frames_to_float(torch.from_numpy(index.read(windows)))  # (600, 3, C, H, W)
    diff = F.avg_pool2d(frames[:, -1] - frames[:, -2], 4).flatten(1).numpy()
    actions = dataset.actions[index.frame_index(windows)]
    expected = probe_accuracy(diff, actions, 8)
    assert result["frame_difference_mlp_accuracy"] == expected.mlp_accuracy
    assert result["majority_accuracy"] == expected.majority_accuracy
    histogram = result["code_action_histogram"]
    assert 0 < sum(sum(counts) for counts in histogram.values()) <= 600


def test_bad_inputs_are_refused_before_any_work(trained, tmp_path: Path) -> None:
    run, _ = trained
    write_sprite_dataset(tmp_path / "small", episodes=2, length=8, size=16, seed=0)
    with pytest.raises(ValueError, match=r"\(16, 16, 3\).*\(32, 32, 3\)"):
        probe_lam(run, tmp_path / "small")
    with DatasetWriter(tmp_path / "video", frame_shape=(32, 32, 3)) as writer:
        writer.add_episode(sprite_episode(np.random.default_rng(0), 8, 32)[0])
    with pytest.raises(ValueError, match="true actions"):
        probe_lam(run, tmp_path / "video")
    with pytest.raises(ValueError, match="samples must be >= 4"):
        probe_lam(run, tmp_path / "video", samples=2)
    with pytest.raises(ValueError, match="does not exist"):
        probe_lam(run, tmp_path / "video", out=tmp_path / "no" / "q.json")


def test_cli_prints_the_figures_and_reports_errors_in_one_line(trained, tmp_path: Path) -> None:
    run, data = trained
    out = tmp_path / "quality.json"
    done = subprocess.run(
        [sys.executable, "-m", "lapo", "probe-lam", str(run), "--data", str(data),
         "--out", str(out)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "held-out episodes" in done.stdout and "MLP probe" in done.stdout
    assert json.loads(out.read_text())["held_out_split"] is True
    failed = subprocess.run(
        [sys.executable, "-m", "lapo", "probe-lam", str(tmp_path / "nothing"), "--data",
         str(data)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert failed.returncode == 1 and failed.stderr.startswith("lapo: error:")


def test_too_few_held_out_windows_skip_the_probes_with_a_reason(trained, tmp_path: Path) -> None:
    run, _ = trained
    write_sprite_dataset(tmp_path / "short", episodes=1, length=5, size=32, seed=2)  # 3 windows
    result = probe_lam(run, tmp_path / "short")
    assert result["num_samples"] == 3 and "probe_mlp_accuracy" not in result
    assert "hold 3 transitions, the probes need at least 4" in result["probes_skipped"]
    assert summary_line(result).startswith("3 windows: No action probes: the probed episodes")
