"""The bootstrap over test sequences: one implementation, three interval kinds.

:func:`bootstrap` resamples test sequences with replacement (the same indices for every
per-sequence sample it is given, so comparisons are paired) and recomputes a statistic on
each resample. Intervals at level ``1 - alpha``:

- ``"percentile"``: the ``alpha/2`` and ``1 - alpha/2`` quantiles of the replicates;
- ``"basic"``: the percentile interval reflected about the estimate,
  ``[2 est - q_hi, 2 est - q_lo]``; it removes a bias of the replicates relative to the
  estimate (e.g. a plug-in KL, whose resampled histograms are lumpier than the original
  and so biased upward), at the price of a possibly negative lower end;
- ``"bca"``: bias-corrected and accelerated (Efron 1987): percentiles moved by the bias
  correction ``z0 = Phi^-1(share of replicates below the estimate)`` and the acceleration
  ``a`` from the jackknife (leave one sequence out); second-order accurate.

:func:`paired_bootstrap` is the difference of one metric between two models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import norm

INTERVALS: tuple[str, ...] = ("percentile", "basic", "bca")


def _take(items: Any, idx: np.ndarray) -> Any:
    """``items[idx]`` for arrays, a list of the selected elements otherwise."""
    if isinstance(items, np.ndarray):
        return items[idx]
    return [items[i] for i in idx]


def _bca_levels(estimate: float, replicates: np.ndarray, jackknife: np.ndarray,
                alpha: float) -> tuple[float, float]:
    """The BCa quantile levels of the lower and upper bound."""
    b = replicates.size
    share = (np.sum(replicates < estimate) + 0.5 * np.sum(replicates == estimate)) / b
    z0 = norm.ppf(np.clip(share, 0.5 / b, 1.0 - 0.5 / b))
    dev = jackknife.mean() - jackknife
    denom = 6.0 * np.sum(dev**2) ** 1.5
    accel = float(np.sum(dev**3) / denom) if denom > 0 else 0.0
    levels = []
    for q in (alpha / 2.0, 1.0 - alpha / 2.0):
        z = z0 + norm.ppf(q)
        levels.append(float(norm.cdf(z0 + z / (1.0 - accel * z))))
    return levels[0], levels[1]


def bootstrap(
    statistic: Callable[..., float],
    *samples: Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    interval: str = "percentile",
) -> dict[str, Any]:
    """Bootstrap interval of ``statistic(*samples)`` over the test sequences.

    Every sample is a per-sequence sequence of equal length S (arrays with S rows, or lists):
    a resample draws S indices with replacement and passes every sample taken at them to
    ``statistic`` (arrays stay arrays). Pass per-sequence sufficient statistics (boundary
    counts, length histograms from :mod:`semicrf.metrics`) for speed.

    Returns ``estimate`` (on the full set), ``ci_low``, ``ci_high``, ``interval``,
    ``n_boot``, ``alpha`` and ``bias`` (mean replicate - estimate).
    """
    if not samples:
        raise ValueError("bootstrap needs at least one per-sequence sample")
    n = len(samples[0])
    if any(len(s) != n for s in samples):
        raise ValueError(f"samples must have equal length, got {[len(s) for s in samples]}")
    if n == 0:
        raise ValueError("need at least one test sequence")
    if isinstance(n_boot, bool) or int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")

    estimate = float(statistic(*samples))
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_boot))
    for i in range(int(n_boot)):
        idx = rng.integers(0, n, size=n)
        values[i] = float(statistic(*(_take(s, idx) for s in samples)))
    lo_q, hi_q = alpha / 2.0, 1.0 - alpha / 2.0
    if interval == "bca":
        if np.all(values == values[0]) or n < 2:
            lo_q, hi_q = 0.5, 0.5  # degenerate: every replicate equal
        else:
            keep = np.arange(n)
            jack = np.array([float(statistic(*(_take(s, keep[keep != j]) for s in samples)))
                             for j in range(n)])
            lo_q, hi_q = _bca_levels(estimate, values, jack, alpha)
    low, high = (float(x) for x in np.quantile(values, [lo_q, hi_q]))
    if interval == "basic":
        low, high = 2.0 * estimate - high, 2.0 * estimate - low
    return {"estimate": estimate, "ci_low": low, "ci_high": high, "interval": interval,
            "n_boot": int(n_boot), "alpha": float(alpha), "bias": float(values.mean() - estimate)}


def paired_bootstrap(
    metric_fn: Callable[[Any, Any], float],
    pred_a: Sequence[Any],
    pred_b: Sequence[Any],
    true: Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    interval: str = "percentile",
) -> dict[str, Any]:
    """Paired bootstrap of ``metric_fn(pred_a, true) - metric_fn(pred_b, true)``.

    Test sequences are resampled with replacement (the same resample for both models, so
    the comparison is paired); ``metric_fn(preds, trues)`` receives the resampled elements,
    as a list, or as an array when the inputs are numpy arrays. For speed pass per-sequence
    sufficient statistics, e.g. the rows of :func:`semicrf.metrics.boundary_match_counts`
    with :func:`semicrf.metrics.f1_from_counts` as ``metric_fn`` (ignoring ``true``).
    Returns what :func:`bootstrap` returns.
    """
    n = len(true)
    if len(pred_a) != n or len(pred_b) != n:
        raise ValueError(
            f"pred_a, pred_b and true must have equal length, got {len(pred_a)}, {len(pred_b)}, {n}"
        )
    return bootstrap(lambda a, b, t: float(metric_fn(a, t)) - float(metric_fn(b, t)),
                     pred_a, pred_b, true, n_boot=n_boot, seed=seed, alpha=alpha,
                     interval=interval)
