"""Report figures: every plot writes a real PNG, bad input fails clearly, degenerate data works.

Also the FDM sample generator on a tiny random-weight latent action model.
"""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from lapo.config import LAM_PRESETS, LAMConfig
from lapo.envs import ACTION_MEANINGS, NOOP_ACTION
from lapo.eval import plots, return_plots
from lapo.eval.fdm_samples import fdm_predictions, format_code, most_used_codes
from lapo.models.lam import LatentActionModel


def assert_png(path, min_coloured: float = 0.0) -> np.ndarray:
    """The file is a non-empty PNG with a drawing on it (many colours, not mostly one).

    ``min_coloured``: least fraction of saturated pixels (markers, bars; text and axes are grey).
    """
    assert path.is_file() and path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = imread(path)  # (H, W, 4) float in [0, 1]
    pixels = image[..., :3].reshape(-1, 3)
    assert len(np.unique(pixels, axis=0)) > 10
    assert (pixels.min(1) < 0.9).mean() > 0.005  # more than a few dark or coloured pixels
    assert (pixels.max(1) - pixels.min(1) > 0.2).mean() >= min_coloured
    return image


def clustered_latents(n: int = 300, dim: int = 8, actions=(1, 4, 7), seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = rng.choice(np.asarray(actions), n)
    centres = rng.normal(size=(15, dim)) * 4
    return (centres[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.fixture
def no_umap(monkeypatch):
    """Make ``import umap`` fail whether or not umap-learn is installed."""
    monkeypatch.setitem(sys.modules, "umap", None)


@pytest.fixture
def fake_umap(monkeypatch):
    """A stand-in umap module that records its calls; yields the list of fitted sizes."""
    calls = []

    class UMAP:
        def __init__(self, n_neighbors, random_state):
            self.n_neighbors = n_neighbors

        def fit_transform(self, x):
            calls.append(len(x))
            return np.asarray(x)[:, :2] * 1.0

    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=UMAP))
    return calls


def test_plots_module_loads_neither_torch_nor_pyplot() -> None:
    code = (
        "import sys, lapo.eval.plots; "
        "print('torch' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_training_curves(tmp_path) -> None:
    steps = np.arange(50)
    series = {"train": (steps, np.exp(-steps / 10) + 0.01), "test": (steps[::10], np.ones(5))}
    assert_png(plots.plot_training_curves(series, tmp_path / "a.png", "Stage 1", log_y=True))
    # zeros under log_y (symlog), smoothing, a NaN and an empty series
    values = np.linspace(0, 1, 50)
    values[3] = np.nan
    series = {"loss": (steps, values), "empty": ([], [])}
    path = plots.plot_training_curves(series, tmp_path / "b.png", "t", log_y=True, smooth=0.9)
    assert_png(path)


@pytest.mark.parametrize(
    "series",
    [{}, {"a": ([], [])}, {"a": ([1, 2, 3], [1.0, 2.0])}, {"a": ([1.0], [np.nan])}],
)
def test_training_curves_rejects_bad_series(tmp_path, series) -> None:
    with pytest.raises(ValueError, match="no finite data|lengths must match"):
        plots.plot_training_curves(series, tmp_path / "x.png", "t")
    assert not (tmp_path / "x.png").exists()


def test_latent_map_falls_back_to_pca_without_umap(tmp_path, no_umap) -> None:
    latents, actions = clustered_latents()
    result = plots.plot_latent_map(latents, actions, tmp_path / "map.png")
    assert result.method == "pca" and result.num_points == 300 and result.num_hidden == 0
    assert_png(result.path, min_coloured=0.004)  # the points, not only the legend
    with pytest.raises(ImportError, match="umap-learn"):
        plots.plot_latent_map(latents, actions, tmp_path / "u.png", method="umap")


def test_latent_map_uses_umap_when_importable(tmp_path, fake_umap) -> None:
    latents, actions = clustered_latents(n=100)
    assert plots.plot_latent_map(latents, actions, tmp_path / "u.png").method == "umap"
    assert fake_umap == [100]
    # fewer points than UMAP's neighbourhood: PCA, even when asked for UMAP
    few = plots.plot_latent_map(latents[:10], actions[:10], tmp_path / "f.png", method="umap")
    assert few.method == "pca" and fake_umap == [100]
    assert plots.plot_latent_map(latents, actions, tmp_path / "p.png", method="pca").method == "pca"


def test_latent_map_hides_noop(tmp_path, no_umap) -> None:
    latents, actions = clustered_latents(actions=(NOOP_ACTION, 0, 7))
    noop = int((actions == NOOP_ACTION).sum())
    assert 0 < noop < len(actions)
    shown = plots.plot_latent_map(latents, actions, tmp_path / "s.png", hide_noop=False)
    hidden = plots.plot_latent_map(latents, actions, tmp_path / "h.png", hide_noop=True)
    assert shown.num_points == len(actions) and shown.num_hidden == 0
    assert hidden.num_points == len(actions) - noop and hidden.num_hidden == noop
    assert_png(hidden.path)
    only_noop = np.full(20, NOOP_ACTION)
    with pytest.raises(ValueError, match="every point is NOOP"):
        plots.plot_latent_map(latents[:20], only_noop, tmp_path / "n.png", hide_noop=True)


def test_latent_map_degenerate_data(tmp_path, no_umap) -> None:
    # one class, one latent dimension, a single point, and a subsample
    latents, _ = clustered_latents(n=40)
    one = np.full(40, 3)
    assert_png(plots.plot_latent_map(latents, one, tmp_path / "one.png").path, 0.002)
    assert plots.plot_latent_map(latents[:, :1], one, tmp_path / "d1.png").num_points == 40
    assert plots.plot_latent_map(latents[:1], one[:1], tmp_path / "p1.png").num_points == 1
    assert plots.plot_latent_map(latents, one, tmp_path / "m.png", max_points=7).num_points == 7


@pytest.mark.parametrize(
    "latents, actions, match",
    [
        (np.zeros((0, 4)), np.zeros(0, int), "non-empty 2-d"),
        (np.zeros(5), np.zeros(5, int), "non-empty 2-d"),
        (np.zeros((5, 4)), np.zeros(4, int), "lengths must match"),
        (np.zeros((5, 4)), np.full(5, 15), r"\[0, 15\)"),
        (np.zeros((5, 4)), np.zeros(5), "integers"),
        (np.full((5, 4), np.nan), np.zeros(5, int), "NaN"),
    ],
)
def test_latent_map_rejects_bad_input(tmp_path, latents, actions, match) -> None:
    with pytest.raises(ValueError, match=match):
        plots.plot_latent_map(latents, actions, tmp_path / "x.png")


def test_fdm_prediction_grid(tmp_path) -> None:
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    preds = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    labels = ["#1 (40%)", "#2 (20%)", "#3 (5%)"]
    path = plots.plot_fdm_predictions(obs, obs, preds, labels, tmp_path / "f.png", obs)
    assert_png(path)
    gray = obs[..., :1]
    assert_png(plots.plot_fdm_predictions(gray, gray, preds[..., :1], labels, tmp_path / "g.png"))
    rgba = np.concatenate([obs, np.full_like(obs[..., :1], 255)], axis=-1)  # e.g. imported RGBA
    alpha = np.concatenate([preds, np.zeros_like(preds[..., :1])], axis=-1)
    assert_png(plots.plot_fdm_predictions(rgba, rgba, alpha, labels, tmp_path / "a.png"))
    assert plots._image(rgba[0])[0].shape == (16, 16, 3)  # the fourth channel is not drawn
    with pytest.raises(ValueError, match="predictions must be"):
        plots.plot_fdm_predictions(obs, obs, preds, labels[:2], tmp_path / "x.png")
    with pytest.raises(ValueError, match="uint8"):
        plots.plot_fdm_predictions(obs, obs.astype(np.float32), preds, labels, tmp_path / "x.png")


def test_codebook_usage(tmp_path) -> None:
    indices = np.random.default_rng(0).integers(0, 5, (100, 2, 4))
    counts = plots.codebook_counts(indices, codebook_size=8)
    assert counts.shape == (2, 8) and counts.sum() == 800 and (counts[:, 5:] == 0).all()
    assert_png(plots.plot_codebook_usage(counts, tmp_path / "c.png"))
    assert_png(plots.plot_codebook_usage(counts[:1], tmp_path / "c1.png"))
    with pytest.raises(ValueError, match="at least one use"):
        plots.plot_codebook_usage(np.zeros((2, 8)), tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        plots.codebook_counts(indices, codebook_size=4)


def test_confusion_matrix(tmp_path) -> None:
    rng = np.random.default_rng(0)
    true = rng.choice([1, 4, 7, 3], 200)
    predicted = np.where(rng.random(200) < 0.7, true, rng.choice([1, 4, 7, 12], 200))
    assert_png(plots.plot_confusion_matrix(true, predicted, tmp_path / "c.png"))
    assert_png(plots.plot_confusion_matrix(np.ones(5, int), np.ones(5, int), tmp_path / "1.png"))
    with pytest.raises(ValueError, match="must match"):
        plots.plot_confusion_matrix(true, predicted[:-1], tmp_path / "x.png")
    with pytest.raises(ValueError, match="integers in"):
        plots.plot_confusion_matrix(true, predicted + 20, tmp_path / "x.png")
    with pytest.raises(ValueError, match="non-empty"):
        plots.plot_confusion_matrix([], [], tmp_path / "x.png")


def test_returns(tmp_path) -> None:
    rows = [
        {"name": "expert", "mean": 36.3, "ci95": 1.0, "normalized": 1.0, "normalized_ci95": 0.03},
        {"name": "random", "mean": 0.9, "ci95": 0.1, "normalized": 0.0, "normalized_ci95": 0.01},
        {"name": "label-only BC", "mean": 5.0, "ci95": float("nan"), "normalized": 0.12},
        {"name": "LAPO decoded", "mean": 20.0, "ci95": 2.0, "normalized": 0.54,
         "normalized_ci95": float("nan")},
    ]  # fmt: skip
    assert_png(return_plots.plot_returns(rows, tmp_path / "r.png"), min_coloured=0.02)
    raw = [{"name": "a", "mean": 3.0, "ci95": 0.0, "normalized": None}, {"name": "b", "mean": 1.0}]
    assert_png(return_plots.plot_returns(raw, tmp_path / "raw.png"))
    zero = [{"name": "a", "mean": 0.0, "ci95": None}]
    assert_png(return_plots.plot_returns(zero, tmp_path / "zero.png"))
    with pytest.raises(ValueError, match="at least one row"):
        return_plots.plot_returns([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="'name' and 'mean'"):
        return_plots.plot_returns([{"name": "a"}], tmp_path / "x.png")


def test_label_sweep(tmp_path) -> None:
    labels = [256, 16, 64, 1024]
    mean = [0.4, 0.05, np.nan, 0.5]
    ci = [0.05, np.nan, 0.1, 0.04]
    assert_png(return_plots.plot_label_sweep(labels, mean, ci, tmp_path / "s.png"))
    path = return_plots.plot_label_sweep([32], [0.1], [0.02], tmp_path / "n.png", None, None)
    assert_png(path)
    with pytest.raises(ValueError, match="one shape"):
        return_plots.plot_label_sweep(labels, mean[:3], ci, tmp_path / "x.png")
    with pytest.raises(ValueError, match="> 0"):
        return_plots.plot_label_sweep([0, 16], [0.1, 0.2], [0.0, 0.0], tmp_path / "x.png")
    both = return_plots.plot_label_sweep(
        labels, mean, ci, tmp_path / "b.png", baseline=([16, 256], [0.02, 0.3], [0.01, 0.05])
    )
    assert_png(both)
    assert both.read_bytes() != (tmp_path / "s.png").read_bytes()  # a second curve was drawn
    with pytest.raises(ValueError, match="one shape"):
        return_plots.plot_label_sweep(labels, mean, ci, tmp_path / "x.png", baseline=([16], [], []))
    assert return_plots.PAPER_LABEL_CURVE[256] == 0.50 and return_plots.PAPER_PPO_4M == 0.44


def test_online_curves(tmp_path) -> None:
    steps = np.linspace(0, 4e6, 41)
    lapo = [(steps, 1 - np.exp(-steps / 5e5) + 0.05 * s) for s in range(3)]
    ppo = [(steps[: 41 - 5 * s], np.sqrt(steps[: 41 - 5 * s] / 4e6) * 0.44) for s in range(3)]
    curves = {"LAPO fine-tuned": lapo, "PPO from scratch": ppo}
    assert_png(return_plots.plot_online_curves(curves, tmp_path / "o.png"))
    assert_png(return_plots.plot_online_curves({"one seed": lapo[:1]}, tmp_path / "1.png"))
    grid, mean, std = return_plots._mean_band(
        [([0, 2], [0.0, 2.0]), ([0, 1, 3], [1.0, 1.0, 1.0])], "x"
    )
    np.testing.assert_allclose(grid, [0, 1, 2])
    np.testing.assert_allclose(mean, [0.5, 1.0, 1.5])
    with pytest.raises(ValueError, match="do not overlap"):
        return_plots.plot_online_curves(
            {"a": [([0, 1], [0, 1]), ([2, 3], [0, 1])]}, tmp_path / "x.png"
        )
    with pytest.raises(ValueError, match="at least one seed"):
        return_plots.plot_online_curves({"a": []}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="equal length"):
        return_plots.plot_online_curves({"a": [([0, 1], [0])]}, tmp_path / "x.png")


# --- FDM samples -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lam() -> LatentActionModel:
    torch.manual_seed(0)
    return LatentActionModel(LAMConfig(**LAM_PRESETS["smoke"]), image_size=32)


def test_most_used_codes() -> None:
    a, b, c = np.zeros((2, 4), int), np.ones((2, 4), int), np.full((2, 4), 2)
    indices = np.stack([b, a, b, c, c, b])
    codes, counts = most_used_codes(indices, 2)
    assert codes.shape == (2, 2, 4) and codes.dtype == np.int64
    np.testing.assert_array_equal(codes, [b, c])
    np.testing.assert_array_equal(counts, [3, 2])
    assert len(most_used_codes(indices, 10)[0]) == 3
    assert format_code(np.array([[1, 2], [3, 4]])) == "1 2 | 3 4"
    with pytest.raises(ValueError):
        most_used_codes(np.zeros((0, 2, 4), int), 2)


def test_fdm_predictions_shapes_and_codes(tiny_lam, tmp_path) -> None:
    rng = np.random.default_rng(0)
    windows = rng.integers(0, 256, (3, tiny_lam.context + 2, 32, 32, 3), dtype=np.uint8)
    codes = np.stack([np.zeros((2, 4), int), np.full((2, 4), 5), np.full((2, 4), 63)])
    tiny_lam.train()
    samples = fdm_predictions(tiny_lam, windows, codes, batch_size=2)
    assert tiny_lam.training  # mode restored
    assert samples.predictions.shape == (3, 3, 32, 32, 3)
    assert samples.predictions.dtype == np.uint8 and samples.own.dtype == np.uint8
    assert samples.own.shape == (3, 32, 32, 3) and samples.own_codes.shape == (3, 2, 4)
    # random weights: different codes give different frames for every window
    for i in range(3):
        assert not np.array_equal(samples.predictions[i, 0], samples.predictions[i, 1])
    # the window's own code reproduces its own prediction (up to conv numerics)
    again = fdm_predictions(tiny_lam, windows[:1], samples.own_codes[:1])
    diff = np.abs(again.predictions[0, 0].astype(int) - samples.own[0].astype(int))
    assert diff.max() <= 1
    # the samples feed the plot directly
    labels = [format_code(c) for c in codes]
    assert_png(
        plots.plot_fdm_predictions(
            windows[:, -2], windows[:, -1], samples.predictions, labels, tmp_path / "f.png",
            samples.own,
        )
    )  # fmt: skip


def test_fdm_predictions_without_codes_and_bad_input(tiny_lam) -> None:
    windows = np.zeros((2, tiny_lam.context + 2, 32, 32, 3), dtype=np.uint8)
    samples = fdm_predictions(tiny_lam, windows, None)
    assert samples.predictions.shape == (2, 0, 32, 32, 3) and samples.own.shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="uint8"):
        fdm_predictions(tiny_lam, windows.astype(np.float32), None)
    with pytest.raises(ValueError, match=r"k\+2"):
        fdm_predictions(tiny_lam, windows[:, :1], None)
    with pytest.raises(ValueError, match="shape"):
        fdm_predictions(tiny_lam, windows, np.zeros((2, 3, 4), int))
    no_vq = LatentActionModel(LAMConfig(**{**LAM_PRESETS["smoke"], "quantizer": "none"}), 3, 32)
    with pytest.raises(ValueError, match="no codebook"):
        fdm_predictions(no_vq, windows, np.zeros((1, 2, 4), int))
    assert fdm_predictions(no_vq, windows, None).own_codes is None


def test_action_names_match_procgen() -> None:
    assert len(ACTION_MEANINGS) == 15 and ACTION_MEANINGS[NOOP_ACTION] == "NOOP"
