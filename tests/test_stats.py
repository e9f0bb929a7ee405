"""Paired bootstrap on synthetic inputs with known answers (semicrf.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from semicrf import metrics
from semicrf.stats import INTERVALS, bootstrap, paired_bootstrap


def mean_metric(preds, trues) -> float:
    """Mean per-sequence score (ignores the truth): the bootstrap of a difference of means."""
    return float(np.mean(preds))


def test_constant_difference_has_a_degenerate_interval():
    rng = np.random.default_rng(1)
    b = rng.normal(size=50)
    a = b + 0.25
    out = paired_bootstrap(mean_metric, a, b, np.zeros(50), n_boot=200)
    assert out["estimate"] == pytest.approx(0.25)
    assert out["ci_low"] == pytest.approx(0.25)
    assert out["ci_high"] == pytest.approx(0.25)
    assert out["n_boot"] == 200 and out["alpha"] == 0.05


def test_pairing_removes_shared_noise():
    # a and b share a large per-sequence effect; their difference is small and exact
    rng = np.random.default_rng(2)
    shared = rng.normal(scale=10.0, size=200)
    d = np.where(np.arange(200) % 2 == 0, 0.1, 0.3)  # mean 0.2, sd 0.1
    out = paired_bootstrap(mean_metric, shared + d, shared, np.zeros(200), n_boot=500)
    assert out["estimate"] == pytest.approx(0.2)
    assert 0.18 < out["ci_low"] < 0.2 < out["ci_high"] < 0.22


def test_interval_matches_normal_theory():
    rng = np.random.default_rng(3)
    n = 400
    d = rng.normal(0.3, 1.0, size=n)
    out = paired_bootstrap(mean_metric, d, np.zeros(n), np.zeros(n), n_boot=2000, seed=5)
    se = d.std(ddof=0) / np.sqrt(n)
    assert out["estimate"] == pytest.approx(d.mean())
    assert out["ci_low"] == pytest.approx(d.mean() - 1.96 * se, abs=0.15 * se)
    assert out["ci_high"] == pytest.approx(d.mean() + 1.96 * se, abs=0.15 * se)


def test_coverage_is_close_to_nominal():
    rng = np.random.default_rng(4)
    hits = 0
    reps = 200
    for r in range(reps):
        d = rng.exponential(1.0, size=60) - 1.0 + 0.5  # true mean difference 0.5
        out = paired_bootstrap(mean_metric, d, np.zeros(60), np.zeros(60), n_boot=200, seed=r)
        hits += out["ci_low"] <= 0.5 <= out["ci_high"]
    assert 0.86 <= hits / reps <= 0.99


def test_alpha_sets_the_level():
    rng = np.random.default_rng(6)
    d = rng.normal(size=100)
    wide = paired_bootstrap(mean_metric, d, np.zeros(100), np.zeros(100), alpha=0.01)
    narrow = paired_bootstrap(mean_metric, d, np.zeros(100), np.zeros(100), alpha=0.5)
    assert wide["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < wide["ci_high"]


def test_single_sequence_and_swap_symmetry():
    out = paired_bootstrap(mean_metric, [0.7], [0.2], [0], n_boot=50)
    assert (out["estimate"], out["ci_low"], out["ci_high"]) == pytest.approx((0.5, 0.5, 0.5))
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=30), rng.normal(size=30)
    ab = paired_bootstrap(mean_metric, a, b, np.zeros(30), seed=9)
    ba = paired_bootstrap(mean_metric, b, a, np.zeros(30), seed=9)
    assert ba["estimate"] == pytest.approx(-ab["estimate"])
    assert ba["ci_low"] == pytest.approx(-ab["ci_high"])
    assert ba["ci_high"] == pytest.approx(-ab["ci_low"])


def test_seed_reproducibility():
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=40), rng.normal(size=40)
    z = np.zeros(40)
    assert paired_bootstrap(mean_metric, a, b, z, seed=1) == paired_bootstrap(mean_metric, a, b, z, seed=1)
    assert paired_bootstrap(mean_metric, a, b, z, seed=1) != paired_bootstrap(mean_metric, a, b, z, seed=2)


def test_with_boundary_counts_on_label_lists():
    rng = np.random.default_rng(10)
    true = [np.repeat(rng.integers(0, 3, 40), rng.integers(1, 20, 40)) for _ in range(30)]
    good = [t.copy() for t in true]
    bad = [np.where(rng.random(t.size) < 0.05, rng.integers(0, 3, t.size), t) for t in true]
    ca = metrics.boundary_match_counts(good, true, 3, tolerance=2)
    cb = metrics.boundary_match_counts(bad, true, 3, tolerance=2)
    out = paired_bootstrap(lambda c, _t: metrics.f1_from_counts(c), ca, cb, true, n_boot=300)
    f1_bad = metrics.evaluate(bad, true, 3, 10)["boundary_f1_tol2"]
    assert out["estimate"] == pytest.approx(1.0 - f1_bad)
    assert 0.0 < out["ci_low"] <= out["estimate"] <= out["ci_high"] <= 1.0

    # the generic path, on the label arrays themselves (lists are resampled as lists)
    def seg_f1(preds, trues):
        return metrics.evaluate(preds, trues, 3, 10)["segment_f1"]

    out2 = paired_bootstrap(seg_f1, good, bad, true, n_boot=20)
    assert out2["estimate"] == pytest.approx(1.0 - metrics.evaluate(bad, true, 3, 10)["segment_f1"])
    assert out2["ci_low"] > 0.0


def test_bad_arguments():
    z = np.zeros(3)
    with pytest.raises(ValueError, match="equal length"):
        paired_bootstrap(mean_metric, z, z[:2], z)
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap(mean_metric, [], [], [])
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap(mean_metric, z, z, z, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        paired_bootstrap(mean_metric, z, z, z, alpha=1.0)


# ---- interval kinds: basic and BCa (semicrf.stats.bootstrap) -------------------------------


def test_interval_kinds_agree_on_a_symmetric_unbiased_statistic():
    rng = np.random.default_rng(11)
    x = rng.normal(1.0, 1.0, size=300)
    out = {k: bootstrap(lambda a: float(a.mean()), x, n_boot=2000, seed=2, interval=k)
           for k in INTERVALS}
    se = x.std() / np.sqrt(x.size)
    for res in out.values():
        assert res["estimate"] == pytest.approx(x.mean())
        assert res["ci_low"] == pytest.approx(x.mean() - 1.96 * se, abs=0.2 * se)
        assert res["ci_high"] == pytest.approx(x.mean() + 1.96 * se, abs=0.2 * se)
    # basic is the percentile interval reflected about the estimate
    p, b = out["percentile"], out["basic"]
    assert b["ci_low"] == pytest.approx(2 * p["estimate"] - p["ci_high"])
    assert b["ci_high"] == pytest.approx(2 * p["estimate"] - p["ci_low"])


def test_basic_interval_covers_the_true_kl_of_sparse_histograms():
    """Run 2's failure mode: a plug-in KL of sparse per-sequence histograms is biased upward
    (resampled histograms are lumpier), so its percentile interval misses the true KL (and
    can exclude its own estimate). The basic interval removes that bias; BCa does not here
    (its bias correction saturates). Known answer: KL(p || q) of the generating pmfs."""
    bins = 40
    grid = np.arange(bins)
    p = np.exp(-0.5 * ((grid - 20) / 6.0) ** 2)
    q = np.exp(-0.5 * ((grid - 23) / 6.0) ** 2)
    p, q = p / p.sum(), q / q.sum()
    truth = metrics.kl_divergence(p, q)
    covered = dict.fromkeys(INTERVALS, 0)
    for rep in range(10):
        rng = np.random.default_rng(100 + rep)
        true, pred = rng.multinomial(6, p, size=150), rng.multinomial(6, q, size=150)
        for kind in INTERVALS:
            res = bootstrap(metrics.pooled_kl, pred, true, n_boot=200, seed=rep, interval=kind)
            covered[kind] += res["ci_low"] <= truth <= res["ci_high"]
            if kind == "basic":
                assert res["bias"] > 0
    assert covered["basic"] >= 8 and covered["percentile"] <= 2, covered


def test_bca_of_a_skewed_statistic_moves_right():
    # exp(mean) of a normal sample is right-skewed: BCa's upper end lies further from the
    # estimate than its lower end, as the exact interval does
    rng = np.random.default_rng(8)
    x = rng.normal(0.0, 1.0, size=60)
    res = bootstrap(lambda a: float(np.exp(3 * a.mean())), x, n_boot=2000, seed=4, interval="bca")
    assert res["ci_high"] - res["estimate"] > res["estimate"] - res["ci_low"] > 0


def test_bca_degenerate_and_bad_input():
    z = np.ones(20)
    res = bootstrap(lambda a: float(a.mean()), z, n_boot=50, interval="bca")
    assert res["ci_low"] == res["ci_high"] == 1.0
    with pytest.raises(ValueError, match="interval must be one of"):
        bootstrap(lambda a: float(a.mean()), z, interval="studentized")
    with pytest.raises(ValueError, match="equal length"):
        bootstrap(lambda a, b: 0.0, z, z[:3])
    with pytest.raises(ValueError, match="at least one"):
        bootstrap(lambda: 0.0)
