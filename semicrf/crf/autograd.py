"""The one ``torch.autograd.Function`` of the Semi-CRF, shared by every backend.

A backend is any object with three methods over a prepared :class:`streaming.Model64`
(float64, label-major, inputs already validated by :mod:`semicrf.crf.api`):

* ``forward(model) -> state`` with ``state.log_z`` (B,) float64;
* ``backward(model, state, grad_log_z, with_duration, full_max_len) -> streaming.Gradients``
  (posterior expectations weighted by ``grad_log_z`` and summed over the batch);
* ``viterbi(model) -> streaming.ViterbiSweep`` (back-pointers, traced back on the host).

The forward keeps the backend's O(T C) state; the backward never builds an autograd graph
over the T steps. A sequence with no admissible labelling (every path holds a -inf entry)
gets log Z = -inf, zero gradients and marginals, and from Viterbi the score -inf with an
empty segment list.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from semicrf.crf import streaming
from semicrf.crf.checks import Segment


class Backend(Protocol):
    def forward(self, model: streaming.Model64) -> Any: ...

    def backward(
        self, model: streaming.Model64, state: Any, grad_log_z: Tensor, with_duration: bool,
        full_max_len: int,
    ) -> streaming.Gradients: ...

    def viterbi(self, model: streaming.Model64) -> streaming.ViterbiSweep: ...


def _cast(grad: Tensor | None, like: Tensor | None, needed: bool) -> Tensor | None:
    if like is None or not needed or grad is None:
        return None
    return grad.to(like.dtype)


def impossible(log_z: Tensor) -> Tensor:
    """(B,) bool: the sequences whose backend log Z says no labelling is admissible."""
    return log_z <= streaming.IMPOSSIBLE


def posterior(
    backend: Backend, model: streaming.Model64, state: Any, grad_log_z: Tensor,
    with_duration: bool, full_max_len: int,
) -> streaming.Gradients:
    """The backend's posterior expectations weighted by ``grad_log_z`` (B,), with impossible
    sequences given weight 0."""
    weight = grad_log_z.to(torch.float64).masked_fill(impossible(state.log_z), 0.0)
    return backend.backward(model, state, weight, with_duration, full_max_len)


class LogPartition(torch.autograd.Function):
    """log Z (B,); differentiable w.r.t. scores, transition, duration, start and tail."""

    @staticmethod
    def forward(ctx, backend, model, scores, transition, duration, start, tail):
        state = backend.forward(model)
        ctx.backend, ctx.model, ctx.state = backend, model, state
        ctx.inputs = (scores, transition, duration, start, tail)
        log_z = state.log_z.masked_fill(impossible(state.log_z), float("-inf"))
        return log_z.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad_log_z: Tensor):
        scores, transition, duration, start, tail = ctx.inputs
        need = ctx.needs_input_grad[2:]
        grads = posterior(
            ctx.backend, ctx.model, ctx.state, grad_log_z, need[2] or need[4], duration.shape[0]
        )
        return (
            None,
            None,
            _cast(grads.scores, scores, need[0]),
            _cast(grads.transition, transition, need[1]),
            _cast(grads.duration, duration, need[2]),
            _cast(grads.start, start, need[3]),
            _cast(grads.tail, tail, need[4]),
        )


def log_partition(
    backend: Backend,
    model: streaming.Model64,
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    start: Tensor | None,
    tail: Tensor | None,
) -> Tensor:
    """log Z (B,) of a prepared model; the tensors are the differentiable originals."""
    return LogPartition.apply(backend, model, scores, transition, duration, start, tail)


def viterbi(
    backend: Backend, model: streaming.Model64, dtype: torch.dtype
) -> tuple[Tensor, list[list[Segment]]]:
    """Best scores (B,) in ``dtype`` and segments (start, end_exclusive, label) per sequence
    (-inf and [] for a sequence with no admissible labelling)."""
    sweep = backend.viterbi(model)
    paths = streaming.traceback(sweep, model.lengths)
    none = impossible(sweep.best)
    for b in none.nonzero().flatten().tolist():
        paths[b] = []
    return sweep.best.masked_fill(none, float("-inf")).to(dtype), paths
