"""95% confidence intervals of a mean: Student t, valid for a handful of episodes.

Reference quantiles: t_{0.975, 1} = tan(0.475 pi) and t_{0.975, 2} = 0.95 sqrt(2 / (4 * 0.975 *
0.025)) in closed form; df 4, 9, 29, 99, 999 from published t tables (to 4 decimals).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from lapo.eval.rollouts import EvalResult, evaluate_policy, mean_ci95, student_t_quantile


@pytest.mark.parametrize(
    ("df", "expected"),
    [
        (1, math.tan(0.475 * math.pi)),  # 12.7062
        (2, 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))),  # 4.3027
        (3, 3.1824),
        (4, 2.7764),
        (9, 2.2622),
        (29, 2.0452),
        (99, 1.9842),
        (999, 1.9623),
        (1001, 1.9623),  # the asymptotic expansion's side of the switch
        (10**7, 1.9600),
    ],
)
def test_student_t_quantile_matches_tables(df, expected) -> None:
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=5e-5)


def test_student_t_quantile_is_symmetric_and_checks_its_input() -> None:
    assert student_t_quantile(0.025, 4) == pytest.approx(-2.7764, abs=5e-5)
    assert student_t_quantile(0.5, 7) == 0.0
    assert student_t_quantile(0.995, 3) == pytest.approx(5.8409, abs=5e-5)
    assert student_t_quantile(0.9, 1) == pytest.approx(math.tan(0.4 * math.pi))  # 3.0777
    # both branches agree where they meet
    assert student_t_quantile(0.975, 1000) == pytest.approx(
        student_t_quantile(0.975, 1001), abs=1e-5
    )
    for p, df in ((0.0, 3), (1.0, 3), (0.9, 0), (0.9, 2.5)):
        with pytest.raises(ValueError):
            student_t_quantile(p, df)


def test_mean_ci95_two_values_uses_t_with_one_degree_of_freedom() -> None:
    # values 0, 2: mean 1, s = sqrt(2), SEM = 1, so the half-width is t_{0.975, 1} = 12.706
    # (the normal approximation said 1.96: an interval six times too narrow)
    mean, half = mean_ci95(np.array([0.0, 2.0]))
    assert mean == 1.0
    assert half == pytest.approx(12.7062, abs=1e-4)


def test_mean_ci95_five_values() -> None:
    # 1..5: mean 3, s = sqrt(2.5) = 1.5811, SEM = 0.70711, half-width 2.7764 * 0.70711 = 1.9632
    mean, half = mean_ci95(np.arange(1.0, 6.0))
    assert mean == 3.0
    assert half == pytest.approx(1.9632, abs=1e-4)


def test_mean_ci95_hundred_values_barely_differs_from_the_normal_approximation() -> None:
    # 0, 1 alternating: mean 0.5, s = sqrt(25 / 99) = 0.50252, SEM = 0.050252,
    # half-width 1.98422 * 0.050252 = 0.099711 (1.96 * SEM = 0.098494)
    values = np.tile([0.0, 1.0], 50)
    mean, half = mean_ci95(values)
    assert mean == 0.5
    assert half == pytest.approx(0.099711, abs=1e-6)
    assert half / (1.96 * values.std(ddof=1) / 10) == pytest.approx(1.0124, abs=1e-4)


def test_mean_ci95_degenerate_sizes() -> None:
    assert math.isnan(mean_ci95(np.array([]))[0])
    mean, half = mean_ci95(np.array([4.0]))
    assert mean == 4.0 and math.isnan(half)


def test_eval_result_reports_the_t_interval() -> None:
    result = EvalResult("bigfish", np.array([0.0, 2.0]), np.array([10, 10]), 0, 0)
    assert result.ci95 == pytest.approx(12.7062, abs=1e-4)
    assert "+- 12.71 (95% CI)" in result.summary()


def test_evaluate_policy_refuses_fewer_than_one_episode_before_making_an_env() -> None:
    def act(obs):  # never called: the count is checked first
        raise AssertionError

    for episodes in (0, -1):
        with pytest.raises(ValueError, match=f"episodes must be at least 1, got {episodes}"):
            evaluate_policy(act, "not-a-game", episodes)


def test_a_policy_is_refused_on_a_game_with_other_actions() -> None:
    from lapo.eval.evaluate import check_policy_fits

    check_policy_fits({"num_actions": 15}, "coinrun", "p")  # Procgen's 15 actions: fits
    check_policy_fits({}, "coinrun", "p")  # an expert records no count: not checked
    with pytest.raises(
        ValueError,
        match=r"^p acts with 5 discrete actions, coinrun takes 15 .*"
        r"--num-actions 15$",
    ):
        check_policy_fits({"num_actions": 5}, "coinrun", "p")
    bounds = {"num_actions": 2, "action_bounds": [[-1.0, -1.0], [1.0, 1.0]]}
    with pytest.raises(ValueError, match="2-dimensional continuous actions, coinrun takes 15"):
        check_policy_fits(bounds, "coinrun", "p")


def test_paired_differences_by_hand() -> None:
    from lapo.eval.evaluate import paired_differences

    def result(returns, **where) -> dict:
        return {"returns": returns, "episodes": len(returns), "start_level": 0, "num_levels": 0,
                **where}  # fmt: skip

    results = {
        "lapo_decoded": result([10.0, 0.0, 10.0, 10.0]),
        "label_bc": result([10.0, 0.0, 0.0, 10.0]),
        "random": result([0.0, 0.0, 10.0, 0.0], start_level=5),  # other levels: not paired
    }
    (key,) = paired_differences(results, "coinrun")  # references: random 2.705, expert 9.933
    d = paired_differences(results, "coinrun")[key]
    assert key == "lapo_decoded - label_bc" and d["episodes"] == 4
    # differences (0, 0, 10, 0): mean 2.5, s = 5, t_{0.975, 3} = 3.182 -> 3.182 * 5 / 2
    assert d["mean"] == pytest.approx(2.5) and d["ci95"] == pytest.approx(3.1824 * 2.5, rel=1e-3)
    span = 9.933 - 2.705
    assert d["normalized"] == pytest.approx(2.5 / span)
    assert d["normalized_ci95"] == pytest.approx(3.1824 * 2.5 / span, rel=1e-3)


def test_a_continuous_policy_is_refused_on_a_task_with_other_bounds() -> None:
    pytest.importorskip("gymnasium")
    from lapo.eval.evaluate import check_policy_fits

    pendulum = {"num_actions": 1, "action_bounds": [[-2.0], [2.0]]}
    check_policy_fits(pendulum, "Pendulum-v1", "p")
    with pytest.raises(ValueError, match=r"in \[\[-2.0\], \[2.0\]\], MountainCarContinuous-v0"):
        check_policy_fits(pendulum, "MountainCarContinuous-v0", "p")
