"""Neural networks (torch only): encoders, actor-critic; later IDM, FDM, quantizers, decoders."""

from lapo.models.actor_critic import ActorCritic, preprocess_obs
from lapo.models.encoders import ENCODERS, ImpalaEncoder, NatureEncoder, make_encoder

__all__ = [
    "ENCODERS",
    "ActorCritic",
    "ImpalaEncoder",
    "NatureEncoder",
    "make_encoder",
    "preprocess_obs",
]
