"""Section 4.1 (Figs. 2, 9): selectivity rises in the first epochs, then recedes."""

from __future__ import annotations

from .. import claims, runs
from ..claims import BASELINE
from .base import Section
from .declaration import Declaration

#: Networks per preset (paper: 10 for the ablations and the selectivity curves).
SEEDS = {"smoke": dict(seeds=2), "mnist": dict(seeds=10), "cifar10": dict(seeds=3), "imagenet": dict(seeds=10),
         "default": dict(seeds=3)}


def compute(p, groups) -> Section:
    """The baseline's SI per module and per block over training."""
    base = groups[BASELINE]
    metrics = runs.load_metrics(base).assign(condition=BASELINE)
    blocks = runs.load_units(base).groupby(["seed", "step", "epoch", "module", "block"], as_index=False)["si"].mean()
    return Section("01_emergence", groups, {"metrics": metrics, "si_per_block": blocks},
                   [claims.emergence(metrics), claims.emergence_per_block(blocks)])


def baseline(p) -> dict[str, dict]:
    """Every baseline section's one condition: the unregularised runs, which they all share."""
    return {BASELINE: {}}


DECLARATION = Declaration("emergence", "01_emergence", (), SEEDS, check=lambda p, ns, d: None,
                          conditions=baseline, compute=compute)
