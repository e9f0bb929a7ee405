"""Metrics on hand-computed cases, edge cases and properties (semicrf.metrics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

from semicrf import labels, metrics
from semicrf.metrics import evaluate


def seq(*runs: tuple[int, int]) -> np.ndarray:
    """Label array from (label, length) runs."""
    return np.concatenate([np.full(n, lab, dtype=np.int64) for lab, n in runs])


# --------------------------------------------------------------------------------------
# labels


def test_class_names():
    assert labels.class_names(3) == ("intergenic", "exon", "intron")
    assert labels.class_names(5) == ("intergenic", "exon", "intron", "utr5", "utr3")
    assert labels.class_names(np.int64(2)) == ("intergenic", "exon")
    for bad in (0, 6, 2.5, True):
        with pytest.raises(ValueError, match="num_classes"):
            labels.class_names(bad)


# --------------------------------------------------------------------------------------
# segments and boundaries


def test_label_runs_are_maximal_and_exclude_padding():
    y = np.array([0, 0, 1, 1, 1, 2, 0, -100, -100])
    assert labels.label_runs(y) == [(0, 2, 0), (2, 5, 1), (5, 6, 2), (6, 7, 0)]
    assert labels.label_runs(np.array([], dtype=np.int64)) == []


def test_boundary_counts_exact_and_within_tolerance():
    # true boundaries {5, 10}; predicted boundaries {6, 10, 12}
    true = seq((0, 5), (1, 5), (0, 5))
    pred = seq((0, 6), (1, 4), (0, 2), (2, 3))
    m = evaluate([pred], [true], 3, 10)
    assert m["n_boundaries_true"] == 2 and m["n_boundaries_pred"] == 3
    assert m["boundary_precision"] == pytest.approx(1 / 3)
    assert m["boundary_recall"] == pytest.approx(1 / 2)
    assert m["boundary_f1"] == pytest.approx(2 * 1 / (3 + 2))
    assert m["boundary_f1_tol0"] == m["boundary_f1"]
    assert m["boundary_precision_tol1"] == pytest.approx(2 / 3)
    assert m["boundary_recall_tol1"] == pytest.approx(1.0)
    assert m["boundary_f1_tol1"] == pytest.approx(0.8)
    assert m["boundary_f1_tol10"] == pytest.approx(0.8)  # at most 2 matches


def test_boundary_matching_is_one_to_one():
    # one true boundary at 5, predicted boundaries at 4 and 6: only one may count
    true = seq((0, 5), (1, 5))
    pred = seq((0, 4), (2, 2), (1, 4))
    m = evaluate([pred], [true], 3, 10)
    assert m["boundary_precision_tol1"] == pytest.approx(0.5)
    assert m["boundary_recall_tol1"] == pytest.approx(1.0)
    assert m["boundary_f1_tol1"] == pytest.approx(2 / 3)


def test_boundary_matching_is_maximum_not_exact_first():
    # true {11, 12}, pred {10, 11}, k=1: pairing 11-11 first would leave 1 match; max is 2
    true = seq((0, 11), (1, 1), (2, 8))
    pred = seq((0, 10), (1, 1), (2, 9))
    m = evaluate([pred], [true], 3, 10)
    assert m["boundary_f1_tol0"] == pytest.approx(0.5)
    assert m["boundary_f1_tol1"] == pytest.approx(1.0)


def test_tolerance_is_inclusive():
    true = seq((0, 10), (1, 10))
    pred = seq((0, 15), (1, 5))  # 5 positions off
    m = evaluate([pred], [true], 2, 10, tolerances=(2, 4, 5, 10))
    assert m["boundary_f1_tol2"] == 0.0
    assert m["boundary_f1_tol4"] == 0.0
    assert m["boundary_f1_tol5"] == 1.0
    assert m["boundary_f1_tol10"] == 1.0


def test_boundaries_never_match_across_sequences():
    # seq 1: predicted boundary at its last position; seq 2: true boundary at position 1.
    true = [seq((0, 10)), seq((0, 1), (1, 9))]
    pred = [seq((0, 9), (1, 1)), seq((1, 10))]
    m = evaluate(pred, true, 2, 10)
    assert m["n_boundaries_true"] == 1 and m["n_boundaries_pred"] == 1
    assert m["boundary_f1_tol10"] == 0.0
    counts = metrics.boundary_match_counts(pred, true, 2, tolerance=10)
    np.testing.assert_array_equal(counts, [[0, 1, 0], [0, 0, 1]])


def test_empty_prediction_scores_zero():
    true = seq((0, 5), (1, 5), (2, 5))
    pred = seq((0, 15))  # no boundary predicted
    m = evaluate([pred], [true], 3, 10)
    for k in metrics.TOLERANCES:
        assert m[f"boundary_precision_tol{k}"] == 0.0
        assert m[f"boundary_recall_tol{k}"] == 0.0
        assert m[f"boundary_f1_tol{k}"] == 0.0
    assert m["segment_f1"] == 0.0
    assert m["position_accuracy"] == pytest.approx(1 / 3)
    assert m["exon_sensitivity"] == 0.0
    assert m["exon_missing"] == 1.0


def test_all_one_label_sequences():
    y = [seq((2, 7)), seq((2, 3))]
    m = evaluate(y, y, 3, 5)
    assert m["n_boundaries_true"] == 0
    assert m["boundary_f1"] == 1.0 and m["boundary_precision"] == 1.0
    assert m["segment_f1"] == 1.0
    assert m["position_f1_macro"] == 1.0
    assert m["duration_kl"] == {"intergenic": None, "exon": None, "intron": 0.0}
    assert m["duration_wasserstein"]["intron"] == 0.0
    # a single-label prediction of the wrong label
    m = evaluate([seq((0, 7)), seq((0, 3))], y, 3, 5)
    assert m["boundary_f1"] == 1.0  # no boundaries anywhere: nothing missed, nothing claimed
    assert m["segment_f1"] == 0.0
    assert m["position_f1_macro"] == 0.0  # classes 0 and 2 present, both F1 = 0
    # only empty sequences: nothing to find, nothing claimed
    empty = np.zeros(0, dtype=np.int64)
    m = evaluate([empty], [empty], 3, 5)
    assert m["n_positions"] == 0
    assert m["boundary_f1"] == m["segment_f1"] == m["position_f1_macro"] == 1.0
    assert m["duration_kl"] == {"intergenic": None, "exon": None, "intron": None}


def test_padding_is_ignored_and_prediction_truncated():
    true = np.array([0, 0, 1, 1, 2, -100, -100])
    pred = np.array([0, 1, 1, 1, 2, 0, 1])  # garbage past the padding start
    m_pad = evaluate([pred], [true], 3, 4)
    m_ref = evaluate([pred[:5]], [true[:5]], 3, 4)
    assert m_pad == m_ref
    assert m_pad["n_positions"] == 5
    # an all-padding sequence contributes nothing
    m_empty = evaluate([pred[:5], np.zeros(3, np.int64)], [true[:5], np.full(3, -100)], 3, 4)
    assert {k: v for k, v in m_empty.items() if k != "n_sequences"} == {
        k: v for k, v in m_ref.items() if k != "n_sequences"
    }


def test_bad_input_raises():
    good = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="suffix"):
        evaluate([good], [np.array([0, -100, 1])], 2, 3)
    with pytest.raises(ValueError, match="length"):
        evaluate([good[:2]], [good], 2, 3)
    with pytest.raises(ValueError, match="outside"):
        evaluate([np.array([0, 2, 1])], [good], 2, 3)
    with pytest.raises(ValueError, match="outside"):
        evaluate([good], [np.array([0, 1, 5])], 3, 3)
    with pytest.raises(ValueError, match="integer"):
        evaluate([good.astype(float)], [good], 2, 3)
    with pytest.raises(ValueError, match="sequences"):
        evaluate([good, good], [good], 2, 3)
    with pytest.raises(ValueError, match="at least one"):
        evaluate([], [], 2, 3)
    with pytest.raises(ValueError, match="max_duration"):
        evaluate([good], [good], 2, 0)
    with pytest.raises(ValueError, match="1-D"):
        evaluate([good[None]], [good], 2, 3)


def test_accepts_torch_tensors_and_2d_arrays():
    torch = pytest.importorskip("torch")
    true = np.array([[0, 0, 1, 1], [1, 1, 0, 0]])
    pred = np.array([[0, 1, 1, 1], [1, 1, 0, 0]])
    ref = evaluate(list(pred), list(true), 2, 3)
    assert evaluate(pred, true, 2, 3) == ref
    assert evaluate(list(torch.from_numpy(pred)), list(torch.from_numpy(true)), 2, 3) == ref


# --------------------------------------------------------------------------------------
# segments, positions, exons


def test_segment_f1_requires_start_end_and_label():
    true = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 0, 1, 2, 2, 2])
    m = evaluate([pred], [true], 3, 4)
    assert m["segment_precision"] == pytest.approx(1 / 3)
    assert m["segment_recall"] == pytest.approx(1 / 3)
    assert m["segment_f1"] == pytest.approx(1 / 3)
    # same span, wrong label
    m = evaluate([np.array([0, 0, 2, 2])], [np.array([0, 0, 1, 1])], 3, 4)
    assert m["segment_f1"] == pytest.approx(0.5)
    assert m["segment_f1_per_class"] == {"intergenic": 1.0, "exon": 0.0, "intron": 0.0}
    assert m["boundary_f1"] == 1.0  # boundaries carry no label


def test_position_metrics_hand_computed():
    true = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 2, 2])
    m = evaluate([pred], [true], 3, 4)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["position_accuracy"] == pytest.approx(4 / 6)
    assert m["position_precision"] == pytest.approx({"intergenic": 1, "exon": 0.5, "intron": 0.5})
    assert m["base_sensitivity"] == pytest.approx({"intergenic": 2 / 3, "exon": 0.5, "intron": 1})
    assert m["base_specificity"] == pytest.approx({"intergenic": 1, "exon": 3 / 4, "intron": 4 / 5})
    f1 = {"intergenic": 0.8, "exon": 0.5, "intron": 2 / 3}
    assert m["position_f1"] == pytest.approx(f1)
    assert m["position_f1_macro"] == pytest.approx(sum(f1.values()) / 3)


def test_position_macro_averages_present_classes_only():
    true = np.array([0, 0, 1, 1])
    pred = np.array([0, 1, 1, 1])
    m = evaluate([pred], [true], 3, 4)  # intron never appears
    assert m["position_f1"]["intron"] == 1.0  # 0/0 convention
    assert m["position_f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_exon_level_burset_guigo():
    true = np.array([0, 0, 1, 1, 2, 2, 1, 1, 0, 0, 0, 0])
    pred = np.array([0, 0, 1, 1, 2, 1, 1, 1, 0, 0, 1, 0])
    m = evaluate([pred], [true], 3, 4)
    assert m["exon_sensitivity"] == pytest.approx(1 / 2)  # (2,4) found exactly, (6,8) not
    assert m["exon_specificity"] == pytest.approx(1 / 3)  # (2,4) of (2,4), (5,8), (10,11)
    assert m["exon_missing"] == 0.0  # (6,8) overlaps the predicted (5,8)
    assert m["exon_wrong"] == pytest.approx(1 / 3)  # (10,11) overlaps no true exon


# --------------------------------------------------------------------------------------
# durations


def _smoothed_kl(p: list[float], q: list[float], eps: float = 1e-3) -> float:
    """The documented formula, written out independently of the library."""
    b = len(p)
    ps = [(1 - eps) * x / sum(p) + eps / b for x in p]
    qs = [(1 - eps) * x / sum(q) + eps / b for x in q]
    return sum(x * math.log(x / y) for x, y in zip(ps, qs, strict=True))


def test_clamped_histogram_and_kl_formula():
    np.testing.assert_array_equal(metrics.clamped_length_histogram([1, 3, 7, 4], 4), [1, 0, 1, 2])
    assert metrics.kl_divergence([1, 0], [0, 1]) == pytest.approx(_smoothed_kl([1, 0], [0, 1]))
    assert metrics.kl_divergence([3, 1, 0], [6, 2, 0]) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError):
        metrics.kl_divergence([1, 0], [1, 0, 0])


def test_duration_divergences_hand_computed():
    # class 0 runs: true 1,1,1 pred 1,1,2; class 1 runs: true 2,3 pred 2,2
    true = np.array([0, 1, 1, 0, 1, 1, 1, 0])
    pred = np.array([0, 1, 1, 0, 1, 1, 0, 0])
    m = evaluate([pred], [true], 2, 3)
    assert m["duration_kl"]["exon"] == pytest.approx(_smoothed_kl([0, 1, 1], [0, 2, 0]))
    assert m["duration_kl"]["intergenic"] == pytest.approx(_smoothed_kl([3, 0, 0], [2, 1, 0]))
    assert m["duration_wasserstein"] == pytest.approx({"intergenic": 1 / 3, "exon": 0.5})
    s = m["duration_summary"]["exon"]
    assert (s["n_true"], s["n_pred"], s["median_true"], s["median_pred"]) == (2, 2, 2.5, 2.0)


def test_duration_kl_clamps_at_k_but_log_bins_and_w1_do_not():
    true = [seq((0, 100), (2, 5000), (0, 100))]
    pred = [seq((0, 1600), (2, 2000), (0, 1600))]
    m = evaluate(pred, true, 3, 1000)
    assert m["duration_kl"]["intron"] == pytest.approx(0.0, abs=1e-12)  # both clamp to K
    assert m["duration_kl_log"]["intron"] > 1.0
    assert m["duration_wasserstein"]["intron"] == pytest.approx(3000.0)
    assert m["duration_summary"]["intron"]["frac_true_over_k"] == 1.0


def test_no_predicted_segments_of_a_class():
    true = [seq((0, 3), (1, 4), (0, 3))]
    pred = [seq((0, 10))]
    m = evaluate(pred, true, 2, 5)
    assert m["duration_kl"]["exon"] == pytest.approx(_smoothed_kl([0, 0, 0, 1, 0], [1] * 5))
    assert m["duration_wasserstein"]["exon"] is None


def test_segment_lengths_and_edges():
    y = [seq((0, 3), (1, 4), (2, 2), (1, 5), (0, 6)), np.array([1, 1, -100])]
    lengths = metrics.segment_lengths(y, 3)
    assert lengths["intergenic"].tolist() == [3, 6]
    assert lengths["exon"].tolist() == [4, 5, 2]
    assert lengths["intron"].tolist() == [2]
    inner = metrics.segment_lengths(y, 3, drop_edge_segments=True)
    assert {k: v.tolist() for k, v in inner.items()} == {
        "intergenic": [],
        "exon": [4, 5],
        "intron": [2],
    }


def test_learned_duration_pmf_and_table_kl():
    k, c = 6, 3
    uniform = metrics.learned_duration_pmf(np.zeros((k, c)))
    np.testing.assert_allclose(uniform, 1 / k)
    rng = np.random.default_rng(0)
    pmf = rng.dirichlet(np.ones(k), size=c).T  # (K, C)
    np.testing.assert_allclose(metrics.learned_duration_pmf(np.log(pmf) + 7.0), pmf)
    kl = metrics.duration_table_kl(pmf, pmf)
    assert kl == pytest.approx({"intergenic": 0.0, "exon": 0.0, "intron": 0.0}, abs=1e-12)
    kl = metrics.duration_table_kl(uniform, pmf)
    assert kl["exon"] == pytest.approx(_smoothed_kl(pmf[:, 1].tolist(), [1.0] * k))
    with pytest.raises(ValueError):
        metrics.duration_table_kl(uniform, pmf[:-1])
    with pytest.raises(ValueError):
        metrics.learned_duration_pmf(np.full((k, c), np.nan))
    torch = pytest.importorskip("torch")
    table = torch.zeros(k, c, requires_grad=True)
    np.testing.assert_allclose(metrics.learned_duration_pmf(table), 1 / k)


def test_empirical_duration_pmf():
    pmf = metrics.empirical_duration_pmf({"exon": np.array([1, 2, 2, 9])}, 3, 2)
    np.testing.assert_allclose(pmf[:, 0], 0.0)
    np.testing.assert_allclose(pmf[:, 1], [1 / 3, 2 / 3, 0.0])


# --------------------------------------------------------------------------------------
# counts for bootstrapping


def test_counts_agree_with_evaluate():
    rng = np.random.default_rng(3)
    true = [np.repeat(rng.integers(0, 3, 30), rng.integers(1, 8, 30)) for _ in range(5)]
    pred = [np.where(rng.random(t.size) < 0.05, rng.integers(0, 3, t.size), t) for t in true]
    m = evaluate(pred, true, 3, 10)
    for k in (0, 2):
        counts = metrics.boundary_match_counts(pred, true, 3, tolerance=k)
        assert counts.shape == (5, 3)
        assert metrics.f1_from_counts(counts) == pytest.approx(m[f"boundary_f1_tol{k}"])
    seg = metrics.segment_match_counts(pred, true, 3)
    assert metrics.f1_from_counts(seg) == pytest.approx(m["segment_f1"])
    assert seg[:, 2].sum() == m["n_segments_true"]


# --------------------------------------------------------------------------------------
# properties


def _brute_force_matching(a: list[int], b: list[int], k: int) -> int:
    if not a or not b:
        return 0
    adj = np.array([[abs(x - y) <= k for y in b] for x in a], dtype=np.int8)
    match = maximum_bipartite_matching(csr_matrix(adj), perm_type="column")
    return int((match >= 0).sum())


@settings(max_examples=200, deadline=None)
@given(
    a=st.lists(st.integers(0, 60), max_size=25, unique=True),
    b=st.lists(st.integers(0, 60), max_size=25, unique=True),
    k=st.integers(0, 6),
)
def test_greedy_matching_is_maximum(a, b, k):
    a, b = sorted(a), sorted(b)
    expected = _brute_force_matching(a, b, k)
    got = metrics._match_within(np.array(a, dtype=np.int64), np.array(b, dtype=np.int64), k)
    assert int(got.sum()) == expected
    got_rev = metrics._match_within(np.array(b, dtype=np.int64), np.array(a, dtype=np.int64), k)
    assert int(got_rev.sum()) == expected


label_seqs = st.integers(1, 4).flatmap(
    lambda c: st.tuples(
        st.just(c),
        st.lists(
            st.lists(st.integers(0, c - 1), min_size=0, max_size=40).map(
                lambda x: np.array(x, dtype=np.int64)
            ),
            min_size=1,
            max_size=4,
        ),
    )
)


def _f1_like_values(m: dict) -> list[float]:
    vals = [v for key, v in m.items() if key.startswith(("boundary_", "segment_"))]
    vals = [v for v in vals if isinstance(v, float)]
    vals += list(m["segment_f1_per_class"].values()) + list(m["position_f1"].values())
    vals += [m["position_f1_macro"], m["position_accuracy"]]
    return vals


@settings(max_examples=100, deadline=None)
@given(data=label_seqs, seed=st.integers(0, 2**32 - 1), flip=st.floats(0, 1))
def test_properties(data, seed, flip):
    c, true = data
    rng = np.random.default_rng(seed)
    pred = [np.where(rng.random(t.size) < flip, rng.integers(0, c, t.size), t) for t in true]
    m = evaluate(pred, true, c, 5)
    assert all(0.0 <= v <= 1.0 for v in _f1_like_values(m))
    f1s = [m[f"boundary_f1_tol{k}"] for k in metrics.TOLERANCES]
    assert f1s == sorted(f1s)  # monotone in tolerance
    for key in ("duration_kl", "duration_kl_log"):
        assert all(v is None or v >= 0.0 for v in m[key].values())

    perfect = evaluate(true, true, c, 5)
    assert all(v == 1.0 for v in _f1_like_values(perfect))
    for key in ("duration_kl", "duration_kl_log", "duration_wasserstein"):
        assert all(v is None or v == pytest.approx(0.0, abs=1e-12) for v in perfect[key].values())


def test_duration_table_kl_is_undefined_for_a_class_without_mass_below_k():
    from semicrf.metrics import duration_table_kl

    learned = np.full((4, 3), 0.25)
    true = np.array([[0.1, 0.0, 0.5], [0.2, 0.0, 0.5], [0.3, 0.0, 0.0], [0.4, 0.0, 0.0]])
    kl = duration_table_kl(learned, true)
    assert kl["exon"] is None
    assert kl["intergenic"] > 0 and kl["intron"] > 0


def test_tilt_profiled_pmf_removes_a_linear_tilt():
    from semicrf.metrics import tilt_profiled_pmf

    length = np.arange(1, 101, dtype=np.float64)
    true = np.exp(-0.5 * ((np.log(length) - np.log(20)) / 0.4) ** 2)
    true /= true.sum()
    table = np.log(true) + 0.07 * length  # the same pmf, tilted
    raw = np.exp(table - table.max())
    raw /= raw.sum()
    assert abs(length @ raw - length @ true) > 5  # the raw softmax is visibly shifted
    pmf, tilt = tilt_profiled_pmf(table[:, None], true[:, None])
    np.testing.assert_allclose(pmf[:, 0], true, atol=1e-9)
    np.testing.assert_allclose(tilt, [-0.07], atol=1e-9)
