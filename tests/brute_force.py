"""Brute-force oracle: enumerate every segmentation of short sequences (float64, torch).

Independent of the streaming code: each segmentation's score is summed from its segments
directly, so agreement with the DP checks both the recursion and its indexing conventions.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import torch
from torch import Tensor


@cache
def segmentations(length: int, max_len: int, labels: int) -> tuple[tuple[tuple[int, int, int], ...], ...]:
    """All labelled segmentations of [0, length) with segment lengths in [1, max_len]."""
    def cuts(pos: int):
        if pos == length:
            yield ()
            return
        for d in range(1, min(max_len, length - pos) + 1):
            for rest in cuts(pos + d):
                yield ((pos, pos + d),) + rest

    out = []
    for spans in cuts(0):
        for labs in itertools.product(range(labels), repeat=len(spans)):
            out.append(tuple((s, e, c) for (s, e), c in zip(spans, labs)))
    return tuple(out)


@cache
def _index_arrays(length: int, max_len: int, labels: int):
    segs = segmentations(length, max_len, labels)
    rows = []
    for i, path in enumerate(segs):
        prev = -1
        for s, e, c in path:
            rows.append((i, s, e, c, prev))
            prev = c
    arr = np.array(rows, dtype=np.int64)
    return len(segs), torch.from_numpy(arr)


def all_scores(scores: Tensor, transition: Tensor, duration: Tensor, length: int,
               start: Tensor | None) -> Tensor:
    """Scores of all segmentations of one sequence: scores (T, C) -> (N,) float64; transition
    (C, C) or per position (T, C, C), row s for a segment starting at s."""
    labels = scores.shape[1]
    n, idx = _index_arrays(length, duration.shape[0], labels)
    seg_id, s, e, c, prev = idx.unbind(1)
    x = scores.to(torch.float64)
    prefix = torch.cat([x.new_zeros(1, labels), torch.cumsum(x, 0)])
    st = x.new_zeros(labels) if start is None else start.to(torch.float64)
    trans = transition.to(torch.float64)
    into = trans[s, prev.clamp(min=0), c] if trans.dim() == 3 else trans[prev.clamp(min=0), c]
    link = torch.where(prev < 0, st[c], into)
    per_seg = prefix[e, c] - prefix[s, c] + duration.to(torch.float64)[e - s - 1, c] + link
    return x.new_zeros(n).index_add(0, seg_id, per_seg)


def log_partition(scores, transition, duration, lengths, start=None) -> Tensor:
    return torch.stack([
        torch.logsumexp(all_scores(scores[b], transition, duration, int(lengths[b]), start), 0)
        for b in range(scores.shape[0])
    ])


def viterbi(scores, transition, duration, lengths, start=None):
    best, paths = [], []
    for b in range(scores.shape[0]):
        length = int(lengths[b])
        sc = all_scores(scores[b], transition, duration, length, start)
        i = int(torch.argmax(sc))
        best.append(sc[i])
        paths.append(list(segmentations(length, duration.shape[0], scores.shape[2])[i]))
    return torch.stack(best), paths


def label_marginals(scores, transition, duration, lengths, start=None) -> Tensor:
    batch, length, labels = scores.shape
    out = torch.zeros(batch, length, labels, dtype=torch.float64)
    for b in range(batch):
        n = int(lengths[b])
        sc = all_scores(scores[b], transition, duration, n, start)
        prob = torch.softmax(sc, 0)
        for p, path in zip(prob.tolist(), segmentations(n, duration.shape[0], labels)):
            for s, e, c in path:
                out[b, s:e, c] += p
    return out
