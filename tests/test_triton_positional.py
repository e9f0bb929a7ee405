"""The Triton backend with per-position transitions (B, T, C, C) and forbidden (-inf) entries.

Against enumeration (both semantics, censored runs, tail, K = 1, K > T, T = 1, C = 1,
chunked windows, ragged lengths, random -inf entries in transition, start and duration, a
sequence with no admissible labelling) and against the reference backend on longer inputs:
log Z, Viterbi score and path, marginals and every gradient -- the per-position
transition's included, zero on unused entries -- to 1e-9 in float64. A (C, C) table and
its expansion give the same results. Without CUDA the kernels run in the Triton
interpreter (set before the kernels are first imported, as in test_triton.py).
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
triton = pytest.importorskip("triton")

import brute_force as bf_segments  # noqa: E402
import brute_force_runs as bf_runs  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import semicrf  # noqa: E402
from semicrf.crf import triton_backend, triton_kernels  # noqa: E402
from semicrf.crf.likelihood import label_nll  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-9
NAMES = ("scores", "transition", "duration", "start", "tail")
# The enumeration scores a -inf entry as FORBIDDEN, whose exp (next to any finite score
# here) is 0 in float64; a log Z below IMPOSSIBLE means no admissible labelling.
FORBIDDEN, IMPOSSIBLE = -1e4, -5e3
# numpy warnings in the interpreter (log(0), overflow, also in padded lanes) fail the test
pytestmark = [pytest.mark.fast, pytest.mark.filterwarnings("error::RuntimeWarning")]

if DEVICE == "cpu":
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(triton_kernels._forward_kernel, InterpretedFunction):
        pytest.skip("semicrf.crf.triton_kernels was imported before TRITON_INTERPRET=1 was set",
                    allow_module_level=True)


def _problem(batch, length, max_len, labels, seed, semantics, cut="none", rate=0.0,
             impossible=False, dtype=torch.float64):
    """Tensors (scores, transition (B, T, C, C), duration, start, tail) on the CPU, lengths
    (the first fills T) and censored flags ("none", "random" or "both"); each entry of
    transition is -inf with probability ``rate``, of start and duration with ``rate / 2``.
    ``impossible``: sequence 0 has every transition forbidden and, in runs semantics, no run
    of length >= K (it needs T > K, resp. T >= K >= 2)."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, forbid=0.0):
        x = torch.randn(*shape, generator=gen, dtype=torch.float64)
        return x.masked_fill(torch.rand(shape, generator=gen) < forbid, float("-inf")).to(dtype)

    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    lengths[0] = length
    tensors = [rnd(batch, length, labels), rnd(batch, length, labels, labels, forbid=rate),
               rnd(max_len, labels, forbid=rate / 2), rnd(labels, forbid=rate / 2),
               -(0.2 + torch.rand(labels, generator=gen, dtype=torch.float64)).to(dtype)]
    if impossible:
        tensors[1][0] = float("-inf")
        if semantics == "runs":
            tensors[2][-1] = float("-inf")
    censored = {"none": None, "random": torch.rand(batch, 2, generator=gen) < 0.5,
                "both": torch.ones(batch, 2, dtype=torch.bool)}[cut]
    return tensors, lengths, censored


def _kwargs(semantics, tensors, censored, device=DEVICE):
    if semantics == "segments":
        return dict(semantics=semantics)
    return dict(semantics=semantics, tail=tensors[4].to(device),
                censored=None if censored is None else censored.to(device))


def _leaves(tensors, semantics):
    used = tensors if semantics == "runs" else tensors[:4]
    return [x.detach().clone().requires_grad_() for x in used]


def _weighted(log_z, batch):
    """sum_b w_b log Z_b over the possible sequences, w = linspace(0.5, 1.5)."""
    weights = torch.linspace(0.5, 1.5, batch, dtype=torch.float64).to(log_z)
    return (log_z.masked_fill(~torch.isfinite(log_z), 0.0) * weights).sum()


def _triton(tensors, lengths, censored, semantics, block_k):
    """log Z, its weighted gradients, Viterbi and marginals from the Triton backend."""
    leaves = _leaves(tensors, semantics)
    on = [x.to(DEVICE) for x in leaves]
    kw = _kwargs(semantics, tensors, censored)
    lengths = lengths.to(DEVICE)
    differentiable = dict(kw, tail=on[4]) if semantics == "runs" else kw
    log_z = triton_backend.log_partition(on[0], on[1], on[2], lengths, on[3], block_k=block_k,
                                         **differentiable)
    grads = torch.autograd.grad(_weighted(log_z, len(lengths)), leaves)
    plain = [x.detach() for x in on[:3]] + [lengths, on[3].detach()]
    best, paths = triton_backend.viterbi(*plain, block_k=block_k, **kw)
    marg = semicrf.marginals(*plain, backend="triton", **kw)
    return log_z.detach().cpu(), grads, best.cpu(), paths, marg.cpu()


def rows(transition, b):
    """The transition of sequence b: (T, C, C) per position, or the (C, C) table."""
    return transition[b] if transition.dim() == 4 else transition


def _enumerate(tensors, lengths, censored, semantics, b):
    """Scores (N,) of every segmentation (segments) or labelling (runs) of sequence b, with
    forbidden entries at FORBIDDEN (differentiable), and their segment lists."""
    n, labels = int(lengths[b]), tensors[0].shape[2]
    scores, trans, duration, start, *tail = [x.clamp(min=FORBIDDEN) for x in tensors]
    if semantics == "runs":
        flags = (False, False) if censored is None else tuple(bool(x) for x in censored[b])
        found = bf_runs.all_scores(scores[b], rows(trans, b), duration, start, tail[0], n, flags)
        return found, [bf_runs.runs_of(y) for y in bf_runs.labellings(n, labels)]
    found = bf_segments.all_scores(scores[b], rows(trans, b), duration, n, start)
    return found, [list(p) for p in bf_segments.segmentations(n, duration.shape[0], labels)]


def _check_against_enumeration(shape, table=False):
    """``table``: the (C, C) row of sequence 0 at t = T - 1 for every sequence and position
    (with ``impossible``: all of it -inf, so every sequence longer than K -- runs: at least K
    long -- has no admissible labelling)."""
    batch, length, max_len, labels, seed, semantics, cut, rate, impossible, block_k = shape
    tensors, lengths, censored = _problem(batch, length, max_len, labels, seed, semantics, cut,
                                          rate, impossible)
    if table:
        tensors[1] = tensors[1][0, -1].clone()
    log_z, grads, best, paths, marg = _triton(tensors, lengths, censored, semantics, block_k)
    leaves = _leaves(tensors, semantics)
    total = torch.zeros((), dtype=torch.float64)
    want_marg = torch.zeros_like(marg)
    weights = torch.linspace(0.5, 1.5, batch, dtype=torch.float64)
    for b in range(batch):
        scores, segs = _enumerate(leaves, lengths, censored, semantics, b)
        want = torch.logsumexp(scores, 0)
        found_scores, value = scores.detach(), float(want.detach())
        if value < IMPOSSIBLE:  # no admissible labelling
            assert log_z[b] == float("-inf") and best[b] == float("-inf") and paths[b] == []
            continue
        assert abs(float(log_z[b]) - value) <= TOL * max(1.0, abs(value))
        total = total + weights[b] * want
        top = torch.topk(found_scores, min(2, found_scores.numel()))
        optimum = float(top.values[0])
        assert abs(float(best[b]) - optimum) <= TOL * max(1.0, abs(optimum))
        found = [tuple(s) for s in paths[b]]
        assert abs(float(found_scores[segs.index(found)]) - optimum) <= TOL * max(1.0, abs(optimum))
        if top.values.numel() == 1 or optimum - float(top.values[1]) > 1e-6:
            assert found == segs[int(top.indices[0])]
        for p, path in zip(torch.softmax(found_scores, 0).tolist(), segs):
            for s, e, c in path:
                want_marg[b, s:e, c] += p
    if impossible:
        assert log_z[0] == float("-inf")
    torch.testing.assert_close(marg, want_marg, atol=TOL, rtol=0, msg="marginals")
    wanted = [None] * len(leaves)
    if total.requires_grad:
        wanted = torch.autograd.grad(total, leaves, allow_unused=True)
    for name, got, want in zip(NAMES, grads, wanted):
        want = torch.zeros_like(got) if want is None else want
        torch.testing.assert_close(got, want, atol=TOL, rtol=TOL, msg=name)


# (B, T, K, C, seed, semantics, censored, -inf rate, impossible sequence 0, block_k)
CASES = [
    (3, 6, 2, 2, 0, "segments", "none", 0.2, True, None),
    (3, 5, 3, 3, 1, "segments", "none", 0.3, True, 2),  # chunked window
    (2, 6, 1, 2, 2, "segments", "none", 0.3, True, None),  # K = 1
    (2, 4, 6, 2, 3, "segments", "none", 0.2, False, None),  # K > T
    (2, 5, 2, 1, 4, "segments", "none", 0.3, False, None),  # C = 1
    (3, 7, 3, 2, 5, "runs", "random", 0.2, True, None),  # runs longer than K
    (3, 6, 4, 2, 6, "runs", "both", 0.3, True, 2),  # tail in a chunked window
    (2, 5, 1, 3, 7, "runs", "random", 0.2, False, None),  # K = 1 (the runs kernels)
    (2, 4, 6, 3, 8, "runs", "random", 0.3, False, None),  # K > T
    (2, 1, 2, 2, 9, "runs", "both", 0.0, False, None),  # T = 1
    (2, 5, 2, 1, 10, "runs", "random", 0.2, False, None),  # C = 1: no transition is used
]


@pytest.mark.parametrize("shape", CASES, ids=lambda s: "-".join(map(str, s)))
def test_cases_equal_enumeration(shape):
    _check_against_enumeration(shape)


@pytest.mark.parametrize("shape", [CASES[0], CASES[1], CASES[5], CASES[6], CASES[7]],
                         ids=lambda s: "-".join(map(str, s)))
def test_table_with_forbidden_entries_equals_enumeration(shape):
    _check_against_enumeration(shape, table=True)


@settings(max_examples=6, deadline=None)
@given(st.tuples(
    st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3),
    st.integers(0, 10_000), st.sampled_from(["segments", "runs"]),
    st.sampled_from(["none", "random"]), st.sampled_from([0.0, 0.2, 0.5]), st.just(False),
    st.sampled_from([None, 2]),
).filter(lambda s: s[3] ** s[1] <= 243))
def test_random_cases_equal_enumeration(shape):
    _check_against_enumeration(shape)


def _through(backend, tensors, lengths, censored, semantics, block_k=None):
    """log Z, weighted gradients, Viterbi and marginals through the public API (``block_k``
    for the Triton backend's chunked windows)."""
    if backend == "triton":
        return _triton(tensors, lengths, censored, semantics, block_k)
    leaves = _leaves(tensors, semantics)
    kw = _kwargs(semantics, tensors, censored, "cpu")
    differentiable = dict(kw, tail=leaves[4]) if semantics == "runs" else kw
    log_z = semicrf.log_partition(*leaves[:3], lengths, leaves[3], backend=backend,
                                  **differentiable)
    grads = torch.autograd.grad(_weighted(log_z, len(lengths)), leaves)
    plain = tensors[:3] + [lengths, tensors[3]]
    best, paths = semicrf.viterbi(*plain, backend=backend, **kw)
    marg = semicrf.marginals(*plain, backend=backend, **kw)
    return log_z.detach(), grads, best, paths, marg


@pytest.mark.parametrize("semantics", ["segments", "runs"])
def test_longer_inputs_match_the_reference(semantics):
    """T = 14, K = 4 in chunks of 2 (runs up to 14 long), C = 3, -inf entries, sequence 0
    impossible, random censoring: every output equal to the reference backend's."""
    cut = "random" if semantics == "runs" else "none"
    tensors, lengths, censored = _problem(3, 14, 4, 3, 21, semantics, cut, 0.15, True)
    got = _through("triton", tensors, lengths, censored, semantics, block_k=2)
    want = _through("reference", tensors, lengths, censored, semantics)
    assert got[0][0] == float("-inf") and bool(torch.isfinite(got[0][1:]).all())
    torch.testing.assert_close(got[0], want[0], atol=TOL, rtol=TOL, msg="log_z")
    for name, g, w in zip(NAMES, got[1], want[1]):
        torch.testing.assert_close(g, w, atol=TOL, rtol=TOL, msg=name)
    torch.testing.assert_close(got[2], want[2], atol=TOL, rtol=TOL, msg="viterbi")
    assert got[3] == want[3]
    torch.testing.assert_close(got[4], want[4], atol=TOL, rtol=0, msg="marginals")
    grad_trans = got[1][1]
    for b, n in enumerate(lengths.tolist()):  # unused rows: t = 0 and t >= L
        assert not bool(grad_trans[b, 0].any()) and not bool(grad_trans[b, n:].any())
    if semantics == "runs":  # and the diagonal
        assert not bool(grad_trans.diagonal(dim1=2, dim2=3).any())


@pytest.mark.parametrize("semantics", ["segments", "runs"])
def test_table_equals_its_expansion(semantics):
    """A (C, C) table (with -inf entries) and its expansion to (B, T, C, C): bitwise-equal
    log Z, Viterbi and every gradient but the transition's, whose table form is the sum of
    the per-position one over sequences and positions."""
    cut = "random" if semantics == "runs" else "none"
    tensors, lengths, censored = _problem(3, 9, 3, 3, 4, semantics, cut)
    table = tensors[1][0, 0].clone()
    table[0, 1] = table[2, 0] = float("-inf")
    expanded = list(tensors)
    tensors[1], expanded[1] = table, table.expand_as(tensors[1])
    got = _triton(expanded, lengths, censored, semantics, None)
    want = _triton(tensors, lengths, censored, semantics, None)
    assert torch.equal(got[0], want[0]) and torch.equal(got[2], want[2]) and got[3] == want[3]
    assert torch.equal(got[4], want[4])
    for name, g, w in zip(NAMES, got[1], want[1]):
        if name == "transition":
            torch.testing.assert_close(g.sum((0, 1)), w, atol=1e-12, rtol=1e-12)
        else:
            assert torch.equal(g, w), name


def test_label_nll_with_per_position_transitions():
    """The gold partition (``allowed`` mask) with a per-position transition: every labelling
    of a short sequence has NLL >= 0 (+inf for those through the forbidden 0 -> 1 at t = 2),
    and their probabilities sum to one."""
    tensors, _, _ = _problem(1, 4, 2, 2, 6, "segments")
    tensors[1][0, 2, 0, 1] = float("-inf")
    labellings = torch.tensor(bf_runs.labellings(4, 2))
    count = labellings.shape[0]
    on = [x.to(DEVICE) for x in tensors]
    nll = label_nll(on[0].expand(count, 4, 2), on[1].expand(count, 4, 2, 2), on[2],
                    torch.full((count,), 4, device=DEVICE), labellings.to(DEVICE), on[3],
                    backend="triton")
    want = label_nll(tensors[0].expand(count, 4, 2), tensors[1].expand(count, 4, 2, 2),
                     tensors[2], torch.full((count,), 4), labellings, tensors[3],
                     backend="reference")
    finite = torch.isfinite(want)
    assert int((~finite).sum()) == 4  # labellings y[1:3] = (0, 1)
    assert torch.equal(torch.isfinite(nll.cpu()), finite)
    torch.testing.assert_close(nll.cpu()[finite], want[finite], atol=TOL, rtol=TOL)
    torch.testing.assert_close(torch.exp(-nll).sum().cpu(), torch.tensor(1.0, dtype=torch.float64),
                               atol=TOL, rtol=0)


@pytest.mark.parametrize("semantics", ["segments", "runs"])
def test_float32_inputs_close_to_reference(semantics):
    cut = "random" if semantics == "runs" else "none"
    tensors, lengths, censored = _problem(2, 16, 5, 3, 9, semantics, cut, 0.1,
                                          dtype=torch.float32)
    got = _through("triton", tensors, lengths, censored, semantics)
    want = _through("reference", [x.double() for x in tensors], lengths, censored, semantics)
    assert got[0].dtype == torch.float32 and all(g.dtype == torch.float32 for g in got[1])
    torch.testing.assert_close(got[0], want[0].float(), atol=1e-4, rtol=1e-6)
    for name, g, w in zip(NAMES, got[1], want[1]):
        torch.testing.assert_close(g, w.float(), atol=1e-5, rtol=1e-4, msg=name)
    assert got[3] == want[3]


def test_gradients_are_bitwise_deterministic():
    tensors, lengths, censored = _problem(3, 8, 3, 3, 5, "runs", "random", 0.2, True)
    first = _triton(tensors, lengths, censored, "runs", 2)
    second = _triton(tensors, lengths, censored, "runs", 2)
    assert torch.equal(first[0], second[0])
    assert all(torch.equal(a, b) for a, b in zip(first[1], second[1]))
