"""Figures of returns for the pipeline report: returns with CIs, the label sweep (the paper's
Figure 4) and online curves (its Figure 3). Same conventions as ``lapo.eval.plots``: pure
functions from numbers to PNG files, no pyplot, inputs checked first (``ValueError``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lapo.eval.plots import _array, _figure, _save

#: The paper's offline-decoding curve (PAPER.md): labelled transitions -> normalized return,
#: mean over the 16 games, read off its figure (approximate; 1k-8k is a plateau at about 0.57).
PAPER_LABEL_CURVE: dict[int, float] = {
    16: 0.05, 32: 0.15, 64: 0.23, 128: 0.33, 256: 0.50, 512: 0.55,
    1024: 0.57, 2048: 0.57, 4096: 0.57, 8192: 0.57,
}  # fmt: skip
#: Normalized return of PPO from scratch after 4M steps, mean over 16 games (PAPER.md).
PAPER_PPO_4M: float = 0.44


def _finite_or_zero(values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(arr), arr, 0.0)


def plot_returns(
    rows: Sequence[Mapping[str, object]], path: str | Path, title: str | None = None
) -> Path:
    """Horizontal bars of each method's return with its 95% confidence interval.

    Args:
        rows: one mapping per method with ``name`` (str), ``mean`` and ``ci95`` (raw return) and
            optionally ``normalized`` and ``normalized_ci95``. When every row has a finite
            ``normalized``, normalized returns are drawn with the random (0) and expert (1)
            levels marked; otherwise raw returns. A NaN or missing CI draws no error bar.

    Returns: the PNG path. Raises: ValueError for no rows or a row without name or mean.
    """
    if not rows:
        raise ValueError("plot_returns needs at least one row")
    for row in rows:
        if "name" not in row or "mean" not in row:
            raise ValueError(f"every row needs 'name' and 'mean', got keys {sorted(row)}")
    norm = [row.get("normalized") for row in rows]
    use_norm = all(v is not None and np.isfinite(float(v)) for v in norm)
    key, ci_key = ("normalized", "normalized_ci95") if use_norm else ("mean", "ci95")
    values = np.array([float(row[key]) for row in rows])
    cis = np.array([np.nan if row.get(ci_key) is None else float(row[ci_key]) for row in rows])
    y = np.arange(len(rows))[::-1]
    fig = _figure(7.0, 1.5 + 0.5 * len(rows))
    ax = fig.add_subplot()
    shown, errs = _finite_or_zero(values), _finite_or_zero(cis)
    ax.barh(y, shown, color=[f"C{i}" for i in range(len(rows))], alpha=0.85)
    has_ci = np.isfinite(cis)
    ax.errorbar(shown[has_ci], y[has_ci], xerr=cis[has_ci], fmt="none", ecolor="black", capsize=4)
    for i, (yi, v, ci) in enumerate(zip(y, values, cis, strict=True)):
        text = f"{v:.2f}" + (f" ± {ci:.2f}" if np.isfinite(ci) else " (no CI)")
        if use_norm:  # the raw return too
            text += f"  (return {float(rows[i]['mean']):.3g})"
        end = max(shown[i] + errs[i], 0.0)  # right of the bar and its error bar
        ax.annotate(text, (end, yi), xytext=(5, 0), textcoords="offset points", va="center",
                    fontsize="small")  # fmt: skip
    right = max(float((shown + errs).max()), 1.0 if use_norm else 0.0)
    left = min(float((shown - errs).min()), 0.0)
    span = (right - left) or 1.0
    ax.set_xlim(left - 0.05 * span, right + 0.45 * span)  # room for the text
    ax.set_yticks(y, [str(row["name"]) for row in rows])
    if use_norm:
        ax.axvline(0, color="grey", lw=1, ls=":", label="random policy (0)")
        ax.axvline(1, color="black", lw=1, ls="--", label="paper's expert (1)")
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.01, 0.5))
    xlabel = "normalized return (95% CI)" if use_norm else "mean episodic return (95% CI)"
    ax.set(title=title or "Returns", xlabel=xlabel)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_label_sweep(
    labels: Sequence[int],
    mean: Sequence[float],
    ci95: Sequence[float],
    path: str | Path,
    reference: Mapping[int, float] | None = PAPER_LABEL_CURVE,
    ppo_reference: float | None = PAPER_PPO_4M,
    title: str | None = None,
    baseline: tuple[Sequence[int], Sequence[float], Sequence[float]] | None = None,
    who: str = "this run",
) -> Path:
    """Normalized return of offline decoding against the number of labelled transitions.

    Args:
        labels: ``(P,) int`` numbers of labels (> 0), any order; x axis is log2.
        mean, ci95: ``(P,) float`` normalized return and CI half-width per label count; NaN
            entries are skipped (mean) or drawn without a band (CI).
        reference: ``{labels: normalized return}`` drawn dash-dotted (default: the paper's curve, a
            mean over 16 games); None leaves it out.
        ppo_reference: a horizontal line for PPO from scratch after 4M steps (paper: 0.44).
        baseline: ``(labels, mean, ci95)`` of label-only BC on the same labels, drawn as a second
            curve of this run (same checks); None: the decoded policy alone. The two curves
            differ in line style and marker and are drawn 0.06 octaves apart (each 0.03 off its
            label count), so both show even where their values coincide.
        who: what the curves are of, in their legend (e.g. "4 games" for an aggregate).

    Returns: the PNG path. Raises: ValueError for empty or mismatched inputs or labels <= 0.
    """
    rename = {"label": lambda text: text.replace("this run", who, 1)}
    lapo_style, bc_style = ({k: rename.get(k, lambda v: v)(v) for k, v in style.items()}
                            for style in (_LAPO_STYLE, _BC_STYLE))  # fmt: skip
    curves = [(lapo_style, _sweep_curve(labels, mean, ci95))]
    if baseline is not None:
        curves.append((bc_style, _sweep_curve(*baseline)))
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    ticks: set[float] = set()
    for style, (x, y, ci) in curves:
        ok = np.isfinite(y)
        shifted = x * 2.0 ** (style["offset"] if len(curves) > 1 else 0.0)  # apart on log2 axis
        ax.errorbar(shifted[ok], y[ok], yerr=_finite_or_zero(ci)[ok], capsize=3,
                    **{k: v for k, v in style.items() if k != "offset"})  # fmt: skip
        ticks |= set(x.tolist())
    if reference:
        ref = sorted(reference.items())
        ax.plot(*zip(*ref, strict=True), ls="-.", marker=".", color="C3",
                label="paper, offline decoding (mean of 16 games, approx.)")  # fmt: skip
        ticks |= {float(k) for k, _ in ref}
    if ppo_reference is not None:
        ax.axhline(
            ppo_reference,
            color="grey",
            ls=":",
            label=f"paper, PPO from scratch at 4M steps ({ppo_reference:.2f})",
        )
    ax.set_xscale("log", base=2)
    ax.set_xticks(sorted(ticks), [f"{int(t)}" for t in sorted(ticks)], fontsize="small")
    ax.minorticks_off()
    ax.set(title=title or "Offline decoding: normalized return vs labelled transitions",
           xlabel="labelled transitions (log2 scale)", ylabel="normalized return")  # fmt: skip
    ax.grid(alpha=0.3)
    handles, names = ax.get_legend_handles_labels()  # this run first (errorbars come last)
    first = sorted(range(len(names)), key=lambda i: not names[i].startswith(who))
    ax.legend([handles[i] for i in first], [names[i] for i in first], fontsize="small")
    return _save(fig, path)


#: The two curves of this run are told apart by line, marker and position, not colour alone: the
#: decoded policy solid with filled circles in front, label-only BC dashed with hollow squares
#: behind it and 0.06 octaves to the right, so that both stay visible where they coincide.
_LAPO_STYLE = {
    "label": "this run, LAPO decoded (95% CI)",
    "color": "C0",
    "ls": "-",
    "marker": "o",
    "zorder": 4,
    "offset": -0.03,
}
_BC_STYLE = {
    "label": "this run, label-only BC (95% CI)",
    "color": "C1",
    "ls": "--",
    "marker": "s",
    "mfc": "none",
    "mew": 1.5,
    "ms": 7,
    "alpha": 0.9,
    "zorder": 3,
    "offset": 0.03,
}


def _sweep_curve(labels, mean, ci95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked ``(labels, mean, ci95)`` of one sweep curve as float arrays sorted by labels."""
    labels = _array("labels", labels, 1)
    mean = np.asarray(mean, dtype=np.float64)
    ci95 = np.asarray(ci95, dtype=np.float64)
    if mean.shape != labels.shape or ci95.shape != labels.shape:
        raise ValueError(f"labels, mean, ci95 must have one shape, got {labels.shape}, "
                         f"{mean.shape}, {ci95.shape}")  # fmt: skip
    if (labels <= 0).any():
        raise ValueError("label counts must be > 0 (log2 axis)")
    order = np.argsort(labels)
    return labels[order].astype(np.float64), mean[order], ci95[order]


def _mean_band(runs: Sequence[tuple[Sequence[float], Sequence[float]]], name: str):
    """Seeds' curves on their common step range -> steps, mean, std (std 0 for one seed)."""
    curves = []
    for i, run in enumerate(runs):
        steps, values = (np.asarray(v, dtype=np.float64).reshape(-1) for v in run)
        if len(steps) == 0 or len(steps) != len(values):
            raise ValueError(f"{name!r} seed {i}: steps and values must be non-empty, equal length")
        order = np.argsort(steps)
        curves.append((steps[order], values[order]))
    lo, hi = max(s[0] for s, _ in curves), min(s[-1] for s, _ in curves)
    if lo > hi:
        raise ValueError(f"{name!r}: the seeds' step ranges do not overlap")
    grid = np.unique(np.concatenate([s[(s >= lo) & (s <= hi)] for s, _ in curves]))
    stacked = np.stack([np.interp(grid, s, v) for s, v in curves])  # (seeds, T)
    return grid, stacked.mean(0), stacked.std(0)


def plot_online_curves(
    curves: Mapping[str, Sequence[tuple[Sequence[float], Sequence[float]]]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Normalized return against environment steps, mean +- std over seeds (paper Figure 3).

    Args:
        curves: ``{method: [(steps (T_i,), normalized return (T_i,)) per seed]}``, e.g.
            ``{"LAPO fine-tuned": [...], "PPO from scratch": [...]}``. Seeds are linearly
            interpolated onto the union of their steps within the range all of them cover.

    Returns: the PNG path. Raises: ValueError for no curves, an empty or mismatched seed, or seeds
        whose step ranges do not overlap.
    """
    if not curves or any(len(runs) == 0 for runs in curves.values()):
        raise ValueError("plot_online_curves needs at least one method with at least one seed")
    fig = _figure(7.0, 4.2)
    ax = fig.add_subplot()
    for i, (name, runs) in enumerate(curves.items()):
        steps, mean, std = _mean_band(runs, name)
        seeds = f"{len(runs)} seed{'s' if len(runs) > 1 else ''}"
        ax.plot(
            steps,
            mean,
            color=f"C{i}",
            marker="." if len(steps) < 30 else None,
            label=f"{name} ({seeds}, mean ± std)" if len(runs) > 1 else f"{name} ({seeds})",
        )
        if len(runs) > 1:
            ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.2)
    ax.axhline(1.0, color="black", ls="--", lw=1, label="paper's expert (1)")
    ax.axhline(0.0, color="grey", ls=":", lw=1, label="random policy (0)")
    ax.xaxis.set_major_formatter(_steps_formatter())
    ax.set(title=title or "Online fine-tuning: normalized return vs environment steps",
           xlabel="environment steps", ylabel="normalized return")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, path)


def _steps_formatter():
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _pos) -> str:
        for div, unit in ((1e6, "M"), (1e3, "k")):
            if abs(x) >= div:
                return f"{x / div:g}{unit}"
        return f"{x:g}"

    return FuncFormatter(fmt)
