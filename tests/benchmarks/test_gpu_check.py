"""``benchmarks/gpu_check.py``: says so and exits 0 without a GPU; its measures run on a CPU."""

from __future__ import annotations

import torch


def test_without_a_gpu_it_says_so_and_exits_0(monkeypatch, capsys, load_benchmark) -> None:
    gpu_check = load_benchmark("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "stage1", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out.strip() == gpu_check.NO_GPU


def test_tiny_run_on_cpu_measures_every_part(monkeypatch, capsys, load_benchmark) -> None:
    gpu_check = load_benchmark("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--allow-cpu", "--tiny", "--peak-tflops", "1"]) == 0
    out = capsys.readouterr().out
    for part in ("stage 1 eager:", "GFLOP/sample  MFU", "IDM labelling:", "stage 2:",
                 "PPO expert:", "fine-tuning:", "gpu_check: done"):  # fmt: skip
        assert part in out, out
    measured = ("stage 1 eager", "IDM", "stage 2", "PPO", "fine-tuning")
    rates = [float(line.split(":")[1].split()[0]) for line in out.splitlines()
             if line.startswith(measured)]  # fmt: skip
    assert len(rates) == 5 and all(r > 0 for r in rates), out


def test_peak_table_knows_the_gpus_it_targets(monkeypatch, load_benchmark) -> None:
    gpu_check = load_benchmark("gpu_check")
    cuda = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H200")
    assert gpu_check.peak_tflops(cuda, None) == 989.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 PCIe")
    assert gpu_check.peak_tflops(cuda, None) == 756.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Some Future GPU")
    assert gpu_check.peak_tflops(cuda, None) is None
    assert gpu_check.peak_tflops(cuda, 123.0) == 123.0


def test_a_failing_part_is_reported_the_rest_still_run_and_the_exit_is_1(
    monkeypatch, capsys, load_benchmark
):
    gpu_check = load_benchmark("gpu_check")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "stage1", lambda *a, **k: (100.0, 1e9))
    monkeypatch.setattr(gpu_check, "labelling", lambda *a, **k: 50.0)
    monkeypatch.setattr(gpu_check, "stage2", lambda *a, **k: 70.0)

    def no_procgen(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'gym'")

    monkeypatch.setattr(gpu_check, "ppo", no_procgen)
    monkeypatch.setattr(gpu_check, "finetune", lambda *a, **k: 30.0)
    assert gpu_check.main(["--allow-cpu", "--tiny"]) == 1
    out = capsys.readouterr().out
    assert "FAILED (PPO expert: ModuleNotFoundError: No module named 'gym')" in out
    assert "fine-tuning:              30 env-steps/s" in out and "1 part(s) failed" in out
