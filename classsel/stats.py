"""Statistics over seeds: bootstrap confidence intervals, differences of means, what a
non-significant interval still rules out, and early-versus-late estimators that do not
measure a peak on the curves they picked it from.

Every interval is a percentile bootstrap over seeds (seaborn's ``errorbar=("ci", 95)``,
the paper's error shades). With fewer than two seeds there is no spread to resample:
the estimate is returned with a NaN interval, never a point that would look certain.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd

N_BOOT = 2000
LEVEL = 0.95


class Interval(NamedTuple):
    """An estimate over seeds with its bootstrap CI; ``seeds``: seeds per group (the smaller group)."""

    estimate: float
    low: float
    high: float
    seeds: int


def clean(values) -> np.ndarray:
    """``values`` as float64 without NaN (a seed whose value is undefined does not count)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return x[~np.isnan(x)]


def bootstrap_means(x: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means of resamples of ``x`` with replacement: mean(x[i_1..i_n]), i ~ U{0..n-1}."""
    return x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)


def percentile_ci(boots: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The ((1-level)/2, (1+level)/2) quantiles of a bootstrap distribution (linear interpolation)."""
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} is not valid: expected a confidence level between 0 and 1, "
                         "e.g. 0.95")


def mean_ci(values, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """Mean over seeds, x̄ = Σx_i / n, and the percentile bootstrap CI of the mean.

    NaN values are dropped; no values: all NaN; one value: the value with a NaN CI."""
    _check_level(level)
    x = clean(values)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    if len(x) == 1:
        return Interval(float(x[0]), math.nan, math.nan, 1)
    lo, hi = percentile_ci(bootstrap_means(x, n_boot, np.random.default_rng(seed)), level)
    return Interval(float(x.mean()), lo, hi, len(x))


def difference_ci(a, b, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """mean(a) - mean(b) for two independent groups of seeds, with a percentile bootstrap CI
    that resamples each group on its own: quantiles of {ā* - b̄*}.

    Either group with fewer than two values: the difference with a NaN CI."""
    _check_level(level)
    a, b = clean(a), clean(b)
    n = min(len(a), len(b))
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    estimate = float(a.mean() - b.mean())
    if n == 1:
        return Interval(estimate, math.nan, math.nan, 1)
    rng_a, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    lo, hi = percentile_ci(bootstrap_means(a, n_boot, rng_a) - bootstrap_means(b, n_boot, rng_b), level)
    return Interval(estimate, lo, hi, n)


def paired_ci(a: pd.Series, b: pd.Series, n_boot: int = N_BOOT, seed: int = 0,
              level: float = LEVEL) -> Interval:
    """mean over seeds of d_s = a_s - b_s, for the seeds (index labels) present in both, with
    the bootstrap CI of that mean: a paired comparison, where each seed is its own control."""
    if not isinstance(a, pd.Series) or not isinstance(b, pd.Series):
        raise TypeError("paired_ci expects two pandas Series indexed by seed, got "
                        f"{type(a).__name__} and {type(b).__name__}")
    d = (a - b).dropna()  # aligns on the index: only the seeds both have
    return mean_ci(d.to_numpy(), n_boot, seed, level)


def compare(a: pd.Series, b: pd.Series, n_boot: int = N_BOOT, seed: int = 0,
            level: float = LEVEL) -> Interval:
    """mean(a) - mean(b) over seeds: paired (:func:`paired_ci`) where both Series hold the same
    seeds (runs with one seed share their initialisation and data order), else two independent
    groups (:func:`difference_ci`). NaN values are dropped first."""
    a, b = a.dropna(), b.dropna()
    if len(a) and set(a.index) == set(b.index):
        return paired_ci(a, b, n_boot, seed, level)
    return difference_ci(a.to_numpy(), b.to_numpy(), n_boot, seed, level)


def sign(low: float, high: float) -> int:
    """+1 if the CI lies above zero, -1 below, 0 if it includes zero or is undefined (NaN)."""
    return 1 if low > 0 else -1 if high < 0 else 0


def excludable(low: float, high: float) -> float:
    """Where a CI includes zero, the largest |effect| it still contains: max(|low|, |high|).

    Read: the data are compatible with no effect, and they rule out (at the CI's level)
    any effect larger than this in either direction; a large value means the comparison
    lacks the power to tell, a small one that a large effect is absent. NaN where the CI
    excludes zero (an effect is found, nothing to bound) or is undefined."""
    if math.isnan(low) or math.isnan(high) or sign(low, high) != 0:
        return math.nan
    return max(abs(low), abs(high))


def fmt(interval: Interval | tuple, digits: int = 3) -> str:
    """'0.123 (95% CI 0.045 to 0.201)'; a NaN CI (fewer than two seeds) is said to be undefined."""
    estimate, low, high = interval[:3]
    if math.isnan(low) or math.isnan(high):
        return f"{estimate:.{digits}f} (95% CI undefined: fewer than two seeds)"
    return f"{estimate:.{digits}f} (95% CI {low:.{digits}f} to {high:.{digits}f})"


# ----------------------------------------------------------------------------- per-seed estimators
# Tables are long: one row per seed and evaluation point, with a time column (epoch).


def _check_columns(table: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"the table lacks column(s) {missing}; it has {list(table.columns)}")


def window_mean(table: pd.DataFrame, value: str, start: float, stop: float, by: str = "seed",
                time: str = "epoch") -> pd.Series:
    """Per seed, the mean of ``value`` over the evaluation points with start < time <= stop:
    a window fixed in advance (e.g. (0, 1]: the first epoch after initialisation)."""
    _check_columns(table, [by, time, value])
    inside = table[(table[time] > start) & (table[time] <= stop)]
    return inside.groupby(by)[value].mean()


def at_time(table: pd.DataFrame, value: str, when: float, by: str = "seed", time: str = "epoch") -> pd.Series:
    """Per seed, the mean of ``value`` at the evaluation point nearest to time ``when``
    (nearest per seed; ties between two points: the mean of both)."""
    _check_columns(table, [by, time, value])
    distance = (table[time] - when).abs()
    nearest = distance == distance.groupby(table[by]).transform("min")
    return table[nearest].groupby(by)[value].mean()


def last(table: pd.DataFrame, value: str, by: str = "seed", time: str = "epoch") -> pd.Series:
    """Per seed, ``value`` at that seed's last evaluation point."""
    _check_columns(table, [by, time, value])
    final = table[time] == table.groupby(by)[time].transform("max")
    return table[final].groupby(by)[value].mean()


def split_halves(units, seed: int = 0) -> tuple[list, list]:
    """The seeds (units) in two halves of sizes floor(n/2) and ceil(n/2), by a fixed permutation."""
    units = sorted(units)
    order = np.random.default_rng(seed).permutation(len(units))
    half = len(units) // 2
    return [units[i] for i in sorted(order[:half])], [units[i] for i in sorted(order[half:])]


def peak_time(table: pd.DataFrame, value: str, time: str = "epoch", lowest: bool = False) -> float:
    """The time at which the mean curve over the rows of ``table`` is highest (``lowest``: lowest);
    of tied times, the earliest."""
    curve = table.groupby(time)[value].mean().sort_index()
    if curve.isna().all():
        return math.nan
    target = curve.min() if lowest else curve.max()
    return float(curve.index[np.flatnonzero(curve.to_numpy() == target)[0]])


def split_half_peak(table: pd.DataFrame, value: str, start: float = 0.0, stop: float = math.inf,
                    by: str = "seed", time: str = "epoch", lowest: bool = False,
                    seed: int = 0) -> pd.DataFrame:
    """Per seed, ``value`` at the peak time chosen on the *other* half of the seeds.

    The maximum of a noisy curve is biased upward when it is measured on the curve it was
    picked from. Here the seeds are split in two halves (:func:`split_halves`); the peak
    time t_A of the mean curve of half A (candidates: start < time <= stop) is where the
    seeds of half B are measured, and t_B is where half A is measured (cross-fitting), so
    no seed's value chose its own time. One seed: NaN (there is no other half).
    Returns a frame indexed by seed with columns ``peak_time`` and ``value``.
    """
    _check_columns(table, [by, time, value])
    window = table[(table[time] > start) & (table[time] <= stop)]
    halves = split_halves(window[by].unique(), seed)
    rows = {}
    if min(len(h) for h in halves) > 0:
        for chooser, measured in (halves, halves[::-1]):
            t = peak_time(window[window[by].isin(chooser)], value, time, lowest)
            for s in measured:
                own = window[window[by] == s]
                at_peak = own.loc[own[time] == t, value]
                rows[s] = (t, float(at_peak.mean()) if len(at_peak) else math.nan)
    for s in window[by].unique():
        rows.setdefault(s, (math.nan, math.nan))
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=["peak_time", "value"]).sort_index()
    return frame.rename_axis(by)
