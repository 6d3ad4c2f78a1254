"""What a section computed (:class:`Section`) and the names of its conditions."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import claims, experiments, runs
from ..config import MODULES

#: Runs that no analysis reads keep only their last checkpoint (a results pack or a branch needs no more).
UNANALYSED = dict(keep_checkpoints="last")


@dataclass
class Section:
    """What a section computed: its runs by condition, its tables, the claims it tests."""

    name: str
    groups: dict[str, list[runs.Run]]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    claims: list[claims.Claim] = field(default_factory=list)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # regularised epochs per condition
    sets: dict[str, list[str]] = field(default_factory=dict)  # the conditions each figure compares

    def claim(self, target: str) -> str:
        """The markdown of the claim shown by the figure labelled ``target``."""
        found = [c.markdown() for c in self.claims if c.target == target]
        return "\n\n".join(found) or "Not tested with these parameters (it needs more than one condition)."

    @property
    def runs(self) -> list[runs.Run]:
        return [r for rs in self.groups.values() for r in rs]

    def provenance(self) -> str:
        return experiments.provenance(self.runs)

    def summary(self) -> pd.DataFrame:
        return claims.summary(self.claims).assign(section=self.name)

    def save(self, out: Path) -> None:
        """Every table as ``<name>.csv`` and the claims as ``claims.csv`` in ``out``."""
        for name, table in self.tables.items():
            table.to_csv(out / f"{name}.csv", index=False)
        self.summary().to_csv(out / "claims.csv", index=False)


def metrics_of(groups: dict[str, list[runs.Run]]) -> pd.DataFrame:
    return pd.concat([runs.load_metrics(rs).assign(condition=name) for name, rs in groups.items()],
                     ignore_index=True)


def _span(start: int, stop: int | None) -> str:
    if stop is None:
        return f"from epoch {start}"
    return f"epoch {start} only" if stop == start + 1 else f"epochs {start}-{stop - 1} only"


def against(alpha: float, start: int = 0, stop: int | None = None) -> str:
    """The name of a condition regularised against selectivity."""
    return f"α={alpha:g} {_span(start, stop)}"


def favour(alpha: float, start: int, stop: int | None, modules=MODULES) -> str:
    """The name of a condition regularised in favour of selectivity."""
    where = "" if tuple(modules) == tuple(MODULES) else ", modules " + "-".join(
        str(claims.LAYER_NUMBER[m]) for m in (modules[0], modules[-1]))
    return f"α=+{alpha:g}, {_span(start, stop)}{where}"


