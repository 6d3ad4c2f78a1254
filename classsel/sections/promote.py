"""Section 4.6 and A.5.2 (Figs. 13, 14): regularising in favour of selectivity, with small strengths in
every module and a large one in modules 4-6."""

from __future__ import annotations

from .. import claims
from .. import params as P
from ..claims import BASELINE
from ..config import MODULES, REGULARIZED
from .base import UNANALYSED, Section, favour, metrics_of
from .declaration import Declaration, Param
from .regularize import PRESETS as REGULARIZE

PARAMS = (
    Param("alphas", None, "positive strengths (Fig. 14); None: the preset's ({presets})"),
    Param("schedules", None, "[start, stop] epochs of regularisation, fitted to the epochs; None: the preset's "
                             "({presets})"),
    Param("modules", list(MODULES), "Fig. 14: all modules"),
    Param("strong_alpha", None, "Fig. 13: a large strength in modules 4-6 over the first schedule; 0: none; "
                                "None: the preset's ({presets})"),
)
#: The paper promotes at alpha 1 and 5 to epoch 4 or 1 (Fig. 14), and at 20 in modules 4-6 (Fig. 13).
PRESETS = {
    "smoke": dict(seeds=2, alphas=[5.0], schedules=[[0, 1]]),
    "mnist": dict(seeds=5, alphas=[5.0], schedules=[[0, 2]]),
    "cifar10": dict(seeds=3, alphas=[5.0], schedules=[[0, 4], [0, 1]]),
    "imagenet": dict(seeds=5, epochs=REGULARIZE["imagenet"]["epochs"], alphas=[1.0, 5.0], schedules=[[0, 4], [0, 1]]),
    "default": dict(seeds=3, strong_alpha=20.0),
}


def schedules(d, epochs: int) -> list[tuple[int, int]]:
    """The preset's schedules fitted to ``epochs`` (always valid pairs)."""
    return list(dict.fromkeys((start, min(stop, epochs)) for start, stop in d("schedules") if start < epochs))


def check(p, ns, d) -> None:
    p.alphas = P.numbers_("alphas", d("alphas") if ns["alphas"] is None else ns["alphas"], sign=+1)
    p.schedules = P.pairs("schedules", schedules(d, p.epochs) if ns["schedules"] is None else ns["schedules"],
                          p.epochs)
    p.modules = P.modules("modules", ns["modules"])
    strong = d("strong_alpha") if ns["strong_alpha"] is None else ns["strong_alpha"]
    p.strong_alpha = None if P.is_zero(strong) else P.number("strong_alpha", strong, sign=+1)


def conditions(p) -> dict[str, dict]:
    asks = {favour(alpha, start, stop): dict(alpha=alpha, reg_start=start, reg_stop=stop, reg_modules=p.modules)
            for alpha in p.alphas for start, stop in p.schedules}
    if p.strong_alpha is not None:
        start, stop = p.schedules[0]
        asks[favour(p.strong_alpha, start, stop, REGULARIZED)] = dict(
            alpha=p.strong_alpha, reg_start=start, reg_stop=stop, reg_modules=REGULARIZED)
    return {BASELINE: {}, **{name: {**fields, **UNANALYSED} for name, fields in asks.items()}}


def compute(p, groups) -> Section:
    windows = {name: (f["reg_start"], p.epochs if f["reg_stop"] is None else f["reg_stop"])
               for name, f in conditions(p).items() if name != BASELINE}
    strong = [favour(p.strong_alpha, *p.schedules[0], REGULARIZED)] if p.strong_alpha is not None else []
    small = [name for name in windows if name not in strong]
    metrics = metrics_of(groups)
    found = [claims.promotion(metrics, {k: windows[k] for k in small}, modules=p.modules, figure="Fig. 14",
                              target="fig-05-small")]
    if strong:
        found.append(claims.promotion(metrics, {k: windows[k] for k in strong}, modules=REGULARIZED,
                                      figure="Fig. 13", target="fig-05-strong"))
    sets = {"small": [BASELINE, *small], "strong": [BASELINE, *strong]}
    return Section("05_promote", groups, {"metrics": metrics}, found, windows, sets)


DECLARATION = Declaration("promote", "05_promote", PARAMS, PRESETS, check, conditions, compute,
                          notes={"epochs": "; imagenet: the paper's"})
