"""The report's banner: why the numbers of a run cannot mean what they seem to, one sentence
per finding (smoke preset, an expert no better than random, a collapsed codebook, a probe at the
majority class, a latent policy that predicts none of the latent)."""

from __future__ import annotations

import math

from lapo.pipeline.report.codes import count_text

#: The banner's first line; its items are ``report_warnings``.
BANNER_HEADING = "Warning: the numbers of this run cannot mean what they seem to."


#: A probe this close to the majority-class accuracy (or below) has found no action information.
PROBE_MARGIN = 0.02


#: Joint code perplexity on held-out transitions (exp of the entropy of the whole code tuple of
#: all codebooks and latents: the effective number of distinct latent actions) at or below this:
#: the codebook has collapsed.
COLLAPSED_PERPLEXITY = 1.5

#: Stage 2's held-out relative MSE (test MSE over the variance of the held-out latents; 1: no
#: better than always answering their mean) at or above this: the latent policy predicts next to
#: none of the latent action from one frame, so the decoded policy acts nearly the same on every
#: frame. Of thirteen kept `cpu` main jobs, maze (0.95), miner (0.98) and dodgeball (1.01) are at
#: or above it, and on each the decoded policy answers about one action.
UNPREDICTED_RELATIVE_MSE = 0.9


def report_warnings(metrics: dict) -> list[str]:
    """Why the numbers of a run cannot mean anything: one sentence per finding, none if none.

    Args:
        metrics: ``metrics.json``'s content (``collect_metrics``); read are ``preset``,
            ``returns.{expert,random}.{mean,normalized,normalized_ci95}`` and
            ``lam.{probe_mlp_accuracy,majority_accuracy,distinct_codes,heldout_transitions,
            heldout_distinct_codes,heldout_joint_perplexity}`` and ``bc.test/relative_mse``.
            Missing entries skip their check.

    Returns: sentences for, in order: the ``smoke`` preset; an expert not above the uniform
        random policy (95% CIs overlapping, an unknown CI, or a mean return not above); a
        collapsed codebook (one distinct joint code on held-out transitions or in the probe
        sample, or a held-out joint perplexity <= ``COLLAPSED_PERPLEXITY``); a
        latent probe at the majority class (accuracy <= majority + ``PROBE_MARGIN``); a latent
        policy (stage 2, paper section 4.2) whose held-out relative MSE is at or above
        ``UNPREDICTED_RELATIVE_MSE``.
    """
    lam = metrics.get("lam", {})
    found = (
        _smoke_warning(metrics.get("preset")),
        _expert_warning(metrics.get("returns", {})),
        _collapse_warning(lam),
        _probe_warning(lam),
        _latent_policy_warning(metrics.get("bc", {})),
    )
    return [w for w in found if w]


def _smoke_warning(preset: str | None) -> str | None:
    if preset != "smoke":
        return None
    return (
        "This run used the `smoke` preset (a few updates on a few frames, sized to test the "
        "code), so none of its numbers measure how well LAPO works."
    )


def _ci_text(value: float, ci: float) -> str:
    return f"{value:.3f} ± {ci:.3f}" if math.isfinite(ci) else f"{value:.3f} (no CI)"


def _compared(expert: dict) -> tuple[str, str, str]:
    """The keys (value, CI) and name of what expert and random policy are compared by: the
    normalized return, or the return itself on a task without reference returns (NaN)."""
    if math.isfinite(expert["normalized"]):
        return "normalized", "normalized_ci95", "normalized return"
    return "mean", "ci95", "return"


def expert_above_random(expert: dict, rand: dict) -> bool:
    """Whether the expert that recorded the data beats the uniform random policy: a higher mean
    return and 95% CIs of the normalized return that do not overlap (an unknown, NaN, CI is
    not above).

    Args:
        expert, rand: ``eval/returns.json`` entries (``mean``, ``normalized``,
            ``normalized_ci95``) of the expert and of the uniform random policy; on a task
            without reference returns (normalized NaN) the returns themselves (``ci95``).
    """
    key, ci, _ = _compared(expert)
    lowest_expert = expert[key] - expert[ci]  # NaN CI: NaN, not above
    highest_random = rand[key] + rand[ci]
    return bool(expert["mean"] > rand["mean"] and lowest_expert > highest_random)


def _expert_warning(returns: dict) -> str | None:
    expert, rand = returns.get("expert"), returns.get("random")
    if not expert or not rand or expert_above_random(expert, rand):
        return None
    key, ci, what = _compared(expert)
    shown_expert = _ci_text(expert[key], expert[ci])
    shown_random = _ci_text(rand[key], rand[ci])
    return (
        f"The expert's {what} ({shown_expert}, 95% CI) is not above the uniform "
        f"random policy's ({shown_random}), so the data hold no skill to "
        "imitate and no return of this run can show that a method learned anything."
    )


def _collapse_warning(lam: dict) -> str | None:
    heldout, joint = lam.get("heldout_distinct_codes"), lam.get("heldout_joint_perplexity")
    probed = lam.get("distinct_codes")
    one_code = any(n is not None and n <= 1 for n in (heldout, probed))
    if not (one_code or (joint is not None and joint <= COLLAPSED_PERPLEXITY)):
        return None
    facts = []
    if heldout is not None:
        facts.append(
            f"{count_text(heldout, 'distinct latent action')} among "
            f"{lam['heldout_transitions']:,} held-out transitions, joint perplexity {joint:.2f}"
        )
    if probed is not None:
        facts.append(f"{probed} in the probe's sample")
    return (
        f"The codebook collapsed ({'; '.join(facts)}), so the quantized latent action is "
        "(nearly) the same for every transition and carries no action for stages 2 and 3 to "
        "imitate and decode."
    )


def _probe_warning(lam: dict) -> str | None:
    probe, majority = lam.get("probe_mlp_accuracy"), lam.get("majority_accuracy")
    if probe is None or majority is None or probe > majority + PROBE_MARGIN:
        return None
    return (
        f"The MLP probe predicts the true action from the latents no better than always guessing "
        f"the most common action (held-out accuracy {probe:.3f} vs majority class "
        f"{majority:.3f}), so the latents show no information about the actions taken."
    )


def _latent_policy_warning(bc: dict) -> str | None:
    relative = bc.get("test/relative_mse")
    if relative is None or not relative >= UNPREDICTED_RELATIVE_MSE:
        return None
    return (
        f"The latent policy predicts next to none of the IDM's latent action from one frame "
        f"(held-out relative MSE {relative:.2f}, where 1 is no better than always answering the "
        "mean latent), so the decoded policy acts nearly the same on every frame and its return "
        "measures that one behaviour more than LAPO's decoding."
    )
