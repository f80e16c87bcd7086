"""bf16 is used only where the hardware has it: the effective setting, its warning, autocast."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import pytest
import torch

from lapo import precision


def _linear_output_dtype(bf16: bool) -> torch.dtype:
    layer = torch.nn.Linear(4, 3)
    with precision.autocast("cpu", bf16):
        return layer(torch.ones(2, 4)).dtype


def test_cpu_without_bf16_kernels_falls_back_to_fp32_with_one_warning(monkeypatch):
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: False)
    with pytest.warns(UserWarning, match="no native bf16.*fp32 instead"):
        assert precision.bf16_enabled(True, "cpu") is False
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert _linear_output_dtype(bf16=True) == torch.float32


def test_cpu_with_bf16_kernels_autocasts_to_bf16_silently(monkeypatch):
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert precision.bf16_enabled(True, "cpu") is True
        assert _linear_output_dtype(bf16=True) == torch.bfloat16


def test_fp32_request_is_kept_without_asking_the_hardware(monkeypatch):
    def fail() -> bool:
        raise AssertionError("the hardware check ran for an fp32 request")

    monkeypatch.setattr(precision, "_onednn_bf16", fail)
    assert precision.bf16_enabled(False, "cpu") is False
    assert _linear_output_dtype(bf16=False) == torch.float32


def test_torch_without_the_check_keeps_the_request(monkeypatch):
    monkeypatch.setattr(precision, "_onednn_bf16", lambda: None)
    assert precision.native_bf16("cpu") == (True, "unknown")


def _cpu_flags() -> set[str] | None:
    info = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not info.exists():
        return None
    for line in info.read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_native_bf16_agrees_with_the_cpu_flags_of_this_machine():
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("needs an x86 Linux machine")
    native, why = precision.native_bf16("cpu")
    if flags & {"avx512_bf16", "amx_bf16"}:
        assert native, why
    elif not any(f.startswith("avx512") for f in flags):
        assert not native, f"an AVX2-only CPU reported native bf16 ({why})"
    else:
        pytest.skip("AVX-512 without BF16: oneDNN may emulate; nothing to assert")
