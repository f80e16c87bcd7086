"""Nothing lost, nobody in: --overwrite replaces only what lapo made, one process per output,
concurrent checkpoint saves, exit statuses that tell why a command stopped, unfinished runs
refused downstream, and metadata paths confined to their directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lapo.checkpoint import CheckpointError, load_checkpoint, read_meta, save_checkpoint
from lapo.cli import main
from lapo.data import DatasetError, open_dataset
from lapo.data.synthetic import write_sprite_dataset
from lapo.safety import check_replaceable, exclusive, lapo_made

SRC = Path(__file__).resolve().parents[1] / "src"


def _env() -> dict[str, str]:
    """The environment for child processes: this checkout's sources first."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def sprites(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("safety") / "sprites"
    write_sprite_dataset(path, episodes=8, length=16, size=32, seed=0)
    return path


@pytest.fixture(scope="module")
def sprites64(tmp_path_factory) -> Path:
    """Frames large enough for stage 2's Nature-CNN encoder."""
    path = tmp_path_factory.mktemp("safety64") / "sprites"
    write_sprite_dataset(path, episodes=6, length=12, size=64, seed=0)
    return path


def _arrays(folder: Path, frames: int = 6, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.save(folder / "a.npy", rng.integers(0, 256, size=(frames, 8, 8, 3), dtype=np.uint8))
    return folder


def _error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lapo: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ---------------------------------------------------------------------------- 1. --overwrite
def test_overwrite_refuses_an_output_that_contains_the_source(tmp_path, capsys) -> None:
    project = tmp_path / "proj"
    source = _arrays(project / "arrays")
    argv = ["data", "import", str(source), "--out", str(project), "--format", "arrays",
            "--overwrite", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    assert "contains the input" in _error(capsys)
    assert (source / "a.npy").is_file()  # the source is still there


def test_out_inside_or_equal_to_an_input_is_refused(sprites, tmp_path, capsys) -> None:
    inside = sprites / "run"
    assert main(["train-lam", "--data", str(sprites), "--out", str(inside), "--preset", "smoke",
                 "--no-progress"]) == 1  # fmt: skip
    assert "lies inside the input" in _error(capsys)
    assert not inside.exists()
    source = _arrays(tmp_path / "arrays")
    argv = ["data", "import", str(source), "--out", str(source), "--format", "arrays"]
    assert main(argv) == 1
    assert "is the input" in _error(capsys)


def test_overwrite_refuses_a_foreign_directory(tmp_path, capsys) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    argv = ["data", "import", str(_arrays(tmp_path / "arrays")), "--out", str(out),
            "--format", "arrays", "--overwrite", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    message = _error(capsys)
    assert "not a lapo dataset or run directory" in message and "chapter1.tex" in message
    assert (out / "chapter1.tex").read_text() == "years of work"


def test_overwrite_refuses_a_plain_file(tmp_path, capsys) -> None:
    out = tmp_path / "notes.txt"
    out.write_text("keep me")
    argv = ["data", "import", str(_arrays(tmp_path / "arrays")), "--out", str(out),
            "--format", "arrays", "--overwrite", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    assert "is a file, not a lapo dataset" in _error(capsys)
    assert out.read_text() == "keep me"


def test_overwrite_replaces_a_lapo_dataset(tmp_path, capsys) -> None:
    out = tmp_path / "ds"
    write_sprite_dataset(out, episodes=2, length=5, size=16)
    argv = ["data", "import", str(_arrays(tmp_path / "arrays", frames=7)), "--out", str(out),
            "--format", "arrays", "--overwrite", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    with open_dataset(out) as ds:
        assert ds.num_frames == 7 and ds.manifest["source"]["kind"] == "arrays"


def test_what_lapo_made_is_recognised_by_its_format_marker(sprites, tmp_path) -> None:
    assert lapo_made(sprites) == "lapo dataset"
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", tensors={"x": torch.zeros(1)})
    assert lapo_made(run) == "lapo run directory"
    check_replaceable(run)
    check_replaceable(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    check_replaceable(tmp_path / "empty")  # nothing to lose
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "manifest.json").write_text(json.dumps({"format": "not-lapo"}))
    assert lapo_made(fake) is None
    with pytest.raises(FileExistsError, match="not a lapo dataset"):
        check_replaceable(fake)
    (tmp_path / "link").symlink_to(sprites)
    with pytest.raises(FileExistsError, match="symbolic link"):
        check_replaceable(tmp_path / "link")


# ---------------------------------------------------------------------------- 2. locks
HOLDER = """
import sys, time
from contextlib import ExitStack
from lapo.safety import exclusive
with ExitStack() as stack:
    for spec in sys.argv[1:]:
        kind, path = spec.split("=", 1)
        stack.enter_context(exclusive(path, inside=kind == "run"))
    print("held", flush=True)
    time.sleep(600)
"""


def _hold(*specs: str) -> subprocess.Popen:
    """A second process holding the given locks (``run=PATH`` or ``dataset=PATH``)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *specs], stdout=subprocess.PIPE,
                            text=True, env=_env())  # fmt: skip
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_an_output_locked_by_another_process_is_refused_naming_its_pid(
    sprites, tmp_path, capsys
) -> None:
    t = tmp_path
    commands = {
        "run=" + str(t / "lam"): ["train-lam", "--data", str(sprites), "--out", str(t / "lam"),
                                  "--preset", "smoke", "--no-progress"],
        "run=" + str(t / "bc"): ["train-bc", "--lam", str(t / "nolam"), "--data", str(sprites),
                                 "--out", str(t / "bc"), "--preset", "smoke"],
        "run=" + str(t / "dec"): ["decode-offline", "--policy", str(t / "p"), "--lam",
                                  str(t / "l"), "--data", str(sprites), "--out", str(t / "dec")],
        "run=" + str(t / "ppo"): ["ppo", "--env", "coinrun", "--preset", "smoke", "--out",
                                  str(t / "ppo"), "--no-progress"],
        "run=" + str(t / "exp"): ["expert", "train", "--env", "coinrun", "--preset", "smoke",
                                  "--out", str(t / "exp"), "--no-progress"],
        "run=" + str(t / "pipe"): ["run", "--preset", "smoke", "--out", str(t / "pipe"),
                                   "--no-progress"],
        "dataset=" + str(t / "ds"): ["data", "import", str(_arrays(t / "arrays")), "--out",
                                     str(t / "ds"), "--format", "arrays", "--no-progress"],
        "dataset=" + str(t / "rec"): ["collect", "--env", "coinrun", "--frames", "8", "--out",
                                      str(t / "rec"), "--num-envs", "2", "--no-progress"],
    }  # fmt: skip
    holder = _hold(*commands)
    try:
        for argv in commands.values():
            assert main(argv) == 1, argv
            message = _error(capsys)
            assert "is in use by another lapo process" in message, argv
            assert f"(pid {holder.pid})" in message, argv
        assert not (t / "lam" / "checkpoint.json").exists() and not (t / "ds").exists()
    finally:
        holder.kill()
        holder.wait()
    with exclusive(t / "lam"):  # the kernel released the dead holder's lock
        assert (t / "lam" / ".lapo.lock.pid").read_text().strip() == str(os.getpid())
    assert not (t / "lam" / ".lapo.lock.pid").exists()


def test_lock_is_reentrant_within_a_process(tmp_path) -> None:
    with exclusive(tmp_path / "run"), exclusive(tmp_path / "run"):
        pass
    with exclusive(tmp_path / "run"):  # released, so free again
        pass


SAVER = """
import sys, time
from pathlib import Path
import torch
from lapo.checkpoint import save_checkpoint
path, writer, go = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
go.with_name(f"ready-{writer}").touch()
while not go.exists():
    time.sleep(0.005)
for i in range(40):
    value = torch.full((256,), float(writer * 1000 + i))
    save_checkpoint(path, tensors={"w": value}, meta={"writer": writer, "i": i})
"""


def test_two_processes_saving_one_checkpoint_both_leave_it_loadable(tmp_path) -> None:
    path, go = tmp_path / "run" / "checkpoint", tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", SAVER, str(path), str(w), str(go)], env=_env(),
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
        for w in (1, 2)
    ]
    deadline = time.time() + 240
    while not all((tmp_path / f"ready-{w}").exists() for w in (1, 2)):  # both imported torch
        assert time.time() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()  # then both save 40 times at once
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    ckpt = load_checkpoint(path)  # sha256-verified: the JSON and its tensor file match
    writer, i = ckpt.meta["writer"], ckpt.meta["i"]
    assert i == 39 and ckpt.tensors["w"].unique().tolist() == [float(writer * 1000 + 39)]
    left = {p.name for p in path.parent.iterdir() if not p.name.startswith(".")}
    tensors_file = json.loads((path.parent / "checkpoint.json").read_text())["tensors_file"]
    assert left == {"checkpoint.json", tensors_file}  # no temporaries, no stale tensor files


def test_checkpoint_cleanup_removes_only_dead_writers_temporaries(tmp_path) -> None:
    path = tmp_path / "checkpoint"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    orphan = tmp_path / f"checkpoint.safetensors.tmp-{dead}-abcd1234"
    live = tmp_path / f"checkpoint.json.tmp-{os.getpid()}-0000beef"  # a live writer's
    orphan.write_bytes(b"x")
    live.write_bytes(b"x")
    save_checkpoint(path, tensors={"w": torch.ones(2)})
    assert not orphan.exists() and live.exists()
    assert load_checkpoint(path).tensors["w"].tolist() == [1.0, 1.0]


# ---------------------------------------------------------------------------- 3. exit statuses
def test_sigterm_stops_train_lam_with_143_and_a_resumable_checkpoint(sprites, tmp_path) -> None:
    run = tmp_path / "run"
    args = [sys.executable, "-m", "lapo", "train-lam", "--data", str(sprites), "--preset",
            "smoke", "--steps", "100000", "--out", str(run), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=_env())  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().strip():
            proc.send_signal(signal.SIGTERM)
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err
    assert "SIGTERM: saved checkpoint" in out and "lapo: stopped (SIGTERM)" in err
    stopped = read_meta(run / "checkpoint")["step"]
    assert 0 < stopped < 100000
    assert not (run / ".lapo.lock.pid").exists()  # released
    resumed = subprocess.run([*args, "--resume", "--time-budget", "0.001"], capture_output=True,
                             text=True, env=_env(), timeout=240)  # fmt: skip
    assert resumed.returncode == 75, resumed.stderr
    assert "lapo: stopped (time budget)" in resumed.stderr
    assert stopped < read_meta(run / "checkpoint")["step"] < 100000


def test_sigterm_outside_a_training_loop_exits_143(sprites, monkeypatch, capsys) -> None:
    import lapo.data.info

    def terminated(dataset):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
        return "not reached"

    monkeypatch.setattr(lapo.data.info, "describe", terminated)
    assert main(["data", "info", str(sprites)]) == 143
    assert "SIGTERM" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train-lam", "--data", "DATA", "--time-budget", "-1"],
        ["train-bc", "--lam", "L", "--data", "DATA", "--time-budget", "-0.5"],
        ["expert", "train", "--env", "coinrun", "--time-budget", "0"],
        ["ppo", "--env", "coinrun", "--time-budget", "-2"],
        ["run", "--lam-minutes", "-1"],
    ],
)
def test_negative_time_budget_is_refused(argv, sprites, tmp_path, capsys) -> None:
    argv = [str(sprites) if a == "DATA" else a for a in argv] + ["--out", str(tmp_path / "o")]
    assert main(argv) == 1
    assert "must be a positive number of minutes" in _error(capsys)
    assert not (tmp_path / "o").exists()


def test_train_bc_refuses_an_unfinished_stage1_run(sprites64, tmp_path, capsys) -> None:
    sprites = sprites64
    lam = tmp_path / "lam"
    argv = ["train-lam", "--data", str(sprites), "--preset", "smoke", "--steps", "100000",
            "--time-budget", "0.001", "--out", str(lam), "--no-progress"]  # fmt: skip
    assert main(argv) == 75  # stopped by its time budget, resumable
    capsys.readouterr()
    bc = ["train-bc", "--lam", str(lam), "--data", str(sprites), "--preset", "smoke",
          "--out", str(tmp_path / "bc"), "--no-progress"]  # fmt: skip
    assert main(bc) == 1
    message = _error(capsys)
    assert "stopped at update" in message and "--allow-unfinished" in message
    assert not (tmp_path / "bc" / "checkpoint.json").exists()
    assert main([*bc, "--allow-unfinished"]) == 0
    assert read_meta(tmp_path / "bc" / "checkpoint")["kind"] == "latent-policy"


def _unfinished_policy(path: Path) -> Path:
    """A latent-policy checkpoint whose meta says it stopped at update 2 of 6."""
    config = {"steps": 6, "encoder": "nature", "multiplier": 1, "features": 32}
    save_checkpoint(path / "checkpoint", tensors={"x": torch.zeros(1)},
                    meta={"kind": "latent-policy", "step": 2, "config": config})  # fmt: skip
    return path


def test_decode_and_finetune_refuse_an_unfinished_stage2_run(sprites, tmp_path, capsys) -> None:
    policy = _unfinished_policy(tmp_path / "bc")
    argv = ["decode-offline", "--policy", str(policy), "--lam", str(tmp_path / "lam"),
            "--data", str(sprites), "--out", str(tmp_path / "dec")]  # fmt: skip
    assert main(argv) == 1
    assert "--policy" in (message := _error(capsys)) and "update 2 of 6" in message
    argv = ["finetune", "--policy", str(policy), "--env", "coinrun", "--preset", "smoke",
            "--out", str(tmp_path / "ft"), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    assert "update 2 of 6" in _error(capsys)


# ---------------------------------------------------------------------------- 5. metadata paths
@pytest.mark.parametrize("escape", ["../../etc/hostname", "/dev/zero", "link", "fifo", "frames"])
def test_manifest_paths_must_stay_in_the_dataset(escape, tmp_path, capsys) -> None:
    ds = tmp_path / "ds"
    write_sprite_dataset(ds, episodes=2, length=5, size=16)
    if escape == "link":
        (ds / "link").symlink_to("/dev/zero")
    if escape == "fifo":
        os.mkfifo(ds / "fifo")  # reading it would block forever
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["files"][escape] = {"bytes": 10, "sha256": "0" * 64}
    (ds / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="outside|not a regular file|relative path"):
        open_dataset(ds)
    assert main(["data", "verify", str(ds), "--no-progress"]) == 1
    message = _error(capsys)
    assert "outside" in message or "not a regular file" in message or "relative" in message


@pytest.mark.parametrize("name", ["../outside.safetensors", "/dev/zero", "link.safetensors", "sub"])
def test_checkpoint_tensor_file_must_stay_in_its_directory(name, tmp_path) -> None:
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoint", tensors={"w": torch.ones(3)})
    doc = json.loads((run / "checkpoint.json").read_text())
    shutil.copyfile(run / doc["tensors_file"], tmp_path / "outside.safetensors")  # valid bytes
    (run / "link.safetensors").symlink_to(tmp_path / "outside.safetensors")
    (run / "sub").mkdir()
    (run / "checkpoint.json").write_text(json.dumps({**doc, "tensors_file": name}))
    with pytest.raises(CheckpointError, match="outside|not a regular file|relative path"):
        load_checkpoint(run / "checkpoint")


def test_tampered_expert_checkpoint_is_one_error_line(tmp_path, capsys) -> None:
    expert = tmp_path / "expert"
    shutil.copytree(SRC / "lapo" / "experts" / "coinrun", expert)
    doc = json.loads((expert / "checkpoint.json").read_text())
    (expert / "checkpoint.json").write_text(json.dumps({**doc, "tensors_file": "/dev/zero"}))
    assert main(["expert", "eval", str(expert), "--episodes", "1"]) == 1
    assert "must be a relative path" in _error(capsys)
