"""Segment-length distributions: exact integer pmf / cdf of the ground truth, and sampling.

A length is an integer d >= 1. The continuous draw x ~ LogNormal(log(median), sigma) is
rounded to the nearest integer, so before bounds P(d) = F(d + 1/2) - F(d - 1/2) with F the
log-normal cdf. Bounds [min, max] are then enforced as configured:

- ``truncate``: conditioned on min <= d <= max, i.e. P(d) / (F(max + 1/2) - F(min - 1/2));
- ``clip``: values below min become min and values above max become max.

Sampling uses the inverse cdf, so truncation needs no rejection loop and the samples follow
:func:`true_duration_pmf` exactly.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from semicrf.data.config import DurationSpec, GeneratorConfig


def _std(spec: DurationSpec, x: np.ndarray) -> np.ndarray:
    """Standardised log of x (x > 0)."""
    return (np.log(x) - np.log(spec.median)) / spec.sigma


def _continuous_cdf(spec: DurationSpec, x: np.ndarray) -> np.ndarray:
    """Log-normal cdf F(x), 0 for x <= 0."""
    x = np.asarray(x, dtype=np.float64)
    out = np.zeros_like(x)
    pos = x > 0
    out[pos] = ndtr(_std(spec, x[pos]))
    return out


def duration_cdf(spec: DurationSpec, bound_mode: str, d: np.ndarray | float) -> np.ndarray:
    """P(D <= d) of the integer length D, for any real ``d`` (array in, float64 array out)."""
    d = np.floor(np.asarray(d, dtype=np.float64))
    lo, hi = spec.min, spec.max
    inner = np.clip(d, lo, hi)
    if bound_mode == "truncate":
        f_lo = _continuous_cdf(spec, np.float64(lo - 0.5))
        f_hi = _continuous_cdf(spec, np.float64(hi + 0.5))
        out = (_continuous_cdf(spec, inner + 0.5) - f_lo) / (f_hi - f_lo)
    elif bound_mode == "clip":
        out = _continuous_cdf(spec, inner + 0.5)
    else:
        raise ValueError(f"bound_mode must be 'truncate' or 'clip', got {bound_mode!r}")
    out = np.where(d < lo, 0.0, np.where(d >= hi, 1.0, out))
    return out


def duration_pmf(spec: DurationSpec, bound_mode: str, max_len: int | None = None) -> np.ndarray:
    """Integer pmf on lengths 1..max_len: ``out[d - 1] = P(D = d)``, float64, shape (max_len,).

    ``max_len`` defaults to ``spec.max`` (then the pmf sums to 1). With a smaller ``max_len``
    the mass of lengths above it is *dropped*, not folded in: the sum is P(D <= max_len) and
    ``1 - out.sum()`` is the tail mass, so callers choose whether to renormalise or to add it
    to the last bin.
    """
    if max_len is None:
        max_len = spec.max
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be an integer >= 1, got {max_len!r}")
    cdf = duration_cdf(spec, bound_mode, np.arange(0, max_len + 1))
    return np.diff(cdf)


def sample_durations(
    spec: DurationSpec, bound_mode: str, rng: np.random.Generator, size: int
) -> np.ndarray:
    """``size`` i.i.d. integer lengths following :func:`duration_pmf` exactly; int64 (size,)."""
    if bound_mode == "truncate":
        f_lo, f_hi = _continuous_cdf(spec, np.array([spec.min - 0.5, spec.max + 0.5]))
        u = f_lo + (f_hi - f_lo) * rng.random(size)
        z = ndtri(u)
    elif bound_mode == "clip":
        z = rng.standard_normal(size)
    else:
        raise ValueError(f"bound_mode must be 'truncate' or 'clip', got {bound_mode!r}")
    x = spec.median * np.exp(spec.sigma * z)
    return np.clip(np.rint(x), spec.min, spec.max).astype(np.int64)


def true_duration_pmf(
    config: GeneratorConfig, label: int | str, max_len: int | None = None
) -> np.ndarray:
    """Ground-truth pmf of the segment length of ``label`` (id or class name).

    Returns float64 of shape (max_len,) with ``out[d - 1] = P(length = d)`` for d = 1..max_len.
    ``max_len=None`` means the upper clamp of that class (``config.duration(label).max``), so
    the pmf sums to 1. For a smaller ``max_len`` the mass above it is dropped (the result sums
    to P(length <= max_len)); for a larger one the extra entries are 0.
    """
    return duration_pmf(config.duration(label), config.bound_mode, max_len)


def true_duration_cdf(config: GeneratorConfig, label: int | str, d: np.ndarray | float
                      ) -> np.ndarray:
    """Ground-truth P(length <= d) of ``label`` for any real ``d`` (float64 array)."""
    return duration_cdf(config.duration(label), config.bound_mode, d)


def true_duration_binned(
    config: GeneratorConfig, label: int | str, edges: np.ndarray
) -> np.ndarray:
    """Ground-truth probability of each bin ``[edges[i], edges[i+1])`` of lengths.

    ``edges`` is increasing (real values allowed; integer lengths d count in the bin with
    ``edges[i] <= d < edges[i+1]``). Returns float64 of shape (len(edges) - 1,). Mass outside
    ``[edges[0], edges[-1])`` is not included.
    """
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be a strictly increasing 1-D array with >= 2 entries")
    # P(D < e) = P(D <= ceil(e) - 1)
    below = true_duration_cdf(config, label, np.ceil(edges) - 1)
    return np.diff(below)
