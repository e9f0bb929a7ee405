"""Runs semantics at K = 1 as a linear chain (segments semantics, K = 1), exactly.

With K = 1 a run of label c and length L scores ``duration[0, c] + (L - 1) * tail[c]``: a
fixed cost to enter c and ``tail[c]`` for every further position. That is a linear-chain CRF
whose transition is ``transition[c', c] + duration[0, c]`` between different labels and
``tail[c]`` on the diagonal, with ``start + duration[0]`` for the first position. A censored
run scores its log-survival ``dur(L, c) + g[c]`` with ``g = -log(1 - exp(tail))`` (a run cut
at both ends: ``+ 2 g[c]``), so the cut adds ``g`` to the emissions of the first (last)
position. The map is made of differentiable torch ops, so gradients reach the original
tensors by autograd, and the chain runs on the fast segments sweeps (runs semantics with
K < T would otherwise step through its geometric tail in groups of K + 1 = 2 positions).
"""

from __future__ import annotations

import torch
from torch import Tensor

from semicrf.crf.survival import geometric_log


def as_linear_chain(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None,
    tail: Tensor | None,
    censored: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(scores, transition, duration, start) of the segments-semantics K = 1 model with the
    same score for every labelling as the runs-semantics model with ``duration`` (1, C).

    scores (B, T, C); transition (C, C) or (B, T, C, C); lengths (B,); start (C,) or None;
    tail (C,) or None (zeros); censored (B, 2) bool or None. Returns scores (B, T, C),
    transition of the input's shape, duration (1, C) zeros, start (C,).
    """
    batch, length, labels = scores.shape
    enter = duration[0]
    stay = torch.zeros_like(enter) if tail is None else tail.to(duration.dtype)
    eye = torch.eye(labels, dtype=torch.bool, device=scores.device)
    chain = torch.where(eye, stay.to(transition.dtype), transition + enter.to(transition.dtype))
    first = enter if start is None else start + enter.to(start.dtype)
    if censored is not None and bool(censored.any()):
        cut = geometric_log(stay).to(scores.dtype)  # (C,)
        positions = torch.arange(length, device=scores.device)
        at_first = (positions == 0) & censored[:, :1]  # (B, T)
        at_last = (positions == lengths.view(batch, 1) - 1) & censored[:, 1:]
        bonus = at_first.to(scores.dtype) + at_last.to(scores.dtype)
        scores = scores + bonus.unsqueeze(2) * cut
    return scores, chain, torch.zeros_like(duration), first


def merge_runs(segments: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Adjacent segments of one label joined into maximal runs (start, end_exclusive, label)."""
    runs: list[tuple[int, int, int]] = []
    for begin, end, label in segments:
        if runs and runs[-1][2] == label:
            runs[-1] = (runs[-1][0], end, label)
        else:
            runs.append((begin, end, label))
    return runs
