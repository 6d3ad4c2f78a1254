"""Section 4.3 and A.4 (Figs. 5, 10): CKA between every pair of layers over training."""

from __future__ import annotations

from .. import claims, experiments
from .. import params as P
from ..claims import BASELINE
from ..config import CKA_LAYERS
from .base import Section
from .declaration import Declaration, Param
from .emergence import SEEDS, baseline

PARAMS = (
    Param("cka_epochs", None, "None: every kept checkpoint; or a list of epochs (fractions allowed)"),
    Param("layers", list(CKA_LAYERS),
          "layers compared: at least two of the module outputs layer1..layer4 (modules 4-7) and the logits fc; "
          "Fig. 5 pairs the earliest of them with the two latest"),
)
#: Networks per preset (paper: 6 for CKA).
PRESETS = {**SEEDS, "mnist": dict(seeds=6), "imagenet": dict(seeds=6)}


def check(p, ns, d) -> None:
    p.cka_epochs = None if ns["cka_epochs"] is None else P.epochs_list("cka_epochs", ns["cka_epochs"], p.epochs)
    accepted = f"a list of at least two of {list(CKA_LAYERS)}"
    layers = P.as_list("layers", ns["layers"], accepted)
    if not all(isinstance(name, str) for name in layers) or len(set(layers)) < 2 or not set(layers) <= set(CKA_LAYERS):
        raise P.bad("layers", layers, accepted)
    p.layers = [name for name in CKA_LAYERS if name in layers]


def analyses(p):
    return [("cka", p.cka_epochs, dict(layers=tuple(p.layers)))]


def compute(p, groups) -> Section:
    matrices = experiments.cka_over_training(groups[BASELINE], p.cka_epochs, p.layers)
    later = [name for name in p.layers[-2:] if name != p.layers[0]]
    return Section("03_cka", groups, {"cka": matrices},
                   [claims.cka_early_late(matrices, p.layers[0], later), claims.cka_all_pairs(matrices, p.layers)])


DECLARATION = Declaration("cka", "03_cka", PARAMS, PRESETS, check, baseline, compute, analyses)
