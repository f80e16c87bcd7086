"""``lapo run`` plumbing: skip finished stages, resume, refuse changed settings, redo."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from lapo.pipeline.plan import StageConflict, run_stages
from lapo.pipeline.run_config import RunConfig, resolve


def _actions(calls: list[str], fail: str | None = None):
    def make(stage):
        def act(directory: Path) -> dict:
            if stage == fail:
                raise RuntimeError(f"{stage} failed")
            calls.append(stage)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "out.txt").write_text(stage)
            return {"stage": stage}

        return act

    return {s: make(s) for s in ("collect", "lam", "bc", "decode", "sweep", "online", "report")}


def _settings(lr: float = 1e-3) -> dict:
    return {"collect": {"frames": 10}, "lam": {"lr": lr}, "bc": {"steps": 3}, "report": {}}


def test_rerun_skips_finished_and_resumes_after_a_failure(tmp_path: Path) -> None:
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="bc failed"):
        run_stages(config, _settings(), _actions(calls, fail="bc"), progress=False)
    assert calls == ["collect", "lam"]
    done = json.loads((tmp_path / "pipeline.json").read_text())["stages"]
    assert sorted(done) == ["collect", "lam"] and done["lam"]["summary"] == {"stage": "lam"}
    summaries = run_stages(config, _settings(), _actions(calls), progress=False)
    assert calls == ["collect", "lam", "bc", "report"]  # only the unfinished stages ran
    assert summaries["collect"] == {"stage": "collect"} and set(summaries) == set(_settings())
    run_stages(config, _settings(), _actions(calls), progress=False)
    assert len(calls) == 4  # everything finished: nothing runs


def test_a_setting_added_later_matches_its_default(tmp_path: Path) -> None:
    # pipeline.json written before the option "t" existed: the finished stages count as t = 1
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    calls: list[str] = []
    run_stages(config, _settings(), _actions(calls), progress=False)
    newer = {**_settings(), "lam": {"lr": 1e-3, "t": 1.0}}
    defaults = {"lam": {"t": 1.0, "unused": 3}}
    run_stages(config, newer, _actions(calls), progress=False, defaults=defaults)
    assert len(calls) == 4  # nothing reran
    other = {**_settings(), "lam": {"lr": 1e-3, "t": 0.5}}
    with pytest.raises(StageConflict, match=r"stage 'lam'.*t: 1.0 -> 0.5"):
        run_stages(config, other, _actions(calls), progress=False, defaults=defaults)
    with pytest.raises(StageConflict, match=r"t: None -> 1.0"):  # without defaults: a change
        run_stages(config, newer, _actions(calls), progress=False)


def test_changed_settings_are_refused_unless_redone(tmp_path: Path) -> None:
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    calls: list[str] = []
    run_stages(config, _settings(), _actions(calls), progress=False)
    conflict = r"stage .lam.*lr: 0.001 -> 0.01.*redo=\(\"lam\",\) \(--redo lam\)"
    with pytest.raises(StageConflict, match=conflict):
        run_stages(config, _settings(lr=1e-2), _actions(calls), progress=False)
    assert len(calls) == 4
    run_stages(config, _settings(lr=1e-2), _actions(calls), redo=("lam",), progress=False)
    assert calls[4:] == ["lam", "bc", "report"]  # the redone stage and the stages reading it
    kept = sorted(p.name for p in tmp_path.iterdir() if ".replaced-" in p.name)
    assert [k.split(".")[0] for k in kept] == ["bc", "lam", "report"]  # old results kept aside
    assert (tmp_path / "lam" / "out.txt").read_text() == "lam"
    other_data = {**_settings(lr=1e-2), "collect": {"frames": 10, "data": "/elsewhere"}}
    with pytest.raises(StageConflict, match=r"holds a run on other data \(data: None -> "
                       r"'/elsewhere'\); choose another out \(--out\)"):  # fmt: skip
        run_stages(config, other_data, _actions(calls), progress=False)


def test_more_online_seeds_or_the_ilpo_arm_extend_the_finished_stage_in_place(
    tmp_path: Path,
) -> None:
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    calls: list[str] = []

    def settings(**online) -> dict:
        return {**_settings(), "online": {"steps": 8, "seeds": 1, **online}}

    run_stages(config, settings(), _actions(calls), progress=False)
    (tmp_path / "online" / "lapo-seed0").mkdir()  # a finished seed's run
    run_stages(config, settings(seeds=3), _actions(calls), progress=False)
    run_stages(config, settings(seeds=3, ilpo=True), _actions(calls), progress=False)
    assert calls[5:] == ["online", "report", "online", "report"]  # only the extended stage on
    assert (tmp_path / "online" / "lapo-seed0").is_dir()  # extended in its folder
    assert not list(tmp_path.glob("online.replaced-*"))
    assert len(list(tmp_path.glob("report.replaced-*"))) == 2  # the report reads it: redone
    done = json.loads((tmp_path / "pipeline.json").read_text())["stages"]["online"]
    assert done["settings"] == {"steps": 8, "seeds": 3, "ilpo": True}
    for fewer in (
        settings(seeds=2, ilpo=True),
        settings(seeds=3),
        settings(steps=16, seeds=3, ilpo=True),
    ):
        with pytest.raises(StageConflict, match="stage 'online'.*--redo online"):
            run_stages(config, fewer, _actions(calls), progress=False)
    assert len(calls) == 9


def test_a_failed_extension_keeps_the_finished_stage(tmp_path: Path) -> None:
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    calls: list[str] = []
    settings = {**_settings(), "online": {"steps": 8, "seeds": 1}}
    run_stages(config, settings, _actions(calls), progress=False)
    more = {**_settings(), "online": {"steps": 8, "seeds": 3}}
    with pytest.raises(RuntimeError, match="online failed"):
        run_stages(config, more, _actions(calls, fail="online"), progress=False)
    done = json.loads((tmp_path / "pipeline.json").read_text())["stages"]
    assert done["online"]["settings"] == {"steps": 8, "seeds": 1}  # still there, as it was
    run_stages(config, settings, _actions(calls), progress=False)  # the old command: nothing
    assert calls == ["collect", "lam", "bc", "online", "report"]


def test_redo_starts_an_interrupted_stage_again_only_when_it_cannot_resume(
    tmp_path: Path,
) -> None:
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    calls: list[str] = []
    acts = _actions(calls)
    runs = {"n": 0}

    def stubborn(directory: Path) -> dict:  # interrupted once; then its checkpoint will not do
        runs["n"] += 1
        directory.mkdir(parents=True, exist_ok=True)
        if (directory / "partial").exists():
            raise ValueError("cannot resume lam/checkpoint: the config differs (steps: 4 vs 2)")
        if runs["n"] == 1:
            (directory / "partial").write_text("interrupted")
            raise KeyboardInterrupt
        return acts["lam"](directory)

    with pytest.raises(KeyboardInterrupt):
        run_stages(config, _settings(), {**acts, "lam": stubborn}, progress=False)
    hint = r"config differs .*; pass redo=\(.lam.,\) \(--redo lam\) to start it again"
    with pytest.raises(ValueError, match=hint):
        run_stages(config, _settings(), {**acts, "lam": stubborn}, progress=False)
    run_stages(config, _settings(), {**acts, "lam": stubborn}, redo=("lam",), progress=False)
    assert calls == ["collect", "lam", "bc", "report"]
    assert (tmp_path / "lam" / "out.txt").read_text() == "lam"
    (aside,) = tmp_path.glob("lam.replaced-*")
    assert (aside / "partial").is_file()  # the interrupted folder, kept aside


def test_rerunning_an_interrupted_redo_resumes_it(tmp_path: Path) -> None:
    """`lapo run --redo lam` interrupted, then the same command again: the redone stage resumes
    from its checkpoint (it could), the work done is not set aside."""
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    calls: list[str] = []
    acts = _actions(calls)
    run_stages(config, _settings(), acts, progress=False)
    seen: list[bool] = []

    def resumable(directory: Path) -> dict:
        directory.mkdir(parents=True, exist_ok=True)
        seen.append((directory / "partial").exists())
        if not seen[-1]:
            (directory / "partial").write_text("step 50")
            raise KeyboardInterrupt
        return acts["lam"](directory)

    with pytest.raises(KeyboardInterrupt):
        run_stages(config, _settings(), {**acts, "lam": resumable}, redo=("lam",), progress=False)
    run_stages(config, _settings(), {**acts, "lam": resumable}, redo=("lam",), progress=False)
    assert seen == [False, True]  # the second run found the first one's checkpoint
    assert len(list(tmp_path.glob("lam.replaced-*"))) == 1  # only the finished lam, once


def test_a_finished_stage_runs_again_only_when_a_stage_it_reads_runs(tmp_path: Path) -> None:
    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    calls: list[str] = []
    online = {"online": {"steps": 8, "seeds": 3}}
    run_stages(config, {**_settings(), **online}, _actions(calls), progress=False)
    assert calls == ["collect", "lam", "bc", "online", "report"]
    swept = {**_settings(), "sweep": {"labels": [16, 64]}, **online}
    run_stages(config, swept, _actions(calls), progress=False)
    assert calls[5:] == ["sweep", "report"]  # the online runs do not read the sweep: kept
    assert not list(tmp_path.glob("online.replaced-*"))
    decoded = {**swept, "decode": {"labels": 256}}
    run_stages(config, decoded, _actions(calls), progress=False)
    assert calls[7:] == ["decode", "report"]
    run_stages(config, decoded, _actions(calls), redo=("bc",), progress=False)
    assert calls[9:] == ["bc", "decode", "sweep", "online", "report"]  # all that read bc
    assert (tmp_path / "online" / "out.txt").read_text() == "online"
    assert len(list(tmp_path.glob("online.replaced-*"))) == 1


def test_run_config_presets_and_validation(tmp_path: Path) -> None:
    config = resolve(RunConfig(env="coinrun", preset="smoke", out=tmp_path, labels=64), {"labels"})
    assert config.frames == 3000 and config.labels == 64  # preset default vs user value
    with pytest.raises(ValueError, match="unknown environment .pong.; expected a Procgen game"):
        RunConfig(env="pong")
    with pytest.raises(ValueError, match="label counts must be >= 2"):
        RunConfig(sweep=(1, 16))
    with pytest.raises(ValueError, match="lam_steps must be >= 1"):
        RunConfig(lam_steps=0)


def test_lam_steps_replace_the_presets_and_change_the_recorded_settings(tmp_path: Path) -> None:
    from lapo.config import LAM_PRESETS
    from lapo.pipeline.run import stage_configs

    default = stage_configs(RunConfig(preset="cpu", out=tmp_path))["lam"]
    longer = stage_configs(RunConfig(preset="cpu", out=tmp_path, lam_steps=6000))["lam"]
    assert default.steps == LAM_PRESETS["cpu"]["steps"] != 6000
    assert longer.steps == 6000
    assert dataclasses.replace(longer, steps=default.steps) == default  # nothing else changed


def test_run_config_resolves_its_preset_from_the_api_as_the_cli_does(tmp_path: Path) -> None:
    from lapo.pipeline import RUN_PRESETS

    smoke = RunConfig(env="coinrun", preset="smoke", labels=64)
    assert smoke.frames == RUN_PRESETS["smoke"]["frames"] and smoke.labels == 64
    assert smoke.out == Path("runs/lapo-coinrun-smoke")
    assert RunConfig(preset="cpu").frames == 200_000
    paper = RunConfig(preset="paper", out=tmp_path)
    assert paper.online and paper.frames == RUN_PRESETS["paper"]["frames"]
    with pytest.raises(ValueError, match="preset must be one of"):
        RunConfig(preset="huge")


def test_a_refused_run_leaves_the_recorded_run_config_as_it_was(tmp_path: Path) -> None:
    """``lapo run --preset cpu`` into a finished smoke run is refused (StageConflict) before
    ``run_config.json`` is replaced: ``lapo report`` and ``lapo aggregate`` read the run's
    preset from it, and a refused command must not make a smoke run read as a cpu run."""
    from lapo.pipeline import run_pipeline

    smoke = RunConfig(env="coinrun", preset="smoke", out=tmp_path)
    recorded = {**dataclasses.asdict(smoke), "out": str(tmp_path)}
    (tmp_path / "run_config.json").write_text(json.dumps(recorded))
    stages = {"collect": {"settings": {"env": "coinrun", "frames": 3000}, "summary": {}}}
    (tmp_path / "pipeline.json").write_text(
        json.dumps({"format": "lapo-pipeline", "stages": stages})
    )
    cpu = RunConfig(env="coinrun", preset="cpu", out=tmp_path)
    with pytest.raises(StageConflict, match="stage 'collect'"):
        run_pipeline(cpu, progress=False)
    assert json.loads((tmp_path / "run_config.json").read_text())["preset"] == "smoke"


def test_a_pendulum_recording_with_the_action_drawn_is_other_data(tmp_path: Path) -> None:
    from lapo.pipeline.plan import Manifest, plan, setting_defaults

    config = RunConfig(env="bigfish", preset="smoke", out=tmp_path)
    old = {"env": "Pendulum-v1", "frames": 10, "expert_temperature": 1.0}  # before the key
    manifest = Manifest(tmp_path / "pipeline.json", {"collect": {"settings": old}})
    now = {"collect": {**old, "action_hidden": True}}
    with pytest.raises(StageConflict, match=r"action_hidden: False -> True"):
        plan(config, manifest, now, (), setting_defaults())
    assert plan(config, manifest, {"collect": dict(old)}, (), setting_defaults())[0] == []
