"""Evaluation: actors (``actors``), rollouts and returns with confidence intervals (``rollouts``),
any policy checkpoint in its game (``evaluate``), latent quality (``latent_quality``, ``probes``),
plots and the report document. Only the torch-free rollout helpers are imported here, so that
plotting and report code can be used without loading torch."""

from lapo.eval.rollouts import EvalResult, evaluate_policy, mean_ci95

__all__ = ["EvalResult", "evaluate_policy", "mean_ci95"]
