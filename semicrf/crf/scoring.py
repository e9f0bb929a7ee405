"""The score of given segmentations, vectorised over all their segments (both semantics).

Segments are given as parallel int64 tensors ``seq, begin, end, label`` (n,), sorted by
sequence and position, each sequence's segments tiling [0, L_b). The score is built from
differentiable torch ops in float64 (gradients reach scores, transition, duration, start
and tail by autograd; the graph is O(n C + T C)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from semicrf.crf import survival


def score_segments(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    start: Tensor | None,
    segments: tuple[Tensor, Tensor, Tensor, Tensor],
    lengths: Tensor,
    *,
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
) -> Tensor:
    """Score (B,) float64 of one segmentation per sequence (see :mod:`semicrf.crf.api`)."""
    seq, begin, end, label = segments
    batch, _, labels = scores.shape
    f64, dev = torch.float64, scores.device
    prefix = torch.cat(
        [scores.new_zeros(batch, 1, labels, dtype=f64), torch.cumsum(scores.to(f64), dim=1)], dim=1
    )
    emission = prefix[seq, end, label] - prefix[seq, begin, label]
    duration64 = duration.to(f64)
    run_len = end - begin
    if semantics == "segments":
        dur = duration64[run_len - 1, label]
    else:
        tail64 = torch.zeros(labels, dtype=f64, device=dev) if tail is None else tail.to(f64)
        pick = label.view(-1, 1)
        dur = survival.run_score(duration64, tail64, run_len).gather(1, pick).squeeze(1)
        if censored is not None and bool(censored.any()):
            first = (begin == 0) & censored[seq, 0]
            last = (end == lengths[seq]) & censored[seq, 1]
            one = first ^ last
            if bool(one.any()):
                surv = survival.log_survival(duration64, tail64, run_len[one]).gather(1, pick[one])
                dur = dur.masked_scatter(one, surv.squeeze(1))
            both = first & last
            if bool(both.any()):
                surv2 = survival.log_survival2(duration64, tail64, run_len[both]).gather(1, pick[both])
                dur = dur.masked_scatter(both, surv2.squeeze(1))
    first_of_seq = begin == 0
    prev_label = torch.roll(label, 1)  # previous segment of the same sequence when not first
    start64 = torch.zeros(labels, dtype=f64, device=dev) if start is None else start.to(f64)
    trans64 = transition.to(f64)
    into = trans64[prev_label, label] if trans64.dim() == 2 else trans64[seq, begin, prev_label, label]
    first = start64[seq, label] if start64.dim() == 2 else start64[label]
    link = torch.where(first_of_seq, first, into)
    total = torch.zeros(batch, dtype=f64, device=dev)
    return total.index_add(0, seq, emission + dur + link)


def label_runs(labels: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The maximal runs of per-position labels (B, T) inside each length, as
    ``(seq, begin, end, label)`` (n,) int64 tensors (vectorised, no Python loop)."""
    batch, length = labels.shape
    inside = torch.arange(length, device=labels.device) < lengths.view(batch, 1)
    change = torch.ones_like(inside)
    change[:, 1:] = labels[:, 1:] != labels[:, :-1]
    seq, begin = (change & inside).nonzero(as_tuple=True)
    label = labels[seq, begin].long()
    ends = lengths.to(torch.int64)[seq]
    same_seq = seq[1:] == seq[:-1]
    end = ends.clone()
    end[:-1] = torch.where(same_seq, begin[1:], ends[:-1])
    return seq, begin, end, label


def unit_segments(labels: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every position inside each length as its own segment of its label (the only
    segmentation of a labelling at K = 1), as ``(seq, begin, end, label)`` (n,) int64."""
    batch, length = labels.shape
    inside = torch.arange(length, device=labels.device) < lengths.view(batch, 1)
    seq, begin = inside.nonzero(as_tuple=True)
    return seq, begin, begin + 1, labels[seq, begin].long()


def segment_tensors(
    segments: list[list[tuple[int, int, int]]], device: torch.device
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Segment lists (per sequence, (start, end_exclusive, label)) as ``(seq, begin, end, label)``."""
    rows = [(b, int(s), int(e), int(c)) for b, segs in enumerate(segments) for s, e, c in segs]
    seq, begin, end, label = torch.tensor(rows, dtype=torch.int64, device=device).unbind(1)
    return seq, begin, end, label
