"""The paper's claims on synthetic tables whose answer is known: each claim is made to hold,
to hold in part and to fail, with ties (noise-free seeds) and single seeds."""

import math

import numpy as np
import pandas as pd
import pytest

from classsel import claims, stats
from classsel.config import CKA_LAYERS
from classsel.models import MODULES

EPOCHS = (0.0, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0, 4.0)
BASE, EARLY, LATER = "unregularised", "α=-20 from epoch 0", "α=-20 from epoch 2"


def shape(initial, peak, final):
    """A curve over EPOCHS: ``initial`` at 0, ``peak`` through the first epoch, ``final`` after it."""
    return lambda e: initial if e == 0 else peak if e <= 1 else final


def metrics(conditions, seeds=range(4), noise=0.0, rng_seed=0):
    """A metrics table: {condition: {column: curve}}; each value plus N(0, noise) per seed and epoch."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    for name, columns in conditions.items():
        for s in seeds:
            for e in EPOCHS:
                values = {c: f(e) + noise * rng.normal() for c, f in columns.items()}
                rows.append({"condition": name, "seed": s, "epoch": e, "step": int(e * 100), **values})
    return pd.DataFrame(rows)


def si_curves(recede=(True, True, True, False), rise=0.2):
    """si_layer1..4: each rises by ``rise`` in the first epoch and then recedes, or stays."""
    return {f"si_{m}": shape(0.1, 0.1 + rise, 0.12 if r else 0.1 + rise) for m, r in zip(MODULES, recede)}


# ----------------------------------------------------------------------------- the machinery


def test_agrees_opposite_and_judge():
    assert claims.agrees("above 0", 0.1, 0.3) and not claims.agrees("above 0", -0.1, 0.3)
    assert claims.agrees("not above 0", -0.1, 0.3) and not claims.agrees("not above 0", 0.1, 0.3)
    assert not claims.agrees("not above 0", math.nan, math.nan)  # one seed: nothing can be said
    assert claims.opposite("above 0", -0.3, -0.1) and claims.opposite("not above 0", 0.1, 0.2)
    with pytest.raises(ValueError, match="expected='> 0' is not valid"):
        claims.agrees("> 0", 0.1, 0.2)
    with pytest.raises(ValueError, match="role='key' is not valid"):
        claims.effect("g", "e", stats.Interval(1, 0, 2, 3), "above 0", "key")
    with pytest.raises(ValueError, match="a test row needs an expectation"):
        claims.effect("g", "e", stats.Interval(1, 0, 2, 3), "", "test")

    def table(*rows):
        return pd.DataFrame([claims.effect("g", "e", stats.Interval(0, lo, hi, 3), exp, role)
                             for lo, hi, exp, role in rows], columns=claims.EFFECT_COLUMNS)

    assert claims.judge(table((0.1, 0.2, "above 0", "test"), (0.1, 0.3, "above 0", "test"))) == "holds"
    assert claims.judge(table((0.1, 0.2, "above 0", "test"), (-0.1, 0.3, "above 0", "test"))) == "in part"
    none = table((-0.1, 0.2, "above 0", "test"), (-0.3, -0.1, "above 0", "test"))
    assert claims.judge(none) == "not supported"
    assert claims.judge(table((0.1, 0.2, "above 0", "test"), (-0.1, 0.1, "below 0", "precondition"))) == \
        "not supported"
    assert claims.judge(table((-0.1, 0.2, "", "context"))) == "not supported"  # nothing tested


# ----------------------------------------------------------------------------- claim 1 and Fig. 9


def test_emergence_holds_with_exact_effects_when_seeds_tie():
    c = claims.emergence(metrics({BASE: si_curves()}))
    assert c.verdict == "holds" and c.paper_figure == "Fig. 2"
    e = c.effects.set_index(["group", "effect"])
    assert e.loc[("module 5", "peak minus initial SI"), ["estimate", "ci_low", "ci_high"]].tolist() == \
        pytest.approx([0.2, 0.2, 0.2])
    assert e.loc[("module 6", "peak minus final SI"), "estimate"] == pytest.approx(0.18)
    assert e.loc[("module 7", "peak minus final SI"), "role"] == "context"
    assert e.loc[("modules 4, 5, 6 (mean)", "peak minus final SI"), "role"] == "summary"
    assert "holds at this scale" in c.sentence and "4 seeds" in c.sentence
    assert c.markdown().startswith("- **modules 4, 5, 6 (mean)**")


def test_emergence_in_part_and_not_supported():
    part = claims.emergence(metrics({BASE: si_curves(recede=(True, True, False, False))}, noise=0.002))
    assert part.verdict == "in part"
    assert "module 6 (peak minus final SI)" in part.sentence  # the CI of the non-receding module includes 0
    # no effect by construction: in the first epoch half the seeds are up by 0.02, half down
    flat = pd.concat([metrics({BASE: {f"si_{m}": shape(0.1, 0.1 + 0.02 * (-1) ** s, 0.1) for m in MODULES}},
                              seeds=[s]) for s in range(6)])
    flat = claims.emergence(flat)
    assert flat.verdict == "not supported"
    tests = flat.effects[flat.effects.role == "test"]
    assert (tests.ci_low < 0).all() and (tests.ci_high > 0).all() and tests.excludable.notna().all()
    assert tests.excludable.to_numpy() == pytest.approx(np.maximum(-tests.ci_low, tests.ci_high))
    assert "effects larger than ±0.0" in flat.sentence
    # SI that only falls: the highest point after initialisation is below it (opposite), yet recedes
    falls = claims.emergence(metrics({BASE: {f"si_{m}": shape(0.1, 0.05, 0.02) for m in MODULES}}))
    assert falls.verdict == "in part"
    assert "Opposite to the paper: module 4 (peak minus initial SI)" in falls.sentence


def test_emergence_with_one_seed_is_not_supported_and_says_why():
    c = claims.emergence(metrics({BASE: si_curves()}, seeds=[3]))
    assert c.verdict == "not supported" and "Fewer than two seeds" in c.sentence
    assert c.effects.ci_low.isna().all()


def test_emergence_per_block():
    rows = []
    for s in range(3):
        for e in EPOCHS:
            for m, recedes in zip(MODULES, (True, True, False, False)):
                for block in range(2):
                    si = shape(0.1, 0.3, 0.12 if recedes else 0.3)(e)
                    rows += [{"seed": s, "epoch": e, "module": m, "block": block, "unit": u,
                              "si": si + 0.01 * u} for u in range(3)]
    c = claims.emergence_per_block(pd.DataFrame(rows))
    assert c.verdict == "in part" and len(c.effects) == 2 * 2 * 4
    r = c.effects.set_index(["group", "effect"]).loc[("module 4, block 1", "peak minus initial SI")]
    assert r.estimate == pytest.approx(0.2) and r.agrees


# ----------------------------------------------------------------------------- claim 2 and Fig. 8


def ablation_table(selective_slope, random_slope, seeds=range(4), accuracy=None, noise=0.0):
    """Linear ablation curves: normalized = 1 - slope(module, epoch) * k / 3, k = 0..3."""
    rng = np.random.default_rng(1)
    rows = []
    for s in seeds:
        for e in (0.0, 0.5, 1.0, 3.0):
            for number, m in enumerate(MODULES, start=4):
                for order, slope, draws in (("selective", selective_slope, 1), ("random", random_slope, 2)):
                    for d in range(draws):
                        jitter = noise * rng.normal()
                        for k in range(4):
                            rows.append({"seed": s, "epoch": e, "module": m, "number": number, "order": order,
                                         "draw": d, "k": k, "accuracy": (accuracy or {}).get(e, 0.5),
                                         "normalized": 1 - (slope(m, e) + jitter) * k / 3})
    return pd.DataFrame(rows)


def test_auc_difference_against_the_sum_of_normalised_accuracy():
    t = ablation_table(lambda m, e: 0.9, lambda m, e: 0.3)
    wide = claims.auc_difference(t)
    # AUC = sum_k (1 - slope k / 3) = 4 - 2 slope
    assert wide.selective.to_numpy() == pytest.approx(4 - 1.8)
    assert wide.random.to_numpy() == pytest.approx(4 - 0.6)
    assert wide.delta.to_numpy() == pytest.approx(-1.2)


def test_ablation_early_late_in_each_direction():
    early_damage = lambda m, e: 0.9 if e <= 1 else 0.2  # noqa: E731
    holds = claims.ablation_early_late(ablation_table(early_damage, lambda m, e: 0.3))
    assert holds.verdict == "holds" and "Early: checkpoints at epoch 0.5, 1; late: epoch 3." in holds.sentence
    change = holds.effects.set_index(["group", "effect"]).loc[
        ("module 5", "change in selective minus random AUC, late minus early")]
    assert change.estimate == pytest.approx(2 * (0.9 - 0.2)) and change.role == "test"
    only_4 = lambda m, e: early_damage(m, e) if m == "layer1" else 0.3  # noqa: E731
    random = lambda m, e: 0.3  # noqa: E731
    assert claims.ablation_early_late(ablation_table(only_4, random, noise=0.01)).verdict == "in part"
    reverse = claims.ablation_early_late(ablation_table(lambda m, e: 0.2 if e <= 1 else 0.9, random))
    assert reverse.verdict == "not supported" and "Opposite to the paper" in reverse.sentence


def test_ablation_early_window_leaves_out_networks_at_chance():
    t = ablation_table(lambda m, e: 0.5, lambda m, e: 0.3, accuracy={0.0: 0.1, 0.5: 0.1})
    c = claims.ablation_early_late(t, min_accuracy=0.2)
    assert "Early: checkpoints at epoch 1;" in c.sentence
    none = claims.ablation_early_late(t.assign(accuracy=0.1), min_accuracy=0.2)
    assert none.verdict == "not supported" and "needs a trained checkpoint" in none.sentence


def test_ablation_final_as_in_appendix_a2_and_against_it():
    paper = lambda m, e: 0.2 if m != "layer4" else 0.6  # noqa: E731
    assert claims.ablation_final(ablation_table(paper, lambda m, e: 0.4)).verdict == "holds"
    assert claims.ablation_final(ablation_table(lambda m, e: 0.6, lambda m, e: 0.4)).verdict == "in part"
    assert claims.ablation_final(ablation_table(lambda m, e: 0.4, lambda m, e: 0.4, noise=0.02)).verdict == \
        "not supported"


# ----------------------------------------------------------------------------- claim 3 and Fig. 10


def cka_table(fall, seeds=range(4), noise=0.0):
    """CKA of every ordered pair of layers: 0.9 in the first epoch, then ``0.9 - fall(a, b)``."""
    rng = np.random.default_rng(2)
    layers = CKA_LAYERS  # ResNet's four modules and its logits
    rows = [{"seed": s, "epoch": e, "a": a, "b": b,
             "cka": (1.0 if a == b else (0.5 if e == 0 else 0.9 if e <= 1 else 0.9 - fall(a, b))
                     + noise * rng.normal())}
            for s in seeds for e in EPOCHS for a in layers for b in layers]
    return pd.DataFrame(rows)


def test_cka_early_late_in_each_direction():
    c = claims.cka_early_late(cka_table(lambda a, b: 0.6))
    assert c.verdict == "holds" and list(c.effects.group) == ["module 4 – module 7", "module 4 – FC"]
    assert c.effects.estimate.to_numpy() == pytest.approx(0.6)
    part = claims.cka_early_late(cka_table(lambda a, b: 0.6 if b == "fc" else 0.0, noise=0.01))
    assert part.verdict == "in part"
    assert claims.cka_early_late(cka_table(lambda a, b: 0.0)).verdict == "not supported"
    with pytest.raises(ValueError, match="no pair a='layer1', b='conv'"):
        claims.cka_early_late(cka_table(lambda a, b: 0.6), later=["conv"])


def test_cka_all_pairs_counts_every_pair_once():
    c = claims.cka_all_pairs(cka_table(lambda a, b: 0.6 if a == "layer1" else 0.0))
    assert len(c.effects) == 10 and c.verdict == "in part"
    assert claims.summary([c]).agreeing.iloc[0] == "4 of 10"


# ----------------------------------------------------------------------------- claim 4, Figs. 11, 12, 15


def regularised(final_accuracy, si_early=0.3, noise=0.0):
    """Conditions with the given final accuracies and first-epoch SI of modules 4-6."""
    return metrics({name: {"val_acc1": shape(0.1, 0.5, acc), "top5_count": shape(10, 10, 10),
                           **{f"si_{m}": shape(0.1, si_early if name != BASE else 0.3, 0.15)
                              for m in MODULES}}
                    for name, acc in final_accuracy.items()}, noise=noise)


def test_suppression_in_each_direction():
    t = regularised({BASE: 0.9, EARLY: 0.6, LATER: 0.88}, si_early=0.1)
    c = claims.suppression(t, EARLY, [LATER])
    assert c.verdict == "holds"
    head = claims.headline(c.effects)
    assert head.group == LATER and head.estimate == pytest.approx(0.28, abs=0.01)
    later_cost = c.effects[(c.effects.group == LATER) & (c.effects.role == "context")].iloc[0]
    assert later_cost.estimate == pytest.approx(-0.02, abs=0.01)
    same = regularised({BASE: 0.9, EARLY: 0.9, LATER: 0.9}, si_early=0.1)
    assert claims.suppression(same, EARLY, [LATER]).verdict == "not supported"
    kept = regularised({BASE: 0.9, EARLY: 0.6, LATER: 0.88}, si_early=0.3)  # SI not lowered
    untested = claims.suppression(kept, EARLY, [LATER])
    assert untested.verdict == "not supported" and "precondition" in untested.sentence
    with pytest.raises(ValueError, match="condition 'α=-5' is not in the metrics table"):
        claims.suppression(t, "α=-5", [LATER])
    with pytest.raises(ValueError, match="later=\\[\\] is not valid"):
        claims.suppression(t, EARLY, [])


def test_strengths_and_recovery():
    t = regularised({BASE: 0.9, "α=-1": 0.89, "α=-5": 0.8, "α=-20": 0.6}, si_early=0.1)
    alphas = {"α=-1": -1.0, "α=-5": -5.0, "α=-20": -20.0}
    acc = claims.strengths_accuracy(t, alphas)
    assert acc.verdict == "holds" and list(acc.effects.role) == ["test", "test", "context"]
    inferred = claims.strengths_accuracy(t.assign(alpha=t.condition.map(alphas).fillna(0.0)))
    assert inferred.effects.estimate.tolist() == acc.effects.estimate.tolist()
    with pytest.raises(ValueError, match="lacks column"):
        claims.strengths_accuracy(t)
    si = claims.strengths_selectivity(t, alphas)
    assert si.verdict == "holds" and len(si.effects) == 9
    back = regularised({BASE: 0.9, EARLY: 0.6, "released": 0.85})
    assert claims.recovery(back, "released", EARLY).verdict == "holds"
    assert claims.recovery(regularised({BASE: 0.9, EARLY: 0.6, "released": 0.6}), "released",
                           EARLY).verdict == "not supported"


# ----------------------------------------------------------------------------- claim 5


def promoted(acc_at_stop, acc_final, si_raised=0.3, seeds=range(4), noise=0.0):
    def condition(name, stop_acc, final, si):
        return {"val_acc1": lambda e: 0.1 if e == 0 else stop_acc if e <= 2 else final,
                **{f"si_{m}": lambda e: 0.1 if e == 0 else si if e <= 2 else 0.15 for m in MODULES}}
    return metrics({BASE: condition(BASE, 0.6, 0.9, 0.3),
                    "α=+5, epochs 0-2": condition("p", acc_at_stop, acc_final, 0.3 + si_raised)},
                   seeds=seeds, noise=noise)


def test_promotion_in_each_direction():
    windows = {"α=+5, epochs 0-2": (0, 2)}
    c = claims.promotion(promoted(0.4, 0.9), windows)
    assert c.verdict == "holds" and c.paper_figure == "Figs. 13, 14"
    assert claims.promotion(promoted(0.6, 0.9), windows).verdict == "in part"  # no harm shown
    better = claims.promotion(promoted(0.4, 0.95), windows)
    assert better.verdict == "in part" and "Opposite to the paper" in better.sentence
    assert claims.promotion(promoted(0.7, 0.95), windows).verdict == "not supported"
    untested = claims.promotion(promoted(0.4, 0.9, si_raised=0.0), windows)
    assert untested.verdict == "not supported" and "precondition" in untested.sentence
    one = claims.promotion(promoted(0.4, 0.9, seeds=[0]), windows)
    assert one.verdict == "not supported" and "Fewer than two seeds" in one.sentence


# ----------------------------------------------------------------------------- claim 6


def test_class_representation_in_each_direction():
    def table(early, final, noise=0.5):
        return metrics({BASE: {"top5_count": shape(100, 120, 110)},
                        EARLY: {"top5_count": shape(100, early, final)}}, noise=noise)

    c = claims.class_representation(table(300, 110))
    assert c.verdict == "holds" and list(c.effects.role) == ["test", "test"]
    assert c.effects.estimate.iloc[0] == pytest.approx(180, abs=1)
    lasting = claims.class_representation(table(300, 200))
    assert lasting.verdict == "in part" and "Opposite to the paper" in lasting.sentence
    none = claims.class_representation(table(120, 110, noise=3))
    assert none.verdict == "not supported" and list(none.effects.role) == ["test", "context"]


# ----------------------------------------------------------------------------- the summary table


def test_summary_lists_every_claim_with_its_headline():
    rows = claims.summary([claims.emergence(metrics({BASE: si_curves()})),
                           claims.cka_early_late(cka_table(lambda a, b: 0.6)),
                           claims.emergence(metrics({BASE: si_curves()}, seeds=[0]))])
    assert list(rows.columns) == ["claim", "figure", "effect", "estimate", "95% CI", "ci_low", "ci_high",
                                  "seeds", "excludable", "agreeing", "verdict", "target"]
    assert rows.verdict.tolist() == ["holds", "holds", "not supported"]
    assert rows.effect.iloc[0] == "peak minus final SI, modules 4, 5, 6 (mean)"
    assert rows["95% CI"].iloc[2] == "undefined" and rows.seeds.tolist() == [4, 4, 0]
    assert rows.agreeing.tolist() == ["6 of 6", "2 of 2", "0 of 6"] and rows.target.iloc[1] == "fig-03-cka"
