"""Ground-truth duration distributions: exact pmf/cdf and the sampler that follows them."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from semicrf.data import (
    CLASS_NAMES,
    DurationSpec,
    GeneratorConfig,
    sample_durations,
    true_duration_binned,
    true_duration_cdf,
    true_duration_pmf,
)
from semicrf.data.durations import duration_cdf

N_KS = 20_000
ALPHA = 1e-3


def discrete_ks(sample: np.ndarray, cdf: np.ndarray, lo: int) -> tuple[float, float]:
    """KS statistic of an integer sample against a discrete cdf given on lo..lo+len(cdf)-1.

    D = max_d |F_n(d) - F(d)| over the support (both right-continuous), p-value from the
    Kolmogorov distribution, which is conservative for discrete distributions.
    """
    n = sample.size
    counts = np.bincount(sample - lo, minlength=cdf.size)
    assert counts.size == cdf.size, "sample outside the support"
    ecdf = np.cumsum(counts) / n
    d = float(np.max(np.abs(ecdf - cdf)))
    return d, float(stats.kstwo.sf(d, n))


def shifted(spec: DurationSpec, factor: float) -> DurationSpec:
    return DurationSpec(median=spec.median * factor, sigma=spec.sigma, min=spec.min, max=spec.max)


def test_defaults_are_the_spec_table() -> None:
    cfg = GeneratorConfig()
    assert cfg.durations["exon"] == DurationSpec(150.0, 0.5, 30, 500)
    assert cfg.durations["intron"] == DurationSpec(3000.0, 1.0, 100, 10_000)
    assert cfg.durations["intergenic"] == DurationSpec(5000.0, 0.8, 500, 20_000)
    assert cfg.bound_mode == "truncate"


@pytest.mark.parametrize("mode", ["truncate", "clip"])
@pytest.mark.parametrize("name", CLASS_NAMES)
def test_pmf_is_a_distribution_on_the_bounds(name: str, mode: str) -> None:
    cfg = GeneratorConfig.from_overrides({"bound_mode": mode})
    spec = cfg.durations[name]
    pmf = true_duration_pmf(cfg, name)
    assert pmf.shape == (spec.max,) and pmf.dtype == np.float64
    assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(pmf[: spec.min - 1] == 0) and np.all(pmf[spec.min - 1 :] > 0)
    # label id and name give the same answer
    np.testing.assert_array_equal(pmf, true_duration_pmf(cfg, CLASS_NAMES.index(name)))


def test_pmf_values_are_the_rounded_lognormal() -> None:
    spec = DurationSpec(median=150.0, sigma=0.5, min=30, max=500)
    F = stats.lognorm(s=0.5, scale=150.0).cdf
    pmf = np.diff(duration_cdf(spec, "truncate", np.arange(0, 501)))
    z = F(500.5) - F(29.5)
    for d in (30, 31, 150, 499, 500):
        assert pmf[d - 1] == pytest.approx((F(d + 0.5) - F(d - 0.5)) / z, rel=1e-9)
    clip = np.diff(duration_cdf(spec, "clip", np.arange(0, 501)))
    assert clip[29] == pytest.approx(F(30.5), rel=1e-9)  # atom at min
    assert clip[499] == pytest.approx(1 - F(499.5), rel=1e-9)  # atom at max
    assert clip[149] == pytest.approx(F(150.5) - F(149.5), rel=1e-9)


def test_pmf_max_len_drops_the_tail_and_pads_with_zeros() -> None:
    cfg = GeneratorConfig()
    full = true_duration_pmf(cfg, "intron")
    short = true_duration_pmf(cfg, "intron", 1000)
    assert short.shape == (1000,)
    np.testing.assert_allclose(short, full[:1000], rtol=0, atol=1e-15)
    assert short.sum() == pytest.approx(float(true_duration_cdf(cfg, "intron", 1000)), abs=1e-12)
    assert short.sum() < 0.5  # most intron mass is above 1000 bp: nothing was folded in
    longer = true_duration_pmf(cfg, "exon", 800)
    assert longer.shape == (800,) and np.all(longer[500:] == 0)


def test_binned_pmf_matches_summed_pmf() -> None:
    cfg = GeneratorConfig()
    pmf = true_duration_pmf(cfg, "exon")
    edges = np.array([1, 30, 100, 150.5, 151, 501])
    binned = true_duration_binned(cfg, "exon", edges)
    # [edges[i], edges[i+1]) on integer lengths: 1..29, 30..99, 100..150, 151..150 (none), ...
    expected = [pmf[0:29].sum(), pmf[29:99].sum(), pmf[99:150].sum(), 0.0, pmf[150:500].sum()]
    np.testing.assert_allclose(binned, expected, atol=1e-12)
    with pytest.raises(ValueError, match="increasing"):
        true_duration_binned(cfg, "exon", np.array([5, 5, 6]))


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_pmf_rejects_bad_max_len(bad: object) -> None:
    with pytest.raises(ValueError, match="max_len"):
        true_duration_pmf(GeneratorConfig(), "exon", bad)  # type: ignore[arg-type]


def test_unknown_label_is_rejected() -> None:
    with pytest.raises(ValueError, match="class name"):
        true_duration_pmf(GeneratorConfig(), "gene")
    with pytest.raises(ValueError, match="label"):
        true_duration_pmf(GeneratorConfig(), 5)


@pytest.mark.parametrize("mode", ["truncate", "clip"])
@pytest.mark.parametrize("name", CLASS_NAMES)
def test_sampled_durations_follow_the_configured_distribution(name: str, mode: str) -> None:
    """KS per class; the same sample must reject the distribution with a 10% larger median."""
    cfg = GeneratorConfig.from_overrides({"bound_mode": mode})
    spec = cfg.durations[name]
    rng = np.random.default_rng(1234 + CLASS_NAMES.index(name))
    sample = sample_durations(spec, mode, rng, N_KS)
    assert sample.dtype == np.int64 and sample.shape == (N_KS,)
    assert sample.min() >= spec.min and sample.max() <= spec.max
    support = np.arange(spec.min, spec.max + 1)
    d_true, p_true = discrete_ks(sample, duration_cdf(spec, mode, support), spec.min)
    assert p_true > ALPHA, f"{name}: KS D={d_true:.4f} p={p_true:.2g} against the truth"
    # power: a 10% shift of the median (either way) is detected with this sample size
    for factor in (1.1, 1 / 1.1):
        d_alt, p_alt = discrete_ks(sample, duration_cdf(shifted(spec, factor), mode, support),
                                   spec.min)
        assert p_alt < ALPHA, f"{name}: cannot detect median x{factor:.3f} (p={p_alt:.2g})"


def test_sampled_median_is_the_configured_median() -> None:
    spec = GeneratorConfig().durations["exon"]
    sample = sample_durations(spec, "truncate", np.random.default_rng(0), N_KS)
    # truncation to [30, 500] around a median of 150 barely moves the median
    assert abs(float(np.median(sample)) - 150) <= 3


def test_clip_puts_the_tail_mass_on_the_bound() -> None:
    spec = GeneratorConfig().durations["intron"]
    sample = sample_durations(spec, "clip", np.random.default_rng(5), N_KS)
    tail = 1 - stats.norm.cdf(math.log(9999.5 / 3000.0))  # P(rounded draw >= 10000)
    assert np.mean(sample == 10_000) == pytest.approx(tail, abs=4 * math.sqrt(tail / N_KS))
    truncated = sample_durations(spec, "truncate", np.random.default_rng(5), N_KS)
    assert np.mean(truncated == 10_000) < 1e-3


def test_sampling_is_deterministic_given_the_generator() -> None:
    spec = GeneratorConfig().durations["intron"]
    a = sample_durations(spec, "truncate", np.random.default_rng(7), 100)
    b = sample_durations(spec, "truncate", np.random.default_rng(7), 100)
    np.testing.assert_array_equal(a, b)
