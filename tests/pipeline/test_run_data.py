"""``lapo run --data``: stages 1 and 2 and the report on a given dataset, with and without labels;
``lapo report RUN_DIR`` rebuilds it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lapo.cli import main
from lapo.data import DatasetWriter, manifest_digest, open_dataset
from lapo.data.synthetic import sprite_episode, write_sprite_dataset
from lapo.pipeline.report import rebuild_report

LATENT_FIGURES = ("lam_loss.png", "latent_map.png", "fdm_predictions.png", "codebook_usage.png")


def _video_like(path: Path, episodes: int = 12, length: int = 16) -> None:
    """Moving-sprite episodes stored without actions, as an imported video is."""
    rng = np.random.default_rng(3)
    with DatasetWriter(path, frame_shape=(64, 64, 3), source={"kind": "test"}) as writer:
        for _ in range(episodes):
            writer.add_episode(sprite_episode(rng, length)[0])
        writer.close()


def _run(data: Path, out: Path, *extra: str) -> int:
    args = ["run", "--preset", "smoke", "--data", str(data), "--out", str(out), "--no-progress"]
    return main([*args, *extra])


def test_run_on_action_free_data_writes_latent_figures_and_says_why_no_decoding(
    tmp_path: Path,
    write_video,
) -> None:
    videos = tmp_path / "videos"  # imported as a user would: wide mp4s cut into clips
    videos.mkdir()
    rng = np.random.default_rng(5)
    for name in ("a.mp4", "b.mp4"):
        frames = np.concatenate([sprite_episode(rng, 32)[0] for _ in range(3)])  # (96, 64, 64, 3)
        wide = np.concatenate([frames, frames[:, :, :32]], axis=2)  # 64x96
        write_video(videos / name, wide, rate=15)
    data, out = tmp_path / "video", tmp_path / "run"
    args = ["data", "import", str(videos), "--out", str(data), "--clip-frames", "16"]
    assert main([*args, "--no-progress"]) == 0
    assert _run(data, out) == 0
    report = out / "report"
    md = (report / "report.md").read_text()
    figures = {p.name for p in (report / "figures").glob("*.png")}
    for name in (*LATENT_FIGURES, "bc_loss.png"):
        assert name in figures and f"figures/{name}" in md
    assert "confusion.png" not in figures and "returns.png" not in figures
    assert "Skipped: the run has no action labels" in md
    assert "coloured by its quantized code" in md
    assert f"| data | the given dataset {data} |" in md and "expert (records" not in md
    assert not (out / "data").exists()  # the dataset is not copied into the run
    stages = json.loads((out / "pipeline.json").read_text())["stages"]
    assert set(stages) == {"collect", "lam", "bc", "report"}
    with open_dataset(data) as dataset:
        assert stages["collect"]["settings"]["manifest_sha256"] == manifest_digest(dataset)
    assert json.loads((out / "run_config.json").read_text())["data"] == str(data.resolve())
    # TensorBoard beside the stages' own: the report's figures as images, the config as text
    accumulator = EventAccumulator(str(out / "tb"), size_guidance={"images": 0}).Reload()
    tags = accumulator.Tags()
    assert {"latent/map", "latent/fdm_predictions", "latent/codebook_usage"} <= set(tags["images"])
    assert any(t.startswith("config") for t in tags["tensors"])  # add_text writes a tensor
    # lapo report rebuilds it from the run directory alone
    (report / "report.md").unlink()
    assert main(["report", str(out)]) == 0
    assert "figures/latent_map.png" in (report / "report.md").read_text()


def test_run_on_data_decodes_with_labels_from(tmp_path: Path) -> None:
    data, labels, out = tmp_path / "video", tmp_path / "labels", tmp_path / "run"
    _video_like(data)
    write_sprite_dataset(labels, episodes=8, length=16, seed=1)
    assert _run(data, out, "--labels-from", str(labels)) == 0
    metrics = json.loads((out / "report" / "metrics.json").read_text())
    assert 0.0 <= metrics["decode"]["test/decoder_accuracy"] <= 1.0
    assert metrics["decode"]["labels"] == 32 and metrics["returns"] == {}
    md = (out / "report" / "report.md").read_text()
    assert "figures/confusion.png" in md and "Not measured: the run trained on a given" in md
    settings = json.loads((out / "pipeline.json").read_text())["stages"]["decode"]["settings"]
    assert settings["labels_from"] == str(labels.resolve())


def test_run_on_moved_data_resumes_and_reads_back_from_any_directory(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """A dataset moved with its manifest unchanged is the same input (nothing retrains, the new
    place is recorded); a run given relative paths rebuilds its report from another cwd."""
    monkeypatch.chdir(tmp_path)
    _video_like(Path("video"))
    write_sprite_dataset(Path("labels"), episodes=8, length=16, seed=1)
    assert _run(Path("video"), Path("run"), "--labels-from", "labels") == 0
    before = json.loads(Path("run/pipeline.json").read_text())["stages"]
    Path("video").rename("moved")
    Path("labels").rename("labels-moved")
    capsys.readouterr()
    assert _run(Path("moved"), Path("run"), "--labels-from", "labels-moved") == 0
    assert "moved to" in capsys.readouterr().out
    after = json.loads(Path("run/pipeline.json").read_text())["stages"]
    assert [after[s]["finished"] for s in before] == [before[s]["finished"] for s in before]
    assert after["collect"]["settings"]["data"] == str(tmp_path / "moved")
    assert after["decode"]["settings"]["labels_from"] == str(tmp_path / "labels-moved")
    config = json.loads(Path("run/run_config.json").read_text())
    assert config["data"] == str(tmp_path / "moved")
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    (tmp_path / "run/report/report.md").unlink()
    assert main(["report", "../run"]) == 0
    assert (tmp_path / "run/report/report.md").is_file()
    Path(tmp_path / "moved").rename(tmp_path / "gone")  # moved again, without a rerun
    with pytest.raises(FileNotFoundError, match=r"not there any more: if the dataset moved"):
        rebuild_report(tmp_path / "run")
    Path(tmp_path / "gone").rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path)  # other data at the same place is still other data
    shutil.rmtree("moved")
    _video_like(Path("moved"), episodes=13)
    assert _run(Path("moved"), Path("run"), "--labels-from", "labels-moved") == 1
    assert "--redo collect" in capsys.readouterr().err


def test_a_stage_on_data_replaced_while_it_ran_is_refused(tmp_path: Path) -> None:
    from lapo.pipeline.run import _on_unchanged_data

    data = tmp_path / "video"
    _video_like(data)
    with open_dataset(data) as dataset:
        settings = {"collect": {"data": str(data), "manifest_sha256": manifest_digest(dataset)}}
    assert _on_unchanged_data(lambda d: {"ok": 1}, settings)(tmp_path / "lam") == {"ok": 1}

    def replace_data(directory: Path) -> dict:
        shutil.rmtree(data)
        _video_like(data, episodes=13)
        return {"ok": 1}

    with pytest.raises(ValueError, match="changed while this run used it"):
        _on_unchanged_data(replace_data, settings)(tmp_path / "lam")


def test_run_data_refuses_bad_labels_before_work(tmp_path: Path, capsys) -> None:
    data, out = tmp_path / "video", tmp_path / "run"
    _video_like(data)
    assert _run(data, out, "--labels-from", str(data)) == 1  # no actions in it
    assert "needs a dataset with true actions" in capsys.readouterr().err
    small = tmp_path / "small"
    write_sprite_dataset(small, episodes=2, length=8, size=32)
    assert _run(data, out, "--labels-from", str(small)) == 1
    assert "frames of shape (32, 32, 3), expected (64, 64, 3)" in capsys.readouterr().err
    assert _run(small, out) == 1  # stage 1 would take 32x32 frames, stage 2's encoder not
    assert "nature policy encoder needs square frames" in capsys.readouterr().err
    labelled = tmp_path / "labelled"
    write_sprite_dataset(labelled, episodes=4, length=8)
    assert _run(data, out, "--labels-from", str(labelled), "--labels", "1000") == 1
    err = capsys.readouterr().err
    assert "stage 3 draws 1000 labelled transitions (--labels), but the training" in err
    short = tmp_path / "short"  # one clip of 5 frames: no test part for stage 1
    with DatasetWriter(short, frame_shape=(64, 64, 3), source={"kind": "test"}) as writer:
        writer.add_episode(sprite_episode(np.random.default_rng(0), 5)[0])
        writer.close()
    assert _run(short, out) == 1
    assert "one episode of 5 frames; holding out its tail" in capsys.readouterr().err
    assert not out.exists()  # nothing trained, no run directory left behind
    with pytest.raises(SystemExit):
        main(["run", "--data"])


class _FakeRun:
    """Records what ``log_run`` sends to a wandb run."""

    def __init__(self, **init) -> None:
        self.init, self.logged, self.summary, self.finished = init, [], {}, False

    def define_metric(self, *args, **kwargs) -> None:
        pass

    def log(self, values: dict, step=None) -> None:
        self.logged.append(values)

    def finish(self) -> None:
        self.finished = True


def test_wandb_mirror_and_its_missing_package(tmp_path: Path, capsys, monkeypatch) -> None:
    import dataclasses
    import sys
    import types

    from lapo.pipeline.report import load_run_config
    from lapo.pipeline.run_log import log_run

    data, out = tmp_path / "video", tmp_path / "run"
    _video_like(data)
    monkeypatch.setitem(sys.modules, "wandb", None)  # not installed
    assert _run(data, out, "--wandb") == 1
    assert "pip install 'lapo[wandb]'" in capsys.readouterr().err
    assert not (out / "lam").exists()  # refused before any work
    monkeypatch.delitem(sys.modules, "wandb")
    assert _run(data, out) == 0
    runs: list[_FakeRun] = []
    fake = types.SimpleNamespace(
        init=lambda **kw: runs.append(_FakeRun(**kw)) or runs[-1], Image=lambda pixels: pixels
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    config = dataclasses.replace(load_run_config(out), wandb=True, wandb_project="p")
    log_run(config, out, out / "report")
    (run,) = runs
    assert run.init["project"] == "p" and run.init["config"]["run"]["data"] == str(data.resolve())
    steps = [row["lam/step"] for row in run.logged if "lam/step" in row]
    assert steps == sorted(steps) and len(steps) >= 2  # stage 1's logged rows, replayed
    images = next(row for row in run.logged if "latent/map" in row)
    assert images["latent/map"].dtype == np.uint8 and images["latent/map"].shape[-1] == 3
    assert "report/lam/test/fdm_mse" in run.summary and run.finished


def test_decoding_without_actions_says_what_it_needs(tmp_path: Path) -> None:
    from lapo.data import WindowIndex
    from lapo.stages.decode import draw_labelled_set

    _video_like(tmp_path / "video")
    index = WindowIndex(open_dataset(tmp_path / "video"), 1, np.arange(2))
    with pytest.raises(ValueError, match=r"needs a few labelled transitions .*--labels-from\)$"):
        draw_labelled_set(None, index, 4, 0)


def test_code_classes_colour_the_most_used_codes_first() -> None:
    from lapo.pipeline.report import code_classes

    codes = np.array([[[1, 2]], [[3, 4]], [[1, 2]], [[5, 6]], [[1, 2]], [[3, 4]]])  # (6, 1, 2)
    classes, names = code_classes(codes, top=2)
    assert classes.tolist() == [0, 1, 0, 2, 0, 1]  # [1 2] x3, [3 4] x2, the rest "other"
    assert names == ["code #1 (50%)", "code #2 (33%)", "other codes"]
