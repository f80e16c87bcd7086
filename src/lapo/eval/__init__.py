"""Evaluation: rollouts and returns with confidence intervals."""

from lapo.eval.rollouts import EvalResult, evaluate_policy, mean_ci95

__all__ = ["EvalResult", "evaluate_policy", "mean_ci95"]
