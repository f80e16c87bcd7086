"""``lapo aggregate``'s configuration: one report over several runs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lapo.config.checks import check_ints, check_seed, check_types


@dataclass(frozen=True)
class AggregateConfig:
    """``lapo aggregate``: one report over several ``lapo run`` directories.

    Attributes:
        runs: ``lapo run`` directories (any games, any seeds; made anywhere).
        out: output directory for report.md, report.html, figures/ and aggregate.json (new,
            empty, or an earlier aggregate's, whose files are replaced).
        reps: stratified-bootstrap resamples per confidence interval (rliable: 50,000).
        seed: seed of the bootstrap (the same seed gives the same intervals).

    Raises:
        ValueError: no run, a run directory given twice (also as a link to it: both named),
            ``reps`` < 1 or a seed outside ``[0, 2**31)``.
    """

    runs: tuple[Path, ...]
    out: Path
    reps: int = 50_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_types(self)
        object.__setattr__(self, "runs", tuple(Path(p) for p in self.runs))
        object.__setattr__(self, "out", Path(self.out))
        if not self.runs:
            raise ValueError("aggregate needs at least one run directory")
        resolved = [p.resolve() for p in self.runs]
        for i, path in enumerate(self.runs):
            if resolved[i] in resolved[:i]:
                first = self.runs[resolved.index(resolved[i])]
                raise ValueError(
                    f"{first} and {path} are the same run directory; each run counts once"
                )
        check_ints(self, 1, "reps")
        check_seed(self)
