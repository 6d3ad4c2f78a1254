"""Section 4.2 and A.2 (Figs. 3, 8): selective against random ablation over training."""

from __future__ import annotations

from .. import claims, experiments
from .. import params as P
from ..claims import BASELINE
from .base import Section
from .declaration import Declaration, Param
from .emergence import SEEDS, baseline

PER_CLASS = Param("ablation_per_class", None,
                  'validation images per class whose accuracy the ablation measures (the units are ranked by '
                  'the SI of all of them); "all": every one; None: the preset\'s ({presets})')
#: mnist: 50 of the 100 validation images per class halve the cost of the ablations, the largest part of
#: the build after training; the 10 networks' differences between two such halves are a tenth of their
#: spread across seeds or less, and every claim's verdict, and every tested row's, is the same on either
#: half as on all 1,000 images (the note of issue 17, 2026-12-01).
PER_CLASS_PRESETS = {"smoke": "all", "mnist": 50, "imagenet": "all", "default": "all"}

PARAMS = (
    Param("ablation_epochs", None,
          "checkpoints to ablate, in epochs (fractions allowed: the nearest evaluation point is used); None: "
          "the preset's ({presets}), then every 10th epoch and the last (mnist's networks stay near chance for "
          "the first half epoch, where ablation measures nothing)"),
    Param("levels", 6, "counts k per curve, evenly spaced from 0 to all units of a block"),
    Param("draws", 2, "random-order draws per curve (the control)"),
    PER_CLASS,
)
PRESETS = {preset: {**SEEDS[preset], "ablation_epochs": epochs, "ablation_per_class": PER_CLASS_PRESETS[preset]}
           for preset, epochs in (("smoke", [0.2]), ("mnist", [0.65, 0.8, 1, 2]), ("imagenet", list(range(11))),
                                  ("default", [0, 0.125, 0.25, 0.5, 1, 2]))}


def check(p, ns, d) -> None:
    if ns["ablation_epochs"] is None:
        grid = d("ablation_epochs")
        p.ablation_epochs = sorted({e for e in [*grid, *range(10, p.epochs, 10)] if e < p.epochs} | {p.epochs})
    else:
        p.ablation_epochs = P.epochs_list("ablation_epochs", ns["ablation_epochs"], p.epochs)
    p.levels = P.integer("levels", ns["levels"], 2)
    p.draws = P.integer("draws", ns["draws"], 1)
    check_per_class(p, ns, d)


def check_per_class(p, ns, d) -> None:
    chosen = ns["ablation_per_class"]
    p.ablation_per_class = P.per_class("ablation_per_class", d("ablation_per_class") if chosen is None else chosen)


def options(p) -> dict:
    """The ablation's options, as the plan and the computation both pass them."""
    return dict(levels=p.levels, draws=p.draws, per_class=p.ablation_per_class)


def analyses(p):
    return [("ablation", p.ablation_epochs, options(p))]


def compute(p, groups) -> Section:
    base = groups[BASELINE]
    curves = experiments.ablation_over_training(base, p.ablation_epochs, **options(p))
    chance = 1 / base[0].classes()
    # a network at chance has nothing to lose: the early window starts where it is above it
    return Section("02_ablation", groups, {"ablation": curves, "auc": claims.auc_difference(curves)},
                   [claims.ablation_early_late(curves, min_accuracy=2 * chance), claims.ablation_final(curves)])


DECLARATION = Declaration("ablation", "02_ablation", PARAMS, PRESETS, check, baseline, compute, analyses)
