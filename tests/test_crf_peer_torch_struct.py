"""K = 1 with per-position transitions is a linear-chain CRF with per-edge potentials: agree
with torch-struct's ``LinearChainCRF`` (MIT) on log Z, the per-position transition gradient
(its edge marginals) and the best labelling.

Convention map: torch-struct scores a labelling z of N positions by
``sum_n phi[n, z[n+1], z[n]]`` over the N - 1 edges. Our K = 1 segments score is
``sum_t scores[t, y_t] + duration[0, y_t]`` + ``start[y_0]`` +
``sum_{t >= 1} transition[t, y_{t-1}, y_t]``, so edge n (positions n -> n + 1) carries
``transition[n + 1, c', c] + scores[n + 1, c] + duration[0, c]`` at ``phi[n, c, c']``, and
edge 0 also the first position's ``scores[0, c'] + duration[0, c'] + start[c']``. The runs
semantics at K = 1 is checked the same way through its own chain map (transition
``+ duration[0]`` between labels, ``tail`` on the diagonal).
"""

from __future__ import annotations

import warnings

import pytest
import torch

import semicrf

torch_struct = pytest.importorskip("torch_struct")


def _edges(scores, transition, node_bias, start):
    """(B, T - 1, C, C) torch-struct potentials [b, n, next, prev]; node_bias (C,)."""
    node = scores + node_bias  # (B, T, C)
    edge = transition[:, 1:] + node[:, 1:].unsqueeze(2)  # [b, n, prev, next]
    edge = edge.clone()
    edge[:, 0] += (node[:, 0] + start).unsqueeze(2)
    return edge.transpose(2, 3)


def _problem(seed, batch=3, length=12, labels=3):
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64)  # noqa: E731
    lengths = torch.randint(2, length + 1, (batch,), generator=gen)
    lengths[0] = length
    scores, trans = rnd(batch, length, labels), rnd(batch, length, labels, labels)
    return scores, trans, rnd(1, labels), rnd(labels), lengths


def _peer(edges, lengths):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch-struct's arg_constraints notice
        return torch_struct.LinearChainCRF(edges, lengths=lengths)


@pytest.mark.parametrize("seed", range(4))
def test_k1_segments_equals_torch_struct(seed):
    scores, trans, duration, start, lengths = _problem(seed)
    leaf = trans.clone().requires_grad_()
    log_z = semicrf.log_partition(scores, leaf, duration, lengths, start)
    (grad,) = torch.autograd.grad(log_z.sum(), leaf)
    peer_leaf = trans.clone().requires_grad_()
    dist = _peer(_edges(scores, peer_leaf, duration[0], start), lengths)
    torch.testing.assert_close(log_z, dist.partition, atol=1e-9, rtol=0)
    (want,) = torch.autograd.grad(dist.partition.sum(), peer_leaf)
    torch.testing.assert_close(grad, want, atol=1e-9, rtol=0)
    _, paths = semicrf.viterbi(scores, trans, duration, lengths, start)
    best = dist.argmax  # (B, T - 1, C, C) one-hot edges [n, next, prev]
    for b, path in enumerate(paths):
        n = int(lengths[b])
        got = [c for s, e, c in path for _ in range(s, e)]
        edges = best[b, : n - 1].nonzero()  # rows (n, next, prev), in order of n
        want_path = [int(edges[0, 2])] + edges[:, 1].tolist()
        assert got == want_path


@pytest.mark.parametrize("seed", range(4))
def test_k1_runs_equals_torch_struct(seed):
    scores, trans, duration, start, lengths = _problem(seed)
    labels = scores.shape[2]
    tail = -(0.1 + torch.rand(labels, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    log_z = semicrf.log_partition(scores, trans, duration, lengths, start, semantics="runs", tail=tail)
    eye = torch.eye(labels, dtype=torch.bool)
    chain = torch.where(eye, tail, trans + duration[0])  # enter c: + duration[0, c]; stay: tail
    no_bias = torch.zeros(labels, dtype=torch.float64)
    dist = _peer(_edges(scores, chain, no_bias, start + duration[0]), lengths)
    torch.testing.assert_close(log_z, dist.partition, atol=1e-9, rtol=0)
