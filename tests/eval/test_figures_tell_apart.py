"""Figures that must not hide what they show: coinciding sweep curves, all 15 actions apart."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.container import ErrorbarContainer

from lapo.envs import ACTION_MEANINGS, NOOP_ACTION
from lapo.eval import plots, return_plots


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plot functions save, in order (their ``_save`` is wrapped)."""
    figures = []

    def keep(save):
        def wrapper(fig, path):
            figures.append(fig)
            return save(fig, path)

        return wrapper

    monkeypatch.setattr(plots, "_save", keep(plots._save))
    monkeypatch.setattr(return_plots, "_save", keep(return_plots._save))
    return figures


def _curve(ax, prefix: str) -> ErrorbarContainer:
    (found,) = [
        c
        for c in ax.containers
        if isinstance(c, ErrorbarContainer) and c.get_label().startswith(prefix)
    ]
    return found


def test_label_sweep_shows_both_methods_when_they_coincide(tmp_path, drawn) -> None:
    labels, mean, ci = [16, 64, 256], [0.1, 0.3, 0.5], [0.05, 0.05, 0.05]
    return_plots.plot_label_sweep(
        labels, mean, ci, tmp_path / "same.png", baseline=(labels, mean, ci)
    )
    (ax,) = drawn[-1].axes
    lapo = _curve(ax, "this run, LAPO decoded").lines[0]
    bc = _curve(ax, "this run, label-only BC").lines[0]
    assert lapo.get_linestyle() == "-" and bc.get_linestyle() == "--"
    assert lapo.get_marker() == "o" and bc.get_marker() == "s"
    assert to_rgb(lapo.get_color()) != to_rgb(bc.get_color())
    # same values, yet apart on the x axis (log2): neither line lies on the other
    assert np.all(bc.get_xdata() > lapo.get_xdata())
    np.testing.assert_allclose(np.log2(bc.get_xdata() / lapo.get_xdata()), 0.06)
    np.testing.assert_allclose(bc.get_ydata(), lapo.get_ydata())
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:2] == ["this run, LAPO decoded (95% CI)", "this run, label-only BC (95% CI)"]


def test_label_sweep_alone_sits_on_its_label_counts(tmp_path, drawn) -> None:
    return_plots.plot_label_sweep([16, 64], [0.1, 0.2], [0.0, 0.0], tmp_path / "one.png")
    (ax,) = drawn[-1].axes
    np.testing.assert_array_equal(_curve(ax, "this run, LAPO").lines[0].get_xdata(), [16, 64])


def _lab(rgb) -> np.ndarray:
    """sRGB in [0, 1] -> CIELAB (D65), for perceptual colour distances."""
    c = np.asarray(rgb, dtype=np.float64)
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = (
        c
        @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
        / np.array([0.95047, 1.0, 1.08883])
    )
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_action_colours_are_pairwise_distinct_with_grey_noop() -> None:
    colours = plots._action_colors(len(ACTION_MEANINGS), NOOP_ACTION)[:, :3]
    assert colours.shape == (15, 3)
    assert np.allclose(colours[NOOP_ACTION], colours[NOOP_ACTION][0])  # grey: r = g = b
    for i, j in itertools.combinations(range(15), 2):
        distance = np.linalg.norm(_lab(colours[i]) - _lab(colours[j]))  # CIE76 delta E
        assert distance > 20, (ACTION_MEANINGS[i], ACTION_MEANINGS[j], distance)
    others = np.delete(colours, NOOP_ACTION, axis=0)
    assert (others.max(1) - others.min(1) > 0.15).all()  # no other grey


def test_latent_map_legend_names_all_15_actions_in_their_colours(tmp_path, drawn) -> None:
    rng = np.random.default_rng(0)
    actions = rng.choice([1, 4, 7], 200)  # three actions present, twelve absent
    latents = rng.normal(size=(200, 4)).astype(np.float32)
    plots.plot_latent_map(latents, actions, tmp_path / "map.png", method="pca")
    (ax,) = drawn[-1].axes
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert [t.rsplit(" (", 1)[0] for t in texts] == list(ACTION_MEANINGS)
    assert texts[1] == f"LEFT ({(actions == 1).sum()})" and texts[0] == "LEFT-DOWN (0)"
    handles = legend.legend_handles
    colours = [tuple(np.round(to_rgb(h.get_facecolor()[0]), 6)) for h in handles]
    assert len(set(colours)) == 15
    expected = plots._action_colors(15, NOOP_ACTION)[:, :3]
    np.testing.assert_allclose(np.array(colours), expected, atol=1e-6)
