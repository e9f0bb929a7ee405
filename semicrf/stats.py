"""Statistics for comparing two models on the same test set."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def _take(items: Any, idx: np.ndarray) -> Any:
    """``items[idx]`` for arrays, a list of the selected elements otherwise."""
    if isinstance(items, np.ndarray):
        return items[idx]
    return [items[i] for i in idx]


def paired_bootstrap(
    metric_fn: Callable[[Any, Any], float],
    pred_a: Sequence[Any],
    pred_b: Sequence[Any],
    true: Sequence[Any],
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float]:
    """Paired bootstrap of ``metric_fn(pred_a, true) - metric_fn(pred_b, true)``.

    Test sequences are resampled with replacement (the same resample for both models, so
    the comparison is paired). ``metric_fn(preds, trues)`` receives the resampled elements,
    as a list, or as an array when the inputs are numpy arrays.

    For speed, pass per-sequence sufficient statistics instead of label arrays, e.g. the
    rows of :func:`semicrf.metrics.boundary_match_counts` with
    :func:`semicrf.metrics.f1_from_counts` as ``metric_fn`` (ignoring ``true``).

    Returns:
        ``estimate`` (the difference on the full set), ``ci_low`` and ``ci_high`` (the
        percentile interval at level ``1 - alpha``), plus ``n_boot`` and ``alpha``.
    """
    n = len(true)
    if len(pred_a) != n or len(pred_b) != n:
        raise ValueError(
            f"pred_a, pred_b and true must have equal length, got {len(pred_a)}, {len(pred_b)}, {n}"
        )
    if n == 0:
        raise ValueError("need at least one test sequence")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive int, got {n_boot!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")

    estimate = float(metric_fn(pred_a, true)) - float(metric_fn(pred_b, true))
    rng = np.random.default_rng(seed)
    diffs = np.empty(int(n_boot))
    for i in range(int(n_boot)):
        idx = rng.integers(0, n, size=n)
        t = _take(true, idx)
        diffs[i] = float(metric_fn(_take(pred_a, idx), t)) - float(metric_fn(_take(pred_b, idx), t))
    low, high = np.quantile(diffs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {
        "estimate": estimate,
        "ci_low": float(low),
        "ci_high": float(high),
        "n_boot": int(n_boot),
        "alpha": float(alpha),
    }
