"""rliable's aggregate estimators (Agarwal et al. 2021) against hand computations."""

from __future__ import annotations

import numpy as np
import pytest

from lapo.eval.aggregate_stats import (
    iqm_of,
    mean_of,
    profile_of,
    stratified_bootstrap,
)


def _point(statistic, scores) -> np.ndarray:
    return statistic([np.asarray(s, dtype=float)[None, :] for s in scores])[0]


def test_iqm_drops_a_quarter_at_each_end() -> None:
    # 8 runs: drop 2 lowest and 2 highest, mean of 3, 4, 5, 6 = 4.5 (pooled over both games)
    assert _point(iqm_of, [[1, 2, 3, 4], [5, 6, 7, 8]]) == pytest.approx([4.5])
    assert _point(iqm_of, [[8, 1, 7, 2, 6, 3, 5, 4]]) == pytest.approx([4.5])
    # 5 runs: floor(1.25) = 1 dropped at each end, the outlier 100 does not count: (2+3+4)/3
    assert _point(iqm_of, [[100, 2], [3, 1, 4]]) == pytest.approx([3.0])
    # 10 runs, two outliers: floor(2.5) = 2 dropped at each end -> mean of 1..6 = 3.5
    assert _point(iqm_of, [[-50, 0, 1, 2, 3, 4, 5, 6, 7, 100]]) == pytest.approx([3.5])


def test_mean_weighs_every_game_equally() -> None:
    assert _point(mean_of, [[1, 3], [10]]) == pytest.approx([6.0])  # (2 + 10) / 2, not 14 / 3


def test_performance_profile_counts_runs_strictly_above_each_threshold() -> None:
    taus = np.array([0.0, 1.5, 3.0, 5.0])
    # game 1: runs 1, 2 -> 1, 1/2, 0, 0; game 2: runs 3, 4 -> 1, 1, 1/2 (3 is not above 3), 0
    got = _point(profile_of(taus), [[1, 2], [3, 4]])
    assert got == pytest.approx([1.0, 0.75, 0.25, 0.0])


def test_bootstrap_is_reproducible_with_a_seed() -> None:
    scores = [[0.1, 0.5, 0.9], [0.2, 0.3], [1.2, 0.0, 0.4]]
    a = stratified_bootstrap(scores, iqm_of, reps=500, seed=3)
    b = stratified_bootstrap(scores, iqm_of, reps=500, seed=3)
    c = stratified_bootstrap(scores, iqm_of, reps=500, seed=4)
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)
    assert a.low[0] <= a.point[0] <= a.high[0]


def test_bootstrap_interval_known_answers() -> None:
    # one run per game: every resample is the data itself, so the interval is the point
    one = stratified_bootstrap([[0.3], [0.7]], mean_of, reps=200, seed=0)
    assert (one.low[0], one.point[0], one.high[0]) == pytest.approx((0.5, 0.5, 0.5))
    # stratified: runs are drawn within each game, so games [0, 0] and [1, 1] always give 0.5
    # (a bootstrap over the pooled runs would give anything from 0 to 1)
    strat = stratified_bootstrap([[0, 0], [1, 1]], mean_of, reps=200, seed=0)
    assert (strat.low[0], strat.high[0]) == pytest.approx((0.5, 0.5))
    # one game with runs 0 and 1: resample means 0, 0.5, 1 with probability 1/4, 1/2, 1/4, so
    # the 2.5th and 97.5th percentiles of many resamples are 0 and 1
    two = stratified_bootstrap([[0.0, 1.0]], mean_of, reps=4000, seed=0)
    assert (two.low[0], two.point[0], two.high[0]) == pytest.approx((0.0, 0.5, 1.0))


def test_bad_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one run"):
        stratified_bootstrap([[1.0], []], mean_of)
    with pytest.raises(ValueError, match="finite"):
        stratified_bootstrap([[float("nan")]], mean_of)
    with pytest.raises(ValueError, match="reps"):
        stratified_bootstrap([[1.0]], mean_of, reps=0)


def test_probability_of_improvement_by_hand() -> None:
    from lapo.eval.aggregate_stats import probability_of_improvement

    # task 1: x (0.5, 0.1) against y (0.2, 0.1): pairs > : (0.5>0.2, 0.5>0.1) = 2, ties:
    # (0.1=0.1) = 1 of 4 pairs -> (2 + 0.5) / 4 = 0.625; task 2: x 0.0 against y 1.0 -> 0.
    x, y = [[0.5, 0.1], [0.0]], [[0.2, 0.1], [1.0]]
    result = probability_of_improvement(x, y, reps=2000, seed=0)
    assert result.point[0] == pytest.approx((0.625 + 0.0) / 2)
    assert 0.0 <= result.low[0] <= result.point[0] <= result.high[0] <= 0.5  # task 2 never wins
    same = probability_of_improvement(x, x, reps=10)
    assert same.point[0] == pytest.approx(0.5)
    again = probability_of_improvement(x, y, reps=2000, seed=0)
    assert (again.low, again.high) == (result.low, result.high)
    with pytest.raises(ValueError, match="the same tasks"):
        probability_of_improvement(x, y[:1])
