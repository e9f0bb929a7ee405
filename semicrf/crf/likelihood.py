"""Label likelihood: the normalised NLL of a per-position labelling under the Semi-CRF.

``runs`` semantics (the head's default): every labelling has exactly one segmentation (its
maximal runs), so ``NLL(y) = log Z - score(runs of y)``, the gold score in closed form: one
sweep per batch.

``segments`` semantics: a labelling y whose runs may be longer than K has many
segmentations (a run is any concatenation of segments of its label, joined by
self-transitions). Its probability is the total probability of all of them::

    NLL(y) = log Z - log Z(y),   Z(y) = sum over segmentations whose every segment lies
                                        inside one run of y and carries that run's label,

``log Z(y)`` being the same forward pass restricted by a mask. At K = 1 (a linear chain) y
has exactly one segmentation, its positions, so ``log Z(y)`` is that closed-form score (the
masked sweep, which the blocked CPU sweeps do not run, made K = 1 training step through T
positions one by one). In both, NLL >= 0 and the probabilities of all labellings sum to one.
"""

from __future__ import annotations

import torch
from torch import Tensor

from semicrf.crf import autograd, scoring, streaming
from semicrf.crf.api import log_partition, select_backend
from semicrf.crf.checks import check_inputs, check_semantics

# Largest B * C * K window for which log Z and log Z(y) run as one sweep over 2B sequences
# (segments semantics; measured on CPU: 1.3-1.75x faster at B*C*K <= 4800, 1.2x slower at 48000).
JOINT_SWEEP_MAX_WINDOW = 16_384


def gold_mask(labels: Tensor, lengths: Tensor, num_labels: int) -> Tensor:
    """allowed (B, T, C) bool: label c allowed at t iff labels[t] == c; anything past L."""
    batch, length = labels.shape
    inside = torch.arange(length, device=labels.device) < lengths.view(batch, 1)
    one_hot = labels.unsqueeze(2) == torch.arange(num_labels, device=labels.device)
    return one_hot | ~inside.unsqueeze(2)


def check_labels(labels: Tensor, lengths: Tensor, shape: tuple[int, int], num_labels: int) -> None:
    if not isinstance(labels, Tensor) or labels.dtype.is_floating_point:
        raise ValueError("labels must be an integer tensor of shape (B, T)")
    if tuple(labels.shape) != shape:
        raise ValueError(f"labels must have shape (B, T) = {shape}, got {tuple(labels.shape)}")
    inside = torch.arange(shape[1], device=labels.device) < lengths.view(-1, 1)
    invalid = inside & ((labels < 0) | (labels >= num_labels))
    if bool(invalid.any()):
        bad = labels[invalid][0].item()
        raise ValueError(f"labels must lie in [0, C = {num_labels}) within lengths, found {bad}")


def masked_log_partition(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None,
    allowed: Tensor | None,
    backend: str | autograd.Backend = "auto",
) -> Tensor:
    """log Z (B,) in segments semantics over the segments whose every position allows their
    label (``allowed`` (B, T, C) bool, None = all): ``log Z(y)`` for the gold mask."""
    if isinstance(backend, str):
        check_inputs(scores, transition, duration, lengths, start)
        backend = select_backend(backend, scores)
    model = streaming.prepare(scores, transition, duration, lengths, start, allowed)
    return autograd.log_partition(backend, model, scores, transition, duration, start, None)


def label_nll(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    labels: Tensor,
    start: Tensor | None = None,
    *,
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """-log P(labels) per sequence (B,); labels (B, T), values past each length ignored."""
    batch, length, num_labels, _ = check_inputs(scores, transition, duration, lengths, start)
    check_semantics(semantics, tail, censored, batch, num_labels, scores.device)
    check_labels(labels, lengths, (batch, length), num_labels)
    if semantics == "runs":
        log_z = log_partition(
            scores, transition, duration, lengths, start, semantics="runs", tail=tail,
            censored=censored, backend=backend,
        )
        gold = scoring.score_segments(
            scores, transition, duration, start, scoring.label_runs(labels, lengths),
            lengths.to(torch.int64), semantics="runs", tail=tail, censored=censored,
        )
        return log_z - gold.to(log_z.dtype)
    if duration.shape[0] == 1:  # a linear chain: the labelling is its only segmentation
        log_z = log_partition(scores, transition, duration, lengths, start, backend=backend)
        gold = scoring.score_segments(
            scores, transition, duration, start, scoring.unit_segments(labels, lengths),
            lengths.to(torch.int64),
        )
        return log_z - gold.to(log_z.dtype)
    chosen = select_backend(backend, scores)
    allowed = gold_mask(labels, lengths, num_labels)
    if batch * num_labels * min(duration.shape[0], length) <= JOINT_SWEEP_MAX_WINDOW:
        # Small windows: a step's cost is mostly fixed overhead, so log Z and log Z(y) share
        # one sweep over a doubled batch (the free half allows everything).
        doubled = torch.cat([transition, transition]) if transition.dim() == 4 else transition
        both = masked_log_partition(
            torch.cat([scores, scores]), doubled, duration, torch.cat([lengths, lengths]),
            start, torch.cat([torch.ones_like(allowed), allowed]), chosen,
        )
        log_z, log_z_gold = both.split(batch)
    else:  # large windows: the arithmetic dominates, and the free sweep needs no mask
        log_z = log_partition(scores, transition, duration, lengths, start, backend=backend)
        log_z_gold = masked_log_partition(
            scores, transition, duration, lengths, start, allowed, chosen
        )
    return log_z - log_z_gold
