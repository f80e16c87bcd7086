"""``lapo aggregate``: known answers on hand-written run directories, and a real smoke run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from lapo.cli import main
from lapo.config import AggregateConfig
from lapo.pipeline.aggregate import aggregate


def fake_run(
    path: Path,
    game: str,
    seed: int,
    normalized: dict[str, float],
    online=None,
    sweep=None,
    preset: str = "cpu",
) -> Path:
    """A run directory as ``lapo run`` leaves it, holding only what ``lapo aggregate`` reads:
    ``normalized`` gives each offline policy's normalized return; ``online`` ``{method: [final
    normalized per seed]}`` (curves from 0 to that value over 1,000 steps); ``sweep`` rows;
    ``preset`` in ``run_config.json`` (with the sweep and online comparison it asked for)."""
    stages = {
        "collect": {"settings": {"env": game, "seed": seed}, "summary": {"expert": "x"}},
        "lam": {"summary": {"probe_mlp_accuracy": 0.5, "frame_difference_mlp_accuracy": 0.25}},
        "decode": {"settings": {"labels": 256}},
        "evaluate": {"summary": {}},
        "report": {"summary": {}},
    }
    path.mkdir(parents=True)
    config = {"env": game, "preset": preset, "seed": seed, "data": None, "online": bool(online),
              "sweep": sorted({row["labels"] for row in sweep or []})}  # fmt: skip
    (path / "run_config.json").write_text(json.dumps(config))
    returns = {
        name: {"mean": v, "ci95": 0.1, "normalized": v, "normalized_ci95": 0.05, "episodes": 9}
        for name, v in normalized.items()
    }
    (path / "eval").mkdir()
    (path / "eval" / "returns.json").write_text(json.dumps(returns))
    if online:
        stages["online"] = {"settings": {"steps": 1000}}
        doc = {
            "evaluation": {m: [{"normalized": v} for v in vs] for m, vs in online.items()},
            "curves": {
                m: [{"steps": [0, 500, 1000], "normalized": [0.0, v / 2, v]} for v in vs]
                for m, vs in online.items()
            },
        }
        (path / "online").mkdir()
        (path / "online" / "online.json").write_text(json.dumps(doc))
    if sweep:
        stages["sweep"] = {"settings": {}}
        (path / "sweep").mkdir()
        (path / "sweep" / "label_sweep.json").write_text(json.dumps(sweep))
    (path / "pipeline.json").write_text(json.dumps({"format": "lapo-pipeline", "stages": stages}))
    return path


def test_aggregate_known_answers(tmp_path: Path) -> None:
    def sweep(v: float) -> list[dict]:
        return [{"method": "lapo", "labels": n, "normalized": v * n / 64} for n in (32, 64)]

    runs = [
        fake_run(tmp_path / "c0", "coinrun", 0, {"lapo_decoded": 0.2, "random": 0.0}),
        fake_run(tmp_path / "c1", "coinrun", 1, {"lapo_decoded": 0.4, "random": 0.0},
                 online={"LAPO fine-tuned": [0.9, 0.7]}, sweep=sweep(0.4)),
        fake_run(tmp_path / "b0", "bigfish", 0, {"lapo_decoded": 0.6, "random": 0.0},
                 sweep=sweep(0.8)),
        fake_run(tmp_path / "b1", "bigfish", 1, {"lapo_decoded": 1.0, "random": 0.0}),
    ]  # fmt: skip
    out = tmp_path / "agg"
    result = aggregate(AggregateConfig(runs=tuple(runs), out=out, reps=500))
    assert result["games"] == ["bigfish", "coinrun"]  # Procgen's order
    lapo = result["aggregate"]["methods"]["LAPO decoded"]
    # mean of the game means (0.3 + 0.8) / 2; IQM of 0.2, 0.4, 0.6, 1.0 drops one at each end
    assert lapo["mean"][0] == pytest.approx(0.55) and lapo["iqm"][0] == pytest.approx(0.5)
    assert lapo["mean"][1] <= 0.55 <= lapo["mean"][2] and lapo["runs"] == 4
    online = result["aggregate"]["methods"]["LAPO fine-tuned"]
    assert online["games"] == 1 and online["mean"][0] == pytest.approx(0.8)
    # every LAPO decoded run beats every random run on both games; no PPO run to compare with
    (improvement,) = result["aggregate"]["improvement"]
    assert (improvement["x"], improvement["y"], improvement["games"]) == (
        "LAPO decoded", "uniform random", 2
    )  # fmt: skip
    assert improvement["probability"] == [1.0, 1.0, 1.0]
    taus = result["aggregate"]["taus"]
    profile = dict(zip(taus, lapo["profile"]["point"], strict=True))
    assert profile[0.0] == 1.0 and profile[taus[-1]] == 0.0  # taus from 0 to 1.25
    assert set(result["figures"]) == {"aggregate_intervals.png", "performance_profiles.png",
                                      "online_curves.png", "label_sweep.png"}  # fmt: skip
    md = (out / "report.md").read_text()
    row = (
        "| bigfish | 2 | 0.874 / 36.336 | – | 0.800 (2 runs) | 0.000 (2 runs) | – | 0.500 (0.250) |"
    )
    assert row in md  # no expert evaluated; LAPO decoded, random, no online run; probe
    assert "| LAPO decoded | 2 | 4 | 0.500 [" in md and "about 0.50 (256 labels)" in md
    assert "| LAPO decoded > uniform random | 2 | 1.000 [1.000, 1.000] |" in md
    # label sweep: mean over the two swept games at 64 labels (0.4 + 0.8) / 2
    assert "| 64 | 0.600 (2) | – | 0.23 |" in md
    assert json.loads((out / "aggregate.json").read_text())["scores"]["LAPO decoded"] == {
        "bigfish": [0.6, 1.0], "coinrun": [0.2, 0.4]
    }  # fmt: skip
    # rerun into the same folder: same intervals (seeded), its own files replaced
    again = aggregate(AggregateConfig(runs=tuple(runs), out=out, reps=500))
    assert again["aggregate"] == result["aggregate"]
    # and into a copy without the run lock (a fresh clone of a repository that committed it)
    copy = tmp_path / "committed"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns(".lapo.lock*"))
    assert (
        aggregate(AggregateConfig(runs=tuple(runs), out=copy, reps=500))["aggregate"]
        == (result["aggregate"])
    )


def test_aggregate_warns_of_games_whose_expert_is_not_above_random(tmp_path: Path) -> None:
    # fake_run's CIs are +-0.05: 0.06 against 0.0 overlaps, 0.5 against 0.0 does not
    runs = [
        fake_run(tmp_path / "m", "miner", 0, {"expert": 0.06, "random": 0.0, "lapo_decoded": 0.0}),
        fake_run(tmp_path / "c", "coinrun", 0, {"expert": 0.5, "random": 0.0, "lapo_decoded": 0.3}),
        fake_run(tmp_path / "b", "bigfish", 0, {"lapo_decoded": 0.3}),  # no expert evaluated
    ]  # fmt: skip
    aggregate(AggregateConfig(runs=tuple(runs), out=tmp_path / "agg", reps=100))
    banner = (tmp_path / "agg" / "report.md").read_text().split("Generated by")[0]
    assert "1 game (miner) was recorded by an expert not above the uniform random" in banner
    aggregate(AggregateConfig(runs=tuple(runs[1:]), out=tmp_path / "agg2", reps=100))
    assert "not above the uniform random" not in (tmp_path / "agg2" / "report.md").read_text()


def test_aggregate_warns_of_methods_on_some_games_and_mixed_label_counts(tmp_path: Path) -> None:
    """Online fine-tuning run on one game of two: its aggregate is over another game set than
    LAPO decoded's, so the report says so before the table that sets them side by side."""
    runs = [
        fake_run(tmp_path / "c", "coinrun", 0, {"lapo_decoded": 0.3},
                 online={"LAPO fine-tuned": [0.9, 0.7]}),
        fake_run(tmp_path / "b", "bigfish", 0, {"lapo_decoded": 0.5}),
    ]  # fmt: skip
    aggregate(AggregateConfig(runs=tuple(runs), out=tmp_path / "agg", reps=10))
    banner = (tmp_path / "agg" / "report.md").read_text().split("Generated by")[0]
    assert "LAPO fine-tuned (1 of 2 games: coinrun): aggregated over fewer games" in banner
    assert "label counts" not in banner
    manifest = json.loads((runs[1] / "pipeline.json").read_text())
    manifest["stages"]["decode"]["settings"]["labels"] = 64
    (runs[1] / "pipeline.json").write_text(json.dumps(manifest))
    aggregate(AggregateConfig(runs=(runs[1], tmp_path / "c"), out=tmp_path / "agg2", reps=10))
    banner = (tmp_path / "agg2" / "report.md").read_text().split("Generated by")[0]
    assert "different label counts (64, 256)" in banner
    aggregate(AggregateConfig(runs=(runs[1],), out=tmp_path / "agg3", reps=10))
    assert "fewer games" not in (tmp_path / "agg3" / "report.md").read_text()


def test_aggregate_warns_of_other_differing_settings_and_experts_of_one_game(
    tmp_path: Path,
) -> None:
    runs = [fake_run(tmp_path / f"c{s}", "coinrun", s, {"lapo_decoded": 0.3}) for s in (0, 1)]
    runs.append(fake_run(tmp_path / "b", "bigfish", 0, {"lapo_decoded": 0.5}))

    def record(run: Path, **stage_settings) -> None:
        manifest = json.loads((run / "pipeline.json").read_text())
        for stage, settings in stage_settings.items():
            manifest["stages"][stage].setdefault("settings", {}).update(settings)
        (run / "pipeline.json").write_text(json.dumps(manifest))

    for run in runs:  # equal settings, seeds and games apart: nothing to say
        record(run, lam={"steps": 400, "seed": len(run.name)}, evaluate={"episodes": 9})
    record(runs[0], collect={"expert_sha256": "a"})
    record(runs[1], collect={"expert_sha256": "a"})
    record(runs[2], collect={"expert_sha256": "b"})
    aggregate(AggregateConfig(runs=tuple(runs), out=tmp_path / "agg", reps=10))
    banner = (tmp_path / "agg" / "report.md").read_text().split("Generated by")[0]
    assert "differ in" not in banner and "different experts" not in banner
    record(runs[1], lam={"steps": 6}, evaluate={"episodes": 4}, collect={"expert_sha256": "c"})
    aggregate(AggregateConfig(runs=tuple(runs), out=tmp_path / "agg2", reps=10))
    banner = (tmp_path / "agg2" / "report.md").read_text().split("Generated by")[0]
    assert "the runs differ in evaluate.episodes (4, 9); lam.steps (400, 6):" in banner
    assert "the seeds of coinrun were recorded by different experts" in banner


def test_aggregate_refuses_bad_inputs_before_writing(tmp_path: Path, capsys) -> None:
    good = fake_run(tmp_path / "r", "coinrun", 0, {"lapo_decoded": 0.2})
    (tmp_path / "empty").mkdir()
    assert (
        main(["aggregate", str(good), str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 1
    )
    assert "is not a `lapo run` directory" in capsys.readouterr().err
    stages = json.loads((good / "pipeline.json").read_text())
    del stages["stages"]["evaluate"]
    unfinished = tmp_path / "u"
    shutil.copytree(good, unfinished)
    (unfinished / "pipeline.json").write_text(json.dumps(stages))
    assert main(["aggregate", str(unfinished), "--out", str(tmp_path / "o")]) == 1
    assert "evaluate stage has not finished" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before anything was made
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["aggregate", str(good), "--out", str(other)]) == 1
    assert "holds other files" in capsys.readouterr().err
    assert main(["aggregate", str(good), "--out", str(good / "agg")]) == 1  # inside a run
    assert "lies inside the input" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["aggregate", "--help"])
    helped = " ".join(capsys.readouterr().out.split())
    assert "new, empty, or an earlier `lapo aggregate` output" in helped  # what --out may be


def test_aggregate_refuses_runs_still_in_progress_and_reads_their_preset(
    tmp_path: Path, capsys
) -> None:
    """A run whose evaluation finished but whose online comparison (asked for in its
    run_config.json) or report has not is refused, not aggregated without those results; the
    preset comes from run_config.json, written before any stage, not from the report's
    metrics.json (a smoke run read before its report finished lost the smoke warning)."""
    online = fake_run(tmp_path / "o", "coinrun", 0, {"lapo_decoded": 0.2},
                      online={"LAPO fine-tuned": [0.5]})  # fmt: skip
    manifest = json.loads((online / "pipeline.json").read_text())
    del manifest["stages"]["online"], manifest["stages"]["report"]  # online training goes on
    (online / "pipeline.json").write_text(json.dumps(manifest))
    assert main(["aggregate", str(online), "--out", str(tmp_path / "agg")]) == 1
    assert "its online, report stages have not finished" in capsys.readouterr().err
    assert not (tmp_path / "agg").exists()
    smoke = fake_run(tmp_path / "s", "coinrun", 0, {"lapo_decoded": 0.2}, preset="smoke")
    assert not (smoke / "report" / "metrics.json").exists()
    result = aggregate(AggregateConfig(runs=(smoke,), out=tmp_path / "agg", reps=10))
    assert result["runs"][0]["preset"] == "smoke"
    banner = (tmp_path / "agg" / "report.md").read_text().split("Generated by")[0]
    assert "`smoke` preset" in banner
    given = fake_run(tmp_path / "d", "my-data", 0, {"lapo_decoded": 0.2})
    config = json.loads((given / "run_config.json").read_text())
    (given / "run_config.json").write_text(json.dumps({**config, "data": "/my/data"}))
    with pytest.raises(ValueError, match="trained on a given dataset"):
        aggregate(AggregateConfig(runs=(given,), out=tmp_path / "agg2", reps=10))


def test_aggregate_refuses_one_seed_of_a_game_twice(tmp_path: Path, capsys) -> None:
    """A copied run directory (or one job run twice under two names) would count one seed as
    two runs: the CIs would narrow and the one-run warning vanish. Refused, both named."""
    first = fake_run(tmp_path / "maze-s0", "maze", 0, {"lapo_decoded": 0.2})
    copy = tmp_path / "maze-copy"
    shutil.copytree(first, copy)
    other = fake_run(tmp_path / "maze-s1", "maze", 1, {"lapo_decoded": 0.4})
    args = ["aggregate", str(first), str(other), str(copy), "--out", str(tmp_path / "agg")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert f"{first} and {copy} are both seed 0 of maze" in err
    assert not (tmp_path / "agg").exists()
    (tmp_path / "link").symlink_to(first)
    with pytest.raises(ValueError, match=f"{first} and {tmp_path / 'link'} are the same run"):
        AggregateConfig(runs=(first, tmp_path / "link"), out=tmp_path / "agg")
    aggregate(AggregateConfig(runs=(first, other), out=tmp_path / "agg", reps=10))


@pytest.mark.slow  # a real `lapo run --preset smoke` (12-37 s on 2 shared cores) and the report
def test_lapo_aggregate_on_smoke_runs(tmp_path: Path, capsys) -> None:
    """One real smoke run of coinrun, and a copy of it relabelled as jumper (its numbers are
    coinrun's: this checks the reading and the figures, not a second game's results)."""
    coinrun = tmp_path / "coinrun"
    args = ["run", "--preset", "smoke", "--env", "coinrun", "--out", str(coinrun), "--no-progress"]
    assert main(args) == 0
    jumper = tmp_path / "jumper"
    shutil.copytree(coinrun, jumper, ignore=shutil.ignore_patterns(".lapo.lock*"))
    manifest = json.loads((jumper / "pipeline.json").read_text())
    manifest["stages"]["collect"]["settings"]["env"] = "jumper"
    (jumper / "pipeline.json").write_text(json.dumps(manifest))
    out = tmp_path / "agg"
    assert main(["aggregate", str(coinrun), str(jumper), "--out", str(out), "--reps", "500"]) == 0
    printed = capsys.readouterr().out
    assert "LAPO decoded" in printed and "(2 games)" in printed
    md = (out / "report.md").read_text()
    for game in ("coinrun", "jumper"):
        assert f"\n| {game} | 1 | " in md
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == ["aggregate_intervals.png", "latent_maps.png", "performance_profiles.png"]
    assert all(f"figures/{name}" in md for name in figures)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert "smoke" in md.split("## Aggregate")[0]  # the smoke warning leads the report
    result = json.loads((out / "aggregate.json").read_text())
    returns = json.loads((coinrun / "eval" / "returns.json").read_text())
    assert result["scores"]["LAPO decoded"]["coinrun"] == [returns["lapo_decoded"]["normalized"]]


def test_aggregate_refuses_a_task_without_reference_returns(tmp_path: Path, capsys) -> None:
    """A Gymnasium task without reference returns has NaN normalized returns: named, not the
    bootstrap's bare 'scores must be finite'."""
    nan = float("nan")
    acrobot = fake_run(tmp_path / "a", "Acrobot-v1", 0, {"lapo_decoded": nan, "random": nan})
    coinrun = fake_run(tmp_path / "c", "coinrun", 0, {"lapo_decoded": 0.3, "random": 0.0})
    assert main(["aggregate", str(acrobot), str(coinrun), "--out", str(tmp_path / "agg")]) == 1
    err = capsys.readouterr().err
    assert f"{acrobot}: Acrobot-v1 has no reference returns" in err
    assert "LAPO decoded, uniform random are undefined (NaN)" in err


def test_aggregate_takes_continuous_control_runs(tmp_path: Path) -> None:
    from lapo.envs.games import CONTROL_REFERENCE_RETURNS, REFERENCE_RETURNS

    runs = [
        fake_run(tmp_path / "p0", "Pendulum-v1", 0, {"lapo_decoded": 0.2, "random": 0.0}),
        fake_run(tmp_path / "c0", "coinrun", 0, {"lapo_decoded": 0.4, "random": 0.0}),
    ]
    out = tmp_path / "agg"
    result = aggregate(AggregateConfig(runs=tuple(runs), out=out, reps=200))
    assert result["games"] == ["coinrun", "Pendulum-v1"]  # Procgen's games first
    ref = CONTROL_REFERENCE_RETURNS["Pendulum-v1"]
    md = (out / "report.md").read_text()
    assert f"| Pendulum-v1 | 1 | {ref.random:g} / {ref.expert:g} (lapo's) |" in md
    coinrun = REFERENCE_RETURNS["coinrun"]
    assert f"| coinrun | 1 | {coinrun.random:g} / {coinrun.expert:g} |" in md


def test_latent_map_grid_takes_a_games_first_run_that_has_a_map(tmp_path: Path) -> None:
    """A game whose first run directory has no latent map (no stage-1 probe) still gets a tile
    from its next run that has one."""
    import matplotlib.pyplot as plt

    first = fake_run(tmp_path / "maze-s0", "maze", 0, {"lapo_decoded": 0.2})
    second = fake_run(tmp_path / "maze-s1", "maze", 1, {"lapo_decoded": 0.3})
    (second / "report" / "figures").mkdir(parents=True)
    plt.imsave(second / "report" / "figures" / "latent_map.png", [[[0.0, 0.0, 0.0]] * 8] * 8)
    out = tmp_path / "agg"
    aggregate(AggregateConfig(runs=(first, second), out=out, reps=10))
    assert (out / "figures" / "latent_maps.png").is_file()
    assert "figures/latent_maps.png" in (out / "report.md").read_text()
