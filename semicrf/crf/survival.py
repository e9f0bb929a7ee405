"""Run-length scores of the "runs" semantics: explicit table, geometric tail, censored edges.

``duration`` (K, C) holds ``dur(l, c)`` for l = 1..K (row l - 1); beyond K the score grows
linearly with ``tail`` (C,), a geometric tail with continuation probability ``exp(tail)``:

    dur(l, c)   = duration[l-1, c]                          l <= K
                = duration[K-1, c] + (l - K) * tail[c]      l >  K
    surv(l, c)  = log sum_{d >= l} exp(dur(d, c))            a run cut at one window edge
    surv2(l, c) = log sum_{d >= l} (d - l + 1) exp(dur(d, c))  a run cut at both edges

``surv`` and ``surv2`` are finite only for ``tail < 0`` (callers check). Every function
evaluates at given lengths ``(n,)`` int64 >= 1, returns (n, C) in the dtype of ``duration``
and is built from differentiable torch ops, so gradients w.r.t. ``duration`` and ``tail``
come from autograd on these small O(n K C) graphs.
"""

from __future__ import annotations

import torch
from torch import Tensor


def geometric_log(tail: Tensor) -> Tensor:
    """log 1 / (1 - exp(tail)) = log sum_{j >= 0} exp(j * tail), (C,); tail < 0."""
    return -torch.log(-torch.expm1(tail))


def run_score(duration: Tensor, tail: Tensor, lengths: Tensor) -> Tensor:
    """dur(l, c) for lengths (n,) -> (n, C)."""
    max_len = duration.shape[0]
    base = duration[lengths.clamp(max=max_len) - 1]
    excess = (lengths - max_len).clamp(min=0).to(duration.dtype).unsqueeze(1)
    return base + excess * tail


def log_survival(duration: Tensor, tail: Tensor, lengths: Tensor) -> Tensor:
    """surv(l, c) for lengths (n,) -> (n, C)."""
    max_len = duration.shape[0]
    geo = geometric_log(tail)
    last = duration[max_len - 1]
    # rows l - 1 of the reversed cumulative log-sum-exp: lse_{d = l..K} duration[d - 1]
    table = torch.logcumsumexp(duration.flip(0), 0).flip(0)
    inside = torch.logaddexp(table[lengths.clamp(max=max_len) - 1], last + tail + geo)
    excess = (lengths - max_len).clamp(min=1).to(duration.dtype).unsqueeze(1)
    outside = last + excess * tail + geo
    return torch.where((lengths <= max_len).unsqueeze(1), inside, outside)


def log_survival2(duration: Tensor, tail: Tensor, lengths: Tensor) -> Tensor:
    """surv2(l, c) for lengths (n,) -> (n, C); O(n K C) work."""
    max_len = duration.shape[0]
    geo = geometric_log(tail)
    last = duration[max_len - 1]
    short = lengths.clamp(max=max_len)
    d = torch.arange(1, max_len + 1, device=lengths.device)
    weight = (d.unsqueeze(0) - short.unsqueeze(1) + 1).to(duration.dtype)  # (n, K): d - l + 1
    log_weight = torch.where(weight >= 1, weight.clamp(min=1).log(), torch.full_like(weight, -torch.inf))
    table = torch.logsumexp(duration.unsqueeze(0) + log_weight.unsqueeze(2), dim=1)
    # sum_{j >= 1} (K - l + 1 + j) q^j with q = exp(tail): q / (1 - q) * (K - l + 1 + 1 / (1 - q))
    count = (max_len - short + 1).to(duration.dtype).unsqueeze(1)
    beyond = last + tail + geo + torch.log(count + geo.exp())
    inside = torch.logaddexp(table, beyond)
    excess = (lengths - max_len).clamp(min=1).to(duration.dtype).unsqueeze(1)
    outside = last + excess * tail + 2 * geo
    return torch.where((lengths <= max_len).unsqueeze(1), inside, outside)
