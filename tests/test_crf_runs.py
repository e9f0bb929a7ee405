"""Runs semantics against brute-force enumeration of labellings (float64, to 1e-9).

Covers log Z, Viterbi (score and labelling), marginals, every gradient (scores, transition,
duration, start, tail), the gold score and label NLL, posterior durations, censored edges
(first, last, both, ragged lengths) and K > T.
"""

from __future__ import annotations

import brute_force_runs as bf
import pytest
import torch
from crf_cases import random_case
from hypothesis import given, settings
from hypothesis import strategies as st

import semicrf
from semicrf.crf.api import posterior_durations
from semicrf.crf.likelihood import label_nll
from semicrf.crf.scoring import label_runs

TOL = 1e-9

shapes = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 7),  # T
    st.integers(1, 4),  # K (may exceed T)
    st.integers(1, 3),  # C
    st.integers(0, 10_000),  # seed
    st.booleans(),  # with start
    st.sampled_from(["none", "random", "all"]),  # censored flags
).filter(lambda s: s[3] ** s[1] <= 729)


def _case(shape):
    batch, length, max_len, labels, seed, with_start, cut = shape
    case = random_case(batch, length, max_len, labels, seed, with_start=with_start)
    gen = torch.Generator().manual_seed(seed + 1)
    tail = -(0.2 + torch.rand(labels, generator=gen, dtype=torch.float64))
    if cut == "none":
        censored = None
    elif cut == "all":
        censored = torch.ones(batch, 2, dtype=torch.bool)
    else:
        censored = torch.rand(batch, 2, generator=gen) < 0.5
    return case, tail, censored


def _kwargs(tail, censored):
    return dict(semantics="runs", tail=tail, censored=censored, backend="reference")


def _flags(censored, b):
    return (False, False) if censored is None else (bool(censored[b, 0]), bool(censored[b, 1]))


def _start(case):
    return case.start if case.start is not None else torch.zeros(case.scores.shape[2], dtype=torch.float64)


def _brute_scores(case, tail, censored, b, start=None, **over):
    args = dict(scores=case.scores[b], transition=case.transition, duration=case.duration,
                start=_start(case) if start is None else start, tail=tail)
    args.update(over)
    return bf.all_scores(args["scores"], args["transition"], args["duration"], args["start"],
                         args["tail"], int(case.lengths[b]), _flags(censored, b))


@settings(max_examples=50, deadline=None)
@given(shapes)
def test_log_partition_and_gradients_equal_enumeration(shape):
    case, tail, censored = _case(shape)
    batch = case.scores.shape[0]
    weights = torch.linspace(0.5, 1.5, batch, dtype=torch.float64)
    leaves = [x.detach().clone().requires_grad_() for x in
              (case.scores, case.transition, case.duration, _start(case), tail)]
    got = semicrf.log_partition(leaves[0], leaves[1], leaves[2], case.lengths, leaves[3],
                                **_kwargs(leaves[4], censored))
    got_grads = torch.autograd.grad((got * weights).sum(), leaves)
    ref_leaves = [x.detach().clone().requires_grad_() for x in leaves]
    want = torch.stack([
        torch.logsumexp(bf.all_scores(ref_leaves[0][b], ref_leaves[1], ref_leaves[2], ref_leaves[3],
                                      ref_leaves[4], int(case.lengths[b]), _flags(censored, b)), 0)
        for b in range(batch)
    ])
    want_grads = torch.autograd.grad((want * weights).sum(), ref_leaves, allow_unused=True)
    torch.testing.assert_close(got, want, atol=TOL, rtol=TOL)
    for name, g, w in zip(("scores", "transition", "duration", "start", "tail"), got_grads, want_grads):
        w = torch.zeros_like(g) if w is None else w
        torch.testing.assert_close(g, w, atol=TOL, rtol=TOL, msg=name)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_viterbi_returns_the_best_labelling(shape):
    case, tail, censored = _case(shape)
    best, paths = semicrf.viterbi(*case.args, **_kwargs(tail, censored))
    labels = case.scores.shape[2]
    for b in range(case.scores.shape[0]):
        scores = _brute_scores(case, tail, censored, b)
        i = int(torch.argmax(scores))
        assert abs(float(best[b]) - float(scores[i])) <= TOL * max(1.0, abs(float(scores[i])))
        want = bf.runs_of(bf.labellings(int(case.lengths[b]), labels)[i])
        assert [tuple(s) for s in paths[b]] == want


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_marginals_equal_enumeration(shape):
    case, tail, censored = _case(shape)
    got = semicrf.marginals(*case.args, **_kwargs(tail, censored))
    want = torch.zeros_like(got)
    labels = case.scores.shape[2]
    for b in range(case.scores.shape[0]):
        n = int(case.lengths[b])
        prob = torch.softmax(_brute_scores(case, tail, censored, b), 0)
        for p, y in zip(prob.tolist(), bf.labellings(n, labels)):
            want[b, torch.arange(n), torch.tensor(y)] += p
    torch.testing.assert_close(got, want, atol=TOL, rtol=TOL)


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_gold_score_nll_and_posterior_durations(shape):
    case, tail, censored = _case(shape)
    batch, length, labels = case.scores.shape
    gen = torch.Generator().manual_seed(shape[4] + 2)
    tags = torch.randint(0, labels, (batch, length), generator=gen)
    nll = label_nll(*case.args[:4], tags, case.start, **_kwargs(tail, censored))
    segments = []
    for b in range(batch):
        n = int(case.lengths[b])
        scores = _brute_scores(case, tail, censored, b)
        y = tuple(tags[b, :n].tolist())
        i = bf.labellings(n, labels).index(y)
        want = torch.logsumexp(scores, 0) - scores[i]
        assert abs(float(nll[b]) - float(want)) <= TOL * max(1.0, abs(float(want)))
        assert float(nll[b]) >= -TOL
        segments.append(bf.runs_of(y))
    # segmentation_score of the same runs equals the brute-force labelling score
    got = semicrf.segmentation_score(case.scores, case.transition, case.duration, segments,
                                     case.start, semantics="runs", tail=tail,
                                     censored=censored)
    for b in range(batch):
        n = int(case.lengths[b])
        want = bf.labelling_score(case.scores[b, :n], case.transition, case.duration, _start(case),
                                  tail, tuple(tags[b, :n].tolist()), _flags(censored, b))
        assert abs(float(got[b]) - float(want)) <= TOL * max(1.0, abs(float(want)))
    # expected counts of complete runs of each length <= K
    counts = posterior_durations(*case.args, semantics="runs", tail=tail, censored=censored)
    max_len = case.duration.shape[0]
    for b in range(batch):
        n = int(case.lengths[b])
        prob = torch.softmax(_brute_scores(case, tail, censored, b), 0)
        want = torch.zeros(max_len, labels, dtype=torch.float64)
        cut = _flags(censored, b)
        for p, y in zip(prob.tolist(), bf.labellings(n, labels)):
            runs = bf.runs_of(y)
            for i, (s, e, c) in enumerate(runs):
                edge = (cut[0] and i == 0) or (cut[1] and i == len(runs) - 1)
                if not edge and e - s <= max_len:
                    want[e - s - 1, c] += p
        torch.testing.assert_close(counts[b], want, atol=TOL, rtol=TOL)


@pytest.mark.parametrize("cut", [None, (True, False), (False, True), (True, True)])
def test_probabilities_of_all_labellings_sum_to_one(cut):
    case = random_case(1, 5, 3, 3, seed=7, full_length=True)
    tail = torch.tensor([-0.3, -0.7, -1.1], dtype=torch.float64)
    censored = None if cut is None else torch.tensor([cut])
    ys = torch.tensor(bf.labellings(5, 3))
    count = ys.shape[0]
    nll = label_nll(case.scores.expand(count, 5, 3), case.transition, case.duration,
                    case.lengths.expand(count), ys, case.start, semantics="runs", tail=tail,
                    censored=None if censored is None else censored.expand(count, 2))
    assert bool((nll >= -TOL).all())
    torch.testing.assert_close(torch.exp(-nll).sum(), torch.tensor(1.0, dtype=torch.float64),
                               atol=1e-12, rtol=0)


@pytest.mark.parametrize("cut", [None, (True, True), (False, True)])
def test_gradcheck_runs(cut):
    case = random_case(2, 6, 3, 2, seed=3)
    tail = torch.tensor([-0.4, -0.9], dtype=torch.float64, requires_grad=True)
    censored = None if cut is None else torch.tensor([cut, cut])
    leaves = [x.detach().clone().requires_grad_()
              for x in (case.scores, case.transition, case.duration, case.start)]

    def f(scores, transition, duration, start, tail):
        return semicrf.log_partition(scores, transition, duration, case.lengths, start,
                                     semantics="runs", tail=tail, censored=censored,
                                     backend="reference")

    assert torch.autograd.gradcheck(f, (*leaves, tail))


def test_differentiable_marginals_runs():
    case = random_case(2, 5, 2, 2, seed=4)
    tail = torch.tensor([-0.4, -0.9], dtype=torch.float64)
    censored = torch.tensor([[True, False], [False, True]])
    scores = case.scores.clone().requires_grad_()
    got = semicrf.marginals(scores, case.transition, case.duration, case.lengths, case.start,
                            semantics="runs", tail=tail, censored=censored)
    plain = semicrf.marginals(case.scores, case.transition, case.duration, case.lengths,
                              case.start, semantics="runs", tail=tail, censored=censored)
    torch.testing.assert_close(got.detach(), plain, atol=TOL, rtol=TOL)
    assert torch.autograd.grad(got[:, :, 0].sum(), scores)[0].abs().sum() > 0


def test_long_sequence_with_tail_is_finite():
    gen = torch.Generator().manual_seed(0)
    batch, length, max_len, labels = 1, 100_000, 50, 3
    scores = torch.randn(batch, length, labels, generator=gen, dtype=torch.float64, requires_grad=True)
    transition = torch.randn(labels, labels, dtype=torch.float64, generator=gen)
    duration = torch.randn(max_len, labels, dtype=torch.float64, generator=gen).requires_grad_()
    tail = torch.full((labels,), -0.01, dtype=torch.float64, requires_grad=True)
    censored = torch.ones(batch, 2, dtype=torch.bool)
    log_z = semicrf.log_partition(scores, transition, duration, torch.tensor([length]),
                                  semantics="runs", tail=tail, censored=censored, backend="reference")
    grads = torch.autograd.grad(log_z.sum(), (scores, duration, tail))
    assert bool(torch.isfinite(log_z).all()) and all(bool(torch.isfinite(g).all()) for g in grads)
    # the marginals of every position sum to one
    torch.testing.assert_close(grads[0].sum(2), torch.ones(batch, length, dtype=torch.float64))


def test_label_runs_reads_maximal_runs():
    labels = torch.tensor([[0, 0, 1, 1, 1, 2, -100], [2, 2, 2, 0, -100, -100, -100]])
    seq, begin, end, label = label_runs(labels, torch.tensor([6, 4]))
    assert seq.tolist() == [0, 0, 0, 1, 1]
    assert list(zip(begin.tolist(), end.tolist(), label.tolist())) == [
        (0, 2, 0), (2, 5, 1), (5, 6, 2), (0, 3, 2), (3, 4, 0)]


def test_runs_errors():
    case = random_case(2, 5, 3, 2, seed=1)
    cut = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(ValueError, match="tail < 0"):
        semicrf.log_partition(*case.args, semantics="runs", censored=cut)
    with pytest.raises(ValueError, match="tail < 0"):
        semicrf.log_partition(*case.args, semantics="runs", tail=torch.zeros(2, dtype=torch.float64),
                              censored=cut)
    with pytest.raises(ValueError, match="only with semantics='runs'"):
        semicrf.log_partition(*case.args, tail=-torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="semantics must be"):
        semicrf.log_partition(*case.args, semantics="run")
    with pytest.raises(ValueError, match="censored must have shape"):
        semicrf.log_partition(*case.args, semantics="runs", tail=-torch.ones(2, dtype=torch.float64),
                              censored=torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="tail must have shape"):
        semicrf.log_partition(*case.args, semantics="runs", tail=-torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="maximal runs"):
        semicrf.segmentation_score(case.scores, case.transition, case.duration,
                                   [[(0, 2, 1), (2, 5, 1)], [(0, 5, 0)]], semantics="runs")


def test_k1_runs_is_a_linear_chain_crf():
    """K = 1 runs: a run of length L scores duration[0] + (L - 1) tail. pytorch-crf map:
    emissions' = scores + tail; transitions'[c', c] = transition[c', c] + duration[0, c] - tail[c]
    (c' != c), transitions'[c, c] = 0; start' = start + duration[0] - tail; end' = 0."""
    torchcrf = pytest.importorskip("torchcrf")
    case = random_case(4, 25, 1, 3, seed=11)
    tail = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    labels = 3
    crf = torchcrf.CRF(labels, batch_first=True).double()
    link = case.duration[0] - tail
    with torch.no_grad():
        trans = case.transition + link.view(1, labels)
        trans.fill_diagonal_(0.0)
        crf.transitions.copy_(trans)
        crf.start_transitions.copy_(case.start + link)
        crf.end_transitions.zero_()
    emissions = case.scores + tail
    mask = torch.arange(25) < case.lengths.view(-1, 1)
    tags = torch.randint(0, labels, (4, 25), generator=torch.Generator().manual_seed(1))
    want = -crf(emissions, tags * mask, mask=mask, reduction="none")
    got = label_nll(*case.args[:4], tags, case.start, semantics="runs", tail=tail)
    torch.testing.assert_close(got, want, atol=1e-9, rtol=0)
    _, paths = semicrf.viterbi(*case.args, semantics="runs", tail=tail)
    decoded = [[c for s, e, c in path for _ in range(s, e)] for path in paths]
    assert decoded == crf.decode(emissions, mask=mask)
