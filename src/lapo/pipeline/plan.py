"""The whole LAPO pipeline in one call (``lapo run``): expert recording -> report.

Stages, each writing into its own folder of the run directory::

    expert/   expert    (when no expert is shipped or given) PPO expert training
    data/     collect   the expert plays the game; frames, true actions, rewards
    lam/      lam       stage 1, latent action model (IDM + VQ + FDM)
    bc/       bc        stage 2, latent behaviour cloning
    decode/   decode    stage 3 offline: decoder on N labels + label-only BC baseline
    eval/     evaluate  returns of expert, random, label-only BC and decoded policy
    sweep/    sweep     (optional) decoded-policy return against the number of labels
    online/   online    (optional) PPO fine-tuning of the latent policy vs PPO from scratch
    report/   report    report.md, report.html, figures, metrics.json

``pipeline.json`` records each finished stage with the settings that determine it. Rerunning
the same command skips finished stages and resumes an unfinished one from its checkpoint; a
finished stage whose settings changed is refused unless ``redo`` names it (then it and every
stage that reads its output run again, ``INPUTS``; their old folders are kept under
``<name>.replaced-<time>``), except that more online seeds or the ILPO arm extend a finished
online comparison in place. So adding a label sweep to a finished run trains no online run again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from lapo.config import BCConfig, DecodeConfig, LAMConfig
from lapo.pipeline.run_config import RunConfig

STAGES = ("expert", "collect", "lam", "bc", "decode", "evaluate", "sweep", "online", "report")
#: The stages whose output each stage reads: a stage runs again whenever one of them does
#: (``plan``), and only then. The report reads them all.
INPUTS: dict[str, tuple[str, ...]] = {
    "expert": (),
    "collect": ("expert",),
    "lam": ("collect",),
    "bc": ("collect", "lam"),
    "decode": ("collect", "lam", "bc"),
    "evaluate": ("collect", "decode"),  # the expert that recorded, the decoded policies
    "sweep": ("collect", "lam", "bc"),
    "online": ("collect", "lam", "bc"),
    "report": STAGES[:-1],
}
DIRS = {
    "expert": "expert",
    "collect": "data",
    "lam": "lam",
    "bc": "bc",
    "decode": "decode",
    "evaluate": "eval",
    "sweep": "sweep",
    "online": "online",
    "report": "report",
}


class StageConflict(ValueError):
    """A finished stage's settings differ from the requested ones (and no redo was asked)."""


@dataclass
class Manifest:
    """``pipeline.json``: finished stages with their settings and durations."""

    path: Path
    stages: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read the manifest at ``path``; a missing file gives an empty one (no stage finished).

        Raises:
            ValueError: the file is not JSON or not a lapo pipeline manifest (its ``format``).
        """
        if not path.exists():
            return cls(path)
        doc = json.loads(path.read_text())
        if doc.get("format") != "lapo-pipeline":
            raise ValueError(f"{path} is not a lapo pipeline manifest")
        return cls(path, doc["stages"])

    def save(self) -> None:
        """Write ``{"format": "lapo-pipeline", "stages": ...}`` to ``path`` atomically (a
        ``.json.tmp`` file, then ``os.replace``)."""
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"format": "lapo-pipeline", "stages": self.stages}, indent=2))
        os.replace(tmp, self.path)


def _jsonable(settings: dict) -> dict:
    return json.loads(json.dumps(settings, default=str))


def _online_extends(recorded: dict, wanted: dict) -> bool:
    """True when the online comparison ``wanted`` only adds to the finished one ``recorded``:
    more seeds and/or the ILPO arm, everything else equal. Its finished runs stay valid (each
    seed's run resumes from its checkpoint and its final evaluation is cached), so the stage
    reruns in its own folder and trains only what was added."""
    others = {k for k in {*recorded, *wanted} if k not in ("seeds", "ilpo")}
    return (
        all(recorded.get(k) == wanted.get(k) for k in others)
        and int(wanted.get("seeds", 0)) >= int(recorded.get("seeds", 0))
        and (bool(wanted.get("ilpo")) or not recorded.get("ilpo"))
    )


#: Settings that say where an input dataset lies, each with the setting of its manifest's
#: digest: a dataset moved or copied elsewhere with its manifest unchanged is the same input
#: (``plan``), so a run resumes after its data moves (e.g. to another scratch disk).
RELOCATABLE = {"data": "manifest_sha256", "labels_from": "labels_manifest_sha256"}


def relocated(recorded: dict, wanted: dict) -> dict:
    """The path settings of ``wanted`` (``RELOCATABLE``) that differ from ``recorded`` while
    the digest of the dataset there is the same: ``{setting: new path}``."""
    return {
        key: wanted[key]
        for key, digest in RELOCATABLE.items()
        if key in wanted
        and recorded.get(key) != wanted[key]
        and wanted.get(digest) is not None
        and recorded.get(digest) == wanted[digest]
    }


#: Stages whose finished folder a changed setting may extend in place: ``{stage: extends}``,
#: ``extends(recorded, wanted) -> bool`` (see ``plan``).
EXTENSIONS: dict[str, Callable[[dict, dict], bool]] = {"online": _online_extends}


def plan(
    config: RunConfig,
    manifest: Manifest,
    settings: dict[str, dict],
    redo: tuple[str, ...] = (),
    defaults: dict[str, dict] | None = None,
) -> tuple[list[str], set[str]]:
    """Stages to run, in order: unfinished ones, changed-and-redone ones and every stage that
    reads the output of a stage that runs (``INPUTS``; the report reads all of them).

    ``defaults[stage]`` holds the value each setting had before it was recorded: a finished
    stage whose settings lack a key (written before the option existed) counts as having run at
    that value, so adding an option with a default does not invalidate earlier runs.

    A finished stage whose new settings only add work to it (``EXTENSIONS``: more online seeds,
    the ILPO arm) is extended: it runs again in its own folder, reusing what it finished, and
    the stages that read it (the report) are redone.

    Returns:
        ``(todo, extended)``: the stages to run, and those of them to run in place (their
        folders are not set aside).

    Raises:
        StageConflict: a finished stage's settings differ and it is not in ``redo``; the message
            names the stage, the differing settings and the ``--redo`` to pass.
    """
    todo: list[str] = []
    extended: set[str] = set()
    defaults = defaults or {}
    for stage in STAGES:
        if stage not in settings:
            continue
        done = manifest.stages.get(stage)
        wanted = _jsonable(settings[stage])
        if done is None or stage in redo or any(i in todo for i in INPUTS[stage]):
            todo.append(stage)
            continue
        fill = _jsonable({k: v for k, v in defaults.get(stage, {}).items() if k in wanted})
        recorded = {**fill, **done["settings"]}
        recorded.update(relocated(recorded, wanted))  # the same dataset, moved: no change
        if recorded == wanted:
            continue
        if stage in EXTENSIONS and EXTENSIONS[stage](recorded, wanted):
            todo.append(stage)
            extended.add(stage)
            continue
        diff = {k: (recorded.get(k), v) for k, v in wanted.items() if recorded.get(k) != v}
        listed = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
        if stage == "collect" and {"data", "env"} & set(diff):  # another dataset or game
            raise StageConflict(
                f"{config.out} holds a run on other data ({listed}); choose another out "
                f'(--out) for this one, or pass redo=("collect",) (--redo collect) to retrain '
                "every stage of that run on the new data"
            )
        raise StageConflict(
            f"stage {stage!r} in {config.out} finished with other settings ({listed}); "
            f'pass redo=("{stage}",) (--redo {stage}) to run it (and the stages that read its '
            "output) again"
        )
    return todo, extended


def _set_aside(directory: Path) -> None:
    if not directory.exists():
        return
    stamp = int(time.time())
    target = directory.with_name(f"{directory.name}.replaced-{stamp}")
    n = 1
    while target.exists():  # set aside twice within one second
        target = directory.with_name(f"{directory.name}.replaced-{stamp}-{n}")
        n += 1
    directory.rename(target)
    tqdm.write(f"{directory.name}: the earlier folder is kept as {target} (delete it when no "
               "longer needed)")  # fmt: skip


def run_stages(
    config: RunConfig,
    settings: dict[str, dict],
    actions: dict[str, Callable[[Path], dict]],
    *,
    redo: tuple[str, ...] = (),
    weights: dict[str, float] | None = None,
    progress: bool = True,
    defaults: dict[str, dict] | None = None,
) -> dict[str, dict]:
    """Run the planned stages of ``settings`` with ``actions[stage](stage_dir) -> summary``.

    ``defaults``: per stage, the values of settings that earlier runs may not have recorded
    (see ``plan``).

    Shows one overall progress bar (elapsed time, ETA) weighted by ``weights`` (expected
    relative durations). Records each finished stage in ``pipeline.json``; a stage redone (in
    ``redo``, or reading the output of a stage that runs) has its earlier folder set aside first; an
    extended one (see ``plan``) runs in its folder.

    Returns:
        ``{stage: summary}`` for every stage of ``settings`` (from the manifest when skipped).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = Manifest.load(out / "pipeline.json")
    todo, extended = plan(config, manifest, settings, redo, defaults)
    _record_moves(manifest, settings, todo)
    weights = weights or {}
    total = sum(weights.get(s, 1.0) for s in settings)
    bar = tqdm(
        total=total,
        initial=total - sum(weights.get(s, 1.0) for s in todo),
        disable=not progress,
        position=0,
        desc="lapo run",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}",
    )
    with bar:
        for stage in todo:
            directory = out / DIRS[stage]
            if stage in manifest.stages and stage not in extended:  # a redo: old results aside
                manifest.stages.pop(stage)
                manifest.save()
                _set_aside(directory)
            elif (
                stage not in manifest.stages
                and directory.exists()
                and stage not in extended
                and any(i in todo for i in INPUTS[stage])
            ):  # an unfinished stage whose inputs run again: it starts over, the old aside
                _set_aside(directory)
            # An extended stage keeps its record until it finishes again: a failed extension
            # leaves the finished comparison as it was.
            bar.set_postfix_str(f"{STAGES.index(stage) + 1}/{len(STAGES)} {stage}")
            started = time.monotonic()
            try:
                summary = actions[stage](directory)
            except ValueError as error:  # an unfinished stage that cannot go on as asked
                if not str(error).startswith("cannot resume"):
                    raise
                if stage not in redo:
                    raise ValueError(
                        f'{error}; pass redo=("{stage}",) (--redo {stage}) to start it again '
                        "(its folder is set aside)"
                    ) from None
                # Asked to redo: start it over. (An unfinished stage that can resume does: the
                # same settings give the same result, and a rerun of an interrupted --redo
                # command must not lose the work done.)
                _set_aside(directory)
                summary = actions[stage](directory)
            manifest.stages[stage] = {
                "settings": _jsonable(settings[stage]),
                "seconds": round(time.monotonic() - started, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "summary": _jsonable(summary),
            }
            manifest.save()
            bar.update(weights.get(stage, 1.0))
    return {s: manifest.stages[s]["summary"] for s in settings if s in manifest.stages}


def _record_moves(manifest: Manifest, settings: dict[str, dict], todo: list[str]) -> None:
    """Record in ``pipeline.json`` the new place of a dataset that moved since its stages
    finished (``relocated``), and say so; the run goes on with the dataset where it is now."""
    moved = False
    for stage, done in manifest.stages.items():
        if stage in todo or stage not in settings:
            continue
        for key, path in relocated(done["settings"], _jsonable(settings[stage])).items():
            tqdm.write(f"{key}: {done['settings'][key]} moved to {path} (the same manifest "
                       "sha256); going on with it")  # fmt: skip
            done["settings"][key] = path
            if key in done.get("summary", {}):
                done["summary"][key] = path
            moved = True
    if moved:
        manifest.save()


class StageInterrupted(KeyboardInterrupt):
    """A stage stopped on a signal after saving its checkpoint; rerun the command to resume.

    Attributes:
        reason: what stopped it, ``SIGINT`` or ``SIGTERM`` (the CLI exits 130 or 143).
    """

    def __init__(self, message: str, reason: str = "SIGINT") -> None:
        super().__init__(message)
        self.reason = reason


def setting_defaults() -> dict[str, dict]:
    """Per stage, the value of each setting in runs recorded before that setting existed
    (``lapo.pipeline.plan.plan``): the config classes' field defaults, the expert's sampling
    temperature 1, and frames that showed the action on the tasks whose renderer draws it
    (``lapo.envs.gymnasium.ACTION_DRAWING_IDS``: such a recording is other data now)."""
    from lapo.runtime import field_defaults  # imports torch: not at import time

    temperature = {"expert_temperature": field_defaults(RunConfig)["expert_temperature"]}
    return {
        "collect": {**temperature, "action_hidden": False},  # Pendulum's arrow drawn before
        "lam": field_defaults(LAMConfig),
        "bc": field_defaults(BCConfig),
        "decode": field_defaults(DecodeConfig),
        "evaluate": temperature,
    }
