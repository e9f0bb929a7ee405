"""Triton kernels for the streaming Semi-CRF and their launchers (the ``triton`` backend).

The recursions are those of :mod:`semicrf.crf.streaming` (read its header first); the
buffers have the same float64, label-major layout, so every intermediate can be compared
with the reference one to one:

* ``prefix``   S (B, C, T + 1): ``S[t] = sum_{u < t} scores[u]``.
* ``gamma``    (B, C, Kc + T + 1): gamma at position s is stored at index ``Kc + s``;
  indices below ``Kc`` hold NEG (segments cannot start before 0) and ``Kc`` holds ``start``.
* ``alpha``    (B, C, T + 1) and ``u`` (B, C, T + 1 + Kc) (NEG past each length).

``Kc = min(K, T)``. Sequential sweeps run one program per sequence (grid = B) and walk t
with a runtime loop bound (the sequence's own length), so no kernel is specialised on T
or on a length. Each step reads the K-wide window of ``gamma`` (forward, Viterbi) or ``u``
(backward) for all labels as one (BLOCK_C, BLOCK_K) tile, in chunks of BLOCK_K slots
combined by an online log-sum-exp when K is large, adds the duration row and reduces over
the window; the transition is folded in once per position with a (C, C) tile, so a step
costs O(K C + C^2). A step's store (gamma[t] or u[t]) is read by the next step through
global memory, so a CTA barrier separates them, and the launches use ``num_stages=1``
so that no software pipelining can hoist the next step's window load above it.

Per-position transitions (constexpr ``PER_POSITION``, so the table kernels are unchanged):
with a (B, T, C, C) transition each step of the forward, backward and Viterbi sweeps loads
row [b, t] as its (C, C) tile (issued at the top of the step, used by the fold at its end)
instead of one tile per program, and the backward writes each step's posterior pair masses
to row [b, t] of a (B, T, C, C) buffer instead of accumulating them in registers.

Runs semantics (constexpr flags, so the segments kernels are unchanged): the transition
arrives with its diagonal at NEG; ``HAS_TAIL`` (K < T) adds the O(C)-per-step tail
recurrence of the reference (forward and Viterbi: runs longer than K ending at t; backward:
starting at t, with the expected-excess recurrence for the tail gradient) as one more term
of the step's log-sum-exp (or max); ``HAS_FIRST`` / ``HAS_LAST`` add a censored first /
last run as one more per-position term read from the O(T C) arrays of
``streaming.EdgeTerms``. The host (``triton_backend``) computes those arrays, log Z and the
end masses where the last run is censored, and the edge runs' duration / tail gradients
with the reference's functions. The tail recurrences are float64 for every input dtype.

Precision: prefix sums, every stored quantity and every difference of large numbers
(the max shifts, alpha + beta - log Z, ...) are float64. For float32 inputs (``F32_EXP``)
the exponentials of max-shifted values (<= 0) in the log-sum-exps and in the
duration-posterior kernel, and the logs of their sums (>= 1), run in float32: about 1e-7
relative per term, below float32 output resolution. For float64 inputs everything is
float64. The posterior masses of the backward sweep are float64 exponentials for both.
Like the reference, a large finite NEG stands for "impossible" and exp arguments are
clamped at -700.

Gradients are computed without atomics: the backward sweep writes each sequence's
position marginals, its transition/start posterior mass and its tail masses to per-sequence
rows, the
duration-posterior kernel writes per-(sequence, label, length) sums, each accumulated in
a fixed order; the host reduces over the batch with ``torch.sum``. Same inputs give
bitwise-same gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl
from torch import Tensor

# "Impossible" log-mass, like the reference's -1e30 but a power of two: Triton types Python
# float literals (``other=``, ``tl.where``) as float32, and this value is exact in both.
NEG = -(2.0**100)
_NEG = tl.constexpr(NEG)
_NEG_INF = tl.constexpr(float("-inf"))
_EXP_FLOOR = tl.constexpr(-700.0)
# Largest (BLOCK_C * BLOCK_K) window tile of a sequential sweep; larger K is chunked.
MAX_TILE = 4096
_INT32_MAX = 2**31 - 1


@triton.jit
def _exp_shifted(x, F32_EXP: tl.constexpr):
    """exp of max-shifted values (<= 0), clamped like the reference; float32 or float64."""
    x = tl.maximum(x, _EXP_FLOOR)
    if F32_EXP:
        return tl.exp(x.to(tl.float32))
    else:
        return tl.exp(x)


@triton.jit
def _log_sum(x, F32_EXP: tl.constexpr):
    """float64 log of a sum of shifted exponentials (>= 1, so float32 loses ~1e-7 absolute)."""
    if F32_EXP:
        return tl.log(x.to(tl.float32)).to(tl.float64)
    else:
        return tl.log(x)


@triton.jit
def _lse_rows(x, axis: tl.constexpr, F32_EXP: tl.constexpr):
    """float64 log-sum-exp of a small tile along ``axis`` (used for the (C, C) folds)."""
    top = tl.max(x, axis=axis)
    if axis == 0:
        shifted = x - top[None, :]
    else:
        shifted = x - top[:, None]
    return _log_sum(tl.sum(_exp_shifted(shifted, F32_EXP), axis=axis).to(tl.float64), F32_EXP) + top


@triton.jit
def _fold_chunk(x, top, acc, ONE_CHUNK: tl.constexpr, F32_EXP: tl.constexpr):
    """Fold a window chunk x (BLOCK_C, BLOCK_K) into the running row max and sum of exps."""
    if ONE_CHUNK:  # the whole window: no running state to rescale
        new_top = tl.max(x, axis=1)
        acc = tl.sum(_exp_shifted(x - new_top[:, None], F32_EXP), axis=1).to(tl.float64)
    else:
        new_top = tl.maximum(top, tl.max(x, axis=1))
        part = tl.sum(_exp_shifted(x - new_top[:, None], F32_EXP), axis=1).to(tl.float64)
        acc = acc * _exp_shifted(top - new_top, F32_EXP).to(tl.float64) + part
    return new_top, acc


@triton.jit
def _fold_one(v, top, acc, F32_EXP: tl.constexpr):
    """Fold one more term per row, v (BLOCK_C,), into the running row max and sum of exps."""
    new_top = tl.maximum(top, v)
    acc = (acc * _exp_shifted(top - new_top, F32_EXP).to(tl.float64)
           + _exp_shifted(v - new_top, F32_EXP).to(tl.float64))
    return new_top, acc


@triton.jit
def _transition_tile(trans_ptr, row, C, rc, ok):
    """The (BLOCK_C, BLOCK_C) [src, dst] tile of transition row ``row`` (0 for a (C, C)
    table, ``b * T + t`` for the per-position form); NEG where ``ok`` is False."""
    return tl.load(trans_ptr + row * C * C + rc[:, None] * C + rc[None, :], mask=ok, other=_NEG)


@triton.jit
def _logaddexp(a, b):
    """float64 log(exp(a) + exp(b)) (the tail recurrences: always float64)."""
    return tl.maximum(a, b) + tl.log(1.0 + tl.exp(tl.maximum(-tl.abs(a - b), _EXP_FLOOR)))


@triton.jit(do_not_specialize=["T"])
def _forward_kernel(
    prefix_ptr, trans_ptr, dur_ptr, lengths_ptr, lo_ptr, tail_ptr, first_edge_ptr,
    gamma_ptr, alpha_ptr, logz_ptr,
    C, Kc, T,
    HAS_ALLOWED: tl.constexpr, HAS_TAIL: tl.constexpr, HAS_FIRST: tl.constexpr,
    PER_POSITION: tl.constexpr, F32_EXP: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, ONE_CHUNK: tl.constexpr,
):
    """alpha[t] = S[t] + lse_k(duration[k-1] + gamma[t-k]); gamma[t] = lse_c'(alpha + trans) - S[t].

    trans (C, C), or with PER_POSITION (B, T, C, C), where gamma[t] reads row [b, t].

    lo (B, C, T) int32, only with HAS_ALLOWED: a segment ending at t must start at or after
    ``lo[t - 1]`` (one past the last disallowed position before t).
    HAS_TAIL (runs, K < T): runs longer than Kc = K, summed by the O(C) recurrence
    ``H[t] = logaddexp(H[t-1], gamma[t-K-1] + duration[K-1]) + tail`` (tail (C,)), enter
    alpha[t]. HAS_FIRST (a censored first run): first (B, C, T + 1), the survival-scored
    first runs ending at t (``streaming.EdgeTerms.first``), enter alpha[t].
    """
    b = tl.program_id(0).to(tl.int64)
    length = tl.load(lengths_ptr + b)
    rc = tl.arange(0, BLOCK_C)
    rk = tl.arange(0, BLOCK_K)
    c_ok = rc < C
    cc_ok = c_ok[:, None] & c_ok[None, :]
    if not PER_POSITION:
        trans = _transition_tile(trans_ptr, 0, C, rc, cc_ok)  # [src, dst]
    g_stride = Kc + T + 1
    s_base = prefix_ptr + b * C * (T + 1) + rc * (T + 1)
    g_rows = gamma_ptr + b * C * g_stride + rc * g_stride
    a_base = alpha_ptr + b * C * (T + 1) + rc * (T + 1)
    lo_base = lo_ptr + b * C * T + rc * T
    f_base = first_edge_ptr + b * C * (T + 1) + rc * (T + 1)
    if ONE_CHUNK:  # the duration tile stays in registers
        dur_tile = tl.load(dur_ptr + rc[:, None] * Kc + (Kc - 1 - rk)[None, :],
                           mask=c_ok[:, None] & (rk < Kc)[None, :], other=0.0)
    if HAS_TAIL:
        last_dur = tl.load(dur_ptr + rc * Kc + Kc - 1, mask=c_ok, other=0.0)
        tail = tl.load(tail_ptr + rc, mask=c_ok, other=0.0)
        run_tail = tl.full([BLOCK_C], _NEG, tl.float64)
    a_t = tl.full([BLOCK_C], _NEG, tl.float64)
    for t in range(1, length + 1):
        if PER_POSITION:  # issued first, used last (gamma[T] of row T - 1 is never read)
            trans = _transition_tile(trans_ptr, b * T + tl.minimum(t, T - 1), C, rc, cc_ok)
        if HAS_ALLOWED:
            lo = tl.load(lo_base + t - 1, mask=c_ok, other=0)
        top = tl.full([BLOCK_C], _NEG, tl.float64)
        acc = tl.zeros([BLOCK_C], tl.float64)
        for k0 in range(0, Kc, BLOCK_K):
            j = k0 + rk  # window slot: segment length Kc - j, start t - Kc + j
            ok = c_ok[:, None] & (j < Kc)[None, :]
            x = tl.load(g_rows[:, None] + (t + j)[None, :], mask=ok, other=_NEG)
            if ONE_CHUNK:
                x += dur_tile
            else:
                x += tl.load(dur_ptr + rc[:, None] * Kc + (Kc - 1 - j)[None, :], mask=ok, other=0.0)
            if HAS_ALLOWED:
                x = tl.where((t - Kc + j)[None, :] >= lo[:, None], x, _NEG)
            top, acc = _fold_chunk(x, top, acc, ONE_CHUNK, F32_EXP)
        if HAS_TAIL:  # gamma[t - Kc - 1] (index t - 1): a run of length Kc + 1 ending at t
            fresh = tl.load(g_rows + t - 1, mask=c_ok, other=_NEG) + last_dur
            run_tail = tl.where(t > Kc, _logaddexp(run_tail, fresh) + tail, run_tail)
            top, acc = _fold_one(run_tail, top, acc, F32_EXP)
        if HAS_FIRST:
            top, acc = _fold_one(tl.load(f_base + t, mask=c_ok, other=_NEG), top, acc, F32_EXP)
        s_t = tl.load(s_base + t, mask=c_ok, other=0.0)
        a_t = tl.where(c_ok, _log_sum(acc, F32_EXP) + top + s_t, _NEG)
        tl.store(a_base + t, a_t, mask=c_ok)
        into = _lse_rows(a_t[:, None] + trans, 0, F32_EXP)  # over src, per dst
        tl.store(g_rows + Kc + t, into - s_t, mask=c_ok)
        tl.debug_barrier()  # gamma[t] is read by the next step's window
    top = tl.max(a_t, axis=0)
    tl.store(logz_ptr + b, tl.log(tl.sum(tl.exp(tl.maximum(a_t - top, _EXP_FLOOR)), axis=0)) + top)


@triton.jit(do_not_specialize=["T"])
def _backward_kernel(
    prefix_ptr, trans_ptr, dur_ptr, lengths_ptr, hi_ptr, tail_ptr, last_edge_ptr, end_ptr,
    gamma_ptr, alpha_ptr, logz_ptr,
    u_ptr, marg_ptr, trans_mass_ptr, start_mass_ptr, tail_mass_ptr, tail_excess_ptr,
    C, Kc, T,
    HAS_ALLOWED: tl.constexpr, HAS_TAIL: tl.constexpr, HAS_LAST: tl.constexpr,
    PER_POSITION: tl.constexpr, F32_EXP: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, ONE_CHUNK: tl.constexpr,
):
    """The mirrored sweep, t = L-1 .. 0, fused with the O(C^2)-per-step posteriors.

    out[t] = lse_k(duration[k-1] + u[t+k]) - S[t]; beta[t] = lse_c(trans[., c] + out[t, c]);
    u[t] = S[t] + beta[t], u[L] set by the launcher. Writes marg (B, T, C): P(position t has
    label c), accumulated as (segment ends after t) - (segment starts after t), the ends at
    L from end (B, C) (log-mass of the labellings by last label); trans_mass (B, C, C) and
    start_mass (B, C): the posterior transition and first-segment masses. With PER_POSITION
    trans is (B, T, C, C) and so is trans_mass, row [b, t] written at every t < L (0 at
    t = 0; the launcher zero-fills t >= L).
    hi (B, C, T) int32, only with HAS_ALLOWED: a segment starting at s must end at or
    before ``hi[s]`` (the first disallowed position at or after s).
    HAS_TAIL: the mirrored tail recurrence ``R[t] = logaddexp(R[t+1], u[t+K+1] +
    duration[K-1]) + tail`` enters out[t], and the expected excess length ``M[t] = 1 +
    exp(R[t+1] + tail - R[t]) M[t+1]`` of those runs gives, per sequence and label,
    tail_mass (B, C) (expected number of runs longer than K) and tail_excess (B, C)
    (expected sum of their lengths minus K). HAS_LAST: last (B, C, T), the survival-scored
    censored last runs starting at t (``streaming.EdgeTerms.last``), enter out[t].
    """
    b = tl.program_id(0).to(tl.int64)
    length = tl.load(lengths_ptr + b)
    log_z = tl.load(logz_ptr + b)
    rc = tl.arange(0, BLOCK_C)
    rk = tl.arange(0, BLOCK_K)
    c_ok = rc < C
    cc_ok = c_ok[:, None] & c_ok[None, :]
    if not PER_POSITION:
        trans = _transition_tile(trans_ptr, 0, C, rc, cc_ok)
    u_stride = T + 1 + Kc
    g_stride = Kc + T + 1
    s_base = prefix_ptr + b * C * (T + 1) + rc * (T + 1)
    u_rows = u_ptr + b * C * u_stride + rc * u_stride
    g_base = gamma_ptr + b * C * g_stride + rc * g_stride + Kc
    a_base = alpha_ptr + b * C * (T + 1) + rc * (T + 1)
    hi_base = hi_ptr + b * C * T + rc * T
    l_base = last_edge_ptr + b * C * T + rc * T
    m_base = marg_ptr + b * T * C + rc

    end_t = tl.load(end_ptr + b * C + rc, mask=c_ok, other=_NEG)
    end_next = tl.where(c_ok, tl.exp(tl.maximum(end_t - log_z, _EXP_FLOOR)), 0.0)
    if HAS_TAIL:
        last_dur = tl.load(dur_ptr + rc * Kc + Kc - 1, mask=c_ok, other=0.0)
        tail = tl.load(tail_ptr + rc, mask=c_ok, other=0.0)
        run_tail = tl.full([BLOCK_C], _NEG, tl.float64)
        excess = tl.full([BLOCK_C], 1.0, tl.float64)
        tail_mass = tl.zeros([BLOCK_C], tl.float64)
        tail_excess = tl.zeros([BLOCK_C], tl.float64)
    start_next = tl.zeros([BLOCK_C], tl.float64)
    running = tl.zeros([BLOCK_C], tl.float64)
    if not PER_POSITION:
        trans_acc = tl.zeros([BLOCK_C, BLOCK_C], tl.float64)
    if ONE_CHUNK:  # the duration tile stays in registers
        dur_tile = tl.load(dur_ptr + rc[:, None] * Kc + rk[None, :],
                           mask=c_ok[:, None] & (rk < Kc)[None, :], other=0.0)
    for i in range(0, length):
        t = length - 1 - i
        if PER_POSITION:  # issued first, used last (at t = 0 only for the unread u[0])
            trans = _transition_tile(trans_ptr, b * T + t, C, rc, cc_ok)
        running += end_next - start_next
        tl.store(m_base + t * C, running, mask=c_ok)
        if HAS_ALLOWED:
            hi = tl.load(hi_base + t, mask=c_ok, other=0)
        top = tl.full([BLOCK_C], _NEG, tl.float64)
        acc = tl.zeros([BLOCK_C], tl.float64)
        for k0 in range(0, Kc, BLOCK_K):
            j = k0 + rk  # segment length j + 1, end t + 1 + j
            ok = c_ok[:, None] & (j < Kc)[None, :]
            x = tl.load(u_rows[:, None] + (t + 1 + j)[None, :], mask=ok, other=_NEG)
            if ONE_CHUNK:
                x += dur_tile
            else:
                x += tl.load(dur_ptr + rc[:, None] * Kc + j[None, :], mask=ok, other=0.0)
            if HAS_ALLOWED:
                x = tl.where((t + 1 + j)[None, :] <= hi[:, None], x, _NEG)
            top, acc = _fold_chunk(x, top, acc, ONE_CHUNK, F32_EXP)
        g_t = tl.load(g_base + t, mask=c_ok, other=_NEG)
        if HAS_TAIL:  # runs from t of length >= Kc + 1: u[t + Kc + 1] enters
            on = t + Kc + 1 <= length
            fresh = tl.load(u_rows + t + Kc + 1, mask=c_ok, other=_NEG) + last_dur
            grown = _logaddexp(run_tail, fresh) + tail
            kept = tl.exp(tl.maximum(run_tail + tail - grown, _EXP_FLOOR))
            excess = tl.where(on, kept * excess + 1.0, excess)
            run_tail = tl.where(on, grown, run_tail)
            weight = tl.where(on & c_ok, tl.exp(tl.maximum(run_tail + g_t - log_z, _EXP_FLOOR)), 0.0)
            tail_mass += weight
            tail_excess += weight * excess
            top, acc = _fold_one(run_tail, top, acc, F32_EXP)
        if HAS_LAST:
            top, acc = _fold_one(tl.load(l_base + t, mask=c_ok, other=_NEG), top, acc, F32_EXP)
        s_t = tl.load(s_base + t, mask=c_ok, other=0.0)
        out_t = tl.where(c_ok, _log_sum(acc, F32_EXP) + top - s_t, _NEG)
        start_next = tl.where(c_ok, tl.exp(g_t + s_t + out_t - log_z), 0.0)
        # transition into a segment starting at t (only for t > 0; alpha[0] is NEG anyway)
        link = trans + out_t[None, :]  # [src, dst]
        beta = tl.where(c_ok, _lse_rows(link, 1, F32_EXP), _NEG)
        a_t = tl.load(a_base + t, mask=c_ok, other=_NEG)
        inside = (t > 0).to(tl.float64)
        pair = tl.where(cc_ok, tl.exp(a_t[:, None] + link - log_z), 0.0)
        if PER_POSITION:
            tl.store(trans_mass_ptr + (b * T + t) * C * C + rc[:, None] * C + rc[None, :],
                     pair * inside, mask=cc_ok)
        else:
            trans_acc += pair * inside
        end_next = tl.where(c_ok, tl.exp(a_t + beta - log_z), 0.0) * inside
        tl.store(u_rows + t, beta + s_t, mask=c_ok)  # u[0] is never read
        tl.debug_barrier()  # u[t] is read by the next step's window
    tl.store(start_mass_ptr + b * C + rc, start_next, mask=c_ok)
    if not PER_POSITION:
        tl.store(trans_mass_ptr + b * C * C + rc[:, None] * C + rc[None, :], trans_acc, mask=cc_ok)
    if HAS_TAIL:
        tl.store(tail_mass_ptr + b * C + rc, tail_mass, mask=c_ok)
        tl.store(tail_excess_ptr + b * C + rc, tail_excess, mask=c_ok)


@triton.jit(do_not_specialize=["T"])
def _duration_kernel(
    gamma_ptr, u_ptr, dur_ptr, logz_ptr, lengths_ptr, hi_ptr, mass_ptr,
    C, Kc, T,
    HAS_ALLOWED: tl.constexpr, F32_EXP: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_K: tl.constexpr,
):
    """mass[b, c, k-1] = sum_s exp(gamma[s] + duration[k-1] + u[s+k] - log Z): expected count
    of segments of label c and length k. Grid (B * C, cdiv(Kc, BLOCK_K)), fully parallel;
    each program sums its positions in a fixed order.
    """
    row = tl.program_id(0).to(tl.int64)  # b * C + c
    b = row // C
    c = row % C
    j = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)  # segment length j + 1
    rt = tl.arange(0, BLOCK_T)
    j_ok = j < Kc
    length = tl.load(lengths_ptr + b)
    shift = tl.load(dur_ptr + c * Kc + j, mask=j_ok, other=_NEG) - tl.load(logz_ptr + b)
    g_row = gamma_ptr + row * (Kc + T + 1) + Kc
    u_row = u_ptr + row * (T + 1 + Kc)
    hi_row = hi_ptr + row * T
    acc = tl.zeros([BLOCK_K], tl.float64)
    for t0 in range(0, length, BLOCK_T):
        s = t0 + rt
        s_ok = s < length
        g = tl.load(g_row + s, mask=s_ok, other=_NEG)
        ok = s_ok[:, None] & j_ok[None, :]
        x = tl.load(u_row + (s + 1)[:, None] + j[None, :], mask=ok, other=_NEG)
        x += g[:, None] + shift[None, :]
        if HAS_ALLOWED:
            hi = tl.load(hi_row + s, mask=s_ok, other=0)
            x = tl.where((s + 1)[:, None] + j[None, :] <= hi[:, None], x, _NEG)
        acc += tl.sum(_exp_shifted(x, F32_EXP), axis=0).to(tl.float64)
    tl.store(mass_ptr + row * Kc + j, acc, mask=j_ok)


@triton.jit(do_not_specialize=["T"])
def _viterbi_kernel(
    prefix_ptr, trans_ptr, dur_ptr, lengths_ptr, tail_ptr, first_edge_ptr,
    gamma_ptr, best_ptr, last_ptr, back_len_ptr, back_label_ptr,
    C, Kc, T,
    HAS_TAIL: tl.constexpr, HAS_FIRST: tl.constexpr, PER_POSITION: tl.constexpr,
    BLOCK_C: tl.constexpr, BLOCK_K: tl.constexpr, ONE_CHUNK: tl.constexpr,
):
    """The forward recursion in the max semiring with back-pointers.

    back_len (B, C, T + 1) int32: length of the best last segment of label c ending at t
    (beyond Kc with HAS_TAIL: the tail accumulator keeps the start of its best run);
    back_label (B, C, T + 1) int32: best previous label for a segment of label c starting
    at t; best (B,) float64 and last (B,) int32: the optimum at the length and its label.
    HAS_TAIL / HAS_FIRST / PER_POSITION as in the forward kernel. Ties keep the longer run.
    """
    b = tl.program_id(0).to(tl.int64)
    length = tl.load(lengths_ptr + b)
    rc = tl.arange(0, BLOCK_C)
    rk = tl.arange(0, BLOCK_K)
    c_ok = rc < C
    cc_ok = c_ok[:, None] & c_ok[None, :]
    if not PER_POSITION:
        trans = _transition_tile(trans_ptr, 0, C, rc, cc_ok)
    g_stride = Kc + T + 1
    s_base = prefix_ptr + b * C * (T + 1) + rc * (T + 1)
    g_rows = gamma_ptr + b * C * g_stride + rc * g_stride
    p_base = b * C * (T + 1) + rc * (T + 1)
    f_base = first_edge_ptr + p_base
    if ONE_CHUNK:  # the duration tile stays in registers
        dur_tile = tl.load(dur_ptr + rc[:, None] * Kc + (Kc - 1 - rk)[None, :],
                           mask=c_ok[:, None] & (rk < Kc)[None, :], other=0.0)
    if HAS_TAIL:
        last_dur = tl.load(dur_ptr + rc * Kc + Kc - 1, mask=c_ok, other=0.0)
        tail = tl.load(tail_ptr + rc, mask=c_ok, other=0.0)
        run_tail = tl.full([BLOCK_C], _NEG, tl.float64)
        tail_begin = tl.zeros([BLOCK_C], tl.int32)
    a_t = tl.full([BLOCK_C], _NEG, tl.float64)
    for t in range(1, length + 1):
        if PER_POSITION:
            trans = _transition_tile(trans_ptr, b * T + tl.minimum(t, T - 1), C, rc, cc_ok)
        best = tl.full([BLOCK_C], _NEG_INF, tl.float64)
        arg = tl.zeros([BLOCK_C], tl.int32)
        for k0 in range(0, Kc, BLOCK_K):
            j = k0 + rk
            ok = c_ok[:, None] & (j < Kc)[None, :]
            x = tl.load(g_rows[:, None] + (t + j)[None, :], mask=ok, other=_NEG)
            if ONE_CHUNK:
                x += dur_tile
            else:
                x += tl.load(dur_ptr + rc[:, None] * Kc + (Kc - 1 - j)[None, :], mask=ok, other=0.0)
            x = tl.where(ok, x, _NEG_INF)
            top, slot = tl.max(x, axis=1, return_indices=True)
            take = top > best  # ties keep the earlier chunk (the longer segment)
            arg = tl.where(take, slot.to(tl.int32) + k0, arg)
            best = tl.where(take, top, best)
        seg_len = Kc - arg
        if HAS_TAIL:  # the best run longer than Kc ending at t, and where it starts
            on = t > Kc
            fresh = tl.load(g_rows + t - 1, mask=c_ok, other=_NEG) + last_dur
            take = on & (fresh > run_tail)  # ties keep the older (longer) run
            run_tail = tl.where(on, tl.where(take, fresh, run_tail) + tail, run_tail)
            tail_begin = tl.where(take, tl.cast(t - Kc - 1, tl.int32), tail_begin)
            better = on & (run_tail > best)
            best = tl.where(better, run_tail, best)
            seg_len = tl.where(better, tl.cast(t, tl.int32) - tail_begin, seg_len)
        if HAS_FIRST:
            first = tl.load(f_base + t, mask=c_ok, other=_NEG)
            better = first > best
            best = tl.where(better, first, best)
            seg_len = tl.where(better, tl.cast(t, tl.int32), seg_len)
        s_t = tl.load(s_base + t, mask=c_ok, other=0.0)
        a_t = tl.where(c_ok, best + s_t, _NEG_INF)  # padded lanes never win an argmax
        tl.store(back_len_ptr + p_base + t, seg_len, mask=c_ok)
        into, prev = tl.max(a_t[:, None] + trans, axis=0, return_indices=True)
        tl.store(g_rows + Kc + t, into - s_t, mask=c_ok)
        tl.store(back_label_ptr + p_base + t, prev.to(tl.int32), mask=c_ok)
        tl.debug_barrier()  # gamma[t] is read by the next step's window
    top, label = tl.max(a_t, axis=0, return_indices=True)
    tl.store(best_ptr + b, top)
    tl.store(last_ptr + b, label.to(tl.int32))


# ----------------------------------------------------------------------------- launchers


@dataclass
class Problem:
    """The model in the float64 label-major layout of the kernels (K already capped at T)."""

    prefix: Tensor  # S (B, C, T + 1) float64
    transition: Tensor  # (C, C) or per position (B, T, C, C) float64, [..., src, dst]
    duration: Tensor  # (C, Kc) float64, [c, k - 1]
    start: Tensor  # (C,) float64
    lengths: Tensor  # (B,) int64
    lo: Tensor | None  # (B, C, T) int32, earliest start of a segment ending at t (index t - 1)
    hi: Tensor | None  # (B, C, T) int32, latest end of a segment starting at s
    f32_exp: bool  # float32 exponentials in the window (float32 inputs)
    block_k: int | None = None  # override of the window chunk (tests, tuning)
    num_warps: int | None = None  # override of the sequential sweeps' warps (tuning)
    # runs semantics (the transition diagonal already NEG in ``transition``):
    tail: Tensor | None = None  # (C,) float64 geometric tail, when runs longer than Kc exist
    first: Tensor | None = None  # (B, C, T + 1) float64 censored first runs ending at t
    last: Tensor | None = None  # (B, C, T) float64 censored last runs starting at s
    first_cut: Tensor | None = None  # (B,) bool: the first run is censored (no start term)
    last_cut: Tensor | None = None  # (B,) bool: the last run is censored (no end at L)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        batch, labels, t_plus_1 = self.prefix.shape
        return batch, t_plus_1 - 1, labels, self.duration.shape[1]

    @property
    def per_position(self) -> bool:
        """The transition is the (B, T, C, C) per-position form."""
        return self.transition.dim() == 4


def allowed_limits(allowed: Tensor) -> tuple[Tensor, Tensor]:
    """From allowed (B, T, C) bool: lo, hi (B, C, T) int32 (see :class:`Problem`).

    A segment [s, e) of label c is allowed iff ``s >= lo[e - 1]`` iff ``e <= hi[s]``.
    """
    bad = ~allowed.transpose(1, 2)
    length = bad.shape[2]
    pos = torch.arange(length, device=bad.device)
    last_bad = torch.where(bad, pos, -1).cummax(dim=2).values
    next_bad = torch.where(bad, pos, length).flip(2).cummin(dim=2).values.flip(2)
    return (last_bad + 1).to(torch.int32).contiguous(), next_bad.to(torch.int32).contiguous()


def _blocks(p: Problem) -> tuple[int, int, int]:
    _, _, labels, max_len = p.shape
    block_c = max(2, triton.next_power_of_2(labels))
    block_k = max(2, min(triton.next_power_of_2(max_len), max(16, MAX_TILE // block_c)))
    if p.block_k is not None:
        block_k = p.block_k
    # The C-vector work of a step (row max, log, the (C, C) fold) is replicated in every
    # thread, and in float64 it is libdevice exp/log: fewer threads waste less of it. With
    # float32 exponentials the window dominates and more warps hide latency better. (The
    # tuning phase of benchmarks/gpu_check.py measures the alternatives on a GPU.)
    num_warps = 8 if p.f32_exp and block_c * block_k >= 4096 else 4
    if p.num_warps is not None:
        num_warps = p.num_warps
    return block_c, block_k, num_warps


def _check_size(p: Problem) -> None:
    batch, length, labels, max_len = p.shape
    # per-sequence offsets are 32-bit expressions; the batch offset is 64-bit
    if labels * (length + max_len + 1) > _INT32_MAX or labels * labels > _INT32_MAX:
        raise ValueError(f"C * (T + K + 1) = {labels * (length + max_len + 1)} exceeds 2^31 - 1")


def _gamma_buffer(p: Problem) -> Tensor:
    """gamma (B, C, Kc + T + 1): NEG, ``start`` at index Kc (NEG for a censored first run)."""
    batch, length, labels, max_len = p.shape
    gamma = torch.full((batch, labels, max_len + length + 1), NEG, dtype=torch.float64,
                       device=p.prefix.device)
    gamma[:, :, max_len] = p.start
    if p.first_cut is not None:
        gamma[p.first_cut, :, max_len] = NEG
    return gamma


def _or(x: Tensor | None, dummy: Tensor) -> Tensor:
    """x, or a float64 placeholder for a pointer argument its constexpr flag leaves unread."""
    return dummy if x is None else x


@dataclass
class Forward:
    alpha: Tensor  # (B, C, T + 1)
    gamma: Tensor  # (B, C, Kc + T + 1)
    log_z: Tensor  # (B,) float64
    end: Tensor  # (B, C) float64 log-mass of all labellings by last label (alpha[L] here;
    # the backend replaces it where the last run is censored, and log_z with it)


def forward(p: Problem) -> Forward:
    """Forward sweep: alpha, gamma and log Z for every sequence (censored last runs are
    the caller's: see :class:`Forward`)."""
    _check_size(p)
    batch, length, labels, max_len = p.shape
    block_c, block_k, num_warps = _blocks(p)
    dev, f64 = p.prefix.device, torch.float64
    gamma = _gamma_buffer(p)
    alpha = torch.full((batch, labels, length + 1), NEG, dtype=f64, device=dev)
    log_z = torch.empty(batch, dtype=f64, device=dev)
    lo = p.lo if p.lo is not None else p.lengths
    _forward_kernel[(batch,)](
        p.prefix, p.transition, p.duration, p.lengths, lo, _or(p.tail, p.start),
        _or(p.first, p.start), gamma, alpha, log_z,
        labels, max_len, length,
        HAS_ALLOWED=p.lo is not None, HAS_TAIL=p.tail is not None, HAS_FIRST=p.first is not None,
        PER_POSITION=p.per_position, F32_EXP=p.f32_exp,
        BLOCK_C=block_c, BLOCK_K=block_k, ONE_CHUNK=block_k >= max_len,
        num_warps=num_warps, num_stages=1,
    )
    at_end = p.lengths.view(batch, 1, 1).expand(batch, labels, 1)
    return Forward(alpha=alpha, gamma=gamma, log_z=log_z, end=alpha.gather(2, at_end).squeeze(2))


@dataclass
class Backward:
    marginals: Tensor  # (B, T, C) float64, zero past each length
    transition_mass: Tensor  # (B, C, C), or (B, T, C, C) per position (0 at t = 0, t >= L)
    start_mass: Tensor  # (B, C) float64 (zero where the first run is censored)
    u: Tensor  # (B, C, T + 1 + Kc) float64
    tail_mass: Tensor | None = None  # (B, C): expected number of runs longer than Kc (tail)
    tail_excess: Tensor | None = None  # (B, C): expected sum of (length - Kc) over those


def backward(p: Problem, fwd: Forward) -> Backward:
    """Backward sweep: position marginals, the transition / start posterior masses and, with
    a tail, the masses of the (uncensored) runs longer than Kc."""
    batch, length, labels, max_len = p.shape
    block_c, block_k, num_warps = _blocks(p)
    dev, f64 = p.prefix.device, torch.float64
    u = torch.full((batch, labels, length + 1 + max_len), NEG, dtype=f64, device=dev)
    # u[L] = S[L] (beta[L] = 0), NEG where the last run is censored; NEG past L
    at_end = p.lengths.view(batch, 1, 1).expand(batch, labels, 1)
    u_end = p.prefix.gather(2, at_end)
    if p.last_cut is not None:
        u_end = torch.where(p.last_cut.view(batch, 1, 1), NEG, u_end)
    u.scatter_(2, at_end, u_end)
    marg = torch.zeros(batch, length, labels, dtype=f64, device=dev)
    rows = (batch, length) if p.per_position else (batch,)
    trans_mass = torch.zeros(*rows, labels, labels, dtype=f64, device=dev)
    start_mass = torch.zeros(batch, labels, dtype=f64, device=dev)
    tail_mass = tail_excess = None
    if p.tail is not None:
        tail_mass = torch.zeros(batch, labels, dtype=f64, device=dev)
        tail_excess = torch.zeros(batch, labels, dtype=f64, device=dev)
    hi = p.hi if p.hi is not None else p.lengths
    _backward_kernel[(batch,)](
        p.prefix, p.transition, p.duration, p.lengths, hi, _or(p.tail, p.start),
        _or(p.last, p.start), fwd.end,
        fwd.gamma, fwd.alpha, fwd.log_z, u, marg, trans_mass, start_mass,
        _or(tail_mass, p.start), _or(tail_excess, p.start),
        labels, max_len, length,
        HAS_ALLOWED=p.hi is not None, HAS_TAIL=p.tail is not None, HAS_LAST=p.last is not None,
        PER_POSITION=p.per_position, F32_EXP=p.f32_exp,
        BLOCK_C=block_c, BLOCK_K=block_k, ONE_CHUNK=block_k >= max_len,
        num_warps=num_warps, num_stages=1,
    )
    return Backward(marginals=marg, transition_mass=trans_mass, start_mass=start_mass, u=u,
                    tail_mass=tail_mass, tail_excess=tail_excess)


def duration_mass(p: Problem, fwd: Forward, bwd: Backward) -> Tensor:
    """Expected segment counts per (sequence, label, length): (B, C, Kc) float64."""
    batch, length, labels, max_len = p.shape
    block_k = max(2, min(128, triton.next_power_of_2(max_len)))
    block_t = max(2, min(32, triton.next_power_of_2(length)))
    mass = torch.empty(batch, labels, max_len, dtype=torch.float64, device=p.prefix.device)
    hi = p.hi if p.hi is not None else p.lengths
    grid = (batch * labels, triton.cdiv(max_len, block_k))
    _duration_kernel[grid](
        fwd.gamma, bwd.u, p.duration, fwd.log_z, p.lengths, hi, mass,
        labels, max_len, length,
        HAS_ALLOWED=p.hi is not None, F32_EXP=p.f32_exp,
        BLOCK_T=block_t, BLOCK_K=block_k, num_warps=4,
    )
    return mass


@dataclass
class Viterbi:
    best: Tensor  # (B,) float64
    last_label: Tensor  # (B,) int32
    back_len: Tensor  # (B, C, T + 1) int32
    back_label: Tensor  # (B, C, T + 1) int32 (index T unused)
    gamma: Tensor  # (B, C, Kc + T + 1) float64, max semiring (censored last runs: caller's)


def viterbi(p: Problem) -> Viterbi:
    """Max-semiring sweep with back-pointers (trace back with ``streaming.traceback``)."""
    _check_size(p)
    batch, length, labels, max_len = p.shape
    block_c, block_k, num_warps = _blocks(p)
    dev, f64 = p.prefix.device, torch.float64
    gamma = _gamma_buffer(p)
    best = torch.empty(batch, dtype=f64, device=dev)
    last = torch.empty(batch, dtype=torch.int32, device=dev)
    back_len = torch.zeros(batch, labels, length + 1, dtype=torch.int32, device=dev)
    back_label = torch.zeros(batch, labels, length + 1, dtype=torch.int32, device=dev)
    _viterbi_kernel[(batch,)](
        p.prefix, p.transition, p.duration, p.lengths, _or(p.tail, p.start),
        _or(p.first, p.start), gamma, best, last, back_len, back_label,
        labels, max_len, length,
        HAS_TAIL=p.tail is not None, HAS_FIRST=p.first is not None,
        PER_POSITION=p.per_position, BLOCK_C=block_c, BLOCK_K=block_k, ONE_CHUNK=block_k >= max_len,
        num_warps=num_warps, num_stages=1,
    )
    return Viterbi(best=best, last_label=last, back_len=back_len, back_label=back_label,
                   gamma=gamma)
