"""Pearson coefficient, its bootstrap interval, and the per-configuration convention."""

import math

import numpy as np
import pytest

from glassmd.errors import InputError
from glassmd.train.metrics import PearsonEstimate, bootstrap_pearson, pearson, per_configuration_pearson


def _bivariate_normal(n, rho, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = rho * x + math.sqrt(1 - rho**2) * rng.normal(size=n)
    return x, y


def test_identical_inputs_give_exactly_one_and_opposite_minus_one():
    values = np.random.default_rng(0).exponential(size=1001)
    assert pearson(values, values) == 1.0
    assert pearson(values, -values) == -1.0


def test_pearson_matches_numpy_and_ignores_shift_and_scale():
    x, y = _bivariate_normal(500, 0.4, seed=1)
    expected = np.corrcoef(x, y)[0, 1]
    assert pearson(x, y) == pytest.approx(expected, rel=1e-12)
    assert pearson(3.0 * x - 7.0, 0.01 * y + 100.0) == pytest.approx(expected, rel=1e-9)


def test_bootstrap_interval_contains_rho_and_has_the_asymptotic_width():
    rho, n = 0.6, 20000
    x, y = _bivariate_normal(n, rho, seed=2)
    estimate = bootstrap_pearson(x, y, n_resamples=2000, confidence=0.95, seed=3)
    assert isinstance(estimate, PearsonEstimate)
    assert estimate.n == n and estimate.n_resamples == 2000
    assert estimate.low < estimate.value < estimate.high
    assert estimate.low < rho < estimate.high
    # For bivariate normal data the sampling standard error of r is (1 - rho^2) / sqrt(n).
    standard_error = (1 - rho**2) / math.sqrt(n)
    half_width_in_errors = (estimate.high - estimate.low) / 2 / standard_error
    assert half_width_in_errors == pytest.approx(1.959964, rel=0.2)


def test_bootstrap_sums_equal_explicit_resampling():
    x, y = _bivariate_normal(300, 0.3, seed=4)
    estimate = bootstrap_pearson(x, y, n_resamples=400, confidence=0.9, seed=11)
    # The same draws, resampled the slow obvious way (one chunk holds every resample here).
    index = np.random.default_rng(11).integers(0, x.size, size=(400, x.size))
    explicit = np.array([np.corrcoef(x[row], y[row])[0, 1] for row in index])
    low, high = np.quantile(explicit, [0.05, 0.95])
    assert estimate.low == pytest.approx(low, abs=1e-10)
    assert estimate.high == pytest.approx(high, abs=1e-10)


def test_bootstrap_is_reproducible_and_chunking_does_not_matter_for_the_count():
    x, y = _bivariate_normal(1000, 0.5, seed=5)
    first = bootstrap_pearson(x, y, n_resamples=300, seed=1)
    assert bootstrap_pearson(x, y, n_resamples=300, seed=1) == first
    assert bootstrap_pearson(x, y, n_resamples=300, seed=2) != first
    chunked = bootstrap_pearson(x, y, n_resamples=300, seed=1, chunk_elements=7 * 1000)
    assert chunked.n_resamples == 300
    assert chunked.low == pytest.approx(first.low, abs=1e-12)  # same stream, drawn in smaller pieces


def test_identical_inputs_bootstrap_to_a_degenerate_interval():
    values = np.random.default_rng(6).normal(size=500)
    estimate = bootstrap_pearson(values, values, n_resamples=200)
    assert estimate.value == 1.0
    assert estimate.low == pytest.approx(1.0, abs=1e-12)
    assert estimate.high == pytest.approx(1.0, abs=1e-12)


def test_per_configuration_mean_and_standard_error():
    pairs = [_bivariate_normal(400, rho, seed=10 + k) for k, rho in enumerate([0.2, 0.5, 0.7])]
    preds, trues = [p for p, _ in pairs], [t for _, t in pairs]
    mean, error = per_configuration_pearson(preds, trues)
    values = [np.corrcoef(p, t)[0, 1] for p, t in pairs]
    assert mean == pytest.approx(np.mean(values), rel=1e-12)
    assert error == pytest.approx(np.std(values, ddof=1) / math.sqrt(3), rel=1e-12)
    pooled = pearson(np.concatenate(preds), np.concatenate(trues))
    assert pooled != pytest.approx(mean, abs=1e-6)  # the two conventions are different numbers
    single_mean, single_error = per_configuration_pearson(preds[:1], trues[:1])
    assert single_mean == pytest.approx(values[0]) and math.isnan(single_error)


def test_bad_input_is_named():
    with pytest.raises(InputError, match="constant"):
        pearson(np.ones(10), np.arange(10.0))
    with pytest.raises(InputError, match="differ in size"):
        pearson(np.arange(3.0), np.arange(4.0))
    with pytest.raises(InputError, match="NaN"):
        pearson(np.array([1.0, np.nan, 2.0]), np.arange(3.0))
    with pytest.raises(InputError, match="confidence"):
        bootstrap_pearson(np.arange(5.0), np.arange(5.0), confidence=1.5)
    with pytest.raises(InputError, match="at least one configuration"):
        per_configuration_pearson([], [])
