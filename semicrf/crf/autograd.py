"""``torch.autograd.Function`` glue for the reference streaming sweeps.

The forward runs one sweep and keeps O(T C) float64 state; the hand-written backward runs
the mirrored sweep and evaluates the posterior expectations. No autograd graph is built
over the T steps.
"""

from __future__ import annotations

import torch
from torch import Tensor

from semicrf.crf import streaming


class LogPartition(torch.autograd.Function):
    """log Z (B,) of the Semi-CRF; differentiable w.r.t. scores, transition, duration, start."""

    @staticmethod
    def forward(
        ctx,
        scores: Tensor,
        transition: Tensor,
        duration: Tensor,
        start: Tensor | None,
        lengths: Tensor,
        allowed: Tensor | None,
    ) -> Tensor:
        model = streaming.prepare(scores, transition, duration, lengths, start, allowed)
        fwd = streaming.forward_sweep(model)
        ctx.model, ctx.fwd = model, fwd
        ctx.dtypes = (scores.dtype, transition.dtype, duration.dtype)
        ctx.start_dtype = None if start is None else start.dtype
        ctx.max_len = duration.shape[0]
        return fwd.log_z.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad_log_z: Tensor):
        bwd = streaming.backward_sweep(ctx.model, ctx.fwd, with_duration=ctx.needs_input_grad[2])
        grads = streaming.gradients(ctx.model, ctx.fwd, bwd, grad_log_z, ctx.max_len)
        scores_dtype, transition_dtype, duration_dtype = ctx.dtypes
        grad_start = None if ctx.start_dtype is None else grads.start.to(ctx.start_dtype)
        return (
            grads.scores.to(scores_dtype),
            grads.transition.to(transition_dtype),
            grads.duration.to(duration_dtype),
            grad_start,
            None,
            None,
        )


def log_partition(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    allowed: Tensor | None = None,
) -> Tensor:
    """Reference-backend log partition (B,), optionally restricted by ``allowed`` (B, T, C)."""
    return LogPartition.apply(scores, transition, duration, start, lengths, allowed)


def viterbi(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
) -> tuple[Tensor, list[list[tuple[int, int, int]]]]:
    """Reference-backend Viterbi: best scores (B,) and segments (start, end_exclusive, label)."""
    model = streaming.prepare(scores, transition, duration, lengths, start)
    sweep = streaming.viterbi_sweep(model)
    return sweep.best.to(scores.dtype), streaming.traceback(sweep, model.lengths)
