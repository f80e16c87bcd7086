"""Figures of ``lapo aggregate`` across games: aggregate intervals and performance profiles
(Agarwal et al. 2021, rliable's plots), online curves of every game (the paper's Figure 3) and a
grid of the runs' latent-space maps (its Figure 5). Same conventions as ``lapo.eval.plots``:
pure functions from numbers (or the runs' PNGs) to PNG files, no pyplot, inputs checked first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lapo.eval.plots import _figure, _save
from lapo.eval.return_plots import _mean_band, _steps_formatter

#: ``(point, low, high)`` of one estimate; each a float or an array of one shape.
Estimate = tuple[object, object, object]


def plot_aggregate_intervals(
    estimates: Mapping[str, Mapping[str, Estimate]], path: str | Path
) -> Path:
    """One panel per statistic (e.g. IQM, mean): each method's point estimate and its 95% CI.

    Args:
        estimates: ``{statistic: {method: (point, low, high)}}``, normalized returns.

    Returns: the PNG path. Raises: ValueError when a statistic has no methods.
    """
    if not estimates or any(not m for m in estimates.values()):
        raise ValueError("plot_aggregate_intervals needs at least one method per statistic")
    methods = list(next(iter(estimates.values())))
    fig = _figure(3.2 * len(estimates) + 1.5, 0.45 * len(methods) + 1.4)
    axes = fig.subplots(1, len(estimates), sharey=True, squeeze=False)[0]
    ends = [float(v) for rows in estimates.values() for e in rows.values() for v in e]
    xlim = (min(0.0, *ends) - 0.05, max(1.0, *ends) + 0.05)  # 0 (random) and 1 (expert) shown
    for ax, (stat, rows) in zip(axes, estimates.items(), strict=True):
        for i, method in enumerate(methods):
            if method not in rows:
                continue
            point, low, high = (float(v) for v in rows[method])
            ax.barh(i, high - low, left=low, height=0.6, color=f"C{i}", alpha=0.35)
            ax.plot([point, point], [i - 0.3, i + 0.3], color=f"C{i}", lw=2)
        ax.axvline(1.0, color="black", ls="--", lw=1)
        ax.axvline(0.0, color="grey", ls=":", lw=1)
        ax.set(title=stat, xlabel="normalized return", xlim=xlim)
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(methods)), methods)
    axes[0].invert_yaxis()
    return _save(fig, path)


def plot_performance_profiles(
    taus: Sequence[float], profiles: Mapping[str, Estimate], path: str | Path
) -> Path:
    """Fraction of runs with normalized return above tau, against tau, with 95% CI bands.

    Args:
        taus: ``(K,)`` thresholds; profiles: ``{method: (point (K,), low (K,), high (K,))}``.

    Returns: the PNG path. Raises: ValueError for no methods or a shape other than ``(K,)``.
    """
    taus = np.asarray(taus, dtype=np.float64)
    if not profiles:
        raise ValueError("plot_performance_profiles needs at least one method")
    fig = _figure(6.5, 4.2)
    ax = fig.add_subplot()
    for i, (method, values) in enumerate(profiles.items()):
        point, low, high = (np.asarray(v, dtype=np.float64) for v in values)
        if not point.shape == low.shape == high.shape == taus.shape:
            raise ValueError(f"{method!r}: profile shapes must equal taus' {taus.shape}")
        # Line styles as well as colours: methods with equal scores draw on top of each other.
        style = ("-", "--", "-.", ":")[i % 4]
        ax.plot(taus, point, color=f"C{i}", linestyle=style, label=method)
        ax.fill_between(taus, low, high, color=f"C{i}", alpha=0.2)
    ax.set(title="Performance profiles (95% stratified-bootstrap CIs)",
           xlabel="normalized return τ", ylabel="fraction of runs with score > τ",
           ylim=(-0.02, 1.02))  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def plot_online_grid(
    games: Mapping[str, Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]]],
    path: str | Path,
) -> Path:
    """Normalized return against environment steps for every game (mean over seeds), and a first
    panel with the mean over games (paper Figure 3).

    Args:
        games: ``{game: {method: [(steps (T_i,), normalized (T_i,)) per seed]}}``. Seeds are
            interpolated onto the steps they all cover; the mean over games onto the steps that
            every game's mean covers.

    Returns: the PNG path. Raises: ValueError for no games, or seeds or games whose step ranges
        do not overlap.
    """
    if not games:
        raise ValueError("plot_online_grid needs at least one game")
    methods = list(dict.fromkeys(m for runs in games.values() for m in runs))
    means = {
        game: {m: _mean_band(seeds, f"{game} {m}")[:2] for m, seeds in runs.items()}
        for game, runs in games.items()
    }
    columns = min(4, len(games) + 1)
    rows = math.ceil((len(games) + 1) / columns)
    fig = _figure(3.0 * columns, 2.4 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).reshape(-1)
    panels = {f"mean over {len(games)} game{'s' * (len(games) > 1)}": None, **means}
    for ax, (title, curves) in zip(axes, panels.items(), strict=False):
        for i, method in enumerate(methods):
            if curves is None:  # the aggregate panel
                per_game = [(c[method][0], c[method][1]) for c in means.values() if method in c]
                steps, mean = _mean_band(per_game, method)[:2]
            elif method in curves:
                steps, mean = curves[method]
            else:
                continue
            ax.plot(steps, mean, color=f"C{i}", label=method)
        ax.axhline(1.0, color="black", ls="--", lw=0.8)
        ax.axhline(0.0, color="grey", ls=":", lw=0.8)
        ax.xaxis.set_major_formatter(_steps_formatter())
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    axes[0].set_ylabel("normalized return")
    axes[0].legend(fontsize="x-small")
    return _save(fig, path)


def tile_images(images: Mapping[str, str | Path], path: str | Path, columns: int = 4) -> Path:
    """A grid of PNG images (e.g. each game's latent-space map), each titled by its key.

    Returns: the PNG path. Raises: ValueError for no images; FileNotFoundError for a missing one.
    """
    if not images:
        raise ValueError("tile_images needs at least one image")
    from matplotlib.image import imread

    pixels = {}
    for title, file in images.items():
        if not Path(file).is_file():
            raise FileNotFoundError(f"no image at {file} (for {title})")
        pixels[title] = imread(file)
    columns = min(columns, len(pixels))
    rows = math.ceil(len(pixels) / columns)
    fig = _figure(4.0 * columns, 3.4 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).reshape(-1)
    for ax in axes:
        ax.set_axis_off()
    for ax, (title, image) in zip(axes, pixels.items(), strict=False):
        ax.imshow(image)
        ax.set_title(title)
    return _save(fig, path)
