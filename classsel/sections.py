"""The paper's sections as computations: for each, the runs it needs, the tables it measures
and the claims it tests (:mod:`classsel.claims`). A section notebook calls one of these and
draws :mod:`classsel.figures` from the tables; the "What reproduces" page calls them all.

Each function takes a notebook's checked parameters (:func:`classsel.params.check`);
:func:`defaults` gives those of a notebook left at its parameters cell's values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from . import claims, experiments, params, runs
from .claims import BASELINE
from .plan import Plan, fulfil
from .config import CKA_LAYERS, MODULES, REGULARIZED, default_preset

#: Each notebook's parameters cell, as the library's defaults (a test checks the notebooks agree).
DEFAULTS = {
    "emergence": {},
    "ablation": dict(ablation_epochs=None, levels=6, draws=2),
    "cka": dict(cka_epochs=None, layers=list(CKA_LAYERS)),
    "regularize": dict(alpha=-20.0, reg_starts=None, reg_stop=None, modules=list(REGULARIZED), alphas=None,
                       recover_stop=None),
    "promote": dict(alphas=None, schedules=None, modules=list(MODULES), strong_alpha=None),
    "class_representation": dict(suppress_alpha=-20.0, promote_alpha=5.0, promote_schedule=None,
                                 promote_modules=list(MODULES), early_until=1.0),
}
COMMON = dict(seeds=None, epochs=None, data_root=None, overrides=None, out_dir=None)


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


def defaults(section: str, preset: str | None = None, **values) -> SimpleNamespace:
    """The checked parameters of ``section``'s notebook at its defaults (``values`` changed)."""
    ns = {**COMMON, "preset": preset or default_preset(), **DEFAULTS[section], **values}
    return params.check(section, ns)


def _metrics(groups: dict[str, list[runs.Run]]) -> pd.DataFrame:
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
        str(claims.PAPER_NUMBER[m]) for m in (modules[0], modules[-1]))
    return f"α=+{alpha:g}, {_span(start, stop)}{where}"


# ----------------------------------------------------------------------------- the six sections
#
# Each section is two functions: its plan (the runs of each condition and the analyses it reads,
# from its parameters alone) and its computation (the tables and claims, from the runs of the plan).

#: Runs that no analysis reads keep only their last checkpoint (a results pack or a branch needs no more).
UNANALYSED = dict(keep_checkpoints="last")


def _baseline_plan(p) -> dict[str, dict]:
    return {BASELINE: {}}


def emergence(p, groups) -> Section:
    """Section 4.1 (Figs. 2, 9): the baseline's SI per module and per block over training."""
    base = groups[BASELINE]
    metrics = runs.load_metrics(base).assign(condition=BASELINE)
    blocks = runs.load_units(base).groupby(["seed", "step", "epoch", "module", "block"], as_index=False)["si"].mean()
    return Section("01_emergence", groups, {"metrics": metrics, "si_per_block": blocks},
                   [claims.emergence(metrics), claims.emergence_per_block(blocks)])


def _ablation_analyses(p):
    return [("ablation", p.ablation_epochs, dict(levels=p.levels, draws=p.draws))]


def ablation(p, groups) -> Section:
    """Section 4.2 and A.2 (Figs. 3, 8): selective against random ablation over training."""
    base = groups[BASELINE]
    curves = experiments.ablation_over_training(base, p.ablation_epochs, levels=p.levels, draws=p.draws)
    chance = 1 / experiments.val_loader(base[0])[1]
    # a network at chance has nothing to lose: the early window starts where it is above it
    return Section("02_ablation", groups, {"ablation": curves, "auc": claims.auc_difference(curves)},
                   [claims.ablation_early_late(curves, min_accuracy=2 * chance), claims.ablation_final(curves)])


def _cka_analyses(p):
    return [("cka", p.cka_epochs, dict(layers=tuple(p.layers)))]


def cka(p, groups) -> Section:
    """Section 4.3 and A.4 (Figs. 5, 10): CKA between every pair of layers over training."""
    matrices = experiments.cka_over_training(groups[BASELINE], p.cka_epochs, p.layers)
    later = [name for name in p.layers[-2:] if name != p.layers[0]]
    return Section("03_cka", groups, {"cka": matrices},
                   [claims.cka_early_late(matrices, p.layers[0], later), claims.cka_all_pairs(matrices, p.layers)])


def _regularize_plan(p) -> dict[str, dict]:
    asks = {against(p.alpha, s, p.reg_stop): dict(alpha=p.alpha, reg_start=s, reg_stop=p.reg_stop,
                                                  reg_modules=p.modules) for s in p.reg_starts}
    asks |= {against(a): dict(alpha=a, reg_modules=p.modules) for a in p.alphas if a != p.alpha}
    if p.recover_stop is not None:
        asks[against(p.alpha, 0, p.recover_stop)] = dict(alpha=p.alpha, reg_stop=p.recover_stop,
                                                         reg_modules=p.modules)
    return {BASELINE: {}, **{name: {**fields, **UNANALYSED} for name, fields in asks.items()}}


def regularize(p, groups) -> Section:
    """Sections 4.4, 4.5, A.5.1, A.5.3 (Figs. 6, 7, 11, 12, 15): suppressing selectivity from
    several epochs, at several strengths, and released after the first epochs."""
    metrics = _metrics(groups)
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


def _promote_plan(p) -> dict[str, dict]:
    asks = {favour(alpha, start, stop): dict(alpha=alpha, reg_start=start, reg_stop=stop, reg_modules=p.modules)
            for alpha in p.alphas for start, stop in p.schedules}
    if p.strong_alpha is not None:
        start, stop = p.schedules[0]
        asks[favour(p.strong_alpha, start, stop, REGULARIZED)] = dict(
            alpha=p.strong_alpha, reg_start=start, reg_stop=stop, reg_modules=REGULARIZED)
    return {BASELINE: {}, **{name: {**fields, **UNANALYSED} for name, fields in asks.items()}}


def promote(p, groups) -> Section:
    """Section 4.6 and A.5.2 (Figs. 13, 14): regularising in favour of selectivity, with small
    strengths in every module and (``strong_alpha``) a large one in modules 4-6."""
    windows = {name: (f["reg_start"], p.epochs if f["reg_stop"] is None else f["reg_stop"])
               for name, f in _promote_plan(p).items() if name != BASELINE}
    strong = [favour(p.strong_alpha, *p.schedules[0], REGULARIZED)] if p.strong_alpha is not None else []
    small = [name for name in windows if name not in strong]
    metrics = _metrics(groups)
    found = [claims.promotion(metrics, {k: windows[k] for k in small}, modules=p.modules, figure="Fig. 14",
                              target="fig-05-small")]
    if strong:
        found.append(claims.promotion(metrics, {k: windows[k] for k in strong}, modules=REGULARIZED,
                                      figure="Fig. 13", target="fig-05-strong"))
    sets = {"small": [BASELINE, *small], "strong": [BASELINE, *strong]}
    return Section("05_promote", groups, {"metrics": metrics}, found, windows, sets)


def _class_representation_plan(p) -> dict[str, dict]:
    return {
        BASELINE: {},
        against(p.suppress_alpha): dict(alpha=p.suppress_alpha, reg_modules=REGULARIZED, **UNANALYSED),
        favour(p.promote_alpha, p.promote_start, p.promote_stop, p.promote_modules): dict(
            alpha=p.promote_alpha, reg_start=p.promote_start, reg_stop=p.promote_stop,
            reg_modules=p.promote_modules, **UNANALYSED)}


def class_representation(p, groups) -> Section:
    """Section 4.7 and A.5.4 (Fig. 16): how many of the predictions fall in the five most
    predicted classes, with and without the regulariser."""
    metrics = _metrics(groups)
    counts = pd.concat([runs.load_predictions(rs).assign(condition=n) for n, rs in groups.items()],
                       ignore_index=True)
    return Section("06_class_representation", groups, {"metrics": metrics, "prediction_counts": counts},
                   [claims.class_representation(metrics, early_until=p.early_until)])


#: Each section: (its conditions, {name: configuration fields}; the analyses of its baseline runs,
#: [(kind, epochs, options)]; its computation from the runs).
SECTIONS = {
    "emergence": (_baseline_plan, lambda p: [], emergence),
    "ablation": (_baseline_plan, _ablation_analyses, ablation),
    "cka": (_baseline_plan, _cka_analyses, cka),
    "regularize": (_regularize_plan, lambda p: [], regularize),
    "promote": (_promote_plan, lambda p: [], promote),
    "class_representation": (_class_representation_plan, lambda p: [], class_representation),
}


def _planned(section: str, p) -> tuple[Plan, dict[str, list[runs.Run]]]:
    conditions, analyses, _ = SECTIONS[section]
    found = Plan()
    groups = {name: found.train(p.setting.config(**fields), p.seeds) for name, fields in conditions(p).items()}
    for kind, epochs, options in analyses(p):
        for run in groups[BASELINE]:
            found.analyse(kind, run, epochs, **options)
    return found, groups


def plan(section: str, p) -> Plan:
    """The runs and analyses section ``section`` needs with the checked parameters ``p``."""
    return _planned(section, p)[0]


def compute(section: str, p, jobs: int | None = None) -> Section:
    """The section's tables and claims: its plan fulfilled first (nothing to do when it was, by
    ``python -m classsel reproduce`` or an earlier run), then read from the run store."""
    needed, groups = _planned(section, p)
    fulfil(needed, jobs=jobs)
    return SECTIONS[section][2](p, groups)


def notebook(section: str, ns: dict) -> tuple[SimpleNamespace, Section]:
    """What a chapter notebook does before its figures: check its parameters (read from its
    namespace ``ns``), compute the section, save its tables and claims to the results folder,
    and glue the runs' provenance for the captions (``{glue:md}`prov```)."""
    from . import book, figures

    p = params.check(section, ns)
    figures.setup()
    result = compute(section, p)
    result.save(p.out)
    book.glue_text("prov", result.provenance())
    return p, result


#: The figure label of each of the paper's six claims (DESIGN: "The paper's claims"); the rest
#: of a section's claims are the appendix findings.
MAIN_CLAIMS = {"fig-01-si": 1, "fig-02-auc": 2, "fig-03-cka": 3, "fig-04-acc": 4, "fig-05-small": 5,
               "fig-06-top5": 6}


def what_reproduces(preset: str | None = None, **common) -> pd.DataFrame:
    """The "What reproduces" table: every claim of every section at the notebooks' defaults, the
    six main claims first (column ``claim_number``; 0 for an appendix finding)."""
    table = pd.concat([compute(s, defaults(s, preset, **common)).summary() for s in SECTIONS], ignore_index=True)
    table["claim_number"] = table.target.map(MAIN_CLAIMS).fillna(0).astype(int)
    return table.sort_values(["claim_number"], key=lambda n: n.where(n > 0, 99), kind="stable", ignore_index=True)


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """:func:`what_reproduces` as a MyST markdown table: each claim with a link to its figure, then
    the verdict and the numbers behind it, the effect's wording last (on a narrow page the columns
    a reader needs first stay in view)."""
    lines = ["| | Claim | Verdict | Estimate (95% CI) | Seeds | Tested effects agreeing | Effect |",
             "|---|---|---|---|---|---|---|"]
    for r in table.to_dict("records"):
        number = f"{r['claim_number']}" if r["claim_number"] else "appendix"
        link = f"{{ref}}`paper {r['figure']} <{r['target']}>`"  # MyST: the book links to the figure
        estimate = ("— (no seed with a defined effect)" if math.isnan(r["estimate"])
                    else f"{r['estimate']:.{digits}f} ({r['95% CI']})")
        lines.append(f"| {number} | {r['claim']} ({link}) | **{r['verdict']}** | {estimate} | {r['seeds']} "
                     f"| {r['agreeing']} | {r['effect']} |")
    return "\n".join(lines)
