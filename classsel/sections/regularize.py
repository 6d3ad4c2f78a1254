"""Sections 4.4, 4.5, A.5.1 and A.5.3 (Figs. 6, 7, 11, 12, 15): suppressing selectivity from several
epochs, at several strengths, and released after the first epochs."""

from __future__ import annotations

from .. import claims
from .. import params as P
from ..claims import BASELINE
from ..config import REGULARIZED
from .base import UNANALYSED, Section, against, metrics_of
from .declaration import Declaration, Param

PARAMS = (
    Param("alpha", -20.0, "regulariser strength; negative suppresses selectivity"),
    Param("reg_starts", None, "epochs from which to regularise (Fig. 7), within the epochs; None: the "
                              "preset's ({presets})"),
    Param("reg_stop", None, "first epoch no longer regularised (None: to the end)"),
    Param("modules", list(REGULARIZED), "the paper's modules 4-6"),
    Param("alphas", None, "other strengths from epoch 0 (Figs. 11, 12); [] for none; None: the preset's "
                          "({presets})"),
    Param("recover_stop", None, "Fig. 15: also regularise epochs 0..recover_stop-1 only, then release; 0: "
                                "none; None: the preset's ({presets})"),
)
#: The paper regularises to epoch 20, from epochs 0 to 5 (Fig. 7), at alpha -1 to -20 (Figs. 11, 12),
#: and releases after the first 4 epochs (Fig. 15); five networks per condition.
PRESETS = {
    "smoke": dict(seeds=2),
    "mnist": dict(seeds=5),
    "imagenet": dict(seeds=5, epochs=20, reg_starts=[0, 1, 2, 3, 4, 5], alphas=[-1.0, -5.0, -10.0],
                     recover_stop=4),
    "default": dict(seeds=3, reg_starts=[0, 2], alphas=[-5.0], recover_stop=2),
}


def check(p, ns, d) -> None:
    p.alpha = P.number("alpha", ns["alpha"], sign=-1)
    starts = sorted({min(s, p.epochs - 1) for s in d("reg_starts")}) if ns["reg_starts"] is None else ns["reg_starts"]
    p.reg_starts = P.integers("reg_starts", starts, 0, p.epochs - 1)
    p.reg_stop = P.integer("reg_stop", ns["reg_stop"], 1, p.epochs, allow_none=True)
    p.modules = P.modules("modules", ns["modules"])
    alphas = d("alphas") if ns["alphas"] is None else P.parse_text(ns["alphas"])
    p.alphas = [] if alphas == [] else P.numbers_("alphas", alphas, sign=-1)
    stop = (min(d("recover_stop"), p.epochs - 1) if p.epochs > 1 else 0) if ns["recover_stop"] is None \
        else ns["recover_stop"]
    p.recover_stop = P.integer("recover_stop", stop, 0, p.epochs - 1) or None


def conditions(p) -> dict[str, dict]:
    asks = {against(p.alpha, s, p.reg_stop): dict(alpha=p.alpha, reg_start=s, reg_stop=p.reg_stop,
                                                  reg_modules=p.modules) for s in p.reg_starts}
    asks |= {against(a): dict(alpha=a, reg_modules=p.modules) for a in p.alphas if a != p.alpha}
    if p.recover_stop is not None:
        asks[against(p.alpha, 0, p.recover_stop)] = dict(alpha=p.alpha, reg_stop=p.recover_stop,
                                                         reg_modules=p.modules)
    return {BASELINE: {}, **{name: {**fields, **UNANALYSED} for name, fields in asks.items()}}


def compute(p, groups) -> Section:
    metrics = metrics_of(groups)
    starts = [against(p.alpha, s, p.reg_stop) for s in p.reg_starts]
    found = []
    if len(starts) > 1:
        found.append(claims.suppression(metrics, starts[0], starts[1:], modules=p.modules))
    strengths = {against(a): a for a in p.alphas} | {against(p.alpha): p.alpha} if 0 in p.reg_starts else {}
    if len(strengths) > 1 and p.reg_stop is None:
        found += [claims.strengths_accuracy(metrics, strengths),
                  claims.strengths_selectivity(metrics, strengths, modules=p.modules)]
    windows, sets = {}, {"starts": [BASELINE, *starts], "strengths": [BASELINE, *strengths],
                         "fig6": [BASELINE, starts[0], starts[-1]] if len(starts) > 1 else [BASELINE, *starts]}
    if p.recover_stop is not None and 0 in p.reg_starts and p.reg_stop is None:
        released = against(p.alpha, 0, p.recover_stop)
        found.append(claims.recovery(metrics, released, against(p.alpha)))
        windows = {released: (0, p.recover_stop)}
        sets["recovery"] = [BASELINE, against(p.alpha), released]
    return Section("04_regularize", groups, {"metrics": metrics}, found, windows, sets)


DECLARATION = Declaration("regularize", "04_regularize", PARAMS, PRESETS, check, conditions, compute,
                          notes={"epochs": "; imagenet: the paper's"})
