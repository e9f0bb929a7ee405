"""The streaming Semi-CRF against brute-force enumeration (float64, to 1e-9)."""

from __future__ import annotations

import itertools

import brute_force as bf
import pytest
import torch
from crf_cases import random_case
from hypothesis import given, settings
from hypothesis import strategies as st

import semicrf
from semicrf.crf import traced
from semicrf.crf.likelihood import gold_mask, label_nll, masked_log_partition

TOL = 1e-9

shapes = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 7),  # T
    st.integers(1, 9),  # K (may exceed T)
    st.integers(1, 3),  # C
    st.integers(0, 10_000),  # seed
    st.booleans(),  # with start
)


def masked_log_partition_ref(scores, transition, duration, lengths, start=None, allowed=None):
    return masked_log_partition(scores, transition, duration, lengths, start, allowed, "reference")


def reference_viterbi(*args):
    return semicrf.viterbi(*args, backend="reference")


def _case(shape):
    batch, length, max_len, labels, seed, with_start = shape
    return random_case(batch, length, max_len, labels, seed, with_start=with_start)


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_log_partition_equals_enumeration(shape):
    case = _case(shape)
    got = semicrf.log_partition(*case.args, backend="reference")
    want = bf.log_partition(*case.args)
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_viterbi_equals_enumeration(shape):
    case = _case(shape)
    best, paths = semicrf.viterbi(*case.args, backend="reference")
    want_best, want_paths = bf.viterbi(*case.args)
    torch.testing.assert_close(best, want_best, atol=TOL, rtol=0)
    for b in range(len(paths)):
        # the path must reach the optimum; it must be the enumerated one unless tied
        rescored = semicrf.segmentation_score(
            case.scores[b : b + 1], case.transition, case.duration, [paths[b]],
            None if case.start is None else case.start,
        )
        torch.testing.assert_close(rescored[0], want_best[b], atol=TOL, rtol=0)
        all_sc = bf.all_scores(case.scores[b], case.transition, case.duration,
                               int(case.lengths[b]), case.start)
        runner_up = torch.topk(all_sc, min(2, all_sc.numel())).values
        if runner_up.numel() == 1 or runner_up[0] - runner_up[1] > 1e-6:
            assert paths[b] == want_paths[b]


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_marginals_equal_enumeration(shape):
    case = _case(shape)
    got = semicrf.marginals(*case.args, backend="reference")
    want = bf.label_marginals(*case.args)
    torch.testing.assert_close(got, want, atol=TOL, rtol=0)


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 1000))
def test_gradients_equal_enumeration(shape, weight_seed):
    case = _case(shape)
    weights = torch.randn(case.scores.shape[0], generator=torch.Generator().manual_seed(weight_seed),
                          dtype=torch.float64)
    inputs = [x for x in (case.scores, case.transition, case.duration, case.start) if x is not None]

    def grads(fn):
        leaves = [x.clone().requires_grad_() for x in inputs]
        start = leaves[3] if case.start is not None else None
        out = fn(leaves[0], leaves[1], leaves[2], case.lengths, start)
        return torch.autograd.grad((out * weights).sum(), leaves)

    got = grads(lambda *a: semicrf.log_partition(*a, backend="reference"))
    want = grads(bf.log_partition)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=TOL, rtol=0)


@pytest.mark.parametrize("with_start", [True, False])
def test_gradcheck_every_input(with_start):
    case = random_case(2, 6, 3, 3, seed=5, with_start=with_start)
    inputs = [x.clone().requires_grad_() for x in (case.scores, case.transition, case.duration)]
    if with_start:
        inputs.append(case.start.clone().requires_grad_())
    fn = lambda s, tr, du, *st_: semicrf.log_partition(
        s, tr, du, case.lengths, st_[0] if st_ else None, backend="reference")
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8)


def test_gradients_are_deterministic():
    case = random_case(3, 40, 12, 3, seed=3)
    runs = []
    for _ in range(2):
        leaves = [x.clone().requires_grad_() for x in (case.scores, case.transition, case.duration)]
        semicrf.log_partition(leaves[0], leaves[1], leaves[2], case.lengths, case.start).sum().backward()
        runs.append([x.grad for x in leaves])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_marginals_are_differentiable_and_match_streaming():
    case = random_case(2, 9, 4, 3, seed=11)
    scores = case.scores.clone().requires_grad_()
    with_grad = semicrf.marginals(scores, case.transition, case.duration, case.lengths, case.start)
    plain = semicrf.marginals(*case.args)
    torch.testing.assert_close(with_grad.detach(), plain, atol=TOL, rtol=0)
    assert torch.autograd.gradcheck(
        lambda s: semicrf.marginals(s, case.transition, case.duration, case.lengths, case.start),
        [scores], eps=1e-6, atol=1e-7)


def test_traced_path_matches_streaming_on_longer_input():
    case = random_case(3, 60, 17, 4, seed=2)
    torch.testing.assert_close(traced.log_partition(*case.args),
                               semicrf.log_partition(*case.args), atol=TOL, rtol=0)


def test_marginals_zero_past_length_and_sum_to_one():
    case = random_case(3, 30, 8, 3, seed=4)
    m = semicrf.marginals(*case.args)
    for b, n in enumerate(case.lengths.tolist()):
        torch.testing.assert_close(m[b, :n].sum(1), torch.ones(n, dtype=torch.float64))
        assert torch.all(m[b, n:] == 0)


def _consistent(path, labels):
    return all(all(labels[i] == c for i in range(s, e)) for s, e, c in path)


@settings(max_examples=40, deadline=None)
@given(shapes, st.integers(0, 1000))
def test_gold_partition_equals_enumeration_over_consistent_segmentations(shape, label_seed):
    case = _case(shape)
    batch, length, labels = case.scores.shape
    y = torch.randint(0, labels, (batch, length), generator=torch.Generator().manual_seed(label_seed))
    allowed = gold_mask(y, case.lengths, labels)
    got = masked_log_partition_ref(*case.args[:4], case.start, allowed)
    for b in range(batch):
        n = int(case.lengths[b])
        sc = bf.all_scores(case.scores[b], case.transition, case.duration, n, case.start)
        keep = torch.tensor([_consistent(p, y[b].tolist())
                             for p in bf.segmentations(n, case.duration.shape[0], labels)])
        torch.testing.assert_close(got[b], torch.logsumexp(sc[keep], 0), atol=TOL, rtol=0)


@pytest.mark.parametrize("length,max_len,labels", [(4, 2, 3), (5, 3, 2), (3, 5, 3), (4, 1, 2)])
def test_probabilities_of_all_labellings_sum_to_one(length, max_len, labels):
    case = random_case(1, length, max_len, labels, seed=length * 10 + max_len, full_length=True)
    total = 0.0
    for y in itertools.product(range(labels), repeat=length):
        nll = label_nll(*case.args[:4], torch.tensor([y]), case.start)
        assert float(nll) >= -1e-12
        total += float(torch.exp(-nll))
    assert abs(total - 1.0) < 1e-9


@settings(max_examples=30, deadline=None)
@given(shapes, st.integers(0, 1000), st.floats(0.1, 20.0))
def test_nll_is_nonnegative(shape, label_seed, scale):
    batch, length, max_len, labels, seed, with_start = shape
    case = random_case(batch, length, max_len, labels, seed, with_start=with_start, scale=scale)
    y = torch.randint(0, labels, (batch, length), generator=torch.Generator().manual_seed(label_seed))
    assert torch.all(label_nll(*case.args[:4], y, case.start) >= -1e-9)


def test_float32_inputs_give_float32_results_close_to_float64():
    case = random_case(2, 300, 50, 3, seed=9)
    args32 = [x.float() if x.is_floating_point() else x for x in case.args]
    z32 = semicrf.log_partition(*args32)
    assert z32.dtype == torch.float32
    torch.testing.assert_close(z32.double(), semicrf.log_partition(*case.args), atol=1e-3, rtol=1e-6)
    scores = args32[0].clone().requires_grad_()
    semicrf.log_partition(scores, *args32[1:]).sum().backward()
    assert scores.grad.dtype == torch.float32


def test_viterbi_traceback_covers_very_many_segments():
    case = random_case(2, 5000, 1, 3, seed=1, full_length=True)
    best, paths = semicrf.viterbi(*case.args)
    assert [len(p) for p in paths] == [5000, 5000]
    torch.testing.assert_close(semicrf.segmentation_score(case.scores, case.transition,
                                                          case.duration, paths, case.start), best)


def test_viterbi_long_segments_score_matches():
    case = random_case(2, 3000, 700, 3, seed=8)
    case.duration[:, 0] += torch.linspace(0, 30, 700, dtype=torch.float64)  # favour long label-0
    best, paths = semicrf.viterbi(*case.args)
    for b, path in enumerate(paths):
        assert path[0][0] == 0 and path[-1][1] == int(case.lengths[b])
    torch.testing.assert_close(semicrf.segmentation_score(*case.args[:3], paths, case.start), best)


def test_long_input_forward_backward_is_finite():
    """T = 100,000, K = 500, C = 3 on CPU: O(T C + K C) memory, finite gradients."""
    case = random_case(1, 100_000, 500, 3, seed=0, full_length=True, dtype=torch.float32)
    leaves = [x.clone().requires_grad_() for x in (case.scores, case.transition, case.duration)]
    log_z = semicrf.log_partition(leaves[0], leaves[1], leaves[2], case.lengths, case.start)
    log_z.sum().backward()
    assert torch.isfinite(log_z).all()
    for leaf in leaves:
        assert torch.isfinite(leaf.grad).all()
    # each position's label marginals (the scores gradient) sum to one
    torch.testing.assert_close(leaves[0].grad.sum(2), torch.ones(1, 100_000), atol=1e-4, rtol=0)


def test_gradients_without_duration_grad_are_unchanged():
    case = random_case(2, 30, 7, 3, seed=6)
    results = []
    for duration_grad in (True, False):
        leaves = [case.scores.clone().requires_grad_(), case.transition.clone().requires_grad_(),
                  case.duration.clone().requires_grad_(duration_grad)]
        semicrf.log_partition(*leaves, case.lengths, case.start).sum().backward()
        results.append((leaves[0].grad, leaves[1].grad, leaves[2].grad))
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
    assert results[1][2] is None and results[0][2] is not None


def test_label_nll_joint_and_separate_sweeps_agree(monkeypatch):
    from semicrf.crf import likelihood

    case = random_case(3, 40, 9, 3, seed=12)
    y = torch.randint(0, 3, (3, 40), generator=torch.Generator().manual_seed(1)).cumsum(1) // 7 % 3
    joint = label_nll(*case.args[:4], y, case.start)
    monkeypatch.setattr(likelihood, "JOINT_SWEEP_MAX_WINDOW", 0)
    separate = label_nll(*case.args[:4], y, case.start)
    torch.testing.assert_close(joint, separate, atol=1e-10, rtol=0)
