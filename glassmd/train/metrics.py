"""Evaluation metrics: Pearson correlation, its bootstrap interval, and the per-configuration convention.

The Pearson coefficient is the metric of the propensity literature (Bapst et al. 2020; Boattini et al. 2021;
Pezzicoli et al.): it ignores a global shift and scale of the predictions. Two conventions coexist and are
both reported:

* pooled: one coefficient over every particle of the test set, with a bootstrap interval over particles
  (Pezzicoli et al., Appendix B: resample n out of n with replacement, 5000 times);
* per configuration: one coefficient per configuration, then their mean (published benchmark tables).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from glassmd.errors import InputError

__all__ = ["PearsonEstimate", "bootstrap_pearson", "pearson", "per_configuration_pearson"]


@dataclass(frozen=True)
class PearsonEstimate:
    """A Pearson coefficient with a bootstrap percentile interval.

    Attributes
    ----------
    value : float
        Coefficient on the full sample.
    low, high : float
        Percentile interval of the bootstrap distribution at ``confidence``.
    n : int
        Number of samples (particles).
    n_resamples : int
    confidence : float
    """

    value: float
    low: float
    high: float
    n: int
    n_resamples: int = 0
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def _paired(pred, true) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(pred, dtype=np.float64).reshape(-1)
    y = np.asarray(true, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise InputError(f"predictions and labels differ in size: {x.size} vs {y.size}")
    if x.size < 2:
        raise InputError(f"a Pearson coefficient needs at least 2 samples, got {x.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError("predictions or labels contain NaN or inf")
    return x, y


def _pearson_from_sums(n, sx, sy, sxx, syy, sxy):
    cov = sxy / n - (sx / n) * (sy / n)
    var_x = sxx / n - (sx / n) ** 2
    var_y = syy / n - (sy / n) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        return cov / np.sqrt(var_x * var_y)


def pearson(pred, true) -> float:
    """Pearson correlation coefficient of two equal-length samples.

    Raises
    ------
    InputError
        For mismatched sizes, fewer than 2 samples, non-finite values, or a constant sample (undefined).

    Examples
    --------
    >>> pearson([1.0, 2.0, 3.0], [2.0, 4.0, 7.0])  # doctest: +ELLIPSIS
    0.993...
    """
    x, y = _paired(pred, true)
    x = x - x.mean()
    y = y - y.mean()
    denominator = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if denominator == 0:
        which = "predictions" if np.dot(x, x) == 0 else "labels"
        raise InputError(f"the Pearson coefficient is undefined: the {which} are constant")
    # Clip the last-ulp overshoot so identical inputs give exactly 1.
    return float(np.clip(np.dot(x, y) / denominator, -1.0, 1.0))


def bootstrap_pearson(
    pred,
    true,
    n_resamples: int = 5000,
    confidence: float = 0.95,
    seed: int = 0,
    *,
    chunk_elements: int = 1 << 22,
) -> PearsonEstimate:
    """Pearson coefficient with a bootstrap percentile interval over samples.

    Each resample draws ``n`` of the ``n`` (prediction, label) pairs with replacement; the interval is
    the central ``confidence`` fraction of the resampled coefficients.

    Parameters
    ----------
    pred, true : array-like of equal size
    n_resamples : int
    confidence : float in (0, 1)
    seed : int
        Seed of the resampling; equal seeds give equal intervals.
    chunk_elements : int
        Resampled indices drawn at once (memory ~ 16 bytes each); resamples are processed in chunks.

    Returns
    -------
    PearsonEstimate

    Notes
    -----
    The data are centred and scaled once; a resample is then summarised by how often it drew each
    sample (a bincount of its indices), and its five sums ``x, y, x^2, y^2, xy`` are one matrix product
    with those counts. 5000 resamples of 2e5 samples take about ten seconds of one core.
    """
    x, y = _paired(pred, true)
    if not 0 < confidence < 1:
        raise InputError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    if n_resamples < 1:
        raise InputError(f"n_resamples must be at least 1, got {n_resamples}")
    value = pearson(x, y)
    n = x.size
    # Standardising first keeps the one-pass sums free of cancellation.
    x = (x - x.mean()) / x.std()
    y = (y - y.mean()) / y.std()
    # One row per needed sum; a resample's five sums are then its count vector times this matrix.
    moments = np.stack([x, y, x * x, y * y, x * y])
    rng = np.random.default_rng(seed)
    per_chunk = max(1, min(n_resamples, chunk_elements // n))
    counts = np.empty((per_chunk, n))
    samples = np.empty(n_resamples)
    for first in range(0, n_resamples, per_chunk):
        count = min(per_chunk, n_resamples - first)
        index = rng.integers(0, n, size=(count, n))
        for row in range(count):
            counts[row] = np.bincount(index[row], minlength=n)
        sx, sy, sxx, syy, sxy = moments @ counts[:count].T
        samples[first : first + count] = _pearson_from_sums(n, sx, sy, sxx, syy, sxy)
    tail = (1 - confidence) / 2
    # A resample can be constant only for tiny n; such draws carry no coefficient.
    low, high = np.nanquantile(samples, [tail, 1 - tail])
    return PearsonEstimate(
        value=value,
        low=float(low),
        high=float(high),
        n=int(n),
        n_resamples=int(n_resamples),
        confidence=float(confidence),
    )


def per_configuration_pearson(preds: list, trues: list) -> tuple[float, float]:
    """Mean over configurations of the per-configuration Pearson coefficient, and its standard error.

    Parameters
    ----------
    preds, trues : lists of arrays, one pair per configuration

    Returns
    -------
    mean : float
    std_error : float
        Sample standard deviation over configurations divided by sqrt(count); NaN for one configuration.
    """
    if len(preds) != len(trues):
        raise InputError(f"{len(preds)} prediction arrays but {len(trues)} label arrays")
    if not preds:
        raise InputError("per-configuration Pearson needs at least one configuration")
    values = np.array([pearson(p, t) for p, t in zip(preds, trues)])
    if values.size == 1:
        return float(values[0]), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))
