"""Section 4.7 and A.5.4 (Fig. 16): how many of the predictions fall in the five most predicted
classes, with and without the regulariser."""

from __future__ import annotations

import pandas as pd

from .. import claims, runs
from .. import params as P
from ..claims import BASELINE
from ..config import MODULES, REGULARIZED
from .base import UNANALYSED, Section, against, favour, metrics_of
from .declaration import Declaration, Param
from .promote import PRESETS as PROMOTE
from .promote import schedules

PARAMS = (
    Param("suppress_alpha", -20.0, "against selectivity, modules 4-6 from epoch 0 (chapter 04)"),
    Param("promote_alpha", 5.0, "in favour of selectivity (chapter 05's first default)"),
    Param("promote_schedule", None, "[start, stop]; None: chapter 05's first default ({presets})"),
    Param("promote_modules", list(MODULES), "chapter 05's default"),
    Param("early_until", 1.0, '"early": evaluation points after initialisation up to this epoch'),
)
#: Chapter 05's first schedule, so that its runs are reused.
PRESETS = {preset: {"seeds": table.get("seeds", 3), **({"epochs": table["epochs"]} if "epochs" in table else {}),
                    "promote_schedule": table.get("schedules", [[0, 4]])[0]}
           for preset, table in PROMOTE.items()}


def check(p, ns, d) -> None:
    p.suppress_alpha = P.number("suppress_alpha", ns["suppress_alpha"], sign=-1)
    p.promote_alpha = P.number("promote_alpha", ns["promote_alpha"], sign=+1)
    first = schedules(lambda name: [d("promote_schedule")], p.epochs)
    schedule = first[0] if ns["promote_schedule"] is None and first else ns["promote_schedule"]
    p.promote_start, p.promote_stop = P.pair("promote_schedule", schedule, p.epochs)
    p.promote_modules = P.modules("promote_modules", ns["promote_modules"])
    p.early_until = P.number("early_until", ns["early_until"], low=0, high=p.epochs)


def conditions(p) -> dict[str, dict]:
    return {
        BASELINE: {},
        against(p.suppress_alpha): dict(alpha=p.suppress_alpha, reg_modules=REGULARIZED, **UNANALYSED),
        favour(p.promote_alpha, p.promote_start, p.promote_stop, p.promote_modules): dict(
            alpha=p.promote_alpha, reg_start=p.promote_start, reg_stop=p.promote_stop,
            reg_modules=p.promote_modules, **UNANALYSED)}


def compute(p, groups) -> Section:
    metrics = metrics_of(groups)
    counts = pd.concat([runs.load_predictions(rs).assign(condition=n) for n, rs in groups.items()],
                       ignore_index=True)
    return Section("06_class_representation", groups, {"metrics": metrics, "prediction_counts": counts},
                   [claims.class_representation(metrics, early_until=p.early_until)])


DECLARATION = Declaration("class_representation", "06_class_representation", PARAMS, PRESETS, check, conditions,
                          compute, notes={"epochs": "; imagenet: the paper's"})
