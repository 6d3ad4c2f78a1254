"""Statistics over seeds: bootstrap CIs against exact enumeration and the normal
approximation, known answers (constants, large shifts, single seeds, NaN), the
excludable effect size, and the split-half peak estimator against its bias."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from classsel import stats


def exact_bootstrap_quantiles(x, level=0.95):
    """Quantiles of the exact bootstrap distribution of the mean: all n**n resamples, float64."""
    means = [float(np.mean(c)) for c in itertools.product(x, repeat=len(x))]
    return np.quantile(means, [(1 - level) / 2, (1 + level) / 2])


def test_mean_ci_against_exact_enumeration_of_resamples():
    x = [0.1, 0.4, 0.45, 1.3, 2.0]  # 5**5 = 3125 resamples
    lo, hi = exact_bootstrap_quantiles(x)
    r = stats.mean_ci(x, n_boot=40000, seed=3)
    assert r.estimate == pytest.approx(np.mean(x), abs=1e-15) and r.seeds == 5
    spread = max(x) - min(x)
    assert r.low == pytest.approx(lo, abs=0.03 * spread) and r.high == pytest.approx(hi, abs=0.03 * spread)


def test_mean_ci_against_the_normal_approximation():
    x = np.random.default_rng(1).normal(2.0, 1.0, 400)
    r = stats.mean_ci(x, n_boot=4000)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert r.low == pytest.approx(r.estimate - half, abs=0.2 * half)
    assert r.high == pytest.approx(r.estimate + half, abs=0.2 * half)


def test_difference_ci_against_the_normal_approximation_and_a_loop_reference():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 2.0, 200)
    r = stats.difference_ci(a, b, n_boot=4000)
    assert r.estimate == pytest.approx(a.mean() - b.mean(), abs=1e-12) and r.seeds == 200
    half = 1.96 * np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert r.low == pytest.approx(r.estimate - half, abs=0.2 * half)
    assert r.high == pytest.approx(r.estimate + half, abs=0.2 * half)
    # the same streams, resampled one bootstrap replicate at a time
    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(0).spawn(2))
    ia, ib = rng_a.integers(0, 300, (4000, 300)), rng_b.integers(0, 200, (4000, 200))
    boots = [sum(a[i] for i in ia[j]) / 300 - sum(b[i] for i in ib[j]) / 200 for j in range(4000)]
    assert (r.low, r.high) == pytest.approx(tuple(np.quantile(boots, [0.025, 0.975])), abs=1e-9)


def test_known_answers():
    assert stats.mean_ci([0.5, 0.5, float("nan"), 0.5]) == (0.5, 0.5, 0.5, 3)  # ties: a point
    assert stats.mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5, 3)
    shifted = stats.difference_ci([10.0, 10.2, 9.9, 10.1], [0.0, 0.3, -0.1, 0.2])
    assert shifted.low > 0 and stats.sign(shifted.low, shifted.high) == 1
    assert stats.difference_ci([3.0, 3.0], [3.0, 3.0])[:3] == (0.0, 0.0, 0.0)
    same = stats.difference_ci([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.estimate == 0 and same.low < 0 < same.high


def test_single_seed_and_empty_give_nan_intervals_not_errors():
    one = stats.mean_ci([0.7, float("nan")])
    assert one.estimate == 0.7 and math.isnan(one.low) and math.isnan(one.high) and one.seeds == 1
    assert all(math.isnan(v) for v in stats.mean_ci([])[:3]) and stats.mean_ci([]).seeds == 0
    d = stats.difference_ci([1.0], [0.0, 0.5])
    assert d.estimate == pytest.approx(0.75) and math.isnan(d.low) and d.seeds == 1
    assert stats.sign(d.low, d.high) == 0 and math.isnan(stats.excludable(d.low, d.high))
    assert "undefined" in stats.fmt(one)
    assert stats.fmt(stats.Interval(0.12345, 0.1, 0.2, 3), 2) == "0.12 (95% CI 0.10 to 0.20)"


def test_bad_level_is_named():
    with pytest.raises(ValueError, match="level=1.5 is not valid"):
        stats.mean_ci([1.0, 2.0], level=1.5)


def test_paired_ci_matches_seeds_and_equals_the_ci_of_differences():
    a = pd.Series([1.0, 2.0, 3.0, 4.0, 9.0], index=[0, 1, 2, 3, 7])
    b = pd.Series([0.5, 1.0, 2.9, 3.0], index=[3, 2, 1, 0])  # other order, seed 7 missing
    r = stats.paired_ci(a, b)
    d = np.array([1.0 - 3.0, 2.0 - 2.9, 3.0 - 1.0, 4.0 - 0.5])
    assert r == stats.mean_ci(d) and r.seeds == 4
    # pairing removes the between-seed spread that independent groups keep
    base = pd.Series(np.arange(6.0) * 10)
    paired, independent = stats.paired_ci(base + 1.0, base), stats.difference_ci(base + 1.0, base)
    assert paired[:3] == (1.0, 1.0, 1.0) and independent.low < 0 < independent.high
    with pytest.raises(TypeError, match="pandas Series"):
        stats.paired_ci([1.0], [2.0])


def test_compare_pairs_matching_seeds_and_otherwise_resamples_groups():
    a = pd.Series([1.0, 2.0, 3.0], index=[0, 1, 2])
    b = pd.Series([0.5, 1.0, 2.0], index=[2, 1, 0])
    assert stats.compare(a, b) == stats.paired_ci(a, b)
    c = pd.Series([0.5, 1.0, 2.0, float("nan")], index=[3, 4, 5, 6])
    assert stats.compare(a, c) == stats.difference_ci(a.to_numpy(), [0.5, 1.0, 2.0])


def test_excludable_is_the_largest_magnitude_inside_a_ci_that_includes_zero():
    assert stats.excludable(-0.02, 0.05) == 0.05
    assert stats.excludable(-0.3, 0.1) == 0.3
    assert stats.excludable(0.0, 0.0) == 0.0
    assert math.isnan(stats.excludable(0.01, 0.05)) and math.isnan(stats.excludable(-0.5, -0.1))
    # more seeds of the same null effect exclude smaller effects
    rng = np.random.default_rng(4)
    few, many = stats.mean_ci(rng.normal(0, 1, 4)), stats.mean_ci(rng.normal(0, 1, 400))
    assert stats.excludable(many.low, many.high) < stats.excludable(few.low, few.high)


def curves(n_seeds, noise, rng, times=(0.0, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0), peak=None):
    """One row per seed and time: a flat (or peaked) true curve plus independent noise."""
    rows = []
    for s in range(n_seeds):
        for t in times:
            true = 1.0 if peak is None else (2.0 if t == peak else 1.0)
            rows.append({"seed": s, "epoch": t, "v": true + noise * rng.normal()})
    return pd.DataFrame(rows)


def test_split_half_peak_is_unbiased_on_a_flat_curve_where_the_naive_peak_is_not():
    rng = np.random.default_rng(5)
    naive, held_out = [], []
    for _ in range(200):
        t = curves(6, 0.5, rng)
        trained = t[t.epoch > 0]
        naive.append(trained.groupby("seed").v.max().mean())
        held_out.append(stats.split_half_peak(t, "v", start=0).value.mean())
    assert np.mean(naive) > 1.4  # E[max of 6 normals] = 1.27 sd: biased upward
    assert abs(np.mean(held_out) - 1.0) < 0.05  # SE of the mean of 200 repetitions ~ 0.015


def test_split_half_peak_finds_a_clear_peak_and_measures_the_other_half():
    t = curves(4, 0.0, np.random.default_rng(0), peak=0.5)
    r = stats.split_half_peak(t, "v")
    assert list(r.index) == [0, 1, 2, 3] and (r.peak_time == 0.5).all() and (r.value == 2.0).all()
    # a brute-force reference: seeds of each half measured at the other half's argmax
    rng = np.random.default_rng(1)
    t = curves(5, 1.0, rng)
    a, b = stats.split_halves(range(5))
    assert sorted(a + b) == [0, 1, 2, 3, 4] and (len(a), len(b)) == (2, 3)
    r = stats.split_half_peak(t, "v", start=0, stop=2.0)
    window = t[(t.epoch > 0) & (t.epoch <= 2.0)]
    for chooser, measured in ((a, b), (b, a)):
        mean = {e: np.mean([window[(window.seed == s) & (window.epoch == e)].v.iloc[0] for s in chooser])
                for e in sorted(window.epoch.unique())}
        best = max(mean, key=lambda e: (mean[e], -e))
        for s in measured:
            assert r.loc[s, "peak_time"] == best
            assert r.loc[s, "value"] == window[(window.seed == s) & (window.epoch == best)].v.iloc[0]
    low = stats.split_half_peak(t, "v", start=0, lowest=True)
    assert (low.value <= r.value.max()).all()


def test_split_half_peak_ties_pick_the_earliest_time_and_one_seed_gives_nan():
    t = curves(2, 0.0, np.random.default_rng(0))  # a flat curve: every time ties
    assert (stats.split_half_peak(t, "v").peak_time == 0.25).all()  # after initialisation by default
    assert (stats.split_half_peak(t, "v", start=-math.inf).peak_time == 0.0).all()
    one = stats.split_half_peak(t[t.seed == 0], "v")
    assert list(one.index) == [0] and one.isna().all(axis=None)


def test_window_at_time_and_last_per_seed():
    t = pd.DataFrame({"seed": [0, 0, 0, 0, 1, 1, 1], "epoch": [0, 0.5, 1, 2, 0, 1, 3],
                      "v": [9.0, 1.0, 3.0, 5.0, 9.0, 4.0, 6.0]})
    assert stats.window_mean(t, "v", 0, 1).to_dict() == {0: 2.0, 1: 4.0}
    assert stats.at_time(t, "v", 2.0).to_dict() == {0: 5.0, 1: 5.0}  # seed 1: 1 and 3 tie
    assert stats.last(t, "v").to_dict() == {0: 5.0, 1: 6.0}
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['w'\]"):
        stats.last(t, "w")
