"""The device policy: which device computes, and whether it computes in bf16.

``default_device`` is the one place that picks a device when none is given: CUDA (the local rank's
GPU under DDP), else Apple's MPS, else the CPU. ``default_preset`` picks the stage presets that fit
it (``paper`` on an accelerator, ``cpu`` otherwise).

bf16 autocast runs where the hardware computes bf16 natively, fp32 where it would only emulate it.

Every config's ``bf16`` field means "train and act in bf16 where that is fast". On a CPU without
bf16 instructions (x86 without AVX-512 BF16 or AMX, e.g. AVX2-only machines) oneDNN has no bf16
kernels and PyTorch falls back to reference code: a ``cpu``-preset stage-1 update measured about
10x slower in bf16 than in fp32 on such a machine (see ``benchmarks/lam_throughput.py``). There the
request is dropped with one warning per process and the run computes in fp32. Checkpoints are
unaffected (the weights are float32 either way), so a run may resume on a machine of the other
kind.
"""

from __future__ import annotations

import functools
import os
import warnings

import torch


def default_device() -> torch.device:
    """CUDA when available (``cuda:LOCAL_RANK`` under torchrun/DDP), else MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None means ``default_device()``.

    Raises:
        ValueError: a device this machine does not have (``check_available``).
    """
    return default_device() if device is None else check_available(device)


def check_available(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device`` once this PyTorch can compute on it.

    Raises:
        ValueError: a CUDA device without CUDA (a CPU-only build, or no driver or GPU), a CUDA
            index past the last GPU, or MPS where it is not available; the message names what
            this machine has.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device}: this PyTorch sees no CUDA GPU ({torch.__version__}; a CPU-only "
                "build or no driver); use cpu"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"device {device}: this machine has {count} CUDA device(s), cuda:0 to "
                f"cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device}: MPS is not available here (Apple GPUs only); use cpu")
    return device


def default_preset() -> str:
    """The size preset that fits this machine: ``paper`` with a CUDA GPU, ``cpu`` without."""
    return "paper" if torch.cuda.is_available() else "cpu"


NO_NATIVE_BF16 = (
    "bf16 was requested but this {device} has no native bf16 arithmetic ({why}); computing in "
    "fp32 instead (bf16 off silences this: bf16=False in a config, --no-bf16 on a training "
    "command, --set lam.bf16=false --set bc.bf16=false on lapo run)"
)


def native_bf16(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` runs bf16 matrix work natively, and a short reason.

    CPU: oneDNN's own check (x86: AVX-512 BF16 or AMX; ARM: the BF16 extension), which decides
    whether bf16 convolutions and matmuls take its fast kernels. CUDA:
    ``torch.cuda.is_bf16_supported()`` (compute capability 8.0+, Ampere on). MPS: macOS 14 or
    newer (Metal has no bf16 before; autocast to bf16 fails there). Other device types are
    trusted (True).
    """
    kind = torch.device(device).type
    if kind == "cpu":
        kernels = _onednn_bf16()
        if kernels is None:  # a torch build without the check: keep the request
            return True, "unknown"
        if kernels:
            return True, "oneDNN bf16 kernels"
        return False, f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    if kind == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, "CUDA bf16"
        return False, f"GPU {torch.cuda.get_device_name(torch.device(device))}"
    if kind == "mps":
        if _mps_macos_14():
            return True, "MPS bf16"
        return False, "MPS before macOS 14"
    return True, kind


def _mps_macos_14() -> bool:
    """Whether the MPS backend runs on macOS 14 or newer (False where this torch cannot say)."""
    try:
        return bool(torch.backends.mps.is_macos_or_newer(14, 0))
    except (AttributeError, RuntimeError):  # older torch, or a build without MPS
        return False


@functools.cache  # a fact of the machine; asked on every autocast, e.g. per environment step
def _onednn_bf16() -> bool | None:
    """oneDNN's answer to "does this CPU have bf16 kernels" (None: this torch cannot say)."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return None if check is None else bool(check())


def bf16_enabled(requested: bool, device: torch.device | str) -> bool:
    """The effective bf16 setting: ``requested`` and native bf16 on ``device``.

    Warns (``UserWarning``) the first time a request is dropped on an accelerator in this
    process, and only then: a GPU without bf16 is worth a line. A CPU without native bf16 (AVX2
    only) falls back silently: fp32 is the faster choice there, the one the user would make;
    ``lapo run``'s report names the precision each stage computed in (its configuration
    table), and ``native_bf16`` answers the question for any device.
    """
    if not requested:
        return False
    native, why = native_bf16(device)
    if not native and torch.device(device).type != "cpu":
        _warn_once(NO_NATIVE_BF16.format(device=torch.device(device).type.upper(), why=why))
    return native


# Why a cache and not Python's warning filter: the default filter shows a warning once per
# (message, category, location), but every ``warnings.catch_warnings()`` or ``filterwarnings``
# anywhere in the process (tqdm and torch call it) invalidates that registry, and the
# next autocast showed the warning again (three times in one ``lapo run``). The decision is a fact
# of the machine, like ``_onednn_bf16``; the cache holds one entry per distinct message (device
# kind and reason). ``_warn_once.cache_clear()`` re-arms it (tests).
@functools.cache
def _warn_once(message: str) -> None:
    """``warnings.warn(message)`` (``UserWarning``) the first time ``message`` is seen."""
    warnings.warn(message, UserWarning, stacklevel=3)  # bf16_enabled's caller


def autocast(device: torch.device | str, bf16: bool) -> torch.autocast:
    """``torch.autocast`` to bf16 on ``device`` when ``bf16_enabled(bf16, device)``, else a no-op
    context (fp32)."""
    device = torch.device(device)
    return torch.autocast(device.type, torch.bfloat16, enabled=bf16_enabled(bf16, device))
