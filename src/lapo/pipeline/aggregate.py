"""``lapo aggregate``: one report over several ``lapo run`` directories (games and seeds).

Each run directory is read as ``lapo run`` left it (``pipeline.json``, ``eval/returns.json``,
``online/online.json``, ``sweep/label_sweep.json``, ``report/``), wherever it was made: each
game can run as its own job (a cluster array job, several machines) and the directories be
copied together afterwards. Nothing in them is written.

A run is one seed of one method on one game: the offline policies contribute one run per run
directory (their normalized return over ``eval_episodes`` episodes), online fine-tuning one per
online seed. Aggregates over games follow Agarwal et al. 2021 (``lapo.eval.aggregate_stats``):
IQM and mean normalized return with stratified-bootstrap 95% CIs, and performance profiles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lapo.config import AggregateConfig
from lapo.envs.games import GAMES
from lapo.eval import return_plots
from lapo.eval.aggregate_stats import (
    iqm_of,
    mean_of,
    probability_of_improvement,
    profile_of,
    stratified_bootstrap,
)
from lapo.paths import write_json_atomic
from lapo.pipeline.aggregate_report import OFFLINE, write_report
from lapo.safety import RUN_LOCK, check_disjoint, holds_lock

#: The paper's figures (PAPER.md; 16-game means, approximate) beside each method.
PAPER = {
    "expert (data)": "1 (reference)",
    "uniform random": "0 (reference)",
    "LAPO fine-tuned": "about 1.0 (4M steps)",
    "PPO from scratch": "about 0.44 (4M steps)",
    "ILPO": "about 0.3",
}


@dataclass
class RunRecord:
    """What ``lapo aggregate`` reads from one run directory.

    Attributes:
        scores: ``{method: [normalized return per run]}`` (online methods: one per seed).
        returns: ``eval/returns.json`` without the per-episode lists.
        curves: ``{method: [(steps, normalized) per seed]}`` of online fine-tuning.
        sweep: ``label_sweep.json`` rows; latent_map: the run's latent-space figure, if any.
    """

    path: Path
    game: str
    seed: int
    labels: int
    preset: str
    expert: str
    probe: dict
    scores: dict[str, list[float]]
    returns: dict[str, dict]
    online_steps: int | None = None
    curves: dict[str, list] = field(default_factory=dict)
    sweep: list[dict] = field(default_factory=list)
    latent_map: Path | None = None
    settings: dict[str, object] = field(default_factory=dict)
    expert_digest: str | None = None


#: Settings in ``pipeline.json`` that differ between the runs of an aggregate by design (the
#: game, the seed, the expert and data of each game), left out of ``RunRecord.settings``.
PER_RUN_SETTINGS = frozenset({"env", "seed", "expert_sha256", "data", "manifest_sha256"})


def _comparable_settings(stages: dict) -> dict[str, object]:
    """``{"stage.setting": value}`` of the recorded settings that runs compared in one aggregate
    should share (every stage's but ``PER_RUN_SETTINGS``; label counts are warned of apart)."""
    return {
        f"{stage}.{key}": value
        for stage in ("collect", "lam", "bc", "decode", "evaluate", "online")
        for key, value in stages.get(stage, {}).get("settings", {}).items()
        if key not in PER_RUN_SETTINGS and (stage, key) != ("decode", "labels")
    }


def _json(path: Path) -> dict | list:
    return json.loads(path.read_text())


def _unfinished(stages: dict, config: dict) -> list[str]:
    """The stages of the run's plan that have not finished: the evaluation and the report, and
    the label sweep and the online comparison when ``config`` (its ``run_config.json``; empty
    for a run written before that file existed) asks for them."""
    planned = ["evaluate"] + ["sweep"] * bool(config.get("sweep"))
    planned += ["online"] * bool(config.get("online")) + ["report"]
    return [s for s in planned if s not in stages]


def load_run(path: str | Path) -> RunRecord:
    """Read one ``lapo run`` directory whose every planned stage finished.

    Raises:
        FileNotFoundError: no ``pipeline.json`` there (not a ``lapo run`` directory).
        ValueError: a run on a given dataset (``--data``: no game played), or one whose
            evaluation, report, or asked-for sweep or online comparison has not finished (a run
            still in progress would lose those results silently; the message says how to
            finish it), or a run on a task without reference returns (normalized returns NaN).
    """
    path = Path(path)
    if not (path / "pipeline.json").is_file():
        raise FileNotFoundError(f"{path} is not a `lapo run` directory (no pipeline.json)")
    stages = _json(path / "pipeline.json")["stages"]
    config_file = path / "run_config.json"
    config = _json(config_file) if config_file.is_file() else {}
    if config.get("data") is not None:
        raise ValueError(
            f"{path} was trained on a given dataset (lapo run --data): it played no game, so it "
            "has no returns to aggregate; leave it out"
        )
    missing = _unfinished(stages, config)
    if missing:
        raise ValueError(
            f"{path}: its {', '.join(missing)} stage{'s' * (len(missing) > 1)} "
            f"{'have' if len(missing) > 1 else 'has'} not finished; rerun its `lapo run` "
            "command first (lapo aggregate reads finished runs only)"
        )
    returns = {
        name: {k: v for k, v in r.items() if k != "returns"}
        for name, r in _json(path / "eval" / "returns.json").items()
    }
    metrics_file = path / "report" / "metrics.json"
    metrics = _json(metrics_file) if metrics_file.is_file() else {}
    lam = stages["lam"]["summary"]
    record = RunRecord(
        path=path,
        game=stages["collect"]["settings"]["env"],
        seed=stages["collect"]["settings"]["seed"],
        labels=stages["decode"]["settings"]["labels"],
        preset=config.get("preset") or metrics.get("preset", "?"),
        expert=metrics.get("expert_origin")
        or metrics.get("data_origin")
        or stages["collect"]["summary"].get("expert", "?"),
        probe={k: lam.get(k) for k in ("probe_mlp_accuracy", "frame_difference_mlp_accuracy")},
        scores={OFFLINE.get(n, n): [r["normalized"]] for n, r in returns.items()},
        returns=returns,
        settings=_comparable_settings(stages),
        expert_digest=stages["collect"]["settings"].get("expert_sha256"),
    )
    if "online" in stages and (path / "online" / "online.json").is_file():
        online = _json(path / "online" / "online.json")
        record.online_steps = stages["online"]["settings"]["steps"]
        for name, runs in online["evaluation"].items():
            record.scores[name] = [r["normalized"] for r in runs]
        record.curves = {
            name: [(c["steps"], c["normalized"]) for c in seeds]
            for name, seeds in online["curves"].items()
        }
    if (path / "sweep" / "label_sweep.json").is_file():
        record.sweep = _json(path / "sweep" / "label_sweep.json")
    if (path / "report" / "figures" / "latent_map.png").is_file():
        record.latent_map = path / "report" / "figures" / "latent_map.png"
    undefined = [m for m, v in record.scores.items() if not np.isfinite(np.asarray(v, float)).all()]
    if undefined:
        raise ValueError(
            f"{path}: {record.game} has no reference returns, so the normalized returns of "
            f"{', '.join(undefined)} are undefined (NaN) and cannot be aggregated over games; "
            "leave it out (the tasks with references: lapo.envs.games.REFERENCE_RETURNS and "
            "CONTROL_REFERENCE_RETURNS)"
        )
    return record


def check_distinct(records: list[RunRecord]) -> None:
    """Refuse two run directories holding the same seed of the same game (a copy, or one job
    run twice under two names): the bootstrap would count one seed as two independent runs,
    narrowing the CIs and hiding the one-run warning.

    Raises:
        ValueError: naming both directories, the game and the seed.
    """
    seen: dict[tuple[str, int], Path] = {}
    for r in records:
        first = seen.setdefault((r.game, r.seed), r.path)
        if first != r.path:
            raise ValueError(
                f"{first} and {r.path} are both seed {r.seed} of {r.game} (a copy, or one job "
                "run twice?): each seed may count once; leave one out, or give the other run "
                "another --seed"
            )


def by_game(records: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Records grouped by game: Procgen's games in Procgen's order, then any other task
    (continuous control, a dataset's name) in alphabetical order."""
    present = {r.game for r in records}
    order = [g for g in GAMES if g in present] + sorted(present - set(GAMES))
    return {g: [r for r in records if r.game == g] for g in order}


def method_scores(games: dict[str, list[RunRecord]]) -> dict[str, dict[str, list[float]]]:
    """``{method: {game: [normalized return per run]}}`` over every run of every game."""
    methods = list(dict.fromkeys(m for runs in games.values() for r in runs for m in r.scores))
    out: dict[str, dict[str, list[float]]] = {}
    for method in methods:
        out[method] = {
            game: [s for r in runs for s in r.scores.get(method, [])]
            for game, runs in games.items()
            if any(method in r.scores for r in runs)
        }
    return out


def aggregate_estimates(scores: dict[str, dict[str, list[float]]], reps: int, seed: int) -> dict:
    """Per method: IQM and mean over games with 95% CIs, and the performance profile; per pair
    of methods compared (``improvements``): the probability of improvement.

    Returns:
        ``{"taus": [...], "methods": {method: {"games", "runs", "iqm": [point, low, high],
        "mean": [...], "profile": {"point", "low", "high"}}}, "improvement": [...]}``.
    """
    values = [s for per_game in scores.values() for runs in per_game.values() for s in runs]
    taus = np.linspace(min(0.0, min(values)), max(1.25, max(values)), 101)
    out: dict = {"taus": taus.tolist(), "methods": {}}
    for method, per_game in scores.items():
        tasks = list(per_game.values())
        iqm = stratified_bootstrap(tasks, iqm_of, reps=reps, seed=seed)
        mean = stratified_bootstrap(tasks, mean_of, reps=reps, seed=seed)
        profile = stratified_bootstrap(tasks, profile_of(taus), reps=reps, seed=seed)
        out["methods"][method] = {
            "games": len(tasks),
            "runs": sum(map(len, tasks)),
            "iqm": [float(iqm.point[0]), float(iqm.low[0]), float(iqm.high[0])],
            "mean": [float(mean.point[0]), float(mean.low[0]), float(mean.high[0])],
            "profile": {k: getattr(profile, k).tolist() for k in ("point", "low", "high")},
        }
    out["improvement"] = improvements(scores, reps, seed)
    return out


#: The method pairs ``improvements`` compares: ``(X, Y)``, each method against its baseline.
COMPARED = (("LAPO decoded", "label-only BC"), ("LAPO decoded", "uniform random"),
            ("LAPO fine-tuned", "PPO from scratch"))  # fmt: skip


def improvements(scores: dict[str, dict[str, list[float]]], reps: int, seed: int) -> list[dict]:
    """Probability of improvement (``probability_of_improvement``) of each pair of ``COMPARED``
    whose methods both ran, over the games where both did.

    Returns: ``[{"x", "y", "games", "probability": [point, low, high]}]``.
    """
    out = []
    for x, y in COMPARED:
        games = [g for g in scores.get(x, {}) if g in scores.get(y, {})]
        if not games:
            continue
        xs, ys = [scores[x][g] for g in games], [scores[y][g] for g in games]
        poi = probability_of_improvement(xs, ys, reps=reps, seed=seed)
        interval = [float(poi.point[0]), float(poi.low[0]), float(poi.high[0])]
        out.append({"x": x, "y": y, "games": len(games), "probability": interval})
    return out


def _paper(method: str, labels: set[int]) -> str:
    if method == "LAPO decoded":
        curve = return_plots.PAPER_LABEL_CURVE
        refs = [f"about {curve[n]:.2f} ({n} labels)" for n in sorted(labels) if n in curve]
        return "; ".join(refs) or "n/a"
    return PAPER.get(method, "n/a")


def aggregate(config: AggregateConfig) -> dict:
    """Read every run of ``config.runs`` and write ``config.out``: ``report.md``,
    ``report.html``, ``figures/*.png`` and ``aggregate.json``; return the ``aggregate.json``
    content.

    Raises:
        FileNotFoundError, ValueError: a run directory that is not a finished ``lapo run``
            (``load_run``), or two holding the same seed of one game (``check_distinct``),
            before anything is written; ``out`` is, lies in or contains a run.
        FileExistsError: ``out`` exists and holds something other than an earlier aggregate.
        lapo.safety.InUseError: another lapo process holds ``out``.
    """
    records = [load_run(p) for p in config.runs]
    check_distinct(records)
    out = Path(config.out)
    check_disjoint(out, config.runs)
    entries = (
        {p.name for p in out.iterdir() if not p.name.startswith(RUN_LOCK)}
        if out.is_dir()
        else set()
    )
    if out.exists() and not out.is_dir() or entries and "aggregate.json" not in entries:
        raise FileExistsError(
            f"{out} is a file or holds other files (no earlier aggregate.json); choose a new or "
            "empty --out"
        )
    return _write(config, records)


@holds_lock(lambda a: a["config"].out)
def _write(config: AggregateConfig, records: list[RunRecord]) -> dict:
    """``aggregate``'s work once its inputs are checked, holding ``config.out``'s lock."""
    out = Path(config.out)
    if (out / "aggregate.json").is_file():  # an earlier aggregate here: its figures are replaced
        for name in json.loads((out / "aggregate.json").read_text()).get("figures", []):
            (out / "figures" / Path(name).name).unlink(missing_ok=True)
    games = by_game(records)
    scores = method_scores(games)
    stats = aggregate_estimates(scores, config.reps, config.seed)
    result = {
        "runs": [
            {
                "path": str(r.path),
                "game": r.game,
                "seed": r.seed,
                "preset": r.preset,
                "labels": r.labels,
                "expert": r.expert,
                "scores": r.scores,
            }
            for r in records
        ],  # fmt: skip
        "games": list(games),
        "scores": scores,
        "aggregate": stats,
        "bootstrap": {"reps": config.reps, "seed": config.seed, "confidence": 0.95},
        "paper": {m: _paper(m, {r.labels for r in records}) for m in scores},
    }
    result["figures"] = write_report(games, records, result, out)
    write_json_atomic(out / "aggregate.json", result, indent=1)
    return result
