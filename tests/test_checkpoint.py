"""Checkpoints round-trip training state bitwise, fail loudly on mismatches, survive crashes."""

from __future__ import annotations

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from torch import nn

from lapo.checkpoint import (
    CheckpointError,
    checkpoint_exists,
    checkpoint_path,
    load_checkpoint,
    read_meta,
    save_checkpoint,
)


def make_model(seed: int, hidden: int = 16) -> nn.Module:
    """(B, 4) -> (B, 2) MLP with a BatchNorm (float and int64 buffers)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(4, hidden), nn.BatchNorm1d(hidden), nn.Tanh(), nn.Linear(hidden, 2)
    )


def train(model: nn.Module, optimizer: torch.optim.Optimizer, batches: list, scheduler=None):
    for x, y in batches:
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def batches(seed: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 4, generator=gen), torch.randn(8, 2, generator=gen)) for _ in range(n)]


def files(directory) -> set[str]:
    """The directory's files, without the (empty, persistent) commit lock ``.<name>.lock``."""
    return {p.name for p in directory.iterdir() if not p.name.endswith(".lock")}


def assert_same_params(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_model_and_adam_resume_bitwise(tmp_path):
    model = make_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    train(model, opt, batches(1, 3))
    path = tmp_path / "run" / "checkpoint"
    save_checkpoint(path, modules={"model": model}, optimizers={"opt": opt}, meta={"step": 3})

    resumed = make_model(7)
    resumed_opt = torch.optim.Adam(resumed.parameters(), lr=0.5)
    ckpt = load_checkpoint(path, modules={"model": resumed}, optimizers={"opt": resumed_opt})
    assert ckpt.meta == {"step": 3} and ckpt.tensors == {} and ckpt.path == path
    assert_same_params(model, resumed)
    assert resumed_opt.param_groups[0]["lr"] == 1e-2
    assert resumed_opt.param_groups[0]["betas"] == (0.8, 0.99)  # a tuple again, not a list
    assert resumed.state_dict()["1.num_batches_tracked"].item() == 3

    more = batches(2, 3)
    train(model, opt, more)
    train(resumed, resumed_opt, more)
    assert_same_params(model, resumed)
    for p, q in zip(model.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(opt.state[p]["exp_avg_sq"], resumed_opt.state[q]["exp_avg_sq"])
        assert torch.equal(opt.state[p]["step"], resumed_opt.state[q]["step"])


def test_fresh_optimizer_would_diverge(tmp_path):
    """Guards the test above: without the optimizer state, 3 more steps give other parameters."""
    model = make_model(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    train(model, opt, batches(1, 3))
    save_checkpoint(tmp_path / "c", modules={"model": model})
    resumed = make_model(7)
    load_checkpoint(tmp_path / "c", modules={"model": resumed})
    fresh_opt = torch.optim.Adam(resumed.parameters(), lr=1e-2)
    train(model, opt, batches(2, 3))
    train(resumed, fresh_opt, batches(2, 3))
    assert not torch.equal(model[0].weight, resumed[0].weight)


def test_tied_weights_and_views_are_saved(tmp_path):
    model = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    model[1].weight = model[0].weight  # shared storage: safetensors refuses it unless cloned
    whole = torch.arange(12.0)
    extra = {"view": whole[2:6], "strided": whole[::3]}
    save_checkpoint(tmp_path / "c", modules={"m": model}, tensors=extra)
    other = nn.Sequential(nn.Linear(3, 3, bias=False), nn.Linear(3, 3, bias=False))
    ckpt = load_checkpoint(tmp_path / "c", modules={"m": other})
    assert torch.equal(other[0].weight, model[0].weight)
    assert torch.equal(other[1].weight, model[0].weight)
    assert ckpt.tensors["view"].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert ckpt.tensors["strided"].tolist() == [0.0, 3.0, 6.0, 9.0]


def test_linear_lr_scheduler_round_trip(tmp_path):
    def make():
        param = nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([param], lr=1.0)
        return opt, torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, total_iters=10)

    opt, sched = make()
    for _ in range(4):
        opt.step()
        sched.step()
    save_checkpoint(tmp_path / "c", optimizers={"opt": opt}, schedulers={"lr": sched})
    opt2, sched2 = make()
    load_checkpoint(tmp_path / "c", optimizers={"opt": opt2}, schedulers={"lr": sched2})
    assert sched2.last_epoch == 4
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.1 + 0.9 * 4 / 10)
    lrs, lrs2 = [], []
    for o, s, out in ((opt, sched, lrs), (opt2, sched2, lrs2)):
        for _ in range(8):
            o.step()
            s.step()
            out.append(o.param_groups[0]["lr"])
    assert lrs == lrs2 and lrs[-1] == pytest.approx(1.0)


def test_lambda_lr_stores_no_function_and_refuses_unjsonable_state(tmp_path):
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: 0.5**epoch)
    opt.step()
    sched.step()
    save_checkpoint(tmp_path / "c", schedulers={"lr": sched})  # a plain function is not saved
    assert json.loads((tmp_path / "c.json").read_text())["schedulers"]["lr"]["state"][
        "lr_lambdas"
    ] == [None]

    class Decay:  # a callable object: LambdaLR saves its __dict__, here with a set
        def __init__(self):
            self.milestones = {1, 2}

        def __call__(self, epoch):
            return 1.0

    bad = torch.optim.lr_scheduler.LambdaLR(opt, Decay())
    with pytest.raises(
        TypeError, match=r"schedulers\['bad'\]\['lr_lambdas'\]\[0\]\['milestones'\]"
    ):
        save_checkpoint(tmp_path / "d", schedulers={"bad": bad})
    assert not checkpoint_exists(tmp_path / "d")


def test_mismatched_architecture_lists_every_difference(tmp_path):
    saved = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2), nn.Linear(2, 2))
    save_checkpoint(tmp_path / "c", modules={"policy": saved})
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2), nn.ReLU(), nn.Linear(2, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for strict in (True, False):
        with pytest.raises(CheckpointError) as info:
            load_checkpoint(tmp_path / "c", modules={"policy": model}, strict=strict)
        message = str(info.value)
        assert str(tmp_path / "c.json") in message and "'policy'" in message
        assert "0.weight: checkpoint (16, 4), model (32, 4)" in message
        assert "0.bias: checkpoint (16,), model (32,)" in message
        assert "2.weight: checkpoint (2, 16), model (2, 32)" in message
        assert "2.bias" not in message  # same shape (2,)
        assert "missing from the checkpoint: 4.bias, 4.weight" in message
        assert "unexpected in the checkpoint: 3.bias, 3.weight" in message
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), "nothing may be loaded on error"


def test_strict_false_loads_the_common_keys(tmp_path):
    saved = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    save_checkpoint(tmp_path / "c", modules={"m": saved})
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with pytest.raises(CheckpointError, match="missing from the checkpoint: 2.bias, 2.weight"):
        load_checkpoint(tmp_path / "c", modules={"m": model})
    load_checkpoint(tmp_path / "c", modules={"m": model}, strict=False)
    assert torch.equal(model[0].weight, saved[0].weight)


def test_unknown_names_and_wrong_types(tmp_path):
    model = nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path / "c", modules={"idm": model}, optimizers={"opt": opt})
    with pytest.raises(CheckpointError, match=r"no module named \['fdm'\]; it has \['idm'\]"):
        load_checkpoint(tmp_path / "c", modules={"fdm": model})
    with pytest.raises(CheckpointError, match="is a Adam .* but a SGD"):
        load_checkpoint(tmp_path / "c", optimizers={"opt": torch.optim.SGD(model.parameters())})
    two_groups = torch.optim.Adam([{"params": [model.weight]}, {"params": [model.bias]}])
    with pytest.raises(CheckpointError, match=r"sizes \[2\] in the checkpoint.*\[1, 1\] here"):
        load_checkpoint(tmp_path / "c", optimizers={"opt": two_groups})


@pytest.mark.parametrize(
    ("meta", "where"),
    [
        ({"cfg": {"layers": {1, 2}}}, r"meta\['cfg'\]\['layers'\] is a set"),
        ({"model": nn.Linear(1, 1)}, r"meta\['model'\] is a Linear"),
        ({"curve": [1.0, np.float32(2.0)]}, r"meta\['curve'\]\[1\] is a float32"),
        ({"by_level": {3: 1.0}}, r"meta\['by_level'\] has key 3"),
    ],
)
def test_meta_must_be_json(tmp_path, meta, where):
    with pytest.raises(TypeError, match=where):
        save_checkpoint(tmp_path / "c", modules={"m": nn.Linear(2, 2)}, meta=meta)
    assert files(tmp_path) == set()


def test_tensor_file_of_another_checkpoint_is_refused(tmp_path):
    save_checkpoint(tmp_path / "a", modules={"m": nn.Linear(2, 2)}, meta={"step": 1})
    save_checkpoint(tmp_path / "b", modules={"m": nn.Linear(2, 2)}, meta={"step": 2})
    a_file = json.loads((tmp_path / "a.json").read_text())["tensors_file"]
    b_file = json.loads((tmp_path / "b.json").read_text())["tensors_file"]
    shutil.copyfile(tmp_path / b_file, tmp_path / a_file)
    with pytest.raises(CheckpointError, match="the tensor file does not belong to this checkpoint"):
        load_checkpoint(tmp_path / "a", modules={"m": nn.Linear(2, 2)})
    assert read_meta(tmp_path / "a") == {"step": 1}  # the JSON alone is still readable


def test_missing_files_and_foreign_json(tmp_path):
    assert not checkpoint_exists(tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="c: no such run directory or checkpoint"):
        load_checkpoint(tmp_path / "c")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="notes.txt is a file, not a checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty is a directory, not a checkpoint"):
        load_checkpoint(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"empty holds no checkpoint \(no checkpoint\.json"):
        read_meta(checkpoint_path(tmp_path / "empty"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "pipeline.json").write_text("{}")
    (tmp_path / "run" / "lam").mkdir()
    with pytest.raises(FileNotFoundError, match=r"run holds no checkpoint .*holds lam, pipeline"):
        read_meta(checkpoint_path(tmp_path / "run"))
    save_checkpoint(tmp_path / "c", tensors={"x": torch.ones(2)})
    assert checkpoint_exists(tmp_path / "c")
    doc = json.loads((tmp_path / "c.json").read_text())
    (tmp_path / doc["tensors_file"]).unlink()
    with pytest.raises(FileNotFoundError, match=f"tensor file .*{doc['tensors_file']} is missing"):
        load_checkpoint(tmp_path / "c")
    for change, message in (
        ({"version": 2}, "version 2 is not supported"),
        ({"format": "x"}, "'x'"),
    ):
        (tmp_path / "c.json").write_text(json.dumps({**doc, **change}))
        with pytest.raises(CheckpointError, match=message):
            read_meta(tmp_path / "c")


def test_save_replaces_old_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "checkpoint"
    for step in (1, 2, 2):  # the last save has the same content, hence the same tensor file name
        save_checkpoint(path, tensors={"w": torch.full((3,), float(step))}, meta={"step": step})
        doc = json.loads((tmp_path / "checkpoint.json").read_text())
        assert files(tmp_path) == {"checkpoint.json", doc["tensors_file"]}
    assert load_checkpoint(path).tensors["w"].tolist() == [2.0, 2.0, 2.0]
    save_checkpoint(tmp_path / "checkpoint.best", tensors={"w": torch.zeros(1)})
    save_checkpoint(path, tensors={"w": torch.ones(1)})  # must not delete checkpoint.best's file
    assert load_checkpoint(tmp_path / "checkpoint.best").tensors["w"].tolist() == [0.0]


def test_tensor_file_gets_the_umask_mode_like_the_json(tmp_path):
    path = tmp_path / "checkpoint"
    save_checkpoint(path, tensors={"w": torch.zeros(2)})
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    mode = (tmp_path / doc["tensors_file"]).stat().st_mode & 0o777
    assert mode == (tmp_path / "checkpoint.json").stat().st_mode & 0o777
    umask = os.umask(0o022)
    os.umask(umask)
    assert mode == 0o666 & ~umask  # not safetensors' 0600


@pytest.mark.parametrize("failing", [".json", ".safetensors"])
def test_crash_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failing):
    path = tmp_path / "checkpoint"
    old, new = make_model(0), make_model(1)
    save_checkpoint(path, modules={"m": old}, meta={"step": 100})
    real_replace = os.replace

    def crash(src, dst):
        if str(dst).endswith(failing):
            raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, modules={"m": new}, meta={"step": 200})
    monkeypatch.setattr(os, "replace", real_replace)
    assert not any(".tmp" in name for name in files(tmp_path))
    loaded = make_model(2)
    assert load_checkpoint(path, modules={"m": loaded}).meta == {"step": 100}
    assert_same_params(loaded, old)
    save_checkpoint(path, modules={"m": new}, meta={"step": 200})  # sweeps any orphan
    assert len([n for n in files(tmp_path) if n.endswith(".safetensors")]) == 1
    assert load_checkpoint(path, modules={"m": loaded}).meta == {"step": 200}
    assert_same_params(loaded, new)


def test_loading_unpickles_nothing(tmp_path, monkeypatch):
    model = make_model(0)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LinearLR(opt)
    train(model, opt, batches(0, 2), sched)
    save_checkpoint(
        tmp_path / "c", modules={"m": model}, optimizers={"o": opt}, schedulers={"s": sched}
    )

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling during load")

    for module, name in ((torch, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(module, name, forbidden)
    model2 = make_model(1)
    opt2 = torch.optim.AdamW(model2.parameters())
    sched2 = torch.optim.lr_scheduler.LinearLR(opt2)
    load_checkpoint(
        tmp_path / "c", modules={"m": model2}, optimizers={"o": opt2}, schedulers={"s": sched2}
    )
    assert_same_params(model, model2)
    assert sched2.last_epoch == 2


def test_names_with_slashes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'a/b'"):
        save_checkpoint(tmp_path / "c", modules={"a/b": nn.Linear(1, 1)})
