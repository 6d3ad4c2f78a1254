"""Run sets and the bootstrap confidence intervals."""

import numpy as np
import pytest

from classsel import experiments as ex


def test_mean_ci_against_the_normal_approximation():
    x = np.random.default_rng(1).normal(2.0, 1.0, 400)
    mean, lo, hi = ex.mean_ci(x, n_boot=4000)
    assert mean == pytest.approx(float(np.mean(x)), abs=1e-12)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert lo == pytest.approx(mean - half, abs=0.2 * half) and hi == pytest.approx(mean + half, abs=0.2 * half)
    assert ex.mean_ci([0.5, 0.5, float("nan")]) == (0.5, 0.5, 0.5)


def test_difference_ci_against_the_normal_approximation():
    rng = np.random.default_rng(2)
    a, b = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 2.0, 200)
    diff, lo, hi = ex.difference_ci(a, b, n_boot=4000)
    assert diff == pytest.approx(a.mean() - b.mean(), abs=1e-12)
    half = 1.96 * np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    assert lo == pytest.approx(diff - half, abs=0.2 * half) and hi == pytest.approx(diff + half, abs=0.2 * half)
