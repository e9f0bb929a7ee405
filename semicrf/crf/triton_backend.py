"""The ``triton`` backend: the Semi-CRF contract of :mod:`semicrf.crf.api` on Triton kernels.

Same functions and conventions as the reference backend (:mod:`semicrf.crf.autograd`):
scores (B, T, C), transition (C, C) or per position (B, T, C, C) [..., src, dst] (the
kernels read row [b, t] for a segment starting at t; its gradient comes back per position
from the backward kernel), duration (K, C) [length - 1, label],
start (C,) or None, lengths (B,) integer, optional allowed (B, T, C) bool (segments
semantics), or semantics="runs" with tail (C,) and censored (B, 2) bool. Inputs are
assumed validated (``semicrf.crf.checks``). Results come back in the dtype of ``scores``.

Runs semantics: the kernels take the tail recurrences (forward, backward, Viterbi) and the
censored-edge terms as extra per-position inputs; those O(T C) terms, log Z, the end masses
and the best run of a censored last edge, and the edge runs' duration / tail gradients
come from the reference's own torch functions (:mod:`semicrf.crf.streaming`).

The kernels (:mod:`semicrf.crf.triton_kernels`) run on CUDA tensors, or on CPU tensors
under the Triton interpreter (``TRITON_INTERPRET=1`` set before the kernels are first
imported; slow, for tests). The kernel module is imported lazily, on the first call, so
importing this module never decides between the two.
"""

from __future__ import annotations

import dataclasses
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


SEMANTICS = ("segments", "runs")


def _problem(model: streaming.Model64, block_k: int | None) -> tuple[object, streaming.EdgeTerms]:
    """The kernels' Problem and the censored-edge terms of ``model``."""
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
    edges = streaming.edge_terms(model)
    problem = kernels.Problem(
        prefix=model.prefix,
        transition=model.transition.contiguous(),
        duration=model.duration.contiguous(),
        start=model.start.contiguous(),
        lengths=model.lengths.contiguous(),
        lo=lo,
        hi=hi,
        f32_exp=model.low_precision,
        block_k=block_k,
        tail=model.tail.contiguous() if model.has_tail else None,
        first=None if edges.first is None else edges.first.contiguous(),
        last=None if edges.last is None else edges.last.contiguous(),
        first_cut=model.censored_at(0),
        last_cut=model.censored_at(1),
    )
    return problem, edges


def _reference_gamma(gamma: Tensor) -> Tensor:
    """The kernels' gamma (B, C, Kc + T + 1) in the reference layout (B, C, Kc + T)."""
    return gamma[:, :, :-1]


@dataclass
class _State:
    problem: object
    fwd: object
    edges: streaming.EdgeTerms

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
    run in float32 for float32 scores (``model.low_precision``). Runs semantics: the kernels
    add the tail and censored-edge terms; log Z and the end masses where the last run is
    censored, the best censored last run and the edge runs' duration / tail gradients are
    computed here with the reference's functions.
    """

    block_k: int | None = None

    def forward(self, model: streaming.Model64) -> _State:
        problem, edges = _problem(model, self.block_k)
        fwd = _kernels().forward(problem)
        if edges.last is not None:  # censored last runs: log Z and the end masses on the host
            gamma = _reference_gamma(fwd.gamma)
            runs = torch.logsumexp(streaming.last_run_terms(model, gamma, edges), dim=2)
            fwd = dataclasses.replace(
                fwd,
                log_z=streaming.log_z_from(model, fwd.alpha, gamma, edges),
                end=torch.where(model.censored[:, 1:2], runs, fwd.end),
            )
        return _State(problem, fwd, edges)

    def backward(self, model, state: _State, grad_log_z: Tensor, with_duration: bool,
                 full_max_len: int) -> streaming.Gradients:
        kernels, problem = _kernels(), state.problem
        # impossible sequences (grad_log_z = 0 there) get log Z = 0: each of their posterior
        # terms (near NEG) then exps to exactly 0, where a log Z near NEG (ulp ~1e14) could
        # leave a rounded term above 0 and overflow
        fwd = dataclasses.replace(state.fwd, log_z=streaming.usable_log_z(state.fwd.log_z))
        bwd = kernels.backward(problem, fwd)
        g = grad_log_z.to(torch.float64).reshape(-1, 1, 1)
        labels = model.prefix.shape[1]
        start_mass = bwd.start_mass
        if problem.first_cut is not None:  # the first run's label is the label at position 0
            start_mass = torch.where(problem.first_cut.view(-1, 1), bwd.marginals[:, 0], start_mass)
        grad_dur = torch.zeros(full_max_len, labels, dtype=torch.float64, device=g.device)
        runs = model.semantics == "runs"
        grad_tail = torch.zeros(labels, dtype=torch.float64, device=g.device) if runs else None
        if with_duration:
            mass = kernels.duration_mass(problem, fwd, bwd)  # (B, C, Kc)
            grad_dur[: mass.shape[2]] = (mass * g).sum(0).T
            if bwd.tail_mass is not None:
                grad_dur[mass.shape[2] - 1] += (bwd.tail_mass * g[:, 0]).sum(0)
                grad_tail += (bwd.tail_excess * g[:, 0]).sum(0)
            edges = state.edges
            if edges.first is not None or edges.last is not None:
                edge_dur, edge_tail = streaming._edge_duration_gradients(
                    model,
                    streaming.ForwardSweep(fwd.alpha, _reference_gamma(fwd.gamma), fwd.log_z, edges),
                    streaming.BackwardSweep(u=bwd.u, out=None, duration_mass=mass),
                    g.view(-1),
                )
                grad_dur += edge_dur
                grad_tail += edge_tail
        if problem.per_position:  # (B, T, C, C), weighted in place
            grad_trans = bwd.transition_mass.mul_(g.view(-1, 1, 1, 1))
        else:
            grad_trans = (bwd.transition_mass * g).sum(0)
        return streaming.Gradients(
            scores=bwd.marginals * g,
            transition=grad_trans,
            duration=grad_dur,
            start=(start_mass * g[:, 0]).sum(0),
            tail=grad_tail,
        )

    def viterbi(self, model: streaming.Model64) -> streaming.ViterbiSweep:
        problem, edges = _problem(model, self.block_k)
        sweep = _kernels().viterbi(problem)
        batch, length = model.prefix.shape[0], model.prefix.shape[2] - 1
        last_len = sweep.back_len[torch.arange(batch), sweep.last_label, model.lengths]
        best, last_label = sweep.best, sweep.last_label.long()
        last_begin = model.lengths - last_len.long()
        if edges.last is not None:  # the best censored last run (start s, label c) on the host
            cut = streaming.last_run_terms(model, _reference_gamma(sweep.gamma), edges)
            cut_best, flat = torch.max(cut.flatten(1), dim=1)
            last_cut = model.censored[:, 1]
            best = torch.where(last_cut, cut_best, best)
            last_label = torch.where(last_cut, flat // length, last_label)
            last_begin = torch.where(last_cut, flat % length, last_begin)
        return streaming.ViterbiSweep(
            best=best,
            last_label=last_label,
            last_begin=last_begin,
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
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
    block_k: int | None = None,
) -> Tensor:
    """log Z (B,), in segments semantics optionally restricted by ``allowed`` (B, T, C) bool;
    differentiable w.r.t. scores, transition, duration, start and tail (inputs assumed
    validated; tests and the GPU check call this directly, ``block_k`` for chunked windows)."""
    _check_allowed(allowed, scores)
    backend = TritonBackend(block_k)
    model = streaming.prepare(scores, transition, duration, lengths, start, allowed,
                              semantics=semantics, tail=tail, censored=censored)
    return autograd.log_partition(backend, model, scores, transition, duration, start, tail)


def viterbi(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
    block_k: int | None = None,
) -> tuple[Tensor, list[list[tuple[int, int, int]]]]:
    """Best scores (B,) and segments (start, end_exclusive, label) (runs semantics: the
    maximal runs of the best labelling); back-pointers from the kernel, traced back on the
    host over the whole length."""
    backend = TritonBackend(block_k)
    model = streaming.prepare(scores, transition, duration, lengths, start,
                              semantics=semantics, tail=tail, censored=censored)
    return autograd.viterbi(backend, model, scores.dtype)
