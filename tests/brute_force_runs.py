"""Brute-force oracle for the runs semantics: enumerate every labelling of short sequences.

Independent of the DP code: a labelling's maximal runs are read off directly, each run is
scored from its own definition, and the censored runs' survival sums are explicit sums over
lengths up to ``SURVIVAL_CUTOFF`` (the tests draw tails <= -0.2, so the remainder is below
exp(-0.2 * 2000)). Everything is float64 torch, so autograd gives reference gradients.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

SURVIVAL_CUTOFF = 2000


def labellings(length: int, labels: int) -> list[tuple[int, ...]]:
    return list(itertools.product(range(labels), repeat=length))


def runs_of(labelling: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Maximal runs (start, end_exclusive, label)."""
    runs, begin = [], 0
    for t in range(1, len(labelling) + 1):
        if t == len(labelling) or labelling[t] != labelling[begin]:
            runs.append((begin, t, labelling[begin]))
            begin = t
    return runs


def _dur(duration: Tensor, tail: Tensor, d: int, c: int) -> Tensor:
    k = duration.shape[0]
    return duration[d - 1, c] if d <= k else duration[k - 1, c] + (d - k) * tail[c]


def _all_durs(duration: Tensor, tail: Tensor, c: int) -> Tensor:
    """dur(d, c) for d = 1..SURVIVAL_CUTOFF."""
    k = duration.shape[0]
    d = torch.arange(1, SURVIVAL_CUTOFF + 1, dtype=torch.float64)
    beyond = duration[k - 1, c] + (d[k:] - k) * tail[c]
    return torch.cat([duration[:, c], beyond])


def edge_score(duration, tail, length, c, first_cut, last_cut) -> Tensor:
    if not (first_cut or last_cut):
        return _dur(duration, tail, length, c)
    d = torch.arange(1, SURVIVAL_CUTOFF + 1, dtype=torch.float64)
    values = _all_durs(duration, tail, c)[length - 1:]
    if first_cut and last_cut:
        return torch.logsumexp(values + torch.log(d[: values.shape[0]]), 0)
    return torch.logsumexp(values, 0)


def labelling_score(scores, transition, duration, start, tail, labelling, censored=(False, False)):
    """Score of one labelling (T,) of one sequence, scores (T, C), transition (C, C) or per
    position (T, C, C)."""
    runs = runs_of(labelling)
    total = scores.new_zeros((), dtype=torch.float64)
    for i, (s, e, c) in enumerate(runs):
        total = total + scores[s:e, c].sum()
        total = total + edge_score(duration, tail, e - s, c, censored[0] and i == 0,
                                   censored[1] and i == len(runs) - 1)
        if i == 0:
            total = total + start[c]
        elif transition.dim() == 3:  # per position (T, C, C): the row where the run starts
            total = total + transition[s, runs[i - 1][2], c]
        else:
            total = total + transition[runs[i - 1][2], c]
    return total


def all_scores(scores, transition, duration, start, tail, length, censored=(False, False)):
    labels = scores.shape[1]
    return torch.stack([
        labelling_score(scores[:length], transition, duration, start, tail, y, censored)
        for y in labellings(length, labels)
    ])
