"""Random-number generator states as checkpoint data: torch's (CPU and every CUDA device),
Python's ``random`` and numpy ``Generator``s, so that a resumed run draws exactly what the
uninterrupted one would have (``lapo.checkpoint`` stores them; ``lapo.runtime`` captures them)."""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from lapo.checkpoint import CheckpointError

#: numpy's bit generators, the only ones ``restore_generator`` builds.
BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Capture the torch CPU RNG, every CUDA device's RNG (if CUDA is available) and Python's
    ``random``, for `save_checkpoint(tensors=..., meta={"rng": ...})`.

    Returns:
        ``(tensors, meta)``: tensors ``"rng/torch"`` and ``"rng/cuda/{i}"`` (uint8 byte states),
        meta ``{"cuda_devices": int, "python": [version, [625 ints], gauss_next]}``.
    """
    tensors = {"rng/torch": torch.get_rng_state()}
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    tensors.update({f"rng/cuda/{i}": state for i, state in enumerate(cuda)})
    version, internal, gauss = random.getstate()
    return tensors, {"cuda_devices": len(cuda), "python": [version, list(internal), gauss]}


def set_rng_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> None:
    """Restore what `rng_state` captured (other keys of ``tensors`` are ignored).

    CUDA states are restored for the devices present; a warning says if the count differs.

    Raises:
        CheckpointError: ``tensors`` has no ``"rng/torch"``.
    """
    if "rng/torch" not in tensors:
        raise CheckpointError("no 'rng/torch' tensor: pass the tensors that rng_state() returned")
    torch.set_rng_state(tensors["rng/torch"].cpu())
    saved = [tensors[f"rng/cuda/{i}"].cpu() for i in range(meta["cuda_devices"])]
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if len(saved) != available:
        warnings.warn(
            f"RNG states of {len(saved)} CUDA devices saved, {available} present", stacklevel=2
        )
    if saved and available:
        torch.cuda.set_rng_state_all(saved[:available])
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def _plain(obj: Any) -> Any:
    """``obj`` with numpy arrays and scalars turned into lists and Python numbers."""
    if isinstance(obj, dict):
        return {key: _plain(value) for key, value in obj.items()}
    return obj.tolist() if isinstance(obj, np.ndarray | np.generic) else obj


def generator_state(gen: np.random.Generator) -> dict[str, Any]:
    """The state of ``gen``'s bit generator as plain JSON data (for ``meta``)."""
    return _plain(gen.bit_generator.state)


def restore_generator(state: Mapping[str, Any]) -> np.random.Generator:
    """A new ``np.random.Generator`` continuing exactly where `generator_state`'s source was.

    Raises:
        CheckpointError: the bit generator is not one of numpy's (PCG64, MT19937, ...).
    """
    name = state.get("bit_generator")
    if name not in BIT_GENERATORS:
        raise CheckpointError(f"unknown numpy bit generator {name!r}; expected {BIT_GENERATORS}")
    bit_generator = getattr(np.random, name)()
    bit_generator.state = dict(state)
    return np.random.Generator(bit_generator)
