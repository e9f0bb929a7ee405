"""The Triton backend in runs semantics against brute force and the reference (float64, 1e-9).

Maximal runs, the geometric tail beyond K (runs longer than K inside the window), censored
first / last / both edges, K > T, ragged lengths and chunked windows (block_k < K): log Z,
every gradient (scores, transition, duration, start, tail), Viterbi score and labelling,
marginals and the label NLL. Without CUDA the kernels run in the Triton interpreter (set
before the kernels are first imported, as in test_triton.py); ~2 ms per loop step per
program, hence T <= 8 against brute force. Skipped when triton is not installed.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
triton = pytest.importorskip("triton")

import brute_force_runs as bf  # noqa: E402
from crf_cases import random_case  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import semicrf  # noqa: E402
from semicrf.crf import api, triton_backend, triton_kernels  # noqa: E402
from semicrf.crf.likelihood import label_nll  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-9
NAMES = ("scores", "transition", "duration", "start", "tail")
# numpy warnings in the interpreter (log(0), overflow, also in padded lanes) fail the test
pytestmark = [pytest.mark.fast, pytest.mark.filterwarnings("error::RuntimeWarning")]

if DEVICE == "cpu":
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(triton_kernels._forward_kernel, InterpretedFunction):
        pytest.skip("semicrf.crf.triton_kernels was imported before TRITON_INTERPRET=1 was set",
                    allow_module_level=True)


def _problem(batch, length, max_len, labels, seed, cut, **kw):
    """A random case, a tail <= -0.2 and censored flags: "none", "first", "last", "both",
    "random" (per sequence and edge) or "all"."""
    case = random_case(batch, length, max_len, labels, seed, **kw)
    gen = torch.Generator().manual_seed(seed + 1)
    tail = -(0.2 + torch.rand(labels, generator=gen, dtype=torch.float64))
    if cut == "none":
        censored = None
    elif cut == "random":
        censored = torch.rand(batch, 2, generator=gen) < 0.5
    else:
        flags = {"first": (True, False), "last": (False, True), "both": (True, True),
                 "all": (True, True)}[cut]
        censored = torch.tensor([flags] * batch)
    return case, tail.to(case.scores.dtype), censored


def _leaves(case, tail):
    start = case.start if case.start is not None else torch.zeros(
        case.scores.shape[2], dtype=case.scores.dtype)
    return [x.detach().clone().requires_grad_()
            for x in (case.scores, case.transition, case.duration, start, tail)]


def _flags(censored, b):
    return (False, False) if censored is None else (bool(censored[b, 0]), bool(censored[b, 1]))


def _triton_grads(case, tail, censored, weights, block_k):
    leaves = _leaves(case, tail)
    on = [x.to(DEVICE) for x in leaves]
    log_z = triton_backend.log_partition(
        on[0], on[1], on[2], case.lengths.to(DEVICE), on[3], semantics="runs", tail=on[4],
        censored=None if censored is None else censored.to(DEVICE), block_k=block_k)
    grads = torch.autograd.grad((log_z * weights.to(DEVICE)).sum(), leaves)
    return log_z.detach().cpu(), grads


def _brute_grads(case, tail, censored, weights):
    leaves = _leaves(case, tail)
    log_z = torch.stack([
        torch.logsumexp(bf.all_scores(leaves[0][b], *leaves[1:], int(case.lengths[b]),
                                      _flags(censored, b)), 0)
        for b in range(case.scores.shape[0])
    ])
    grads = torch.autograd.grad((log_z * weights).sum(), leaves, allow_unused=True)
    return log_z.detach(), [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, grads)]


def _close(got, want, name="", tol=TOL):
    torch.testing.assert_close(got, want, atol=tol, rtol=tol, msg=lambda m: f"{name}: {m}")


def _check_against_brute_force(case, tail, censored, block_k):
    batch, _, labels = case.scores.shape
    weights = torch.linspace(0.5, 1.5, batch, dtype=torch.float64)
    log_z, grads = _triton_grads(case, tail, censored, weights, block_k)
    want_z, want_grads = _brute_grads(case, tail, censored, weights)
    _close(log_z, want_z, "log_z")
    for name, got, want in zip(NAMES, grads, want_grads):
        _close(got, want, name)
    dev = lambda x: None if x is None else x.to(DEVICE)
    best, paths = triton_backend.viterbi(*(dev(x) for x in case.args), semantics="runs",
                                         tail=dev(tail), censored=dev(censored), block_k=block_k)
    start = _leaves(case, tail)[3].detach()
    for b in range(batch):
        n = int(case.lengths[b])
        scores = bf.all_scores(case.scores[b], case.transition, case.duration, start, tail, n,
                               _flags(censored, b))
        top = torch.topk(scores, min(2, scores.numel()))
        _close(best[b].cpu(), top.values[0], "viterbi score")
        assert paths[b][-1][1] == n
        got = bf.labelling_score(case.scores[b, :n], case.transition, case.duration, start, tail,
                                 tuple(c for s, e, c in paths[b] for _ in range(s, e)),
                                 _flags(censored, b))
        _close(got, top.values[0], "rescored path")
        if top.values.numel() == 1 or top.values[0] - top.values[1] > 1e-6:
            want = bf.runs_of(bf.labellings(n, labels)[int(top.indices[0])])
            assert [tuple(s) for s in paths[b]] == want


# (B, T, K, C, seed, censored, block_k): the tail (K < T), K = 1 (a tail from length 2),
# K > T (no tail), C = 1 (one run: the whole window), T = 1, chunked windows with a tail, every
# censoring pattern, ragged lengths (random_case draws them; the first fills T).
EDGE_CASES = [
    (3, 7, 3, 2, 0, "none", None),
    (3, 5, 1, 3, 1, "random", None),
    (2, 6, 9, 2, 2, "both", None),
    (3, 8, 5, 2, 3, "random", 2),
    (2, 7, 4, 2, 4, "first", 2),
    (2, 5, 2, 3, 5, "last", None),
    (3, 6, 2, 1, 6, "random", None),
    (2, 5, 2, 3, 7, "all", None),
    (2, 1, 3, 2, 8, "both", None),
]


@pytest.mark.parametrize("shape", EDGE_CASES,
                         ids=lambda s: "B{}-T{}-K{}-C{}-s{}-{}-bk{}".format(*s))
def test_edge_cases_equal_enumeration(shape):
    batch, length, max_len, labels, seed, cut, block_k = shape
    case, tail, censored = _problem(batch, length, max_len, labels, seed, cut)
    _check_against_brute_force(case, tail, censored, block_k)


shapes = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 6),  # T
    st.integers(1, 4),  # K (may exceed T)
    st.integers(1, 3),  # C
    st.integers(0, 10_000),  # seed
    st.sampled_from(["none", "random", "all"]),  # censored flags
    st.sampled_from([None, 2]),  # window chunk
    st.booleans(),  # with start
).filter(lambda s: s[3] ** s[1] <= 243)


@settings(max_examples=6, deadline=None)
@given(shapes)
def test_random_cases_equal_enumeration(shape):
    batch, length, max_len, labels, seed, cut, block_k, with_start = shape
    case, tail, censored = _problem(batch, length, max_len, labels, seed, cut,
                                    with_start=with_start)
    _check_against_brute_force(case, tail, censored, block_k)


def test_longer_input_matches_reference():
    """T = 12 (runs up to 12 long with K = 5 in chunks of 2), C = 3, random censoring."""
    case, tail, censored = _problem(2, 12, 5, 3, 11, "random")
    weights = torch.tensor([0.7, -1.2], dtype=torch.float64)
    log_z, grads = _triton_grads(case, tail, censored, weights, 2)
    leaves = _leaves(case, tail)
    want_z = semicrf.log_partition(leaves[0], leaves[1], leaves[2], case.lengths, leaves[3],
                                   semantics="runs", tail=leaves[4], censored=censored,
                                   backend="reference")
    want_grads = torch.autograd.grad((want_z * weights).sum(), leaves)
    _close(log_z, want_z.detach(), "log_z")
    for name, got, want in zip(NAMES, grads, want_grads):
        _close(got, want, name)
    kw = dict(semantics="runs", tail=tail.to(DEVICE), censored=censored.to(DEVICE))
    best, paths = triton_backend.viterbi(*(x.to(DEVICE) for x in case.args), block_k=2, **kw)
    want_best, want_paths = semicrf.viterbi(*case.args, semantics="runs", tail=tail,
                                            censored=censored, backend="reference")
    _close(best.cpu(), want_best, "viterbi")
    assert paths == want_paths


def test_tail_back_pointers_exceed_k():
    """Emissions that favour one label for the whole window: a run longer than K decodes as
    one segment (back_len > K), with and without a censored first run."""
    labels, length, max_len = 2, 8, 2
    scores = torch.zeros(1, length, labels, dtype=torch.float64)
    scores[0, :, 1] = 3.0
    transition = torch.zeros(labels, labels, dtype=torch.float64)
    duration = torch.zeros(max_len, labels, dtype=torch.float64)
    tail = torch.tensor([-0.5, -0.1], dtype=torch.float64)
    lengths = torch.tensor([length])
    for censored in (None, torch.tensor([[True, False]])):
        args = [x.to(DEVICE) for x in (scores, transition, duration, lengths)]
        _, paths = triton_backend.viterbi(*args, semantics="runs", tail=tail.to(DEVICE),
                                          censored=None if censored is None else censored.to(DEVICE))
        assert paths == [[(0, length, 1)]]


def test_marginals_and_label_nll_through_the_api():
    case, tail, censored = _problem(2, 5, 2, 2, 12, "random")
    on = [x.to(DEVICE) for x in case.args]
    kw = dict(semantics="runs", tail=tail.to(DEVICE), censored=censored.to(DEVICE))
    got = semicrf.marginals(*on, **kw, backend="triton")
    want = semicrf.marginals(*case.args, semantics="runs", tail=tail, censored=censored,
                             backend="reference")
    _close(got.cpu(), want, "marginals")
    # every labelling of one sequence: NLL >= 0 and the probabilities sum to one
    ys = torch.tensor(bf.labellings(4, 2))
    count = ys.shape[0]
    nll = label_nll(on[0][:1, :4].expand(count, 4, 2), on[1], on[2],
                    torch.full((count,), 4, device=DEVICE),
                    ys.to(DEVICE), on[4], semantics="runs", tail=kw["tail"],
                    censored=kw["censored"][:1].expand(count, 2), backend="triton")
    assert bool((nll >= -TOL).all())
    _close(torch.exp(-nll).sum().cpu(), torch.tensor(1.0, dtype=torch.float64), "sum of P(y)")


def test_float32_inputs_close_to_reference():
    case, tail, censored = _problem(2, 20, 6, 3, 9, "random", dtype=torch.float32)
    weights = torch.tensor([1.0, -0.5], dtype=torch.float32)
    log_z, grads = _triton_grads(case, tail, censored, weights, None)
    leaves = _leaves(case, tail)
    want_z = semicrf.log_partition(leaves[0], leaves[1], leaves[2], case.lengths, leaves[3],
                                   semantics="runs", tail=leaves[4], censored=censored,
                                   backend="reference")
    want_grads = torch.autograd.grad((want_z * weights).sum(), leaves)
    assert log_z.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    torch.testing.assert_close(log_z, want_z.detach(), atol=1e-4, rtol=1e-6)
    for got, want in zip(grads, want_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_gradients_are_bitwise_deterministic():
    case, tail, censored = _problem(2, 8, 3, 3, 5, "random")
    weights = torch.tensor([1.0, 0.3], dtype=torch.float64)
    first = _triton_grads(case, tail, censored, weights, 2)
    second = _triton_grads(case, tail, censored, weights, 2)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1]))


def test_auto_dispatch_picks_triton_for_runs_on_cuda():
    scores = torch.zeros(1, 3, 2, device=DEVICE)
    assert api.select_backend("triton", scores, "runs") is triton_backend.BACKEND
    chosen = api.select_backend("auto", scores, "runs")
    # auto never picks Triton for CPU tensors (the interpreter is for tests only)
    assert (chosen is triton_backend.BACKEND) == (DEVICE == "cuda")
