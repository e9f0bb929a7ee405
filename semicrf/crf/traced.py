"""The forward recursion written with plain, autograd-traceable tensor ops.

It builds a graph of O(T K C) size, so it is meant for small inputs only. It serves
higher-order derivatives (differentiable :func:`semicrf.marginals`), where the hand-written
backward of :mod:`semicrf.crf.autograd` cannot be differentiated again.
"""

from __future__ import annotations

import torch
from torch import Tensor

from semicrf.crf import survival
from semicrf.crf.streaming import NEG


def _finite(x: Tensor) -> Tensor:
    """float64 ``x`` with -inf (a forbidden entry) as NEG, so no log-sum-exp is all -inf."""
    return x.to(torch.float64).clamp(min=NEG)


def _into(trans: Tensor, t: int) -> Tensor:
    """The transition into a segment starting at t: (B, C, C) or (C, C)."""
    return trans[:, t] if trans.dim() == 4 else trans


def log_partition(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
) -> Tensor:
    """log Z (B,) with the same conventions as the streaming sweeps; float64 throughout."""
    if semantics == "runs":
        return _runs_log_partition(scores, transition, duration, lengths, start, tail, censored)
    batch, length, labels = scores.shape
    max_len = min(duration.shape[0], length)
    f64 = torch.float64
    emissions = scores.to(f64)
    prefix = torch.cat(
        [emissions.new_zeros(batch, 1, labels), torch.cumsum(emissions, dim=1)], dim=1
    )
    trans = _finite(transition)
    duration_rev = _finite(duration[:max_len]).flip(0)  # row j holds length max_len - j
    start64 = emissions.new_zeros(labels) if start is None else _finite(start)
    neg_inf = emissions.new_full((batch, labels), float("-inf"))
    gammas = [neg_inf] * (max_len - 1) + [start64.expand(batch, labels)]
    alphas = [neg_inf]
    for t in range(1, length + 1):
        window = torch.stack(gammas[-max_len:], dim=1) + duration_rev  # (B, K, C)
        a_t = torch.logsumexp(window, dim=1) + prefix[:, t]
        alphas.append(a_t)
        if t < length:
            into = torch.logsumexp(a_t.unsqueeze(2) + _into(trans, t), dim=1)
            gammas.append(into - prefix[:, t])
    alpha = torch.stack(alphas, dim=1)  # (B, T + 1, C)
    ends = alpha[torch.arange(batch), lengths.long()]
    return torch.logsumexp(ends, dim=1).to(scores.dtype)


def _runs_log_partition(scores, transition, duration, lengths, start, tail, censored) -> Tensor:
    """Runs semantics, one sequence at a time, every run start s < t summed explicitly:
    O(T^2 C) per sequence, for tiny inputs."""
    batch, length, labels = scores.shape
    f64 = torch.float64
    emissions = scores.to(f64)
    prefix = torch.cat([emissions.new_zeros(batch, 1, labels), torch.cumsum(emissions, dim=1)], 1)
    eye = torch.eye(labels, dtype=torch.bool, device=scores.device)
    trans = torch.where(eye, NEG, _finite(transition))
    start64 = emissions.new_zeros(labels) if start is None else _finite(start)
    duration = _finite(duration)
    tail64 = emissions.new_zeros(labels) if tail is None else tail.to(f64)
    run_lengths = torch.arange(1, length + 1, device=scores.device)
    dur = survival.run_score(duration.to(f64), tail64, run_lengths)  # (T, C), row l - 1
    cut = censored is not None and bool(censored.any())
    surv = survival.log_survival(duration.to(f64), tail64, run_lengths) if cut else None
    out = []
    for b in range(batch):
        n = int(lengths[b])
        first_cut = cut and bool(censored[b, 0])
        last_cut = cut and bool(censored[b, 1])
        gammas = [start64[b] if start64.dim() == 2 else start64]  # mass before a run at s
        for t in range(1, n + 1):
            at_end = t == n and last_cut
            terms = []
            for s_ in range(t):
                if s_ == 0 and first_cut and at_end:
                    edge = survival.log_survival2(duration.to(f64), tail64, run_lengths[t - 1 : t])[0]
                elif (s_ == 0 and first_cut) or at_end:
                    edge = surv[t - s_ - 1]
                else:
                    edge = dur[t - s_ - 1]
                terms.append(gammas[s_] + edge + prefix[b, t] - prefix[b, s_])
            alpha = torch.logsumexp(torch.stack(terms), dim=0)
            if t == n:
                out.append(torch.logsumexp(alpha, dim=0))
            else:
                into = trans[b, t] if trans.dim() == 4 else trans
                gammas.append(torch.logsumexp(alpha.unsqueeze(1) + into, dim=0))
    return torch.stack(out).to(scores.dtype)
