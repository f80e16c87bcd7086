"""bf16 is used only where the hardware has it: the effective setting, its warning, autocast."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import pytest
import torch

from lapo import device


@pytest.fixture(autouse=True)
def _rearm_the_warning():
    """Each test starts as a fresh process would: the fallback warning not yet shown."""
    device._warn_once.cache_clear()
    yield
    device._warn_once.cache_clear()


def _linear_output_dtype(bf16: bool) -> torch.dtype:
    layer = torch.nn.Linear(4, 3)
    with device.autocast("cpu", bf16):
        return layer(torch.ones(2, 4)).dtype


def test_cpu_without_bf16_kernels_falls_back_to_fp32_silently(monkeypatch):
    monkeypatch.setattr(device, "_onednn_bf16", lambda: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an AVX2-only CPU: fp32 is the right choice, no noise
        assert device.bf16_enabled(True, "cpu") is False
        assert _linear_output_dtype(bf16=True) == torch.float32
    assert device.native_bf16("cpu")[0] is False  # what the report's precision line reads


def test_the_fallback_warning_is_shown_once_per_process_even_after_filter_changes(monkeypatch):
    # Python's own once-per-location registry is reset by every catch_warnings/filterwarnings
    # (libraries call them between autocasts); the warning must still appear only once.
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # e.g. a V100
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla V100-SXM2-16GB")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")  # the interpreter's default: once per location
        for _ in range(3):
            assert device.bf16_enabled(True, "cuda") is False
            with warnings.catch_warnings():  # what tqdm or torch may do in between
                warnings.simplefilter("ignore")
    messages = [str(w.message) for w in seen if "no native bf16" in str(w.message)]
    assert len(messages) == 1, messages
    assert "--set lam.bf16=false --set bc.bf16=false on lapo run" in messages[0]
    assert seen[0].filename == __file__  # attributed to the caller of bf16_enabled


def test_cpu_with_bf16_kernels_autocasts_to_bf16_silently(monkeypatch):
    monkeypatch.setattr(device, "_onednn_bf16", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        assert device.bf16_enabled(True, "cpu") is True
        assert _linear_output_dtype(bf16=True) == torch.bfloat16


def test_fp32_request_is_kept_without_asking_the_hardware(monkeypatch):
    def fail() -> bool:
        raise AssertionError("the hardware check ran for an fp32 request")

    monkeypatch.setattr(device, "_onednn_bf16", fail)
    assert device.bf16_enabled(False, "cpu") is False
    assert _linear_output_dtype(bf16=False) == torch.float32


def test_torch_without_the_check_keeps_the_request(monkeypatch):
    monkeypatch.setattr(device, "_onednn_bf16", lambda: None)
    assert device.native_bf16("cpu") == (True, "unknown")


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
    native, why = device.native_bf16("cpu")
    if flags & {"avx512_bf16", "amx_bf16"}:
        assert native, why
    elif not any(f.startswith("avx512") for f in flags):
        assert not native, f"an AVX2-only CPU reported native bf16 ({why})"
    else:
        pytest.skip("AVX-512 without BF16: oneDNN may emulate; nothing to assert")


def test_default_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert device.default_device() == torch.device("cpu")
    assert device.default_preset() == "cpu"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert device.default_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert device.default_device() == torch.device("cuda", 3)
    assert device.default_preset() == "paper"


def test_resolve_device_keeps_an_explicit_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.resolve_device("cpu") == torch.device("cpu")
    assert device.resolve_device(None) == torch.device("cuda", 0)


def test_a_device_this_machine_lacks_is_refused_naming_what_it_has(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            device.resolve_device(name)
    with pytest.raises(ValueError, match="MPS is not available"):
        device.check_available("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device.check_available("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        device.check_available("cuda:2")


def test_cuda_precision_follows_is_bf16_supported_and_names_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert device.native_bf16("cuda:1") == (True, "CUDA bf16")
    assert device.bf16_enabled(True, torch.device("cuda", 0)) is True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)  # e.g. a V100 or T4
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Tesla V100-SXM2-16GB")
    with pytest.warns(UserWarning, match="this CUDA has no native bf16 arithmetic .GPU Tesla V100"):
        assert device.bf16_enabled(True, "cuda") is False
    assert device.bf16_enabled(False, "cuda") is False


def test_mps_precision_needs_macos_14(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: True)
    assert device.native_bf16("mps") == (True, "MPS bf16")
    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", lambda major, minor: False)
    with pytest.warns(
        UserWarning, match="this MPS has no native bf16 arithmetic .MPS before macOS"
    ):
        assert device.bf16_enabled(True, "mps") is False


def test_mps_precision_without_an_mps_build_is_fp32(monkeypatch):
    def no_backend(major: int, minor: int) -> bool:
        raise RuntimeError("Cannot execute isOnMacOSorNewer() without MPS backend.")

    monkeypatch.setattr(torch.backends.mps, "is_macos_or_newer", no_backend)
    assert device.native_bf16("mps")[0] is False


def test_autocast_uses_the_device_type_it_is_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    monkeypatch.setattr(device, "_onednn_bf16", lambda: True)
    with warnings.catch_warnings():  # "CUDA is not available ... Disabling autocast" on CPU builds
        warnings.simplefilter("ignore")
        assert device.autocast("cuda:0", True).device == "cuda"
    assert device.autocast(torch.device("cpu"), True).device == "cpu"
    assert device.autocast("cpu", False)._enabled is False


def test_default_device_reads_local_rank_only_for_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert device.default_device() == torch.device("mps")
    assert device.resolve_device(None) == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("LOCAL_RANK")
    assert device.resolve_device(None) == torch.device("cuda", 0)
