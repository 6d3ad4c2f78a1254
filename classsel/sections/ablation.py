"""Section 4.2 and A.2 (Figs. 3, 8): selective against random ablation over training."""

from __future__ import annotations

from .. import claims, experiments
from .. import params as P
from ..claims import BASELINE
from .base import Section
from .declaration import Declaration, Param
from .emergence import SEEDS, baseline

PARAMS = (
    Param("ablation_epochs", None,
          "checkpoints to ablate, in epochs (fractions allowed: the nearest evaluation point is used); None: "
          "the preset's ({presets}), then every 10th epoch and the last (mnist's networks stay near chance for "
          "the first half epoch, where ablation measures nothing)"),
    Param("levels", 6, "counts k per curve, evenly spaced from 0 to all units of a block"),
    Param("draws", 2, "random-order draws per curve (the control)"),
)
PRESETS = {**SEEDS, "smoke": {**SEEDS["smoke"], "ablation_epochs": [0.2]},
           "mnist": {**SEEDS["mnist"], "ablation_epochs": [0.65, 0.8, 1, 2]},
           "imagenet": {**SEEDS["imagenet"], "ablation_epochs": list(range(11))},
           "default": {**SEEDS["default"], "ablation_epochs": [0, 0.125, 0.25, 0.5, 1, 2]}}


def check(p, ns, d) -> None:
    if ns["ablation_epochs"] is None:
        grid = d("ablation_epochs")
        p.ablation_epochs = sorted({e for e in [*grid, *range(10, p.epochs, 10)] if e < p.epochs} | {p.epochs})
    else:
        p.ablation_epochs = P.epochs_list("ablation_epochs", ns["ablation_epochs"], p.epochs)
    p.levels = P.integer("levels", ns["levels"], 2)
    p.draws = P.integer("draws", ns["draws"], 1)


def analyses(p):
    return [("ablation", p.ablation_epochs, dict(levels=p.levels, draws=p.draws))]


def compute(p, groups) -> Section:
    base = groups[BASELINE]
    curves = experiments.ablation_over_training(base, p.ablation_epochs, levels=p.levels, draws=p.draws)
    chance = 1 / base[0].classes()
    # a network at chance has nothing to lose: the early window starts where it is above it
    return Section("02_ablation", groups, {"ablation": curves, "auc": claims.auc_difference(curves)},
                   [claims.ablation_early_late(curves, min_accuracy=2 * chance), claims.ablation_final(curves)])


DECLARATION = Declaration("ablation", "02_ablation", PARAMS, PRESETS, check, baseline, compute, analyses)
