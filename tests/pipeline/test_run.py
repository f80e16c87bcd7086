"""End to end: ``lapo run --preset smoke`` writes the report, its figures and every metric."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lapo.cli import main
from lapo.config import PPO_PRESETS, PPOConfig
from lapo.pipeline.report import METRICS_FIELDS
from lapo.stages.expert import train_expert


@pytest.mark.slow
def test_lapo_run_smoke_end_to_end_and_rerun_skips(tmp_path: Path, capsys) -> None:
    expert = tmp_path / "expert"
    config = dataclasses.replace(PPOConfig(env="bigfish", **PPO_PRESETS["smoke"]), eval_every=0)
    train_expert(config, expert, progress=False)
    out = tmp_path / "run"
    args = [
        "run",
        "--preset",
        "smoke",
        "--env",
        "bigfish",
        "--expert",
        str(expert),
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    report = out / "report"
    html = (report / "report.html").read_text()
    md = (report / "report.md").read_text()
    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    for name in (
        "lam_loss.png",
        "latent_map.png",
        "fdm_predictions.png",
        "codebook_usage.png",
        "bc_loss.png",
        "confusion.png",
        "returns.png",
    ):
        assert name in figures and f"figures/{name}" in md
    assert html.count("data:image/png;base64,") == len(figures)
    assert md.index("## Summary") < md.index("## Configuration") < md.index("## Data")
    assert "normalized return, LAPO decoded (32 labels)" in md and "wall time (minutes)" in md
    assert f"| expert (records the data) | the user's: {expert} |" in md
    assert "<details><summary>every setting (JSON)</summary>" in html
    metrics = json.loads((report / "metrics.json").read_text())
    assert set(METRICS_FIELDS) <= set(metrics)
    assert set(metrics["returns"]) == {"expert", "random", "label_bc", "lapo_decoded"}
    assert all(r["episodes"] == 4 for r in metrics["returns"].values())
    for key in ("probe_mlp_accuracy", "probe_linear_accuracy", "frame_difference_mlp_accuracy"):
        assert 0.0 <= metrics["lam"][key] <= 1.0
    assert "test/decoded_policy_accuracy" in metrics["decode"]
    relative = metrics["bc"]["test/relative_mse"]
    row = "| latent policy, held-out relative MSE (stage 2; 1 = the mean latent's) |"
    assert f"{row} {relative:.2f} |" in md
    printed = capsys.readouterr().out
    assert "lapo_decoded" in printed and "report.html" in printed
    # rerunning the same command finds every stage finished and runs nothing
    before = (out / "pipeline.json").read_text()
    assert main(args) == 0
    assert (out / "pipeline.json").read_text() == before
    # a changed setting of a finished stage is refused, with the --redo to pass
    assert main([*args, "--labels", "16"]) == 1
    assert "--redo decode" in capsys.readouterr().err
    # adding the online stage runs it (fine-tuning vs PPO from scratch) and redoes the report
    assert main([*args, "--online"]) == 0
    online = json.loads((out / "online" / "online.json").read_text())
    assert set(online["final"]) == {"LAPO fine-tuned", "PPO from scratch"}
    for name in ("LAPO fine-tuned", "PPO from scratch"):
        steps = online["curves"][name][0]["steps"]
        assert steps[0] == 0 and steps[-1] == 1024  # evaluated before the first update, and last
        (final,) = online["evaluation"][name]  # the finished policy, as the offline ones
        assert final["episodes"] == 4 and online["final"][name] == final["normalized"]
        assert online["steps_per_second"][name] > 0
    md = (report / "report.md").read_text()
    assert "normalized return per seed (95% CI)" in md
    assert (
        "normalized return after online training (mean over seeds)"
        in md.split("## Configuration")[0]
    )
    assert "online" in json.loads((report / "metrics.json").read_text())
    assert (report / "figures" / "online.png").exists()
    assert list(out.glob("report.replaced-*"))  # the first report is kept aside
    # one more seed extends the finished comparison: seed 0 is reused, not trained again
    seed0 = (out / "online" / "lapo-seed0" / "checkpoint.json").read_bytes()
    assert main([*args, "--online", "--online-seeds", "2"]) == 0
    online = json.loads((out / "online" / "online.json").read_text())
    assert all(len(online["evaluation"][name]) == 2 for name in online["final"])
    assert (out / "online" / "lapo-seed0" / "checkpoint.json").read_bytes() == seed0
    assert not list(out.glob("online.replaced-*"))
    # adding a label sweep runs it with the label-only BC baseline on the same labels and levels
    online_args = ["--online", "--online-seeds", "2"]
    assert main([*args, *online_args, "--sweep", "8,16", "--sweep-seeds", "2"]) == 0
    rows = json.loads((out / "sweep" / "label_sweep.json").read_text())
    assert sorted((r["method"], r["labels"], r["seed"]) for r in rows) == sorted(
        (m, n, s) for m in ("lapo", "label-bc") for n in (8, 16) for s in (0, 1)
    )
    md = (report / "report.md").read_text()
    assert "## Label sweep" in md and "label-only BC (mean of 2 seeds, +- SEM)" in md
    assert (report / "figures" / "label_sweep.png").exists()
    sweep = json.loads((report / "metrics.json").read_text())["sweep"]
    assert {(r["method"], r["labels"]) for r in sweep} == {
        (m, n) for m in ("lapo", "label-bc") for n in (8, 16)
    }


#: Files whose bytes hold wall-clock facts (timestamps, speeds, durations) or the run's own path;
#: compared by what must not change.
_TIMED = {"checkpoint.json", "manifest.json", "pipeline.json", "metrics.json", "report.html",
          "report.md", "metrics.jsonl", "latents-train.json", "latents-test.json",
          "run_config.json"}  # fmt: skip


def _fingerprint(run: Path) -> dict:
    """Everything a run produced that must not depend on where it was killed: the bytes of every
    file but the timed ones; of those, the checkpoints' tensor hashes and steps, the datasets'
    file hashes and the logged steps."""
    import hashlib

    prints: dict = {}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run)
        if not path.is_file() or path.name.startswith(".") or "tb" in rel.parts:
            continue
        if path.name not in _TIMED:
            prints[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.name == "checkpoint.json":
            doc = json.loads(path.read_text())
            prints[str(rel)] = (doc["tensors_sha256"], doc["meta"].get("step"))
        elif path.name == "manifest.json":
            doc = json.loads(path.read_text())
            prints[str(rel)] = (doc["files"], doc["shards"])
        elif path.name == "run_config.json":  # the same settings but --out
            prints[str(rel)] = {k: v for k, v in json.loads(path.read_text()).items() if k != "out"}
        elif path.name == "metrics.jsonl":
            prints[str(rel)] = [json.loads(line)["step"] for line in path.read_text().splitlines()]
    return prints


@pytest.mark.slow  # four smoke pipelines (about 25 s each on 2 shared cores) and three reruns
def test_lapo_run_killed_at_random_points_reruns_to_bitwise_the_same_outputs(tmp_path: Path):
    expert = tmp_path / "expert"
    config = dataclasses.replace(PPOConfig(env="bigfish", **PPO_PRESETS["smoke"]), eval_every=0)
    train_expert(config, expert, progress=False)
    src = Path(__file__).resolve().parents[2] / "src"
    path = os.pathsep.join(filter(None, [str(src), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    args = [sys.executable, "-m", "lapo", "run", "--preset", "smoke", "--env", "bigfish",
            "--expert", str(expert), "--no-progress"]  # fmt: skip
    started = time.monotonic()
    subprocess.run([*args, "--out", str(tmp_path / "full")], check=True, env=env,
                   capture_output=True)  # fmt: skip
    duration = time.monotonic() - started
    expected = _fingerprint(tmp_path / "full")
    fractions = sorted(np.random.default_rng(32).uniform(0.1, 0.8, size=3))
    for i, fraction in enumerate(fractions):  # kill -9 somewhere in collect, stages, report
        out = tmp_path / f"killed{i}"
        proc = subprocess.Popen([*args, "--out", str(out)], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)  # fmt: skip
        time.sleep(fraction * duration)
        proc.kill()
        assert proc.wait() == -signal.SIGKILL, f"the run ended before {fraction:.2f} of its time"
        rerun = subprocess.run([*args, "--out", str(out)], env=env, capture_output=True,
                               text=True)  # fmt: skip
        assert rerun.returncode == 0, f"killed at {fraction:.2f}: {rerun.stderr}"
        assert _fingerprint(out) == expected, f"killed at {fraction:.2f} of the run"
        assert not list(tmp_path.glob(f"killed{i}/*.partial-*"))  # leftovers cleaned
