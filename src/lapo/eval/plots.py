"""Figures of the pipeline report: pure functions from numpy arrays and plain dicts to PNG files.

Every ``plot_*`` function draws on its own ``matplotlib.figure.Figure`` with the Agg canvas (no
pyplot, no global backend), writes one PNG to ``path`` (parent folders are created) and returns
what it wrote. Inputs are checked first; a bad shape or an empty array raises ``ValueError`` with
what was expected. The figures follow the paper (Schmidt & Jiang 2024): the latent map is its
Figure 5, the FDM grid the idea of its Figure 1, the online curves its Figure 3.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lapo.envs.games import ACTION_MEANINGS, NOOP_ACTION

UMAP_NEIGHBOURS = 15
_DPI = 110


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def _array(name: str, value, ndim: int, dtype=None) -> np.ndarray:
    """``value`` as an array of ``ndim`` dimensions with at least one element, else ValueError."""
    arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
    if arr.ndim != ndim or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-d array, got shape {arr.shape}")
    return arr


#: 14 colours for the actions other than NOOP, in action order (Procgen: LEFT-DOWN olive, LEFT
#: blue, LEFT-UP brown, DOWN red, UP green, RIGHT-DOWN pink, RIGHT orange, RIGHT-UP purple, then
#: the keys D, A, W, S, Q, E): tab10 without its grey plus five picked for the largest smallest
#: CIELAB distance to the rest (no two of the 14, nor any of them and NOOP's grey, closer than
#: delta-E 27; the tab20 colours used before came as close as 17).
_ACTION_PALETTE = (
    "#bcbd22", "#1f77b4", "#8c564b", "#d62728", "#2ca02c", "#e377c2", "#ff7f0e", "#9467bd",
    "#17becf", "#fdc086", "#a1d99b", "#f0027f", "#637939", "#a6761d",
)  # fmt: skip
_NOOP_GREY = (0.6, 0.6, 0.6, 1.0)


def _action_colors(num_actions: int, noop_action: int | None) -> np.ndarray:
    """``(num_actions, 4)`` RGBA: ``_ACTION_PALETTE`` in action order, NOOP grey (often the
    largest class; without a NOOP, grey is the 15th colour); evenly spaced hues when the
    palette is too short."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgba

    has_noop = noop_action is not None and 0 <= noop_action < num_actions
    others = [a for a in range(num_actions) if not (has_noop and a == noop_action)]
    palette = np.array([to_rgba(c) for c in _ACTION_PALETTE] + ([] if has_noop else [_NOOP_GREY]))
    if len(others) > len(palette):
        palette = colormaps["hsv"](np.linspace(0, 1, len(others), endpoint=False))
    colors = np.empty((num_actions, 4))
    colors[others] = palette[: len(others)]
    if has_noop:
        colors[noop_action] = _NOOP_GREY
    return colors


def _ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average (as TensorBoard's smoothing)."""
    out, acc, norm = np.empty_like(values, dtype=np.float64), 0.0, 0.0
    for i, v in enumerate(values):
        acc, norm = weight * acc + (1 - weight) * v, weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def plot_training_curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str,
    xlabel: str = "update step",
    ylabel: str = "loss",
    log_y: bool = False,
    smooth: float = 0.0,
) -> Path:
    """Line plot of one or more logged scalars against steps.

    Args:
        series: ``{name: (steps (T,), values (T,))}``, numbers of any real dtype; T may differ
            between series and may be 0 for some (they are left out), not for all. Non-finite
            values are dropped and counted in the legend.
        title, xlabel, ylabel: figure text.
        log_y: logarithmic y axis; symmetric-log when some value is <= 0.
        smooth: EMA weight in [0, 1); above 0 the raw curve is drawn faint under the smoothed one.

    Returns: the PNG path. Raises: ValueError for no data, mismatched lengths or a bad ``smooth``.
    """
    if not 0.0 <= smooth < 1.0:
        raise ValueError(f"smooth must be in [0, 1), got {smooth}")
    cleaned = {}
    for name, pair in series.items():
        if len(pair) != 2:
            raise ValueError(f"series {name!r} must be a (steps, values) pair")
        steps, values = (np.asarray(v, dtype=np.float64).reshape(-1) for v in pair)
        if len(steps) != len(values):
            raise ValueError(
                f"series {name!r}: {len(steps)} steps but {len(values)} values; lengths must match"
            )
        ok = np.isfinite(steps) & np.isfinite(values)
        if ok.any():
            cleaned[name] = (steps[ok], values[ok], int((~ok).sum()))
    if not cleaned:
        raise ValueError(f"plot_training_curves({title!r}): no finite data in any series")
    fig = _figure(7.0, 4.0)
    ax = fig.add_subplot()
    for name, (steps, values, dropped) in cleaned.items():
        label = name + (f" ({dropped} non-finite dropped)" if dropped else "")
        if smooth > 0 and len(values) > 2:
            (line,) = ax.plot(steps, values, alpha=0.25, linewidth=0.8)
            ax.plot(steps, _ema(values, smooth), color=line.get_color(), label=label)
        else:
            ax.plot(steps, values, label=label, marker="." if len(values) < 30 else None)
    if log_y:
        positive = all((v > 0).all() for _, v, _ in cleaned.values())
        ax.set_yscale("log" if positive else "symlog")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


@dataclass(frozen=True)
class LatentMapResult:
    """What ``plot_latent_map`` drew.

    Attributes:
        path: the PNG. method: ``"umap"`` or ``"pca"``, the projection actually used.
        num_points: points drawn. num_hidden: NOOP points left out (``hide_noop``).
    """

    path: Path
    method: str
    num_points: int
    num_hidden: int


def _project(latents: np.ndarray, method: str, seed: int) -> tuple[np.ndarray, str, list[str]]:
    """``(N, D) -> (N, 2) float64``, the method used and the two axis labels."""
    if method in ("auto", "umap") and len(latents) > UMAP_NEIGHBOURS + 1:
        try:
            import umap  # optional dependency: pip install umap-learn
        except ImportError as err:
            if method == "umap":
                raise ImportError(
                    "method='umap' needs umap-learn (pip install umap-learn); "
                    "use method='auto' or 'pca' to fall back to PCA"
                ) from err
        else:
            reducer = umap.UMAP(n_neighbors=UMAP_NEIGHBOURS, random_state=seed)
            return np.asarray(reducer.fit_transform(latents)), "umap", ["UMAP 1", "UMAP 2"]
    centred = latents.astype(np.float64) - latents.mean(0, dtype=np.float64)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((len(latents), 2))
    n = min(2, vt.shape[0])
    coords[:, :n] = centred @ vt[:n].T
    var = s**2 / max((s**2).sum(), 1e-30)
    labels = [f"PC {i + 1} ({100 * var[i]:.0f}% var.)" if i < n else f"PC {i + 1}" for i in (0, 1)]
    return coords, "pca", labels


def plot_latent_map(
    latents: np.ndarray,
    actions: np.ndarray,
    path: str | Path,
    action_names: Sequence[str] = ACTION_MEANINGS,
    hide_noop: bool = False,
    noop_action: int | None = NOOP_ACTION,
    method: str = "auto",
    seed: int = 0,
    max_points: int = 5000,
    title: str | None = None,
    colour_by: str = "true action",
) -> LatentMapResult:
    """2-d map of pre-quantization latent actions coloured by true action (paper Figure 5).

    Args:
        latents: ``(N, D) float`` continuous IDM latents, all finite.
        actions: ``(N,) int`` true actions in ``[0, len(action_names))``.
        action_names: legend names by action index (default: Procgen's 15); the legend names
            every one, in its colour, with the number of its points drawn (0 for absent ones).
        hide_noop: leave out the points whose action is ``noop_action``.
        method: ``"auto"`` (UMAP when umap-learn is installed, else PCA), ``"umap"`` or ``"pca"``.
            UMAP needs more than 16 points; with fewer, PCA is used whatever ``method`` says.
        seed: seed of the subsample and of UMAP.
        max_points: a random subsample of at most this many points is drawn (UMAP is slow).
        title: replaces "Latent actions"; the method used and the NOOP note are appended.
        colour_by: what ``actions`` are, for the title and the legend (e.g. ``"code"`` for data
            without true actions, with the classes named in ``action_names``).

    Returns: ``LatentMapResult``; its ``method`` says which projection was used (also in the title).
    Raises: ValueError for bad shapes, non-finite latents, out-of-range actions, an unknown
        method, or no points left after hiding NOOP; ImportError for ``"umap"`` without umap-learn.
    """
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method must be 'auto', 'umap' or 'pca', got {method!r}")
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    latents = _array("latents", latents, 2)
    actions = _array("actions", actions, 1)
    if len(latents) != len(actions):
        raise ValueError(f"{len(latents)} latents but {len(actions)} actions; lengths must match")
    if not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be integers, got {actions.dtype}")
    if actions.min() < 0 or actions.max() >= len(action_names):
        raise ValueError(
            f"actions must lie in [0, {len(action_names)}), got {actions.min()}..{actions.max()}"
        )
    if not np.isfinite(latents).all():
        raise ValueError("latents contain NaN or inf")
    keep = np.ones(len(actions), bool)
    if hide_noop and noop_action is not None:
        keep = actions != noop_action
    num_hidden = int((~keep).sum())
    if not keep.any():
        raise ValueError("every point is NOOP: nothing left to draw with hide_noop=True")
    rng = np.random.default_rng(seed)
    idx = np.flatnonzero(keep)
    idx = rng.permutation(idx)[:max_points]  # random order: no class is drawn over all others
    coords, used, axis_labels = _project(latents[idx], method, seed)
    shown = actions[idx]
    colors = _action_colors(len(action_names), noop_action)
    fig = _figure(8.0, 6.0)
    ax = fig.add_subplot()
    size = float(np.clip(3000 / len(idx), 3, 30))
    ax.scatter(*coords.T, c=colors[shown], s=size, alpha=0.7, linewidths=0)
    for a, name in enumerate(action_names):  # every action, with its number of points shown
        ax.scatter([], [], color=colors[a], label=f"{name} ({(shown == a).sum()})")
    noop_note = f", NOOP hidden ({num_hidden} points)" if num_hidden else ""
    title = f"{title} ({used.upper()})" if title else f"Latent actions ({used.upper()})"
    title += f", coloured by {colour_by}{noop_note}"
    ax.set(title=title, xlabel=axis_labels[0], ylabel=axis_labels[1])
    ax.legend(title=colour_by, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small")
    return LatentMapResult(_save(fig, path), used, len(idx), num_hidden)


def _image(frame: np.ndarray) -> tuple[np.ndarray, str | None]:
    """A ``(H, W, C) uint8`` frame as matplotlib shows it: RGB for C >= 3 (a fourth channel,
    such as alpha, is not drawn), else the first channel in gray."""
    return (frame[..., :3], None) if frame.shape[-1] >= 3 else (frame[..., 0], "gray")


def plot_fdm_predictions(
    observations: np.ndarray,
    next_frames: np.ndarray,
    predictions: np.ndarray,
    code_labels: Sequence[str],
    path: str | Path,
    own_predictions: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Grid of FDM next-frame predictions, one row per observation (the idea of paper Figure 1).

    Columns: o_t, the real o_{t+1}, optionally the prediction under the window's own IDM latent,
    then the prediction under each of K latent codes.

    Args:
        observations, next_frames: ``(M, H, W, C) uint8`` (C >= 3: the first three are drawn
            as RGB; else the first channel in gray).
        predictions: ``(M, K, H, W, C) uint8``; K >= 0.
        code_labels: K column titles, e.g. the code indices and their share of use.
        own_predictions: ``(M, H, W, C) uint8`` or None.

    Returns: the PNG path. Raises: ValueError for mismatched shapes or a dtype other than uint8.
    """
    observations = _array("observations", observations, 4)
    next_frames = _array("next_frames", next_frames, 4)
    predictions = np.asarray(predictions)
    m, frame_shape = len(observations), observations.shape[1:]
    arrays = {"observations": observations, "next_frames": next_frames, "predictions": predictions}
    if own_predictions is not None:
        arrays["own_predictions"] = own_predictions = np.asarray(own_predictions)
    for name, arr in arrays.items():
        expected = (
            (m, len(code_labels), *frame_shape) if name == "predictions" else (m, *frame_shape)
        )
        if arr.shape != expected or arr.dtype != np.uint8:
            raise ValueError(f"{name} must be {expected} uint8, got {arr.shape} {arr.dtype}")
    columns = [(r"$o_t$", observations), (r"$o_{t+1}$ (real)", next_frames)]
    if own_predictions is not None:
        columns.append(("own IDM latent", own_predictions))
    columns += [(label, predictions[:, j]) for j, label in enumerate(code_labels)]
    fig = _figure(1.5 * len(columns), 1.5 * m + 0.6)
    axes = fig.subplots(m, len(columns), squeeze=False)
    for i in range(m):
        for j, (label, frames) in enumerate(columns):
            image, cmap = _image(frames[i])
            ax = axes[i, j]
            ax.imshow(image, cmap=cmap, vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(label, fontsize="small")
        axes[i, 0].set_ylabel(f"sample {i + 1}", fontsize="small")
    fig.suptitle(title or "FDM next-frame predictions under the most used latent codes")
    return _save(fig, path)


def codebook_counts(indices: np.ndarray, codebook_size: int) -> np.ndarray:
    """Code indices ``(N, G, L) int`` -> uses per code ``(G, codebook_size) int64``.

    Raises: ValueError for a wrong shape or indices outside ``[0, codebook_size)``.
    """
    indices = _array("indices", indices, 3)
    if indices.min() < 0 or indices.max() >= codebook_size:
        raise ValueError(f"indices must lie in [0, {codebook_size})")
    g = indices.shape[1]
    return np.stack([np.bincount(indices[:, i].ravel(), minlength=codebook_size) for i in range(g)])


def codebook_stats(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per codebook: codes used at least once and the perplexity exp(H) of the code shares.

    The one definition behind the codebook figure's panel titles and the report's "codes used".

    Args:
        counts: ``(G, S)`` non-negative uses of each of the S codes of the G codebooks.

    Returns: ``used (G,) int64`` and ``perplexity (G,) float64`` (1 = one code takes every use,
        S = uniform use; 0 for a codebook without uses).
    """
    counts = np.asarray(counts, dtype=np.float64)
    used = (counts > 0).sum(1)
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1.0)
    safe = np.where(share > 0, share, 1.0)  # 0 log 0 = 0
    perplexity = np.exp(-(share * np.log(safe)).sum(1))
    return used.astype(np.int64), np.where(counts.sum(1) > 0, perplexity, 0.0)


def plot_codebook_usage(counts: np.ndarray, path: str | Path, title: str | None = None) -> Path:
    """Bar chart of each code's share of its codebook's assignments, one panel per codebook.

    Args:
        counts: ``(G, S) int``, uses of each of the S codes of each of the G codebooks
            (``codebook_counts`` computes it from code indices).

    Returns: the PNG path. Panel titles give the used codes and the perplexity exp(H)
        (``codebook_stats``).
    Raises: ValueError for a wrong shape, negative counts or no counts at all.
    """
    counts = _array("counts", counts, 2).astype(np.float64)
    if (counts < 0).any() or counts.sum() == 0:
        raise ValueError("counts must be non-negative with at least one use")
    g, s = counts.shape
    used, perplexity = codebook_stats(counts)
    fig = _figure(7.0, 1.0 + 2.2 * g)
    axes = fig.subplots(g, 1, squeeze=False, sharex=True)[:, 0]
    for i, (ax, row) in enumerate(zip(axes, counts, strict=True)):
        ax.bar(np.arange(s), row / max(row.sum(), 1.0), width=0.85, color="tab:blue")
        ax.set_title(
            f"codebook {i + 1}: {used[i]}/{s} codes used, perplexity {perplexity[i]:.1f}",
            fontsize="medium",
        )
        ax.set_ylabel("share of uses")
        ax.grid(axis="y", alpha=0.3)
    axes[-1].set_xlabel("code index")
    fig.suptitle(title or "Codebook usage")
    return _save(fig, path)


def plot_confusion_matrix(
    true: np.ndarray,
    predicted: np.ndarray,
    path: str | Path,
    action_names: Sequence[str] = ACTION_MEANINGS,
    title: str | None = None,
) -> Path:
    """Row-normalized confusion matrix of decoded vs true actions.

    Only actions that occur as true or predicted label get a row and a column (Procgen games ignore
    many of the 15 actions). Cell colour and text: share of the row's true action predicted as the
    column's action; row labels give the number of samples.

    Args:
        true, predicted: ``(N,) int`` actions in ``[0, len(action_names))``.

    Returns: the PNG path.
    Raises: ValueError for empty or mismatched inputs or out-of-range actions.
    """
    true = _array("true", true, 1)
    predicted = _array("predicted", predicted, 1)
    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true but {len(predicted)} predicted actions; must match")
    n = len(action_names)
    for name, arr in (("true", true), ("predicted", predicted)):
        if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() >= n:
            raise ValueError(f"{name} actions must be integers in [0, {n})")
    present = np.union1d(true, predicted)
    pos = np.searchsorted(present, [true, predicted])  # (2, N) rows and columns
    matrix = np.zeros((len(present), len(present)))
    np.add.at(matrix, (pos[0], pos[1]), 1)
    support = matrix.sum(1)
    share = matrix / np.maximum(support, 1)[:, None]
    side = 2.5 + 0.45 * len(present)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, label="share of the true action's samples", shrink=0.8)
    for (r, c), v in np.ndenumerate(share):
        if v >= 0.005:
            ax.text(c, r, f"{100 * v:.0f}", ha="center", va="center", fontsize="x-small",
                    color="white" if v > 0.6 else "black")  # fmt: skip
    names = [action_names[a] for a in present]
    ax.set_xticks(range(len(present)), names, rotation=60, ha="right", fontsize="small")
    ax.set_yticks(
        range(len(present)), [f"{s} (n={int(k)})" for s, k in zip(names, support, strict=True)],
        fontsize="small",
    )  # fmt: skip
    accuracy = float((true == predicted).mean())
    default = f"Decoded vs true action (accuracy {100 * accuracy:.1f}%, N={len(true)}), % per row"
    ax.set(title=title or default, xlabel="decoded action", ylabel="true action")
    return _save(fig, path)
