"""The public functional API of the Semi-CRF (the model contract).

Two semantics (keyword ``semantics``):

``"segments"`` (the default, unchanged since the first release): a segmentation tiles
[0, L) with segments [s, e), 1 <= e - s <= K, each with a label; consecutive segments may
share a label (so a label run has many segmentations, and K = 1 is a linear-chain CRF). A
segmentation's score is, over segments (s, e, c) with previous label c'::

    sum_{t=s}^{e-1} scores[t, c] + duration[e - s - 1, c]
        + (start[c] if s == 0 else transition[c', c])

``"runs"``: segments are maximal runs -- consecutive segments have different labels, so
every labelling has exactly one segmentation, ``log_partition`` sums over labellings and
``viterbi`` returns the best labelling. A run of label c and length L (any L >= 1) scores
its emissions + ``dur(L, c)`` + (``start[c]`` first, else ``transition[c', c]``, c' != c;
the diagonal is unused), with ``dur(L, c) = duration[L-1, c]`` for L <= K and
``duration[K-1, c] + (L - K) * tail[c]`` beyond (a geometric tail; ``tail`` (C,), None =
zeros). ``censored`` (B, 2) bool (None = no censoring) marks the first (column 0) / last
(column 1) run as cut by the window: such a run scores the log-survival
``log sum_{d >= L} exp(dur(d, c))`` instead of ``dur(L, c)``, and a run cut at both ends
(the whole window) ``log sum_{d >= L} (d - L + 1) exp(dur(d, c))``. These are finite only
for ``tail < 0``: a censored run with a non-negative tail is a ``ValueError``. (A model
without a length distribution -- table and tail zero -- has nothing to censor: pass None.)

Per-position transitions: ``transition`` may also be (B, T, C, C), where
``transition[b, t, c', c]`` scores a segment (run) of label c that starts at position t >= 1
of sequence b right after one of label c' (splice-site sensors, frame-aware grammars). Row
t = 0 is never used (the first segment scores ``start[c]``), nor rows t >= lengths[b], nor
(runs) the diagonal; their gradient is 0. A (C, C) table and its expansion to (B, T, C, C)
give the same results; the table's gradient is the sum over positions.

Forbidden entries: ``-inf`` is allowed in ``transition`` (both forms), ``start`` and
``duration`` (NaN and +inf are a ``ValueError`` naming the argument). A sequence with no
admissible labelling gets log Z = -inf, zero marginals and gradients, and from ``viterbi``
the score -inf and an empty segment list.

Shapes: scores (B, T, C) float32/float64; transition (C, C) or (B, T, C, C) indexed
[..., src, dst]; duration (K, C) with row d - 1 for length d; start (C,) or None (zeros);
lengths (B,) integer in [1, T]. All sums run in float64; results come back in the dtype of
``scores``. Gradients flow to scores, transition, duration, start and tail. ``start`` may
also be per sequence, (B, C) (a gene model's restricted partition; the CPU sweeps and the
reference run it, the Triton kernels take (C,)).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from semicrf.crf import autograd, blocked, chain, scoring, streaming, traced
from semicrf.crf.checks import Segment, check_inputs, check_segments, check_semantics

BACKENDS = ("auto", "reference", "triton")


def _triton_backend():
    try:
        from semicrf.crf import triton_backend
    except ImportError:
        return None
    return triton_backend if triton_backend.available() else None


def select_backend(backend: str, scores: Tensor, semantics: str = "segments") -> autograd.Backend:
    """Resolve ``backend``: "auto" picks Triton on CUDA when it is installed and supports
    ``semantics``, the blocked sweeps on CPU, else the reference sweeps."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "reference":
        return streaming
    module = _triton_backend()
    if backend == "auto":
        usable = module is not None and scores.is_cuda and semantics in module.SEMANTICS
        return module.BACKEND if usable else (streaming if scores.is_cuda else blocked)
    if module is None:
        raise ValueError(
            "backend='triton' needs the triton package (pip install 'semicrf[gpu]') and a CUDA "
            "device, or TRITON_INTERPRET=1 for the CPU interpreter"
        )
    if semantics not in module.SEMANTICS:
        raise ValueError(f"backend='triton' supports semantics {module.SEMANTICS}, not {semantics!r}")
    return module.BACKEND


def _prepared(scores, transition, duration, lengths, start, semantics, tail, censored, backend):
    """Validate, then (backend, model, the model's differentiable tensors). Runs semantics at
    K = 1 becomes the equivalent linear chain (:mod:`semicrf.crf.chain`)."""
    batch, _, labels, _ = check_inputs(scores, transition, duration, lengths, start)
    check_semantics(semantics, tail, censored, batch, labels, scores.device)
    if semantics == "runs" and duration.shape[0] == 1:
        scores, transition, duration, start = chain.as_linear_chain(
            scores, transition, duration, lengths, start, tail, censored)
        semantics, tail, censored = "segments", None, None
    chosen = select_backend(backend, scores, semantics)
    if start is not None and start.dim() == 2 and chosen not in (streaming, blocked):
        if backend != "auto":
            raise ValueError("backend='triton' takes start of shape (C,); a per-sequence start "
                             "(B, C) runs on backend='reference'")
        chosen = streaming
    model = streaming.prepare(
        scores, transition, duration, lengths, start, semantics=semantics, tail=tail,
        censored=censored,
    )
    return chosen, model, (scores, transition, duration, start, tail)


def log_partition(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """log-sum-exp of the score over all segmentations of each sequence -> (B,).

    Differentiable w.r.t. scores, transition, duration, start and tail (hand-written backward).
    """
    chosen, model, tensors = _prepared(
        scores, transition, duration, lengths, start, semantics, tail, censored, backend
    )
    return autograd.log_partition(chosen, model, *tensors)


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
    backend: str = "auto",
) -> tuple[Tensor, list[list[Segment]]]:
    """Best segmentation: scores (B,) and, per sequence, segments (start, end_exclusive, label).

    With ``semantics="runs"`` the segments are the maximal runs of the best labelling. The
    traceback covers the whole length, however long. Not differentiable.
    """
    chosen, model, _ = _prepared(
        scores, transition, duration, lengths, start, semantics, tail, censored, backend
    )
    with torch.no_grad():
        best, paths = autograd.viterbi(chosen, model, scores.dtype)
    if semantics == "runs" and model.semantics == "segments":  # the K = 1 chain
        paths = [chain.merge_runs(path) for path in paths]
    return best, paths


def marginals(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
    backend: str = "auto",
) -> Tensor:
    """Posterior P(position t has label c) -> (B, T, C), zero beyond each length.

    Equal to d log Z / d scores. When an input requires grad the result is differentiable;
    that path traces the recursion with autograd (O(T K C) memory): use it on small inputs.
    """
    chosen, model, _ = _prepared(
        scores, transition, duration, lengths, start, semantics, tail, censored, backend
    )
    inputs = [x for x in (scores, transition, duration, start, tail) if x is not None]
    if torch.is_grad_enabled() and any(x.requires_grad for x in inputs):
        leaf = scores if scores.requires_grad else scores.detach().requires_grad_()
        log_z = traced.log_partition(
            leaf, transition, duration, lengths, start, semantics=semantics, tail=tail,
            censored=censored,
        )
        (grad,) = torch.autograd.grad(log_z.sum(), leaf, create_graph=True)
        return grad
    state = chosen.forward(model)
    ones = torch.ones_like(state.log_z)
    grads = autograd.posterior(chosen, model, state, ones, False, duration.shape[0])
    return grads.scores.to(scores.dtype)


def posterior_durations(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None = None,
    *,
    semantics: str = "runs",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
) -> Tensor:
    """Expected number of complete runs of each length and label per sequence -> (B, K, C).

    Row d - 1 counts runs of length exactly d <= min(K, T) that are not censored (censored
    runs have no observed length; runs longer than K are not counted). This is the model's
    own length distribution on these inputs, free of the tilt that makes the raw table
    unidentifiable; it is the window part of d log Z / d duration, from one forward and one
    backward sweep (the blocked sweeps on CPU, the reference sweeps elsewhere). Not
    differentiable.
    """
    batch, _, labels, _ = check_inputs(scores, transition, duration, lengths, start)
    check_semantics(semantics, tail, censored, batch, labels, scores.device)
    model = streaming.prepare(
        scores, transition, duration, lengths, start, semantics=semantics, tail=tail,
        censored=censored,
    )
    sweeps = blocked if scores.device.type == "cpu" else streaming
    fwd = sweeps.forward_sweep(model)
    mass = sweeps.backward_sweep(model, fwd, with_duration=True).duration_mass
    mass = mass.masked_fill(autograd.impossible(fwd.log_z).view(-1, 1, 1), 0.0)
    counts = torch.zeros(scores.shape[0], duration.shape[0], scores.shape[2], dtype=torch.float64,
                         device=scores.device)
    counts[:, : mass.shape[2]] = mass.transpose(1, 2)
    return counts


def segmentation_score(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    segments: Sequence[Sequence[Segment]],
    start: Tensor | None = None,
    *,
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
) -> Tensor:
    """Score (B,) of one given segmentation per sequence; differentiable.

    ``segments[b]`` lists (start, end_exclusive, label) tiling [0, L_b) in order; with
    ``semantics="runs"`` they must be maximal runs (adjacent labels differ) and L_b is the
    end of the last one (where a censored last run is cut).
    """
    batch, length, labels, max_len = check_inputs(scores, transition, duration, None, start)
    check_semantics(semantics, tail, censored, batch, labels, scores.device)
    check_segments(segments, batch, length, labels, max_len, semantics)
    tensors = scoring.segment_tensors([list(s) for s in segments], scores.device)
    lengths = torch.tensor([int(segs[-1][1]) for segs in segments], device=scores.device)
    total = scoring.score_segments(
        scores, transition, duration, start, tensors, lengths, semantics=semantics, tail=tail,
        censored=censored,
    )
    return total.to(scores.dtype)
