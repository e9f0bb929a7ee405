"""The forward recursion written with plain, autograd-traceable tensor ops.

It builds a graph of O(T K C) size, so it is meant for small inputs only. It serves
higher-order derivatives (differentiable :func:`semicrf.marginals`), where the hand-written
backward of :mod:`semicrf.crf.autograd` cannot be differentiated again.
"""

from __future__ import annotations

import torch
from torch import Tensor


def log_partition(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
) -> Tensor:
    """log Z (B,) with the same conventions as the streaming sweeps; float64 throughout."""
    batch, length, labels = scores.shape
    max_len = min(duration.shape[0], length)
    f64 = torch.float64
    emissions = scores.to(f64)
    prefix = torch.cat(
        [emissions.new_zeros(batch, 1, labels), torch.cumsum(emissions, dim=1)], dim=1
    )
    trans = transition.to(f64)
    duration_rev = duration[:max_len].to(f64).flip(0)  # row j holds length max_len - j
    start64 = emissions.new_zeros(labels) if start is None else start.to(f64)
    neg_inf = emissions.new_full((batch, labels), float("-inf"))
    gammas = [neg_inf] * (max_len - 1) + [start64.expand(batch, labels)]
    alphas = [neg_inf]
    for t in range(1, length + 1):
        window = torch.stack(gammas[-max_len:], dim=1) + duration_rev  # (B, K, C)
        a_t = torch.logsumexp(window, dim=1) + prefix[:, t]
        alphas.append(a_t)
        into = torch.logsumexp(a_t.unsqueeze(2) + trans, dim=1)
        gammas.append(into - prefix[:, t])
    alpha = torch.stack(alphas, dim=1)  # (B, T + 1, C)
    ends = alpha[torch.arange(batch), lengths.long()]
    return torch.logsumexp(ends, dim=1).to(scores.dtype)
