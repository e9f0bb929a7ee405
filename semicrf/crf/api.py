"""The public functional API of the Semi-CRF (the model contract).

A segmentation tiles [0, L) with segments [s, e), 1 <= e - s <= K, each with a label; its
score is, over segments (s, e, c) with previous label c'::

    sum_{t=s}^{e-1} scores[t, c] + duration[e - s - 1, c]
        + (start[c] if s == 0 else transition[c', c])

Shapes: scores (B, T, C) float32/float64; transition (C, C) indexed [src, dst]; duration
(K, C) with row d - 1 for length d; start (C,) or None (zeros); lengths (B,) integer in
[1, T]. Consecutive segments may share a label, so K = 1 is a linear-chain CRF.
All sums run in float64; results come back in the dtype of ``scores``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import torch
from torch import Tensor

from semicrf.crf import autograd as reference
from semicrf.crf import traced
from semicrf.crf.checks import Segment, check_inputs, check_segments

BACKENDS = ("auto", "reference", "triton")


def _triton_module() -> ModuleType | None:
    try:
        from semicrf.crf import triton_backend
    except ImportError:
        return None
    return triton_backend if triton_backend.available() else None


def select_backend(backend: str, scores: Tensor) -> ModuleType:
    """Resolve ``backend``: "auto" picks Triton on CUDA when it is installed, else reference."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return reference
    module = _triton_module()
    if backend == "auto":
        return module if module is not None and scores.is_cuda else reference
    if module is None:
        raise ValueError(
            "backend='triton' needs the triton package (pip install 'semicrf[gpu]') and a CUDA "
            "device, or TRITON_INTERPRET=1 for the CPU interpreter"
        )
    return module


def log_partition(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    backend: str = "auto",
) -> Tensor:
    """log-sum-exp of the score over all segmentations of each sequence -> (B,).

    Differentiable w.r.t. scores, transition, duration and start (hand-written backward).
    """
    check_inputs(scores, transition, duration, lengths, start)
    return select_backend(backend, scores).log_partition(scores, transition, duration, lengths, start)


def viterbi(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    backend: str = "auto",
) -> tuple[Tensor, list[list[tuple[int, int, int]]]]:
    """Best segmentation: scores (B,) and, per sequence, segments (start, end_exclusive, label).

    The traceback covers the whole length, however long. Not differentiable.
    """
    check_inputs(scores, transition, duration, lengths, start)
    with torch.no_grad():
        return select_backend(backend, scores).viterbi(scores, transition, duration, lengths, start)


def marginals(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    backend: str = "auto",
) -> Tensor:
    """Posterior P(position t has label c) -> (B, T, C), zero beyond each length.

    Equal to d log Z / d scores. When an input requires grad the result is differentiable;
    that path traces the recursion with autograd (O(T K C) memory): use it on small inputs.
    """
    check_inputs(scores, transition, duration, lengths, start)
    inputs = [x for x in (scores, transition, duration, start) if x is not None]
    if torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
        leaf = scores if scores.requires_grad else scores.detach().requires_grad_()
        log_z = traced.log_partition(leaf, transition, duration, lengths, start)
        (grad,) = torch.autograd.grad(log_z.sum(), leaf, create_graph=True)
        return grad
    module = select_backend(backend, scores)
    with torch.enable_grad():
        leaf = scores.detach().requires_grad_()
        log_z = module.log_partition(
            leaf, transition.detach(), duration.detach(), lengths,
            None if start is None else start.detach(),
        )
        (grad,) = torch.autograd.grad(log_z.sum(), leaf)
    return grad


def segmentation_score(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    segments: Sequence[Sequence[Segment]],
    start: Tensor | None = None,
) -> Tensor:
    """Score (B,) of one given segmentation per sequence; differentiable.

    ``segments[b]`` lists (start, end_exclusive, label) tiling [0, L_b) in order.
    """
    batch, length, labels, max_len = check_inputs(scores, transition, duration, None, start)
    check_segments(segments, batch, length, labels, max_len)
    dev = scores.device
    rows = [(b, int(s), int(e), int(c)) for b, segs in enumerate(segments) for s, e, c in segs]
    idx = torch.tensor(rows, dtype=torch.int64, device=dev)
    seq, begin, end, label = idx.unbind(1)
    f64 = torch.float64
    prefix = torch.cat(
        [scores.new_zeros(batch, 1, labels, dtype=f64), torch.cumsum(scores.to(f64), dim=1)], dim=1
    )
    emission = prefix[seq, end, label] - prefix[seq, begin, label]
    dur = duration.to(f64)[end - begin - 1, label]
    first = begin == 0
    prev_label = torch.roll(label, 1)  # previous segment of the same sequence when not first
    start64 = torch.zeros(labels, dtype=f64, device=dev) if start is None else start.to(f64)
    link = torch.where(first, start64[label], transition.to(f64)[prev_label, label])
    total = torch.zeros(batch, dtype=f64, device=dev).index_add(0, seq, emission + dur + link)
    return total.to(scores.dtype)
