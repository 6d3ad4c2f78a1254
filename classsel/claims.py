"""The paper's claims, each a small function of the tidy tables the runs and analyses produce.

Every function returns a :class:`Claim`: an effect table (one row per effect: its estimate,
the bootstrap 95% CI over seeds, the number of seeds, and where the CI includes zero the
largest effect it still allows), the verdict ``holds`` / ``in part`` / ``not supported``,
and the sentence that says so. Tables (columns each function reads):

- metrics: ``runs.load_metrics`` plus a ``condition`` column: epoch, seed, val_acc1,
  si_layer1..si_layer4, top5_count (one row per seed, condition and evaluation point);
- units: ``runs.load_units``: seed, epoch, module, block, si (one row per unit);
- ablation: ``experiments.ablation_over_training``: seed, epoch, module, number, order,
  draw, k, accuracy, normalized;
- cka: ``experiments.cka_over_training``: seed, epoch, a, b, cka.

Early against late never picks a peak and measures it on the same curves: the early
value is either the mean over a window fixed in advance (the paper's critical period:
the first epoch) or, for a peak, the value at the peak time chosen on the other half of
the seeds (:func:`classsel.stats.split_half_peak`).

How a verdict is reached (:func:`judge`): every effect row has a role. ``test`` rows carry
the paper's expectation (a CI above or below zero, or not above / not below it); the claim
holds when every test agrees, in part when some do, and is not supported when none does.
A ``precondition`` row (e.g. "the regulariser did lower selectivity") that fails makes the
claim untested, hence not supported. ``summary`` rows pool the tests into the headline
effect of :func:`summary`; ``context`` rows are reported only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from . import stats
from .ablation_curves import auc
from .architectures import LAYOUTS
from .config import MODULES, REGULARIZED

VERDICTS = ("holds", "in part", "not supported")
ROLES = ("test", "precondition", "summary", "context")
EXPECTATIONS = ("above 0", "below 0", "not above 0", "not below 0")
EFFECT_COLUMNS = ["group", "effect", "estimate", "ci_low", "ci_high", "seeds", "excludable", "expected",
                  "role", "agrees"]
EARLY_MODULES = REGULARIZED  # the paper's modules 4-6
LATE_LAYERS = ("layer4", "fc")  # module 7 and the logits
BASELINE = "unregularised"
#: The paper's number of every family's modules (ResNet's layer1..4, VGG's conv2..5, ...).
LAYER_NUMBER = {m: n for layout in LAYOUTS.values() for m, n in layout.numbers.items()}
LAYER_LABELS = {**{m: f"module {n}" for m, n in LAYER_NUMBER.items()},
                **{layout.logits: "FC" for layout in LAYOUTS.values()}}


def modules_in(names) -> list[str]:
    """The module names among ``names`` (of any family), in the paper's order 4-7."""
    return sorted({n for n in names if n in LAYER_NUMBER}, key=LAYER_NUMBER.get)


def _early(modules) -> list[str]:
    """The early and intermediate modules (4-6) among ``modules``."""
    return [m for m in modules if LAYER_NUMBER[m] <= 6]


def _numbers(modules) -> str:
    return ", ".join(str(LAYER_NUMBER[m]) for m in modules)
VERDICT_TEXT = {"holds": "The paper's claim holds at this scale",
                "in part": "The paper's claim holds only in part at this scale",
                "not supported": "At this scale the data do not support the paper's claim"}


@dataclass(frozen=True)
class Claim:
    """One claim of the paper tested on this reproduction's runs."""

    name: str
    paper_figure: str  # "Fig. 3", "Figs. 6, 7"
    expectation: str  # what the paper reports, in one sentence
    effects: pd.DataFrame = field(repr=False)  # EFFECT_COLUMNS
    verdict: str  # one of VERDICTS
    sentence: str  # the verdict in words, with the numbers behind it
    target: str = ""  # the book's label of the figure that shows it

    def markdown(self) -> str:
        """One bullet per effect, then the verdict sentence: what a notebook displays."""
        return "\n".join(effect_lines(self.effects)) + "\n\n" + self.sentence


# ----------------------------------------------------------------------------- verdicts


def agrees(expected: str, low: float, high: float) -> bool:
    """Whether a CI [low, high] is as ``expected`` (one of EXPECTATIONS); an undefined CI never is."""
    if expected not in EXPECTATIONS:
        raise ValueError(f"expected={expected!r} is not valid: expected one of {EXPECTATIONS}")
    if math.isnan(low) or math.isnan(high):
        return False
    s = stats.sign(low, high)
    return {"above 0": s == 1, "below 0": s == -1, "not above 0": s != 1, "not below 0": s != -1}[expected]


def opposite(expected: str, low: float, high: float) -> bool:
    """Whether a CI lies on the other side of zero than ``expected`` says."""
    s = stats.sign(low, high)
    return ((expected in ("above 0", "not below 0") and s == -1)
            or (expected in ("below 0", "not above 0") and s == 1))


def effect(group: str, name: str, interval: stats.Interval, expected: str = "",
           role: str = "context") -> dict:
    """One row of an effect table."""
    if role not in ROLES:
        raise ValueError(f"role={role!r} is not valid: expected one of {ROLES}")
    if role != "context" and not expected:
        raise ValueError(f"a {role} row needs an expectation from {EXPECTATIONS}")
    estimate, low, high, seeds = interval
    return {"group": group, "effect": name, "estimate": estimate, "ci_low": low, "ci_high": high,
            "seeds": seeds, "excludable": stats.excludable(low, high), "expected": expected, "role": role,
            "agrees": agrees(expected, low, high) if expected else None}


def judge(effects: pd.DataFrame) -> str:
    """holds: every test row agrees; in part: some do; not supported: none does, there is no
    test, or a precondition failed."""
    if (~effects.loc[effects.role == "precondition", "agrees"].astype(bool)).any():
        return "not supported"
    tests = effects.loc[effects.role == "test", "agrees"].astype(bool)
    return "holds" if len(tests) and tests.all() else "in part" if tests.any() else "not supported"


def effect_lines(effects: pd.DataFrame, digits: int = 3) -> list[str]:
    """One markdown bullet per effect row: estimate, CI, and how it compares with the paper."""
    lines = []
    for r in effects.itertuples():
        text = f"- **{r.group}**: {r.effect} {stats.fmt((r.estimate, r.ci_low, r.ci_high), digits)}"
        if r.expected:
            text += (", as the paper" if r.agrees else ", the opposite of the paper" if
                     opposite(r.expected, r.ci_low, r.ci_high) else ", not as the paper")
            text += f" (expected: {r.expected})"
        if not math.isnan(r.excludable):
            text += f"; the CI includes 0 and excludes effects beyond ±{r.excludable:.{digits}g}"
        lines.append(text + ".")
    return lines


def _names(rows: pd.DataFrame) -> str:
    return ", ".join(f"{g} ({e})" for g, e in zip(rows.group, rows.effect))


def sentence(verdict: str, figure: str, expectation: str, effects: pd.DataFrame,
             paper_seeds: int | None = None, note: str = "") -> str:
    """The verdict in words: which tested effects agree with the paper, which include zero
    (with the largest effect the data still allow), which lie on the other side."""
    tests = effects[effects.role == "test"]
    failed = effects[(effects.role == "precondition") & ~effects.agrees.astype(bool)]
    text = f"{VERDICT_TEXT[verdict]} ({figure}: {expectation})."
    if len(failed):
        text += f" It is not tested here: the precondition {_names(failed)} is not met."
    if len(tests):
        agree = tests[tests.agrees.astype(bool)]
        text += f" {len(agree)} of {len(tests)} tested effects are as the paper reports."
        against = tests[[opposite(*r) for r in zip(tests.expected, tests.ci_low, tests.ci_high)]]
        if len(against):
            text += f" Opposite to the paper: {_names(against)}."
        unclear = tests[tests.excludable.notna() & ~tests.agrees.astype(bool)]
        if len(unclear):
            bound = unclear.excludable.max()
            text += (f" The CI includes zero for {_names(unclear)}: no effect is shown, and effects "
                     f"larger than ±{bound:.3g} are excluded.")
    counted = tests if len(tests) else effects
    seeds = int(counted.seeds.min()) if len(counted) else 0
    if seeds < 2:
        text += " Fewer than two seeds with a defined effect: no CI can be computed."
    else:
        used = f" (the paper used {paper_seeds})" if paper_seeds and seeds < paper_seeds else ""
        text += f" Bootstrap 95% CIs over {seeds} seeds{used}."
    return text + (f" {note}" if note else "")


def make(name: str, figure: str, expectation: str, rows: list[dict], target: str = "",
         paper_seeds: int | None = None, note: str = "") -> Claim:
    """A :class:`Claim` from its effect rows: verdict by :func:`judge`, words by :func:`sentence`."""
    effects = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    verdict = judge(effects)
    return Claim(name, figure, expectation, effects, verdict,
                 sentence(verdict, figure, expectation, effects, paper_seeds, note), target)


def headline(effects: pd.DataFrame) -> pd.Series:
    """The row that sums a claim up: the first ``summary`` row, else the first ``test`` row
    (all NaN where there is neither)."""
    for role in ("summary", "test"):
        rows = effects[effects.role == role]
        if len(rows):
            return rows.iloc[0]
    return pd.Series({"group": "", "effect": "", "estimate": math.nan, "ci_low": math.nan,
                      "ci_high": math.nan, "seeds": 0, "excludable": math.nan})


def summary(claims: Sequence[Claim]) -> pd.DataFrame:
    """The "What reproduces" table: one row per claim with its headline effect, the 95% CI, the
    seeds, how many tested effects agree with the paper, the verdict and the figure's label."""
    rows = []
    for c in claims:
        h = headline(c.effects)
        tests = c.effects[c.effects.role == "test"]
        ci = "undefined" if math.isnan(h.ci_low) else f"{h.ci_low:.3g} to {h.ci_high:.3g}"
        rows.append({"claim": c.name, "figure": c.paper_figure,
                     "effect": f"{h.effect}, {h.group}".strip(", "), "estimate": h.estimate, "95% CI": ci,
                     "ci_low": h.ci_low, "ci_high": h.ci_high,
                     "seeds": int(h.seeds), "excludable": h.excludable,
                     "agreeing": f"{int(tests.agrees.astype(bool).sum())} of {len(tests)}",
                     "verdict": c.verdict, "target": c.target})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- table helpers


def _check(table: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"the {what} table lacks column(s) {missing}; it has {list(table.columns)}")


def condition(metrics: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one condition, or an error naming the conditions there are."""
    _check(metrics, ["condition"], "metrics")
    rows = metrics[metrics.condition == name]
    if rows.empty:
        raise ValueError(f"condition {name!r} is not in the metrics table; it has "
                         f"{list(metrics.condition.unique())}")
    return rows


def _with_mean_si(metrics: pd.DataFrame, modules: Sequence[str]) -> pd.DataFrame:
    """metrics with ``si_regularised``: the mean SI of ``modules`` (the regularised ones)."""
    return metrics.assign(si_regularised=metrics[[f"si_{m}" for m in modules]].mean(axis=1))


def _peak_window(table: pd.DataFrame, early_until: float | None) -> float:
    """The last time a peak may be chosen: before the last evaluation point, up to ``early_until``."""
    times = sorted(table.epoch.unique())
    stop = times[-2] if len(times) > 1 else -math.inf
    return stop if early_until is None else min(stop, early_until)


def _pooled(series: Sequence[pd.Series]) -> stats.Interval:
    """The CI of the per-seed mean of several per-seed effects (e.g. over modules 4-6)."""
    if not series:
        return stats.mean_ci([])
    return stats.mean_ci(pd.concat(series, axis=1).mean(axis=1, skipna=False))


# ----------------------------------------------------------------------------- claim 1


def _rise_and_recede(table: pd.DataFrame, value: str, group: str, tested: bool,
                     early_until: float | None) -> tuple[list[dict], pd.Series]:
    """Rows for the rise (held-out peak minus initial) and recession (held-out peak minus final)."""
    initial = stats.at_time(table, value, 0.0)
    peak = stats.split_half_peak(table, value, start=0.0, stop=_peak_window(table, early_until))["value"]
    final = stats.last(table, value)
    recede = peak - final
    role = "test" if tested else "context"
    rise_row = effect(group, "peak minus initial SI", stats.paired_ci(peak, initial), "above 0", role)
    recede_row = effect(group, "peak minus final SI", stats.paired_ci(peak, final),
                        "above 0" if tested else "", role)
    return [rise_row, recede_row], recede


def emergence(metrics: pd.DataFrame, tested: Sequence[str] | None = None, early_until: float | None = None,
              target: str = "fig-01-si") -> Claim:
    """Claim 1, paper section 4.1, Fig. 2: mean SI in modules 4-6 rises during the first epochs,
    then recedes (in module 7 it rises and stays).

    Per seed and module: the SI at the peak time chosen on the other half of the seeds
    (after initialisation, before the last evaluation point, up to ``early_until``) minus
    the SI at initialisation (rise) and minus the final SI (recession); both > 0 for every
    module in ``tested``. Headline: the recession, mean over the tested modules.
    Reads metrics: seed, epoch, si_<module> of each module (one condition); ``tested`` None: modules 4-6."""
    modules = modules_in(c.removeprefix("si_") for c in metrics.columns if c.startswith("si_"))
    _check(metrics, ["seed", "epoch", *(f"si_{m}" for m in modules or MODULES)], "metrics")
    tested = _early(modules) if tested is None else tested
    rows, recessions = [], []
    for module in modules:
        found, recede = _rise_and_recede(metrics, f"si_{module}", LAYER_LABELS[module], module in tested,
                                         early_until)
        rows += found
        if module in tested:
            recessions.append(recede)
    label = f"modules {_numbers(tested)} (mean)"
    rows.insert(0, effect(label, "peak minus final SI", _pooled(recessions), "above 0", "summary"))
    return make("Selectivity rises early, then recedes", "Fig. 2",
                "mean SI of modules 4-6 rises in the first epochs, then recedes", rows, target)


def emergence_per_block(units: pd.DataFrame, tested: Sequence[str] | None = None,
                        early_until: float | None = None, target: str = "fig-01-blocks") -> Claim:
    """Appendix, Fig. 9: the rise and recession of claim 1 in every bottleneck block.

    As :func:`emergence`, with each block's mean SI over its units in place of a module's.
    Reads units: seed, epoch, module, block, si."""
    _check(units, ["seed", "epoch", "module", "block", "si"], "units")
    tested = _early(modules_in(units.module.unique())) if tested is None else tested
    blocks = units.groupby(["module", "block", "seed", "epoch"], as_index=False)["si"].mean()
    rows = []
    for (module, block), table in blocks.groupby(["module", "block"], sort=True):
        rows += _rise_and_recede(table, "si", f"{LAYER_LABELS[module]}, block {block}", module in tested,
                                 early_until)[0]
    return make("Every bottleneck block rises and recedes", "Fig. 9",
                "each bottleneck block of modules 4-6 follows the module's rise and recession", rows, target)


# ----------------------------------------------------------------------------- claim 2 and Fig. 8


def auc_difference(ablation: pd.DataFrame) -> pd.DataFrame:
    """Per seed, checkpoint and module: the area under the selective and the random ablation
    curves (random draws averaged) and ``delta`` = selective - random (negative: ablating the
    selective units costs more accuracy)."""
    _check(ablation, ["seed", "epoch", "module", "number", "order", "draw", "normalized"], "ablation")
    areas = auc(ablation, by=("seed", "epoch")).groupby(["seed", "epoch", "module", "order"])["auc"].mean()
    wide = areas.unstack("order").reset_index()
    return wide.assign(delta=wide["selective"] - wide["random"])


def _early_checkpoints(ablation: pd.DataFrame, early_until: float, min_accuracy: float) -> list[float]:
    """The trained checkpoints in (0, early_until] whose unablated accuracy (mean over seeds) is at
    least ``min_accuracy`` (a network at chance has nothing to lose), the last one excluded; if
    none, the first trained checkpoint that qualifies."""
    base = ablation[ablation.k == 0].groupby("epoch")["accuracy"].mean() if "k" in ablation else None
    times = sorted(ablation.epoch.unique())
    learned = [t for t in times[:-1] if t > 0 and (base is None or base[t] >= min_accuracy)]
    return [t for t in learned if t <= early_until] or learned[:1]


def ablation_early_late(ablation: pd.DataFrame, tested: Sequence[str] | None = None,
                        early_until: float = 1.0, min_accuracy: float = 0.0,
                        target: str = "fig-02-auc") -> Claim:
    """Claim 2, paper section 4.2, Fig. 3: ablating the most selective units costs more
    accuracy, relative to random ablation, early in training than late.

    Per seed and module: delta = AUC(selective) - AUC(random); early = its mean over the
    fixed window of checkpoints in (0, early_until] above ``min_accuracy`` (see
    :func:`_early_checkpoints`), late = at the last checkpoint; the change late - early is
    > 0 in every module of ``tested``. Reads ablation: seed, epoch, module, number, order,
    draw, k, accuracy, normalized."""
    wide = auc_difference(ablation)
    modules = modules_in(wide.module.unique())
    tested = _early(modules) if tested is None else tested
    early_epochs = _early_checkpoints(ablation, early_until, min_accuracy)
    last = wide.epoch.max()
    rows, changes = [], []
    for module in modules:
        m = wide[wide.module == module]
        early = m[m.epoch.isin(early_epochs)].groupby("seed")[["selective", "random", "delta"]].mean()
        late = m[m.epoch == last].set_index("seed")[["selective", "random", "delta"]]
        group, role = LAYER_LABELS[module], "test" if module in tested else "context"
        change = late.delta - early.delta
        rows.append(effect(group, "change in selective minus random AUC, late minus early",
                           stats.paired_ci(late.delta, early.delta), "above 0" if role == "test" else "",
                           role))
        rows += [effect(group, "selective minus random AUC, early", stats.mean_ci(early.delta)),
                 effect(group, "selective minus random AUC, late", stats.mean_ci(late.delta)),
                 effect(group, "selective AUC, late minus early",
                        stats.paired_ci(late.selective, early.selective)),
                 effect(group, "random AUC, late minus early", stats.paired_ci(late.random, early.random))]
        if module in tested:
            changes.append(change.dropna())
    label = f"modules {_numbers(tested)} (mean)"
    rows.insert(0, effect(label, "change in selective minus random AUC, late minus early", _pooled(changes),
                          "above 0", "summary"))
    span = ", ".join(f"{e:g}" for e in early_epochs) or "none"
    note = (f"Early: checkpoints at epoch {span}; late: epoch {last:g}." if early_epochs else
            "The comparison needs a trained checkpoint before the last one; none was ablated.")
    return make("Selective units matter most early", "Fig. 3",
                "selective ablation costs more accuracy than random ablation early in training, less "
                "so later (modules 4-6)", rows, target, paper_seeds=10, note=note)


def ablation_final(ablation: pd.DataFrame, target: str = "fig-02-final") -> Claim:
    """Appendix A.2, Fig. 8: in the trained network, ablating the most selective units costs
    less accuracy than random ablation in modules 4-6 (delta > 0) and more in module 7 (< 0).

    delta = AUC(selective) - AUC(random) per seed at the last checkpoint."""
    wide = auc_difference(ablation)
    final = wide[wide.epoch == wide.epoch.max()].set_index("seed")
    modules = modules_in(wide.module.unique())
    rows = [effect(LAYER_LABELS[m], "selective minus random AUC at the last checkpoint",
                   stats.mean_ci(final[final.module == m].delta),
                   "above 0" if m in _early(modules) else "below 0", "test") for m in modules]
    return make("The trained network: selective ablation is mild early, harmful late", "Fig. 8",
                "at the end, selective ablation is less damaging than random in modules 4-6, more in "
                "module 7",
                rows, target, paper_seeds=10)


# ----------------------------------------------------------------------------- claim 3 and Fig. 10


def _cka_fall(cka: pd.DataFrame, a: str, b: str, early_until: float | None) -> stats.Interval:
    """Per seed: CKA(a, b) at the early peak chosen on the other half of the seeds minus the final CKA."""
    pair = cka[(cka.a == a) & (cka.b == b)]
    if pair.empty:
        raise ValueError(f"the cka table has no pair a={a!r}, b={b!r}; it has layers {sorted(set(cka.a))}")
    peak = stats.split_half_peak(pair, "cka", start=0.0, stop=_peak_window(pair, early_until))["value"]
    return stats.paired_ci(peak, stats.last(pair, "cka"))


def cka_early_late(cka: pd.DataFrame, first: str = "layer1", later: Sequence[str] = LATE_LAYERS,
                   early_until: float | None = 1.0, target: str = "fig-03-cka") -> Claim:
    """Claim 3, paper section 4.3, Fig. 5: the representations of module 4 and of the late
    layers (module 7, FC) are similar (high CKA) in the first epochs, then drift apart.

    Per seed and pair: CKA at the early peak (chosen on the other half of the seeds, in
    (0, early_until]) minus CKA at the last evaluation point, > 0 for every pair.
    Reads cka: seed, epoch, a, b, cka."""
    _check(cka, ["seed", "epoch", "a", "b", "cka"], "cka")
    falls = {b: _cka_fall(cka, first, b, early_until) for b in later}
    rows = [effect(f"{LAYER_LABELS[first]} – {LAYER_LABELS[b]}", "CKA at the early peak minus final", fall,
                   "above 0", "test") for b, fall in falls.items()]
    return make("The early network is close to linear", "Fig. 5",
                "CKA between module 4 and module 7 / FC is high in the first epochs, then falls", rows,
                target,
                paper_seeds=6)


def cka_all_pairs(cka: pd.DataFrame, layers: Sequence[str] | None = None, early_until: float | None = 1.0,
                  target: str = "fig-03-all") -> Claim:
    """Appendix A.4, Fig. 10: every pair of layers follows the course of claim 3 (early peak
    above the final CKA). ``layers``: None, every layer of the table in network order."""
    _check(cka, ["seed", "epoch", "a", "b", "cka"], "cka")
    order = list(LAYER_LABELS)
    layers = [x for x in order if x in set(cka.a)] if layers is None else list(layers)
    rows = [effect(f"{LAYER_LABELS[a]} – {LAYER_LABELS[b]}", "CKA at the early peak minus final",
                   _cka_fall(cka, a, b, early_until), "above 0", "test")
            for i, a in enumerate(layers) for b in layers[i + 1:]]
    return make("All pairs of layers drift apart", "Fig. 10",
                "the CKA of every pair of layers is high early and falls later", rows, target, paper_seeds=6)


# ----------------------------------------------------------------------------- claim 4 and Figs. 11, 12, 15


def final_accuracy(metrics: pd.DataFrame, name: str) -> pd.Series:
    """Per seed, the validation accuracy of condition ``name`` at its last evaluation point."""
    return stats.last(condition(metrics, name), "val_acc1")


def first_epoch_si(metrics: pd.DataFrame, name: str, modules: Sequence[str] = EARLY_MODULES,
                   early_until: float = 1.0) -> pd.Series:
    """Per seed, the mean SI of ``modules`` over the fixed window (0, early_until]."""
    runs = _with_mean_si(condition(metrics, name), modules)
    return stats.window_mean(runs, "si_regularised", 0.0, early_until)


def suppression(metrics: pd.DataFrame, from_start: str, later: Sequence[str], baseline: str = BASELINE,
                modules: Sequence[str] = EARLY_MODULES, target: str = "fig-04-acc") -> Claim:
    """Claim 4, paper sections 4.4-4.5, Figs. 6 and 7: suppressing selectivity (alpha = -20,
    modules 4-6) from epoch 0 impairs training; switched on later it barely does.

    Test: final validation accuracy of each ``later`` condition minus ``from_start`` > 0.
    Precondition: the regulariser lowered the first-epoch SI of ``modules`` (from_start minus
    baseline < 0). Context: each condition's final accuracy minus the baseline's, whose
    excludable bound says how much "barely" is at most. Reads metrics: condition, seed,
    epoch, val_acc1, si_<modules>."""
    if not later:
        raise ValueError("later=[] is not valid: the claim compares regularisation from epoch 0 with at "
                         "least one later start")
    start_acc = final_accuracy(metrics, from_start)
    base_acc = final_accuracy(metrics, baseline)
    rows = [effect(name, f"final validation accuracy minus {from_start}",
                   stats.compare(final_accuracy(metrics, name), start_acc), "above 0", "test")
            for name in reversed(list(later))]
    rows.append(effect(from_start, "first-epoch SI of the regularised modules minus unregularised",
                       stats.compare(first_epoch_si(metrics, from_start, modules),
                                     first_epoch_si(metrics, baseline, modules)), "below 0", "precondition"))
    rows += [effect(name, f"final validation accuracy minus {baseline}",
                    stats.compare(final_accuracy(metrics, name), base_acc)) for name in [from_start, *later]]
    return make("Suppressing selectivity early impairs learning", "Figs. 6, 7",
                "regularising against selectivity from epoch 0 costs more accuracy than from a later "
                "epoch", rows, target)


def _alphas(metrics: pd.DataFrame, alphas: Mapping[str, float] | None, baseline: str) -> dict[str, float]:
    if alphas is not None:
        return dict(alphas)
    _check(metrics, ["condition", "alpha"], "metrics (or pass alphas={condition: alpha})")
    found = metrics.groupby("condition", sort=False)["alpha"].first()
    return {c: float(a) for c, a in found.items() if c != baseline}


def strengths_accuracy(metrics: pd.DataFrame, alphas: Mapping[str, float] | None = None,
                       baseline: str = BASELINE, strong: float = 5.0, target: str = "fig-04-alphas") -> Claim:
    """Appendix A.5.1, Fig. 11: regularising against selectivity from epoch 0 costs accuracy
    for alpha = -5 and more (at -1 there is not much difference).

    Per condition (``alphas``: condition -> alpha; None: from the metrics' alpha column):
    final validation accuracy minus the baseline's; a test (< 0) where |alpha| >= ``strong``,
    context otherwise."""
    alphas = _alphas(metrics, alphas, baseline)
    base_acc = final_accuracy(metrics, baseline)
    rows = [effect(name, f"final validation accuracy minus {baseline}",
                   stats.compare(final_accuracy(metrics, name), base_acc),
                   "below 0" if abs(a) >= strong else "", "test" if abs(a) >= strong else "context")
            for name, a in sorted(alphas.items(), key=lambda item: item[1])]
    return make("Stronger suppression costs more accuracy", "Fig. 11",
                f"from epoch 0, suppression with |α| >= {strong:g} lowers the final accuracy", rows, target)


def strengths_selectivity(metrics: pd.DataFrame, alphas: Mapping[str, float] | None = None,
                          baseline: str = BASELINE, modules: Sequence[str] = EARLY_MODULES,
                          early_until: float = 1.0, target: str = "fig-04-alphas-si") -> Claim:
    """Appendix A.5.1, Fig. 12: every negative strength lowers the SI of each regularised module.

    Per condition and module: the first-epoch SI (window (0, early_until]) minus the
    baseline's, < 0."""
    alphas = _alphas(metrics, alphas, baseline)
    rows = [effect(f"{name}, {LAYER_LABELS[m]}", "first-epoch SI minus unregularised",
                   stats.compare(first_epoch_si(metrics, name, [m], early_until),
                                 first_epoch_si(metrics, baseline, [m], early_until)), "below 0", "test")
            for name, _ in sorted(alphas.items(), key=lambda item: item[1]) for m in modules]
    return make("Each strength suppresses selectivity", "Fig. 12",
                "regularising against selectivity lowers the SI of the regularised modules at every strength",
                rows, target)


def recovery(metrics: pd.DataFrame, released: str, continuous: str, baseline: str = BASELINE,
             target: str = "fig-04-recovery") -> Claim:
    """Appendix A.5.3, Fig. 15: networks regularised against selectivity for the first epochs
    only, then released, partly recover; those kept regularised from epoch 0 do not.

    Test: final validation accuracy, released minus continuous > 0. Context: released minus
    the baseline (the part not recovered)."""
    released_acc = final_accuracy(metrics, released)
    rows = [effect(released, f"final validation accuracy minus {continuous}",
                   stats.compare(released_acc, final_accuracy(metrics, continuous)), "above 0", "test"),
            effect(released, f"final validation accuracy minus {baseline}",
                   stats.compare(released_acc, final_accuracy(metrics, baseline)))]
    return make("Released networks partly recover", "Fig. 15",
                "regularised only in the first epochs, networks recover part of the accuracy lost", rows,
                target)


# ----------------------------------------------------------------------------- claim 5


def promotion(metrics: pd.DataFrame, windows: Mapping[str, tuple[float, float]], baseline: str = BASELINE,
              modules: Sequence[str] = MODULES, figure: str = "Figs. 13, 14",
              target: str = "fig-05-acc") -> Claim:
    """Claim 5, paper section 4.6 and A.5.2, Figs. 13 and 14: promoting selectivity early
    (positive alpha, for the first epochs) does not improve accuracy, and harms it.

    Per condition (``windows``: condition -> (start, stop) epochs of regularisation), each
    minus the baseline at the same seeds: precondition: the mean SI of ``modules`` at the
    switch-off epoch ``stop`` > 0 (selectivity was raised); tests: the final validation
    accuracy is not above 0 (no improvement) and the accuracy at ``stop`` is below 0
    (harm while promoted)."""
    if not windows:
        raise ValueError("windows={} is not valid: expected {condition: (start, stop)} for at least one "
                         "condition")
    base = _with_mean_si(condition(metrics, baseline), modules)
    base_acc = stats.last(base, "val_acc1")
    rows = []
    for name, (_, stop) in windows.items():
        runs = _with_mean_si(condition(metrics, name), modules)
        rows += [
            effect(name, f"final validation accuracy minus {baseline}",
                   stats.compare(stats.last(runs, "val_acc1"), base_acc), "not above 0", "test"),
            effect(name, f"validation accuracy at epoch {stop:g} (switch-off) minus {baseline}",
                   stats.compare(stats.at_time(runs, "val_acc1", stop),
                                 stats.at_time(base, "val_acc1", stop)), "below 0", "test"),
            effect(name, f"mean SI of the regularised modules at epoch {stop:g} minus {baseline}",
                   stats.compare(stats.at_time(runs, "si_regularised", stop),
                                 stats.at_time(base, "si_regularised", stop)), "above 0", "precondition"),
        ]
    return make("Promoting selectivity does not help", figure,
                "raising selectivity early does not improve the final accuracy and harms learning", rows,
                target)


# ----------------------------------------------------------------------------- claim 6


def class_representation(metrics: pd.DataFrame, conditions: Sequence[str] | None = None,
                         baseline: str = BASELINE, early_until: float = 1.0, figure: str = "Fig. 16",
                         target: str = "fig-06-top5") -> Claim:
    """Claim 6, paper section 4.7 and A.5.4, Fig. 16: tampering with selectivity (from epoch
    0) makes a few classes over-represented among the predictions early in training; later
    the effect is no longer visible.

    Per condition (None: every condition but the baseline), the mean of the top-5 class
    counts minus the baseline's at the same seeds: over the fixed window (0, early_until]
    > 0, and, where it is, at the last evaluation point not above 0. Reads metrics:
    condition, seed, epoch, top5_count."""
    _check(metrics, ["condition", "seed", "epoch", "top5_count"], "metrics")
    names = list(conditions) if conditions is not None else [
        c for c in metrics.condition.unique() if c != baseline]
    base = condition(metrics, baseline)
    rows = []
    for name in names:
        runs = condition(metrics, name)
        early = effect(name, f"top-5 class count in epochs (0, {early_until:g}] minus {baseline}",
                       stats.compare(stats.window_mean(runs, "top5_count", 0.0, early_until),
                                     stats.window_mean(base, "top5_count", 0.0, early_until)),
                       "above 0", "test")
        # that the effect is gone later is tested only where there was one early
        rows += [early, effect(name, f"final top-5 class count minus {baseline}",
                               stats.compare(stats.last(runs, "top5_count"), stats.last(base, "top5_count")),
                               "not above 0", "test" if early["agrees"] else "context")]
    return make("Tampering with selectivity over-represents a few classes early", figure,
                "regularised networks over-represent a few classes in the first epochs, not later", rows,
                target,
                paper_seeds=2)
