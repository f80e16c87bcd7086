"""ILPO, Imitating Latent Policies from Observation (Edwards et al., ICML 2019): LAPO's primary
baseline (LAPO paper section 6.1 and appendix A.4).

ILPO learns from observation-only transitions (o_t, o_{t+1}) with K discrete latent actions z:

- a latent forward model G(o_t, z) that predicts the change Delta_t = o_{t+1} - o_t for every
  latent z at once (here: in pixels, as the authors' image code; the prediction of o_{t+1} is
  ``o_t + Delta_z``), trained with the min-over-latents loss

      L_min = E_t [ min_z || o_{t+1} - G(o_t, z) ||^2 ]                       (ILPO eq. 2)

  so that each latent specializes on one kind of transition;
- a latent policy pi(z | o_t) over the K latents, trained with the expected-transition loss

      L_exp = E_t [ || o_{t+1} - sum_z pi(z | o_t) G(o_t, z) ||^2 ]             (ILPO eq. 3)

  with G held fixed in L_exp (stop-gradient, as the authors' code), so that pi puts its mass on
  the latents whose predicted transition matches the expert's;
- an action-remapping network pi_xi(a | o_t, z) (ILPO section 4.2), trained online from the
  agent's own transitions: the latent that best explains an observed (o_t, a_t, o_{t+1}) is
  z* = argmin_z || o_{t+1} - G(o_t, z) ||^2, and pi_xi learns a_t from (o_t, z*) by cross-entropy.
  The acting policy is pi(a | o_t) = sum_z pi(z | o_t) pi_xi(a | o_t, z).

Architecture (our own). G is a small U-Net in the spirit of the authors' pix2pix generator: its
encoder runs once per observation, the latent enters at the 8x8 bottleneck as a learned
per-channel embedding, and only the decoder runs K times. The latent policy is one of lapo's
image encoders (IMPALA or Nature, ``lapo.models.encoders``; the LAPO paper gives ILPO's policy
the IMPALA-CNN of its own latent policy) with a linear head over K latents. The remapping network
is an MLP on the latent policy's (frozen) features concatenated with the one-hot latent.

All modules take observations as lapo does: ``frames_to_float`` images in [-0.5, 0.5] for G,
``(B, H, W, C) uint8`` for the policies (``preprocess_obs`` inside).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lapo.models.actor_critic import preprocess_obs
from lapo.models.fdm import ResBlock

#: Generator sizes: base width and per-level multipliers (64 -> 32 -> 16 -> 8 for Procgen),
#: residual blocks at the bottleneck after the latent is added.
ILPO_SIZES: dict[str, dict] = {
    "paper": {"base": 24, "mults": (1, 2, 4, 8), "mid_blocks": 2},
    "cpu": {"base": 8, "mults": (1, 2, 4, 8), "mid_blocks": 1},
    "smoke": {"base": 4, "mults": (1, 2, 4, 8), "mid_blocks": 1},
}


class LatentForwardModel(nn.Module):
    """G(o_t, z) for all K latents: ``frame (B, C, H, W) float`` in [-0.5, 0.5] ->
    ``(B, K, C, H, W) float32`` predictions of o_{t+1} in [-0.5, 0.5].

    The prediction under latent z is ``clamp(o_t + tanh(decoder_z), -0.5, 0.5)``: ILPO's
    Delta_t = o_{t+1} - o_t added to o_t (at initialization every latent predicts o_t).

    Args:
        num_latents: K.
        channels: C of a frame.
        base, mults: U-Net widths ``base * m`` per level; H and W must be multiples of
            ``2 ** (len(mults) - 1)``.
        mid_blocks: residual blocks at the bottleneck (run K times, after the latent is added).

    Raises:
        ValueError: (forward) a frame of the wrong channels or a size the U-Net cannot halve.
    """

    def __init__(
        self,
        num_latents: int,
        channels: int = 3,
        base: int = 8,
        mults: tuple[int, ...] = (1, 2, 4, 8),
        mid_blocks: int = 1,
    ) -> None:
        super().__init__()
        self.num_latents, self.channels = num_latents, channels
        self.stride = 2 ** (len(mults) - 1)
        widths = [base * m for m in mults]
        self.stem = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(ResBlock(w, w) for w in widths)
        self.downsample = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1)
            for i in range(len(widths) - 1)
        )
        self.latent_embedding = nn.Embedding(num_latents, widths[-1])
        self.mid = nn.Sequential(*(ResBlock(widths[-1], widths[-1]) for _ in range(mid_blocks)))
        self.up = nn.ModuleList(ResBlock(2 * w, w) for w in widths)  # each takes its skip
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2) for i in range(1, len(widths))
        )
        self.head = nn.Conv2d(widths[0], channels, 3, padding=1)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """G(o_t, z) for every z (the G of ILPO eq. 2, Edwards et al. 2019): ``frame (B, C, H, W)
        float`` in [-0.5, 0.5] -> ``(B, K, C, H, W) float32`` predictions of o_{t+1} in [-0.5, 0.5].

        Raises:
            ValueError: C is not ``channels``, or H or W is not a multiple of
                ``2 ** (len(mults) - 1)``.
        """
        b, c, h, w = frame.shape
        if c != self.channels or h % self.stride or w % self.stride:
            raise ValueError(
                f"ILPO forward model expects (B, {self.channels}, H, W) with H, W multiples of "
                f"{self.stride}; got {tuple(frame.shape)}"
            )
        k = self.num_latents
        x = self.stem(frame)  # (B, base, H, W)
        skips = []
        for i, level in enumerate(self.down):
            x = level(x)  # (B, widths[i], H / 2^i, W / 2^i)
            skips.append(x)
            if i < len(self.downsample):
                x = self.downsample[i](x)
        z = self.latent_embedding.weight.to(x.dtype)  # (K, widths[-1])
        x = (x[:, None] + z[None, :, :, None, None]).flatten(0, 1)  # (B*K, widths[-1], h, w)
        x = self.mid(x)
        for i in reversed(range(len(self.up))):
            skip = skips[i].repeat_interleave(k, dim=0)  # (B*K, widths[i], ., .)
            x = self.up[i](torch.cat([x, skip], dim=1))
            if i > 0:
                x = self.upsample[i - 1](x)
        delta = torch.tanh(self.head(F.relu(x)).float())  # (B*K, C, H, W)
        current = frame.float().repeat_interleave(k, dim=0)
        return (current + delta).clamp(-0.5, 0.5).view(b, k, c, h, w)


class ILPOLatentPolicy(nn.Module):
    """pi(z | o_t): an image encoder and a linear head over K latents.

    ``forward(obs (B, H, W, C) uint8) -> logits (B, K) float32``; ``features(obs) -> (B, F)``
    are the encoder's outputs (what the remapping network sees).
    """

    def __init__(self, encoder: nn.Module, num_latents: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.features, num_latents)
        self.num_latents = num_latents

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """Encoder features: ``obs (B, H, W, C) uint8 -> (B, F)``, F = ``encoder.features``."""
        return self.encoder(preprocess_obs(obs))  # (B, F)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """pi(z | o_t) logits: ``obs (B, H, W, C) uint8 -> (B, K) float32``."""
        return self.head(self.features(obs)).float()  # (B, K)


class ActionRemap(nn.Module):
    """pi_xi(a | o_t, z): MLP on ``[features (B, F), one_hot(z) (B, K)]`` -> ``(B, A)`` logits.

    ``all_latents(features (B, F)) -> (B, K, A)`` logits for every latent at once.
    """

    def __init__(
        self, features: int, num_latents: int, num_actions: int, hidden: tuple[int, ...]
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = features + num_latents
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_actions))
        self.mlp = nn.Sequential(*layers)
        self.num_latents, self.num_actions = num_latents, num_actions

    def forward(self, features: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """pi_xi(a | o_t, z) logits (ILPO section 4.2): ``features (B, F)`` and ``latent (B,)``
        integer ids in ``[0, K)`` -> ``(B, A) float32``."""
        one_hot = F.one_hot(latent.long(), self.num_latents).to(features.dtype)
        return self.mlp(torch.cat([features, one_hot], dim=-1)).float()

    def all_latents(self, features: torch.Tensor) -> torch.Tensor:
        """Logits for every latent at once: ``features (B, F) -> (B, K, A) float32``; row z is
        ``forward(features, z)``."""
        b, k = features.shape[0], self.num_latents
        latents = torch.arange(k, device=features.device).repeat(b)  # (B*K,)
        logits = self(features.repeat_interleave(k, dim=0), latents)  # (B*K, A)
        return logits.view(b, k, -1)


class ILPOPolicy(nn.Module):
    """ILPO's acting policy pi(a | o_t) = sum_z pi(z | o_t) pi_xi(a | o_t, z) (section 4.2).

    ``forward(obs (B, H, W, C) uint8) -> (B, A) float32`` log-probabilities (usable as logits
    by ``lapo.eval.actors.PolicyActor``).
    """

    def __init__(self, latent_policy: ILPOLatentPolicy, remap: ActionRemap) -> None:
        super().__init__()
        self.latent_policy, self.remap = latent_policy, remap

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """log pi(a | o_t): ``obs (B, H, W, C) uint8 -> (B, A) float32`` log-probabilities
        (``log_probs`` of the latent policy's features)."""
        return self.log_probs(self.latent_policy.features(obs))

    def log_probs(self, features: torch.Tensor) -> torch.Tensor:
        """log pi(a | o_t) from the latent policy's features ``(B, F)`` -> ``(B, A) float32``
        (for callers that need the features too: the encoder runs once)."""
        log_pz = torch.log_softmax(self.latent_policy.head(features).float(), -1)  # (B, K)
        log_pa = torch.log_softmax(self.remap.all_latents(features.float()), -1)  # (B, K, A)
        return torch.logsumexp(log_pz[:, :, None] + log_pa, dim=1)  # (B, A)


def transition_errors(predictions: torch.Tensor, next_frame: torch.Tensor) -> torch.Tensor:
    """Per-latent squared error e_{b,z} = mean_pixels (G(o_t, z) - o_{t+1})^2.

    Shapes: ``predictions (B, K, C, H, W)``, ``next_frame (B, C, H, W)`` -> ``(B, K) float32``.
    """
    diff = predictions.float() - next_frame.float()[:, None]
    return diff.pow(2).flatten(2).mean(-1)


def ilpo_losses(
    predictions: torch.Tensor, latent_logits: torch.Tensor, next_frame: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ILPO's two losses on one batch (module docstring, eqs. 2 and 3).

    Args:
        predictions: ``(B, K, C, H, W)`` G(o_t, z) for every latent.
        latent_logits: ``(B, K)`` logits of pi(z | o_t).
        next_frame: ``(B, C, H, W)`` o_{t+1}.

    Returns:
        ``(l_min, l_exp, argmin)``: L_min = mean_b min_z e_{b,z} (gradient to G only), L_exp =
        mean_b mean_pixels (sum_z pi(z|o_t) G(o_t, z) - o_{t+1})^2 with G detached (gradient to
        pi only), both scalars, and the argmin latent per sample ``(B,) int64``.
    """
    errors = transition_errors(predictions, next_frame)  # (B, K)
    l_min, argmin = errors.min(dim=1)
    probs = torch.softmax(latent_logits.float(), -1)  # (B, K)
    expected = (probs[:, :, None, None, None] * predictions.detach().float()).sum(1)  # (B,C,H,W)
    l_exp = (expected - next_frame.float()).pow(2).mean()
    return l_min.mean(), l_exp, argmin


class ILPOModel(nn.Module):
    """The offline ILPO networks: the forward model G and the latent policy pi(z | o_t).

    ``forward(obs (B, H, W, C) uint8) -> (predictions (B, K, C, H, W) float32 in [-0.5, 0.5],
    latent logits (B, K) float32)``.
    """

    def __init__(self, forward_model: LatentForwardModel, latent_policy: ILPOLatentPolicy):
        super().__init__()
        if forward_model.num_latents != latent_policy.num_latents:
            raise ValueError(
                f"forward model has {forward_model.num_latents} latents, the latent policy "
                f"{latent_policy.num_latents}"
            )
        self.forward_model, self.latent_policy = forward_model, latent_policy
        self.num_latents = forward_model.num_latents

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``obs (B, H, W, C) uint8 -> (predict(obs) (B, K, C, H, W) float32, latent logits (B, K)
        float32)``."""
        return self.predict(obs), self.latent_policy(obs)

    def predict(self, obs: torch.Tensor) -> torch.Tensor:
        """G(o_t, z) for every latent z alone: ``obs (B, H, W, C) uint8`` -> ``(B, K, C, H, W)
        float32`` in [-0.5, 0.5] (the online phase's z* labelling needs no latent policy)."""
        frame = obs.movedim(-1, -3).float().div(255.0).sub(0.5)  # (B, C, H, W) in [-0.5, 0.5]
        return self.forward_model(frame)
