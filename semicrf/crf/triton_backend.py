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
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import Tensor

from semicrf.crf import autograd, streaming


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


SEMANTICS = ("segments",)


def _problem(model: streaming.Model64, block_k: int | None):
    if not model.prefix.is_cuda and not _interpreting():
        raise ValueError(
            "backend='triton' needs CUDA tensors (or TRITON_INTERPRET=1 for the CPU interpreter), "
            f"got scores on {model.prefix.device}"
        )
    if model.semantics not in SEMANTICS:
        raise ValueError(f"backend='triton' supports semantics {SEMANTICS}, not {model.semantics!r}")
    kernels = _kernels()
    lo = hi = None
    if model.allowed is not None:
        lo, hi = kernels.allowed_limits(model.allowed.to(model.prefix.device))
    return kernels.Problem(
        prefix=model.prefix,
        transition=model.transition.contiguous(),
        duration=model.duration.contiguous(),
        start=model.start.contiguous(),
        lengths=model.lengths.contiguous(),
        lo=lo,
        hi=hi,
        f32_exp=model.low_precision,
        block_k=block_k,
    )


@dataclass
class _State:
    problem: object
    fwd: object

    @property
    def log_z(self) -> Tensor:
        return self.fwd.log_z


@dataclass
class TritonBackend:
    """The backend protocol of :mod:`semicrf.crf.autograd` on the Triton kernels.

    The forward keeps the O(T C) float64 sweep state (alpha, gamma); the backward runs the
    mirrored sweep and the duration-posterior kernel. Per-sequence partial sums are reduced
    over the batch with ``torch.sum`` (no atomics: bitwise deterministic). ``block_k``
    overrides the window chunk width (a power of two; tests exercise the chunked path).
    ``model.allowed`` (B, T, C) bool restricts segments (the gold partition). Window exponentials
    run in float32 for float32 scores (``model.low_precision``).
    """

    block_k: int | None = None

    def forward(self, model: streaming.Model64) -> _State:
        problem = _problem(model, self.block_k)
        return _State(problem, _kernels().forward(problem))

    def backward(self, model, state: _State, grad_log_z: Tensor, with_duration: bool,
                 full_max_len: int) -> streaming.Gradients:
        kernels, problem, fwd = _kernels(), state.problem, state.fwd
        bwd = kernels.backward(problem, fwd)
        g = grad_log_z.to(torch.float64).reshape(-1, 1, 1)
        labels = model.prefix.shape[1]
        grad_dur = torch.zeros(full_max_len, labels, dtype=torch.float64, device=g.device)
        if with_duration:
            mass = kernels.duration_mass(problem, fwd, bwd)  # (B, C, Kc)
            grad_dur[: mass.shape[2]] = (mass * g).sum(0).T
        return streaming.Gradients(
            scores=bwd.marginals * g,
            transition=(bwd.transition_mass * g).sum(0),
            duration=grad_dur,
            start=(bwd.start_mass * g[:, 0]).sum(0),
            tail=None,
        )

    def viterbi(self, model: streaming.Model64) -> streaming.ViterbiSweep:
        problem = _problem(model, self.block_k)
        sweep = _kernels().viterbi(problem)
        batch, length = model.prefix.shape[0], model.prefix.shape[2] - 1
        last_len = sweep.back_len[torch.arange(batch), sweep.last_label, model.lengths]
        return streaming.ViterbiSweep(
            best=sweep.best,
            last_label=sweep.last_label,
            last_begin=model.lengths - last_len.long(),
            back_len=sweep.back_len,
            back_label=sweep.back_label[:, :, :length],
        )


BACKEND = TritonBackend()


def _check_allowed(allowed: Tensor | None, scores: Tensor) -> None:
    if allowed is not None and (
        allowed.dtype != torch.bool or tuple(allowed.shape) != tuple(scores.shape)
    ):
        raise ValueError(
            f"allowed must be a bool tensor of shape (B, T, C) = {tuple(scores.shape)}, "
            f"got {allowed.dtype} {tuple(allowed.shape)}"
        )


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
    """log Z (B,) in segments semantics, optionally restricted by ``allowed`` (B, T, C) bool
    (inputs assumed validated; tests and the GPU check call this directly)."""
    _check_allowed(allowed, scores)
    backend = TritonBackend(block_k)
    model = streaming.prepare(scores, transition, duration, lengths, start, allowed)
    return autograd.log_partition(backend, model, scores, transition, duration, start, None)


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
    backend = TritonBackend(block_k)
    model = streaming.prepare(scores, transition, duration, lengths, start)
    return autograd.viterbi(backend, model, scores.dtype)
