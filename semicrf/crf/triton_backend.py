"""The ``triton`` backend: the Semi-CRF contract of :mod:`semicrf.crf.api` on Triton kernels.

Same functions and conventions as the reference backend (:mod:`semicrf.crf.autograd`):
scores (B, T, C), transition (C, C) [src, dst], duration (K, C) [length - 1, label],
start (C,) or None, lengths (B,) integer, optional allowed (B, T, C) bool. Inputs are
assumed validated (``semicrf.crf.checks``). Results come back in the dtype of ``scores``.

The kernels (:mod:`semicrf.crf.triton_kernels`) run on CUDA tensors, or on CPU tensors
under the Triton interpreter (``TRITON_INTERPRET=1`` set before the kernels are first
imported; slow, for tests). The kernel module is imported lazily, on the first call, so
importing this module never decides between the two.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch
from torch import Tensor

from semicrf.crf import streaming


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def available() -> bool:
    """True when triton imports and either CUDA is available or TRITON_INTERPRET=1."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available() or _interpreting()


def _kernels() -> ModuleType:
    from semicrf.crf import triton_kernels

    return triton_kernels


def _problem(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None,
    allowed: Tensor | None,
    block_k: int | None,
):
    if not scores.is_cuda and not _interpreting():
        raise ValueError(
            "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter), "
            f"got scores on {scores.device}"
        )
    kernels = _kernels()
    model = streaming.prepare(scores, transition, duration, lengths, start)
    lo = hi = None
    if allowed is not None:
        if allowed.dtype != torch.bool or tuple(allowed.shape) != tuple(scores.shape):
            raise ValueError(
                f"allowed must be a bool tensor of shape (B, T, C) = {tuple(scores.shape)}, "
                f"got {allowed.dtype} {tuple(allowed.shape)}"
            )
        lo, hi = kernels.allowed_limits(allowed.to(scores.device))
    return kernels.Problem(
        prefix=model.prefix,
        transition=model.transition.contiguous(),
        duration=model.duration.contiguous(),
        start=model.start.contiguous(),
        lengths=model.lengths.contiguous(),
        lo=lo,
        hi=hi,
        f32_exp=scores.dtype == torch.float32,
        block_k=block_k,
    )


class LogPartition(torch.autograd.Function):
    """log Z (B,) on the Triton kernels; differentiable w.r.t. scores, transition, duration, start.

    The forward keeps the O(T C) float64 sweep state (alpha, gamma); the backward runs the
    mirrored sweep and the duration-posterior kernel. Per-sequence partial sums are
    reduced over the batch with ``torch.sum`` (no atomics: bitwise deterministic).
    """

    @staticmethod
    def forward(ctx, scores, transition, duration, start, lengths, allowed, block_k):
        problem = _problem(scores, transition, duration, lengths, start, allowed, block_k)
        fwd = _kernels().forward(problem)
        ctx.problem, ctx.fwd = problem, fwd
        ctx.dtypes = (scores.dtype, transition.dtype, duration.dtype)
        ctx.start_dtype = None if start is None else start.dtype
        ctx.max_len = duration.shape[0]
        return fwd.log_z.to(scores.dtype)

    @staticmethod
    def backward(ctx, grad_log_z):
        kernels, problem, fwd = _kernels(), ctx.problem, ctx.fwd
        need_scores, need_trans, need_dur, need_start = ctx.needs_input_grad[:4]
        scores_dtype, transition_dtype, duration_dtype = ctx.dtypes
        bwd = kernels.backward(problem, fwd)
        g = grad_log_z.to(torch.float64).reshape(-1, 1, 1)
        grad_scores = (bwd.marginals * g).to(scores_dtype) if need_scores else None
        grad_trans = (bwd.transition_mass * g).sum(0).to(transition_dtype) if need_trans else None
        grad_start = None
        if need_start:
            grad_start = (bwd.start_mass * g[:, 0]).sum(0).to(ctx.start_dtype)
        grad_dur = None
        if need_dur:
            mass = kernels.duration_mass(problem, fwd, bwd)  # (B, C, Kc)
            _, labels, short = mass.shape
            grad_dur = torch.zeros(ctx.max_len, labels, dtype=duration_dtype, device=mass.device)
            grad_dur[:short] = (mass * g).sum(0).T.to(duration_dtype)
        return grad_scores, grad_trans, grad_dur, grad_start, None, None, None


def log_partition(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    allowed: Tensor | None = None,
    *,
    block_k: int | None = None,
) -> Tensor:
    """log Z (B,), optionally restricted by ``allowed`` (B, T, C) bool.

    ``block_k`` overrides the window chunk width (a power of two; tests use it to exercise
    the chunked path at small K).
    """
    return LogPartition.apply(scores, transition, duration, start, lengths, allowed, block_k)


def viterbi(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    block_k: int | None = None,
) -> tuple[Tensor, list[list[tuple[int, int, int]]]]:
    """Best scores (B,) and segments (start, end_exclusive, label); back-pointers from the
    kernel, traced back on the host over the whole length."""
    problem = _problem(scores, transition, duration, lengths, start, None, block_k)
    sweep = _kernels().viterbi(problem)
    length = scores.shape[1]
    host = streaming.ViterbiSweep(
        best=sweep.best,
        last_label=sweep.last_label,
        back_len=sweep.back_len,
        back_label=sweep.back_label[:, :, :length],
    )
    return sweep.best.to(scores.dtype), streaming.traceback(host, problem.lengths)
