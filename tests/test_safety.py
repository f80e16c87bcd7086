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
from lapo.safety import check_replaceable, check_run_output, exclusive, lapo_made

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


def test_a_run_is_never_written_among_a_users_files(sprites, tmp_path, capsys) -> None:
    # a run written into a foreign folder would mark it as lapo's, and a later --overwrite
    # would delete the user's files with it: refused before anything is created there
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "chapter1.tex").write_text("years of work")
    argv = ["train-lam", "--data", str(sprites), "--preset", "smoke", "--steps", "1",
            "--out", str(out), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    message = _error(capsys)
    assert "not a lapo run directory" in message and "chapter1.tex" in message
    assert sorted(p.name for p in out.iterdir()) == ["chapter1.tex"]  # not even a lock file
    assert lapo_made(out) is None
    # a lapo dataset is no run directory either; a new, an empty and lapo's own run are fine
    with pytest.raises(FileExistsError, match="is a lapo dataset"):
        check_run_output(sprites)
    (tmp_path / "empty").mkdir()
    check_run_output(tmp_path / "empty")
    check_run_output(tmp_path / "new")
    with exclusive(tmp_path / "run"):
        (tmp_path / "run" / "metrics.jsonl").write_text("")
    check_run_output(tmp_path / "run")  # its lock file marks it, before any checkpoint
    with pytest.raises(FileExistsError, match="is a file"):
        check_run_output(out / "chapter1.tex")


def test_expert_export_refuses_a_foreign_folder_before_evaluating(tmp_path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    argv = ["expert", "export", "src/lapo/experts/coinrun", "--out", str(out)]
    assert main(argv) == 1  # --episodes 200 by default: refused before those episodes run
    assert "keep.txt" in _error(capsys)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


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
    aggregate_out = tmp_path / "aggregate"
    aggregate_out.mkdir()
    (aggregate_out / "aggregate.json").write_text(json.dumps({"runs": [], "aggregate": {}}))
    assert lapo_made(aggregate_out) == "lapo aggregate"
    (fake / "aggregate.json").write_text(json.dumps({"runs": []}))  # not an aggregate's
    assert lapo_made(fake) is None
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
        subprocess.Popen(
            [sys.executable, "-c", SAVER, str(path), str(w), str(go)],
            env=_env(),
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
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


# ---------------------------------------------------------------------------- 4. inputs checked
def _fake_lam(path: Path, size: int = 64, **meta) -> Path:
    """A stage-1 checkpoint (untrained smoke latent action model) for frames size x size x 3."""
    import dataclasses

    from lapo.config import LAM_PRESETS, LAMConfig
    from lapo.models.lam import LatentActionModel

    config = LAMConfig(**LAM_PRESETS["smoke"])
    model = LatentActionModel(config, channels=3, image_size=size)
    info = {"kind": "latent-action-model", "config": dataclasses.asdict(config),
            "frame_shape": [size, size, 3], "step": config.steps, **meta}  # fmt: skip
    save_checkpoint(path / "checkpoint", modules={"lam": model}, meta=info)
    return path


def _edit_json(file: Path, edit) -> None:
    doc = json.loads(file.read_text())
    doc = edit(doc) or doc
    file.write_text(json.dumps(doc))


def _set(*keys, value=None, delete=False):
    """An edit of a JSON document: set (or delete) the value at the key path ``keys``."""

    def edit(doc):
        target = doc
        for key in keys[:-1]:
            target = target[key]
        if delete:
            del target[keys[-1]]
        else:
            target[keys[-1]] = value

    return edit


#: Malformed manifests (each once a ZeroDivisionError, KeyError or TypeError traceback or worse).
MANIFEST_CASES = {
    "shard_frames_zero_divides": _set("shard_frames", value=0),
    "shard_frames_a_string": _set("shard_frames", value="8192"),
    "frame_shape_a_string": _set("frame_shape", value="64x64x3"),
    "frame_shape_of_two_numbers": _set("frame_shape", value=[16, 16]),
    "num_frames_negative": _set("num_frames", value=-3),
    "shards_an_object": _set("shards", value={"file": "frames/shard-00000.npy"}),
    "shard_entry_without_num_frames": _set("shards", 0, "num_frames", delete=True),
    "files_a_list": _set("files", value=["episodes.npy"]),
    "file_entry_bytes_a_string": _set("files", "episodes.npy", "bytes", value="many"),
    "fields_a_string": _set("fields", value="actions"),
    "episode_returns_a_string": _set("episode_returns", value="none"),
    "action_space_n_zero": _set("action_space", "n", value=0),
    "action_space_a_list": _set("action_space", value=[15]),
    "manifest_a_list": lambda doc: [doc],
    "manifest_truncated": None,  # the file cut in the middle
}


@pytest.mark.parametrize("case", MANIFEST_CASES)
def test_malformed_manifest_is_one_error_line(case, tmp_path, capsys) -> None:
    ds = tmp_path / "ds"
    write_sprite_dataset(ds, episodes=2, length=5, size=16)
    if MANIFEST_CASES[case] is None:
        text = (ds / "manifest.json").read_text()
        (ds / "manifest.json").write_text(text[: len(text) // 2])
    else:
        _edit_json(ds / "manifest.json", MANIFEST_CASES[case])
    with pytest.raises(DatasetError):
        open_dataset(ds)
    for command in ("info", "verify"):
        assert main(["data", command, str(ds)]) == 1
        assert "manifest.json" in _error(capsys)


def test_data_info_shows_descriptive_fields_of_any_shape(tmp_path, capsys) -> None:
    ds = tmp_path / "ds"
    write_sprite_dataset(ds, episodes=2, length=5, size=16)

    def edit(doc):
        doc["source"] = "my camera"  # descriptive only: shown as it is
        del doc["created"], doc["num_transitions"]
        doc["action_space"]["meanings"] = "left,right"

    _edit_json(ds / "manifest.json", edit)
    assert main(["data", "info", str(ds)]) == 0
    out = capsys.readouterr().out
    assert "'my camera'" in out and "8 transitions" in out


#: Tampered stage-1 checkpoint documents, fed to ``train-bc --lam``.
CHECKPOINT_CASES = {
    "document_a_list": lambda doc: [doc],
    "tensors_sha256_a_number": _set("tensors_sha256", value=123),
    "tensors_file_a_number": _set("tensors_file", value=5),
    "modules_a_string": _set("modules", value="lam"),
    "tensors_missing": _set("tensors", delete=True),
    "meta_a_list": _set("meta", value=[]),
    "optimizers_a_list": _set("optimizers", value=[]),
    "optimizer_state_key_not_an_index": _set(
        "optimizers", value={"o": {"type": "Adam", "param_groups": [], "state": {"x": {}}}}
    ),
    "scheduler_entry_a_number": _set("schedulers", value={"s": 1}),
    "meta_config_a_list": _set("meta", "config", value=[1]),
    "meta_config_unknown_field": _set("meta", "config", "bogus", value=1),
    "meta_config_field_of_wrong_type": _set("meta", "config", "steps", value="many"),
    "meta_config_field_out_of_bounds": _set("meta", "config", "learning_rate", value=-1.0),
    "meta_frame_shape_missing": _set("meta", "frame_shape", delete=True),
    "meta_frame_shape_a_string": _set("meta", "frame_shape", value="64x64x3"),
}


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_tampered_checkpoint_metadata_is_one_error_line(case, sprites64, tmp_path, capsys):
    lam = _fake_lam(tmp_path / "lam")
    _edit_json(lam / "checkpoint.json", CHECKPOINT_CASES[case])
    out = tmp_path / "bc"
    argv = ["train-bc", "--lam", str(lam), "--data", str(sprites64), "--out", str(out),
            "--preset", "smoke", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    assert "checkpoint.json" in _error(capsys)
    assert not out.exists()  # refused before the run directory was made


def test_safetensors_header_error_is_a_checkpoint_error(sprites64, tmp_path, capsys) -> None:
    lam = _fake_lam(tmp_path / "lam")
    garbage = b"\xff" * 7 + b"{not a header" + b"\x00" * 16
    sha = __import__("hashlib").sha256(garbage).hexdigest()
    (lam / f"checkpoint.{sha[:8]}.safetensors").write_bytes(garbage)
    _edit_json(lam / "checkpoint.json", lambda doc: doc.update(
        tensors_file=f"checkpoint.{sha[:8]}.safetensors", tensors_sha256=sha))  # fmt: skip
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_checkpoint(lam / "checkpoint")
    argv = ["train-bc", "--lam", str(lam), "--data", str(sprites64), "--out",
            str(tmp_path / "bc"), "--preset", "smoke", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    assert "not a readable safetensors file" in _error(capsys)


#: Out-of-bounds settings (config field, value): each refused when the config is made.
BOUNDS_CASES = [
    ("LAMConfig", "learning_rate", float("nan")),
    ("LAMConfig", "learning_rate", float("inf")),
    ("LAMConfig", "learning_rate", 0.0),
    ("LAMConfig", "warmup_steps", -1),
    ("LAMConfig", "final_lr_fraction", 1.5),
    ("LAMConfig", "grad_clip", -2.0),
    ("LAMConfig", "ema_decay", 1.01),
    ("LAMConfig", "commitment_cost", float("nan")),
    ("LAMConfig", "probe_samples", 0),
    ("LAMConfig", "seed", -1),
    ("BCConfig", "learning_rate", -1e-3),
    ("BCConfig", "warmup_steps", -5),
    ("BCConfig", "seed", 2**40),
    ("PPOConfig", "num_minibatches", 0),
    ("PPOConfig", "gamma", 1.5),
    ("PPOConfig", "gae_lambda", 0.0),
    ("PPOConfig", "entropy_coef", -0.01),
    ("PPOConfig", "value_coef", float("inf")),
    ("PPOConfig", "eval_episodes", 0),
    ("PPOConfig", "num_levels", -1),
    ("PPOConfig", "value_clip", -0.2),
    ("DecodeConfig", "learning_rate", 0.0),
    ("DecodeConfig", "bc_learning_rate", float("nan")),
    ("DecodeConfig", "hidden", (128, 0)),
    ("FinetuneConfig", "hybrid_learning_rate", float("inf")),
    ("AggregateConfig", "seed", -3),
    ("VideoImportConfig", "fps", float("inf")),
    ("RunConfig", "lam_minutes", float("nan")),
    ("RunConfig", "bc_minutes", -1.0),
    ("ILPOConfig", "learning_rate", float("inf")),
    ("ILPOConfig", "num_levels", -1),
]
#: Fields a config needs besides the one under test.
_REQUIRED = {
    "PPOConfig": {"env": "coinrun"},
    "FinetuneConfig": {"env": "coinrun"},
    "AggregateConfig": {"runs": ("a",), "out": "o"},
    "RunConfig": {"preset": "smoke"},
}


@pytest.mark.parametrize(("cls", "field", "value"), BOUNDS_CASES,
                         ids=[f"{c}.{f}={v}" for c, f, v in BOUNDS_CASES])  # fmt: skip
def test_numeric_setting_out_of_bounds_is_refused(cls, field, value) -> None:
    import lapo.config
    import lapo.pipeline.run_config

    module = lapo.pipeline.run_config if cls == "RunConfig" else lapo.config
    with pytest.raises(ValueError, match=field.split("_")[0]):
        getattr(module, cls)(**_REQUIRED.get(cls, {}), **{field: value})


@pytest.mark.parametrize(
    "argv",
    [
        ["train-lam", "--data", "DATA", "--learning-rate", "nan"],
        ["train-lam", "--data", "DATA", "--seed", "-1"],
        ["train-lam", "--data", "DATA", "--batch-size", "0"],
        ["train-bc", "--lam", "L", "--data", "DATA", "--steps", "0"],
    ],
    ids=["lam_lr_nan", "lam_seed_negative", "lam_batch_zero", "bc_steps_zero"],
)
def test_out_of_bounds_option_is_one_error_line_and_no_run(argv, sprites, tmp_path, capsys):
    argv = [str(sprites) if a == "DATA" else a for a in argv] + ["--out", str(tmp_path / "o")]
    assert main(argv) == 1
    _error(capsys)
    assert not (tmp_path / "o").exists()


def _arrays_dataset(tmp_path: Path, name: str, shape: tuple, frames: int = 40) -> Path:
    """A one-episode dataset imported from a .npy of random frames of ``shape`` (H, W, C)."""
    folder = tmp_path / f"{name}-arrays"
    folder.mkdir()
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.integers(0, 256, size=(frames, *shape), dtype=np.uint8))
    out = tmp_path / name
    assert main(["data", "import", str(folder), "--out", str(out), "--format", "arrays",
                 "--no-progress"]) == 0  # fmt: skip
    return out


@pytest.mark.parametrize("shape", [(50, 70, 3), (36, 36, 3)], ids=["not_square", "not_mult_8"])
def test_frames_the_lam_cannot_take_are_refused_before_the_run(shape, tmp_path, capsys):
    data = _arrays_dataset(tmp_path, "d", shape)
    capsys.readouterr()
    out = tmp_path / "lam"
    argv = ["train-lam", "--data", str(data), "--out", str(out), "--preset", "smoke",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    message = _error(capsys)
    assert "needs square frames" in message and str(shape) in message
    assert not out.exists()


def test_train_bc_refuses_frames_of_another_size_than_stage1s(tmp_path, capsys) -> None:
    data = _arrays_dataset(tmp_path, "d", (50, 70, 3))
    small = _arrays_dataset(tmp_path, "small", (32, 32, 3))
    capsys.readouterr()
    for lam, dataset, expected in (
        (_fake_lam(tmp_path / "lam64"), data, "but the latent action model was trained on (64"),
        (_fake_lam(tmp_path / "lam32", size=32), small, "policy encoder needs square frames"),
    ):
        argv = ["train-bc", "--lam", str(lam), "--data", str(dataset), "--out",
                str(tmp_path / "bc"), "--preset", "smoke", "--no-progress"]  # fmt: skip
        assert main(argv) == 1
        assert expected in _error(capsys)
        assert not (tmp_path / "bc").exists()


def test_label_refuses_frames_of_another_shape() -> None:
    from lapo.config import LAM_PRESETS, LAMConfig
    from lapo.models.lam import LatentActionModel

    model = LatentActionModel(LAMConfig(**LAM_PRESETS["smoke"]), channels=3, image_size=32)
    with pytest.raises(ValueError, match=r"\(T, 32, 32, 3\).*\(4, 50, 70, 3\)"):
        model.label(np.zeros((4, 50, 70, 3), dtype=np.uint8))


def test_one_episode_dataset_trains_both_stages_on_its_head(tmp_path, capsys) -> None:
    data = _arrays_dataset(tmp_path, "video", (64, 64, 3), frames=48)  # as one imported video
    lam, bc = tmp_path / "lam", tmp_path / "bc"
    assert main(["train-lam", "--data", str(data), "--out", str(lam), "--preset", "smoke",
                 "--no-progress"]) == 0  # fmt: skip
    assert main(["train-bc", "--lam", str(lam), "--data", str(data), "--out", str(bc),
                 "--preset", "smoke", "--no-progress"]) == 0  # fmt: skip
    # the tail (5% of 48 frames, at least k + 2 = 3) is the test split: 1 test window
    assert np.load(bc / "latents-test.npy").shape[0] == 1
    assert np.load(bc / "latents-train.npy").shape[0] == 45 - 2
    short = _arrays_dataset(tmp_path, "short", (64, 64, 3), frames=5)
    capsys.readouterr()
    argv = ["train-lam", "--data", str(short), "--out", str(tmp_path / "x"), "--preset", "smoke"]
    assert main(argv) == 1
    assert "one episode of 5 frames" in _error(capsys)


def test_non_finite_loss_is_one_line_that_promises_no_checkpoint(sprites, tmp_path, monkeypatch,
                                                                 capsys) -> None:  # fmt: skip
    import lapo.stages.lam as stage

    losses = stage._losses
    monkeypatch.setattr(stage, "_losses", lambda *a: (losses(*a)[0] * float("nan"), {}))
    argv = ["train-lam", "--data", str(sprites), "--out", str(tmp_path / "lam"), "--preset",
            "smoke", "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    message = _error(capsys)
    assert "non-finite loss" in message and "no checkpoint had been written yet" in message
    assert "last good" not in message


def test_verify_checks_actions_against_the_action_space(tmp_path, capsys) -> None:
    from lapo.data.format import save_npy_hashed

    ds = tmp_path / "ds"
    write_sprite_dataset(ds, episodes=2, length=5, size=16)
    actions = np.load(ds / "actions.npy")
    actions[7] = 99  # the manifest says n = 4 (or so): out of range
    entry = save_npy_hashed(ds / "actions.npy", actions)  # a consistent, hashed file
    _edit_json(ds / "manifest.json", _set("files", "actions.npy", value=entry))
    assert main(["data", "verify", str(ds), "--no-progress"]) == 1
    message = _error(capsys)
    assert "frame 7 has action 99" in message and "outside the action space" in message


# ---------------------------------------------------------------------------- 6. logs, leftovers
def _logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def _tensorboard_steps(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tb"))
    events.Reload()  # applies purge_step (SessionLog START at the resumed step)
    return [event.step for event in events.Scalars(tag)]


def test_logs_match_the_checkpoint_after_a_crash_and_resume(sprites, tmp_path, monkeypatch):
    import dataclasses

    import lapo.stages.lam as stage
    from lapo.config import LAM_PRESETS, LAMConfig

    config = dataclasses.replace(LAMConfig(**LAM_PRESETS["smoke"]), steps=8, log_every=1,
                                 eval_every=100, checkpoint_every=3)  # fmt: skip
    stage.train_lam(config, sprites, tmp_path / "full", progress=False)
    losses, calls = stage._losses, []

    def crash_in_update_5(*args):
        calls.append(1)
        if len(calls) == 5:  # after logging updates 1..4 and checkpointing at 3
            raise RuntimeError("power cut")
        return losses(*args)

    monkeypatch.setattr(stage, "_losses", crash_in_update_5)
    with pytest.raises(RuntimeError, match="power cut"):
        stage.train_lam(config, sprites, tmp_path / "run", progress=False)
    assert _logged_steps(tmp_path / "run") == [1, 2, 3, 4]
    assert read_meta(tmp_path / "run" / "checkpoint")["step"] == 3
    with open(tmp_path / "run" / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 5, "tra')  # and a line torn by kill -9
    monkeypatch.setattr(stage, "_losses", losses)
    # TensorBoard reads event files in name order, events.out.tfevents.<seconds>.<host>.<pid>.<n>:
    # a resume in another process (as after a real crash) sorts after the crashed run's file by
    # its later time; here, in the same process and second, the counter n decides, and "10" sorts
    # before "9". A new second gives the real order.
    time.sleep(1.1)
    stage.train_lam(config, sprites, tmp_path / "run", resume=True, progress=False)
    assert _logged_steps(tmp_path / "run") == _logged_steps(tmp_path / "full") == list(range(1, 9))
    tag = "train/fdm_mse"
    assert _tensorboard_steps(tmp_path / "run", tag) == list(range(1, 9))  # 4 purged once


def test_leftovers_of_killed_dataset_writers_are_cleaned_only_when_lapos_and_dead(tmp_path):
    from lapo.data.writer import PARTIAL_MARKER, clean_leftovers

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)  # fmt: skip
    alive = os.getppid()
    out = tmp_path / "ds"

    def partial(pid: int, marked: bool) -> Path:
        folder = tmp_path / f"ds.partial-{pid}"
        (folder / "frames").mkdir(parents=True)
        if marked:
            (folder / PARTIAL_MARKER).write_text(f"{pid}\n")
        return folder

    ours_dead, ours_alive = partial(dead, True), partial(alive, True)
    foreign = partial(dead + 1, False)  # no marker: not lapo's, whoever made it
    parked = tmp_path / f"ds.old-{dead}"
    write_sprite_dataset(parked, episodes=1, length=4, size=8)  # killed between the two renames
    assert set(clean_leftovers(out)) == {ours_dead, parked}
    assert not ours_dead.exists() and foreign.exists() and ours_alive.exists()
    assert lapo_made(out) == "lapo dataset"  # the previous dataset is back under its name
    write_sprite_dataset(parked, episodes=1, length=4, size=8)
    assert clean_leftovers(out) == [parked] and not parked.exists() and out.exists()


def test_kill_9_during_collect_leaves_a_partial_the_next_writer_removes(tmp_path, capsys):
    out = tmp_path / "rec"
    args = [sys.executable, "-m", "lapo", "collect", "--env", "coinrun", "--frames", "2000000",
            "--num-envs", "2", "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())
    partial = tmp_path / f"rec.partial-{proc.pid}"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if (partial / "frames").is_dir():
            time.sleep(0.5)
            proc.kill()  # SIGKILL: no clean-up runs
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and partial.is_dir()
    argv = ["data", "import", str(_arrays(tmp_path / "arrays")), "--out", str(out), "--format",
            "arrays", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert not partial.exists() and lapo_made(out) == "lapo dataset"


def test_stale_or_torn_label_cache_is_never_reused(tmp_path) -> None:
    from lapo.stages.bc import cached_latents, label_stamp

    lam = _fake_lam(tmp_path / "lam", size=16)
    data = tmp_path / "ds"
    write_sprite_dataset(data, episodes=2, length=5, size=16)
    with open_dataset(data) as ds:
        stamp = label_stamp(lam, "w" * 64, ds, "continuous", 6)
    run = tmp_path / "bc"
    run.mkdir()
    np.save(run / "latents-train.npy", np.ones((6, 4), dtype=np.float32))
    (run / "latents-train.json").write_text(json.dumps(stamp))
    assert cached_latents(run, "train", stamp).shape == (6, 4)
    _fake_lam(tmp_path / "lam", size=16)  # retrained: same weights digest given, new checkpoint
    with open_dataset(data) as ds:
        assert label_stamp(lam, "w" * 64, ds, "continuous", 6) != stamp
    write_sprite_dataset(data, episodes=2, length=5, size=16, seed=1, overwrite=True)
    with open_dataset(data) as ds:  # other data under the same path
        other = label_stamp(lam, "w" * 64, ds, "continuous", 6)
    assert other["data_manifest_sha256"] != stamp["data_manifest_sha256"]
    raw = (run / "latents-train.npy").read_bytes()
    (run / "latents-train.npy").write_bytes(raw[: len(raw) - 8])  # torn
    assert cached_latents(run, "train", stamp) is None
    (run / "latents-train.json").write_text('{"lam_weights')  # torn stamp
    assert cached_latents(run, "train", stamp) is None


def test_atomic_file_leaves_the_old_file_or_the_new_one(tmp_path) -> None:
    from lapo.paths import atomic_file

    target = tmp_path / "latent_quality.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target, "w") as fh:
        fh.write("half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]
    with atomic_file(target, "w") as fh:
        fh.write("new")
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_a_failed_run_leaves_no_folder_holding_only_the_lock(tmp_path) -> None:
    run = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError), exclusive(run):
        assert (run / ".lapo.lock").exists()
        raise RuntimeError("failed before writing")
    assert not run.exists() and (tmp_path / "new").is_dir()
    with exclusive(run):  # a run that wrote something keeps its directory
        (run / "config.json").write_text("{}")
    assert sorted(p.name for p in run.iterdir()) == [".lapo.lock", "config.json"]
    (tmp_path / "mine").mkdir()
    with exclusive(tmp_path / "mine"):  # a directory that existed before is never removed
        pass
    assert (tmp_path / "mine").is_dir()
