"""PPO (Schulman et al. 2017) losses and generalized advantage estimation, as pure functions.

Conventions: rollouts are time-major, ``(T, N)`` for T steps of N environments; ``dones[t]`` is
True when the action at step t ended the episode, so step t does not bootstrap from step t+1.
"""

from __future__ import annotations

import math

import torch

_LOG_2PI = math.log(2.0 * math.pi)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    last_value: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation (Schulman et al. 2016, eq. 11-16).

    ``delta_t = r_t + gamma * V(s_{t+1}) * (1 - done_t) - V(s_t)`` and
    ``A_t = delta_t + gamma * lam * (1 - done_t) * A_{t+1}``.

    Args:
        rewards: ``(T, N) float``.
        values: ``(T, N) float``, V(s_t) under the rollout policy.
        dones: ``(T, N) bool``, the action at t ended the episode.
        last_value: ``(N,) float``, V of the observation after the last step.
        gamma: discount; lam: GAE lambda.

    Returns:
        ``(advantages, returns)``, both ``(T, N) float32``; ``returns = advantages + values``.
    """
    T = rewards.shape[0]
    not_done = 1.0 - dones.float()
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    next_value, next_adv = last_value.float(), torch.zeros_like(last_value, dtype=torch.float32)
    for t in reversed(range(T)):
        delta = rewards[t] + gamma * next_value * not_done[t] - values[t]
        next_adv = delta + gamma * lam * not_done[t] * next_adv
        advantages[t] = next_adv
        next_value = values[t]
    return advantages, advantages + values


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit standard deviation over the (mini)batch."""
    return (advantages - advantages.mean()) / (advantages.std() + eps)


def clipped_surrogate_loss(
    logprob: torch.Tensor, old_logprob: torch.Tensor, advantages: torch.Tensor, clip: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-clip policy loss (Schulman et al. 2017, eq. 7), to be minimized.

    ``-mean(min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A))`` with
    ``ratio = exp(logprob - old_logprob)``.

    Returns:
        ``(loss, clip_fraction)``: scalar loss and the fraction of samples where clipping bound.
    """
    ratio = torch.exp(logprob - old_logprob)
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip) * advantages
    loss = -torch.min(unclipped, clipped).mean()
    clip_fraction = ((ratio - 1.0).abs() > clip).float().mean()
    return loss, clip_fraction


def clipped_value_loss(
    value: torch.Tensor, old_value: torch.Tensor, returns: torch.Tensor, clip: float | None
) -> torch.Tensor:
    """Value loss ``0.5 * mean(max((V - R)^2, (V_clipped - R)^2))`` (OpenAI baselines PPO2).

    ``V_clipped = old_V + clamp(V - old_V, -clip, clip)``; ``clip=None`` gives plain
    ``0.5 * mean((V - R)^2)``.
    """
    unclipped = (value - returns) ** 2
    if clip is None:
        return 0.5 * unclipped.mean()
    clipped_value = old_value + torch.clamp(value - old_value, -clip, clip)
    return 0.5 * torch.max(unclipped, (clipped_value - returns) ** 2).mean()


def ppo_loss(
    logits: torch.Tensor,
    value: torch.Tensor,
    actions: torch.Tensor,
    old_logprob: torch.Tensor,
    old_value: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip: float = 0.2,
    value_clip: float | None = 0.2,
    value_coef: float = 0.5,
    entropy_coef: float = 0.01,
    normalize_adv: bool = True,
    log_std: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total PPO loss for a minibatch: policy + value_coef * value - entropy_coef * entropy.

    Args:
        logits: ``(B, A)`` current policy logits, or the Gaussian mean when ``log_std`` is
            given; value: ``(B,)`` current values.
        actions: ``(B,) int64`` (discrete) or ``(B, A) float`` unclipped Gaussian samples;
            old_logprob, old_value, advantages, returns: ``(B,)`` from the rollout.
        log_std: ``(A,)`` state-independent log standard deviation of a diagonal Gaussian
            policy (continuous actions; ``gaussian_log_prob`` and ``gaussian_entropy``).

    Returns:
        ``(loss, stats)`` with stats ``policy_loss``, ``value_loss``, ``entropy``,
        ``approx_kl`` (the ``(ratio - 1) - log ratio`` estimator) and ``clip_fraction``.
    """
    if log_std is None:
        dist = torch.distributions.Categorical(logits=logits)
        logprob = dist.log_prob(actions)
        entropy = dist.entropy().mean()
    else:
        logprob = gaussian_log_prob(logits, log_std, actions)
        entropy = gaussian_entropy(log_std).expand(len(actions)).mean()
    if normalize_adv:
        advantages = normalize_advantages(advantages)
    policy_loss, clip_fraction = clipped_surrogate_loss(logprob, old_logprob, advantages, clip)
    value_loss = clipped_value_loss(value, old_value, returns, value_clip)
    loss = policy_loss + value_coef * value_loss - entropy_coef * entropy
    with torch.no_grad():
        log_ratio = logprob - old_logprob
        approx_kl = ((log_ratio.exp() - 1) - log_ratio).mean()
    stats = {
        "policy_loss": policy_loss.detach(),
        "value_loss": value_loss.detach(),
        "entropy": entropy.detach(),
        "approx_kl": approx_kl,
        "clip_fraction": clip_fraction,
    }
    return loss, stats


def sample_actions(
    logits: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample from ``softmax(logits (N, A))`` with an explicit generator.

    Returns:
        ``actions (N,) int64`` and their ``log-probabilities (N,) float32``.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, A)
    actions = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)  # (N,)
    return actions, logp.gather(1, actions[:, None]).squeeze(1)


def gaussian_log_prob(
    mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """Log-density of a diagonal Gaussian, summed over action dimensions.

    ``log p(a) = sum_i [-(a_i - mu_i)^2 / (2 sigma_i^2) - log sigma_i - log(2 pi) / 2]`` with
    ``sigma = exp(log_std)``. Evaluated at the unclipped sample: the environment's clipping to
    the action bounds is not part of the policy (as in Schulman et al. 2017's continuous PPO).

    Args:
        mean: ``(B, A) float``; log_std: ``(A,)`` or ``(B, A)``; actions: ``(B, A) float``.

    Returns:
        ``(B,) float32``.
    """
    log_std = log_std.float()
    z = (actions.float() - mean.float()) * torch.exp(-log_std)
    return (-0.5 * z**2 - log_std - 0.5 * _LOG_2PI).sum(-1)


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """Entropy of a diagonal Gaussian: ``sum_i (log sigma_i + (1 + log(2 pi)) / 2)``.

    Args:
        log_std: ``(A,)`` or ``(B, A)``.

    Returns:
        ``()`` or ``(B,) float32`` (nats).
    """
    return (log_std.float() + 0.5 * (1.0 + _LOG_2PI)).sum(-1)


def sample_gaussian_actions(
    mean: torch.Tensor, log_std: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``a = mean + exp(log_std) * eps``, ``eps ~ N(0, I)``, with an explicit generator.

    The sample is unbounded (clipping to the action bounds happens on the way to the
    environment, ``ActionBounds.to_env``); its log-probability is that of the unclipped sample.

    Args:
        mean: ``(N, A)``; log_std: ``(A,)``.

    Returns:
        ``actions (N, A) float32`` and their ``log-probabilities (N,) float32``.
    """
    mean = mean.float()
    eps = torch.randn(mean.shape, generator=generator, device=mean.device)
    actions = mean + torch.exp(log_std.float()) * eps
    return actions, gaussian_log_prob(mean, log_std, actions)
