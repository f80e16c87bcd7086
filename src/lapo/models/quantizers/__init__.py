"""Latent action quantizers, one per file: ``ema_vq`` (the paper's), ``fsq``, ``none``.

``make_quantizer`` builds any of them by name.
"""

from __future__ import annotations

from torch import nn

from lapo.models.quantizers.base import VQOutput, code_perplexity
from lapo.models.quantizers.ema_vq import VectorQuantizer
from lapo.models.quantizers.fsq import FSQ
from lapo.models.quantizers.none import NoQuantizer

__all__ = [
    "FSQ",
    "NoQuantizer",
    "QUANTIZER_KINDS",
    "VQOutput",
    "VectorQuantizer",
    "code_perplexity",
    "make_quantizer",
]

QUANTIZER_KINDS = ("vq", "none", "fsq")


def make_quantizer(kind: str, **kwargs) -> nn.Module:
    """Build quantizer ``kind``: ``vq`` (VectorQuantizer), ``none`` (NoQuantizer), ``fsq`` (FSQ).

    ``kwargs`` go to the constructor unchanged.

    Raises:
        ValueError: unknown kind; the message lists the valid ones.
    """
    classes: dict[str, type[nn.Module]] = {"vq": VectorQuantizer, "none": NoQuantizer, "fsq": FSQ}
    if kind not in classes:
        raise ValueError(f"unknown quantizer {kind!r}; expected one of: {', '.join(classes)}")
    return classes[kind](**kwargs)
