"""Per-position transitions (B, T, C, C) and forbidden (-inf) entries, against brute force.

Both semantics (segmentations / labellings enumerated), censored runs, ragged lengths, K > T,
(C,) and per-sequence (B, C) starts, random -inf entries in transition, start and duration
(including sequences with no
admissible labelling), for the reference and the blocked CPU backends: log Z, Viterbi score
and path, marginals, every gradient (the per-position transition's against the brute-force
posterior transition counts) to 1e-9 in float64; a (C, C) table against its expansion; unused
rows; gradcheck; a long sequence.
"""

from __future__ import annotations

import brute_force as bf_segments
import brute_force_runs as bf_runs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import semicrf
from semicrf.crf.likelihood import label_nll

TOL = 1e-9
# The enumeration scores a forbidden (-inf) entry as FORBIDDEN: exp(FORBIDDEN + any finite
# score here) is 0 in float64, and no log-sum-exp over only -inf terms (whose gradient is NaN)
# is ever formed. A brute-force log Z below IMPOSSIBLE means no admissible labelling.
FORBIDDEN, IMPOSSIBLE = -1e4, -5e3
BACKENDS = ("reference", "auto")  # "auto" on CPU: the blocked sweeps

shapes = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 7),  # T
    st.integers(1, 4),  # K (may exceed T)
    st.integers(1, 3),  # C
    st.integers(0, 10_000),  # seed
    st.sampled_from(["segments", "runs"]),
    st.sampled_from(["none", "random"]),  # censored flags (runs only)
    st.sampled_from([0.0, 0.2, 0.6]),  # probability of a -inf entry
).filter(lambda s: s[3] ** s[1] <= 729 and (s[5] == "runs" or s[1] <= 6))


def _forbid(x: torch.Tensor, rate: float, gen: torch.Generator) -> torch.Tensor:
    return x.masked_fill(torch.rand(x.shape, generator=gen) < rate, float("-inf"))


def _problem(shape):
    batch, length, max_len, labels, seed, semantics, cut, rate = shape
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    lengths[0] = length
    problem = dict(
        scores=rnd(batch, length, labels),
        transition=_forbid(rnd(batch, length, labels, labels), rate, gen),
        duration=_forbid(rnd(max_len, labels), rate / 2, gen),
        start=_forbid(rnd(batch, labels) if seed % 2 else rnd(labels), rate / 2, gen),
    )
    kwargs = dict(semantics=semantics)
    if semantics == "runs":
        kwargs["tail"] = -(0.2 + torch.rand(labels, generator=gen, dtype=torch.float64))
        if cut == "random":
            kwargs["censored"] = torch.rand(batch, 2, generator=gen) < 0.5
    return problem, lengths, kwargs


def _brute(problem, lengths, kwargs, b):
    """Scores of every labelling (runs) or segmentation (segments) of sequence b, and the
    matching list of segment lists."""
    n, labels = int(lengths[b]), problem["scores"].shape[2]
    problem = {k: v.clamp(min=FORBIDDEN) for k, v in problem.items()}
    trans = problem["transition"][b]
    if problem["start"].dim() == 2:  # a per-sequence start (B, C)
        problem["start"] = problem["start"][b]
    if kwargs["semantics"] == "runs":
        cut = kwargs.get("censored")
        flags = (False, False) if cut is None else (bool(cut[b, 0]), bool(cut[b, 1]))
        scores = bf_runs.all_scores(problem["scores"][b], trans, problem["duration"],
                                    problem["start"], kwargs["tail"], n, flags)
        paths = [bf_runs.runs_of(y) for y in bf_runs.labellings(n, labels)]
        return scores, paths
    scores = bf_segments.all_scores(problem["scores"][b], trans, problem["duration"], n,
                                    problem["start"])
    return scores, [list(p) for p in bf_segments.segmentations(n, problem["duration"].shape[0], labels)]


def _leaves(problem, kwargs):
    names = ["scores", "transition", "duration", "start"]
    leaves = {k: problem[k].detach().clone().requires_grad_() for k in names}
    extra = dict(kwargs)
    if "tail" in kwargs:
        extra["tail"] = kwargs["tail"].detach().clone().requires_grad_()
        leaves["tail"] = extra["tail"]
    return leaves, extra


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=40, deadline=None)
@given(shape=shapes)
def test_log_partition_viterbi_marginals_and_gradients_equal_enumeration(backend, shape):
    _check_against_enumeration(backend, shape)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_runs_at_k1_the_linear_chain_map_equals_enumeration(backend, seed):
    """Runs semantics at K = 1 runs as a linear chain (semicrf.crf.chain): censored edges,
    -inf entries, ragged lengths."""
    _check_against_enumeration(backend, (3, 6, 1, 3, seed, "runs", "random", 0.2))


def _check_against_enumeration(backend, shape):
    problem, lengths, kwargs = _problem(shape)
    batch, _, labels = problem["scores"].shape
    leaves, extra = _leaves(problem, kwargs)
    log_z = semicrf.log_partition(leaves["scores"], leaves["transition"], leaves["duration"],
                                  lengths, leaves["start"], backend=backend, **extra)
    weights = torch.linspace(0.5, 1.5, batch, dtype=torch.float64)
    got = torch.autograd.grad((log_z * weights).nan_to_num(neginf=0.0).sum(), list(leaves.values()))
    best, paths = semicrf.viterbi(*(problem[k] for k in ("scores", "transition", "duration")),
                                  lengths, problem["start"], backend=backend, **kwargs)
    marg = semicrf.marginals(*(problem[k] for k in ("scores", "transition", "duration")),
                             lengths, problem["start"], backend=backend, **kwargs)

    ref, ref_extra = _leaves(problem, kwargs)
    total = torch.zeros((), dtype=torch.float64)
    want_marg = torch.zeros_like(marg)
    for b in range(batch):
        scores, segs = _brute(ref, lengths, ref_extra, b)
        want = torch.logsumexp(scores, 0)
        if want < IMPOSSIBLE:  # no admissible labelling
            assert log_z[b] == float("-inf") and best[b] == float("-inf") and paths[b] == []
            continue
        assert abs(float(log_z[b]) - float(want)) <= TOL * max(1.0, abs(float(want)))
        total = total + weights[b] * want
        i = int(torch.argmax(scores))
        assert abs(float(best[b]) - float(scores[i])) <= TOL * max(1.0, abs(float(scores[i])))
        assert [tuple(s) for s in paths[b]] == [tuple(s) for s in segs[i]]
        prob = torch.softmax(scores.detach(), 0)
        for p, path in zip(prob.tolist(), segs):
            for s, e, c in path:
                want_marg[b, s:e, c] += p
    torch.testing.assert_close(marg, want_marg, atol=TOL, rtol=0)
    if total.requires_grad:
        wanted = torch.autograd.grad(total, list(ref.values()), allow_unused=True)
    else:
        wanted = [None] * len(ref)
    for name, g, w in zip(leaves, got, wanted):
        w = torch.zeros_like(g) if w is None else w
        torch.testing.assert_close(g, w, atol=TOL, rtol=TOL, msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("semantics", ["segments", "runs"])
def test_table_equals_its_expansion(backend, semantics):
    gen = torch.Generator().manual_seed(3)
    batch, length, max_len, labels = 3, 40, 6, 3
    scores = torch.randn(batch, length, labels, generator=gen, dtype=torch.float64)
    table = torch.randn(labels, labels, generator=gen, dtype=torch.float64)
    table[0, 2] = float("-inf")
    duration = torch.randn(max_len, labels, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([40, 17, 1])
    kwargs = dict(semantics=semantics, backend=backend)
    if semantics == "runs":
        kwargs.update(tail=torch.full((labels,), -0.3, dtype=torch.float64),
                      censored=torch.tensor([[True, False], [False, True], [True, True]]))
    leaf_table = table.clone().requires_grad_()
    leaf_full = table.expand(batch, length, labels, labels).clone().requires_grad_()
    log_z = semicrf.log_partition(scores, leaf_table, duration, lengths, **kwargs)
    log_z_full = semicrf.log_partition(scores, leaf_full, duration, lengths, **kwargs)
    torch.testing.assert_close(log_z_full, log_z, atol=1e-12, rtol=1e-12)
    (g_table,) = torch.autograd.grad(log_z.sum(), leaf_table)
    (g_full,) = torch.autograd.grad(log_z_full.sum(), leaf_full)
    torch.testing.assert_close(g_full.sum((0, 1)), g_table, atol=1e-10, rtol=1e-10)
    best, paths = semicrf.viterbi(scores, table, duration, lengths, **kwargs)
    best_full, paths_full = semicrf.viterbi(scores, leaf_full.detach(), duration, lengths, **kwargs)
    torch.testing.assert_close(best_full, best, atol=1e-12, rtol=1e-12)
    assert paths_full == paths
    marg = semicrf.marginals(scores, table, duration, lengths, **kwargs)
    marg_full = semicrf.marginals(scores, leaf_full.detach(), duration, lengths, **kwargs)
    torch.testing.assert_close(marg_full, marg, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("semantics", ["segments", "runs"])
def test_unused_rows_have_no_effect_and_zero_gradient(backend, semantics):
    gen = torch.Generator().manual_seed(5)
    batch, length, max_len, labels = 2, 30, 5, 3
    scores = torch.randn(batch, length, labels, generator=gen, dtype=torch.float64)
    trans = torch.randn(batch, length, labels, labels, generator=gen, dtype=torch.float64)
    duration = torch.randn(max_len, labels, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([30, 12])
    kwargs = dict(semantics=semantics, backend=backend)
    unused = torch.zeros(batch, length, labels, labels, dtype=torch.bool)
    unused[:, 0] = True
    unused[1, 12:] = True
    if semantics == "runs":
        unused |= torch.eye(labels, dtype=torch.bool)
    leaf = trans.clone().requires_grad_()
    log_z = semicrf.log_partition(scores, leaf, duration, lengths, **kwargs)
    (grad,) = torch.autograd.grad(log_z.sum(), leaf)
    assert bool((grad[unused] == 0).all())
    assert bool((grad[~unused] > 0).all())
    changed = trans.masked_fill(unused, 7.0)
    torch.testing.assert_close(
        semicrf.log_partition(scores, changed, duration, lengths, **kwargs), log_z.detach(),
        atol=1e-12, rtol=1e-12)


def test_gradcheck_per_position_transition():
    gen = torch.Generator().manual_seed(11)
    batch, length, max_len, labels = 2, 6, 3, 2
    scores = torch.randn(batch, length, labels, generator=gen, dtype=torch.float64)
    trans = torch.randn(batch, length, labels, labels, generator=gen, dtype=torch.float64)
    duration = torch.randn(max_len, labels, generator=gen, dtype=torch.float64)
    tail = torch.full((labels,), -0.5, dtype=torch.float64)
    lengths = torch.tensor([6, 4])
    censored = torch.tensor([[True, False], [False, True]])
    for semantics, extra in (("segments", {}), ("runs", dict(tail=tail, censored=censored))):
        def fn(s, tr, d, semantics=semantics, extra=extra):
            return semicrf.log_partition(s, tr, d, lengths, semantics=semantics, **extra)
        inputs = tuple(x.clone().requires_grad_() for x in (scores, trans, duration))
        assert torch.autograd.gradcheck(fn, inputs)


def test_label_nll_with_per_position_transitions_is_a_probability():
    """Both semantics: the NLL of every labelling of a tiny problem sums (as probabilities) to 1."""
    gen = torch.Generator().manual_seed(2)
    length, labels = 4, 2
    scores = torch.randn(2, length, labels, generator=gen, dtype=torch.float64)
    trans = torch.randn(2, length, labels, labels, generator=gen, dtype=torch.float64)
    trans[0, 2, 0, 1] = float("-inf")
    duration = torch.randn(3, labels, generator=gen, dtype=torch.float64)
    lengths = torch.tensor([length, length - 1])
    for semantics, extra in (("segments", {}), ("runs", dict(tail=torch.full((labels,), -0.4,
                                                                            dtype=torch.float64)))):
        total = torch.zeros(2, dtype=torch.float64)
        for y in bf_runs.labellings(length, labels):
            tags = torch.tensor([y, y])
            nll = label_nll(scores, trans, duration, lengths, tags, semantics=semantics, **extra)
            total += torch.exp(-nll) * torch.tensor([1.0, 0.5])  # sequence 1 ignores y[3]
        torch.testing.assert_close(total, torch.ones(2, dtype=torch.float64), atol=1e-9, rtol=0)


def test_invalid_transition_values_are_one_line_errors():
    scores = torch.zeros(1, 3, 2)
    duration = torch.zeros(2, 2)
    lengths = torch.tensor([3])
    for bad in (float("nan"), float("inf")):
        trans = torch.zeros(1, 3, 2, 2)
        trans[0, 1, 0, 1] = bad
        with pytest.raises(ValueError, match="transition contains NaN or \\+Inf"):
            semicrf.log_partition(scores, trans, duration, lengths)
    with pytest.raises(ValueError, match="transition must have shape"):
        semicrf.log_partition(scores, torch.zeros(2, 3, 2, 2), duration, lengths)
    with pytest.raises(ValueError, match="scores contains NaN"):
        semicrf.log_partition(scores.fill_(float("-inf")), torch.zeros(2, 2), duration, lengths)


def test_long_sequence_with_per_position_transitions_is_finite():
    gen = torch.Generator().manual_seed(0)
    length, labels = 100_000, 3
    scores = torch.randn(1, length, labels, generator=gen)
    trans = torch.randn(1, length, labels, labels, generator=gen).requires_grad_()
    duration = torch.randn(8, labels, generator=gen)
    tail = torch.full((labels,), -0.1)
    log_z = semicrf.log_partition(scores, trans, duration, torch.tensor([length]),
                                  semantics="runs", tail=tail)
    (grad,) = torch.autograd.grad(log_z.sum(), trans)
    assert bool(torch.isfinite(log_z).all()) and bool(torch.isfinite(grad).all())
    best, paths = semicrf.viterbi(scores, trans.detach(), duration, torch.tensor([length]),
                                  semantics="runs", tail=tail)
    assert bool(torch.isfinite(best).all()) and paths[0][-1][1] == length
