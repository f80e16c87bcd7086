"""Aggregate scores over games with their uncertainty, as rliable defines them.

Agarwal, Schwarzer, Castro, Courville & Bellemare 2021, "Deep Reinforcement Learning at the Edge
of the Statistical Precipice" (NeurIPS; the rliable library): interquartile mean (IQM), mean of
per-task means, stratified-bootstrap percentile confidence intervals and performance profiles
(score distributions). rliable itself does not import in this environment (its ``arch``
dependency fails against pandas 3, 2026-12-04), so these are written from the paper's
definitions and tested against hand computations.

Scores are ragged: ``scores[t]`` holds the runs (seeds) of task (game) ``t`` as a 1-d float
array of normalized returns, and games may have different numbers of runs. With equal run counts
every statistic here equals rliable's on the ``(runs, tasks)`` matrix; with unequal counts the
IQM pools all runs (a game with more runs weighs more), while the mean and the performance
profile average per-game figures (every game weighs the same).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

#: A statistic of bootstrap samples: ``[(B, n_t) per task] -> (B, K)``.
Statistic = Callable[[Sequence[np.ndarray]], np.ndarray]


def check_scores(scores: Sequence[Sequence[float]]) -> list[np.ndarray]:
    """``scores`` as a list of 1-d float64 arrays, one per task.

    Raises:
        ValueError: no task, a task without runs, or a non-finite score.
    """
    tasks = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    if not tasks or any(len(t) == 0 for t in tasks):
        raise ValueError("scores need at least one task, each with at least one run")
    if not all(np.isfinite(t).all() for t in tasks):
        raise ValueError("scores must be finite")
    return tasks


def iqm_of(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Interquartile mean of every run pooled: ``[(B, n_t)] -> (B, 1)``.

    The mean of the middle 50%: sorted, ``floor(0.25 N)`` values dropped at each end (N runs in
    all), as ``scipy.stats.trim_mean(x, 0.25)`` that rliable's ``aggregate_iqm`` calls.
    """
    pooled = np.sort(np.concatenate(samples, axis=1), axis=1)  # (B, N)
    cut = int(0.25 * pooled.shape[1])
    return pooled[:, cut : pooled.shape[1] - cut].mean(axis=1, keepdims=True)


def mean_of(samples: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over tasks of each task's mean over runs: ``[(B, n_t)] -> (B, 1)``."""
    return np.stack([s.mean(axis=1) for s in samples], axis=1).mean(axis=1, keepdims=True)


def profile_of(taus: np.ndarray) -> Statistic:
    """Performance profile (run-score distribution) at thresholds ``taus (K,)``:
    ``[(B, n_t)] -> (B, K)``, the fraction of runs scoring strictly above each tau, averaged
    over tasks (rliable's ``run_score_distribution``)."""
    taus = np.asarray(taus, dtype=np.float64).reshape(-1)

    def statistic(samples: Sequence[np.ndarray]) -> np.ndarray:
        fractions = [(s[:, :, None] > taus).mean(axis=1) for s in samples]  # (B, K) per task
        return np.mean(fractions, axis=0)

    return statistic


@dataclass(frozen=True)
class Interval:
    """A point estimate and its stratified-bootstrap percentile interval (arrays of shape (K,)).

    Attributes:
        point: the statistic of the observed scores.
        low, high: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` percentiles of the
            statistic over bootstrap resamples.
    """

    point: np.ndarray
    low: np.ndarray
    high: np.ndarray


def stratified_bootstrap(
    scores: Sequence[Sequence[float]],
    statistic: Statistic,
    *,
    reps: int = 50_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """Stratified-bootstrap percentile confidence interval of ``statistic`` (Agarwal et al.
    2021, section 4): each resample draws, within every task independently, as many runs as it
    has, with replacement; the interval is the percentiles of the statistic over ``reps``
    resamples (rliable: ``StratifiedBootstrap``, percentile method, 95%).

    Args:
        scores: ``[runs of task t (n_t,)]``, normalized returns.
        statistic: ``[(B, n_t) per task] -> (B, K)`` (``iqm_of``, ``mean_of``, ``profile_of``).
        reps: bootstrap resamples; seed: of ``numpy.random.default_rng`` (same seed, same
            interval).

    Raises:
        ValueError: bad ``scores`` (``check_scores``), ``reps`` < 1 or ``confidence`` outside
            (0, 1).
    """
    tasks = check_scores(scores)
    _check_bootstrap(reps, confidence)
    point = statistic([t[None, :] for t in tasks])[0]
    estimates = statistic(_resample(tasks, reps, seed))  # (B, K)
    return _percentile_interval(point, estimates, confidence)


def _check_bootstrap(reps: int, confidence: float) -> None:
    if reps < 1 or not 0.0 < confidence < 1.0:
        raise ValueError(f"reps must be >= 1 and confidence in (0, 1), got {reps}, {confidence}")


def _resample(tasks: list[np.ndarray], reps: int, seed: int) -> list[np.ndarray]:
    """``reps`` stratified resamples: within every task, as many runs as it has, drawn with
    replacement: ``[(reps, n_t)]``."""
    rng = np.random.default_rng(seed)
    return [t[rng.integers(0, len(t), size=(reps, len(t)))] for t in tasks]


def _percentile_interval(point: np.ndarray, estimates: np.ndarray, confidence: float) -> Interval:
    """``point`` with the ``(1 -+ confidence) / 2`` percentiles of ``estimates (B, K)``."""
    tail = 100 * (1.0 - confidence) / 2
    low, high = np.percentile(estimates, [tail, 100 - tail], axis=0)
    return Interval(point, low, high)


def improvement_of(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray]) -> np.ndarray:
    """Probability of improvement of X over Y: ``([(B, n_t)], [(B, m_t)]) -> (B,)``, the mean over
    tasks of the Mann-Whitney statistic ``P(x > y) + P(x = y) / 2`` over every pair of a run of X
    and a run of Y on the task (rliable's ``probability_of_improvement``)."""
    per_task = [
        (x[:, :, None] > y[:, None, :]).mean(axis=(1, 2))
        + 0.5 * (x[:, :, None] == y[:, None, :]).mean(axis=(1, 2))
        for x, y in zip(xs, ys, strict=True)
    ]
    return np.mean(per_task, axis=0)


def probability_of_improvement(
    x_scores: Sequence[Sequence[float]],
    y_scores: Sequence[Sequence[float]],
    *,
    reps: int = 50_000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Interval:
    """P(X > Y), the probability that a run of method X on a random task beats a run of method
    Y (Agarwal et al. 2021, section 4.3; ``improvement_of``), with its stratified-bootstrap
    percentile interval: within every task the runs of X and those of Y are resampled
    independently (rliable resamples both score matrices the same way).

    Args:
        x_scores, y_scores: ``[runs of task t]`` of X and of Y, the same tasks in the same order
            (run counts may differ).

    Returns: an ``Interval`` of shape ``(1,)``; 0.5 is no difference.

    Raises:
        ValueError: bad scores (``check_scores``), another number of tasks, ``reps`` < 1 or
            ``confidence`` outside (0, 1).
    """
    xs, ys = check_scores(x_scores), check_scores(y_scores)
    if len(xs) != len(ys):
        raise ValueError(f"X and Y need the same tasks, got {len(xs)} and {len(ys)}")
    _check_bootstrap(reps, confidence)
    point = improvement_of([x[None, :] for x in xs], [y[None, :] for y in ys])
    draw = _resample([*xs, *ys], reps, seed)  # X's and Y's runs, each resampled on its own
    estimates = improvement_of(draw[: len(xs)], draw[len(xs) :])[:, None]  # (B, 1)
    return _percentile_interval(point, estimates, confidence)
