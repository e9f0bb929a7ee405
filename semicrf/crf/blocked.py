"""Fast CPU sweeps of the Semi-CRF (backend "auto" on CPU): blocked linear-space sums.

The reference sweeps (``streaming``) evaluate one K-wide log-sum-exp per position. Here
positions come in groups of ``GROUP`` and blocks of ``BLOCK`` (docs/fast_cpu.md):

* segments that start before a group are one matrix product per label: the previous window
  of ``exp(w - chunk max)``, rescaled to its largest chunk, times the Toeplitz matrix
  ``exp(duration - max)`` (the same for every group), batched over the sequences (BLAS);
  segments from earlier blocks of the group likewise;
* runs longer than K (runs semantics) are one ``logcumsumexp`` per group, censored edges
  known O(T C) terms;
* segments inside a block are a unit lower-triangular linear system of size ``BLOCK * C``
  per sequence, solved by one ``solve_triangular`` in variables rescaled by the prefix of
  each position's best emission, so that every coefficient is at most exp(max duration).

Every linear-space value is checked: a window sum below ``_PAST_TINY`` is recomputed in log
space from its window, and a block whose values leave ``[_TINY, _HUGE]`` (or whose rescaled
emissions span more than ``_SPREAD``) is recomputed position by position in log space, so the
result equals the reference sweep up to float64 rounding. The backward is the same engine on
each sequence reversed at its own length; its duration mass is a cross-correlation of
``exp(gamma)`` and ``exp(u)`` summed over rectangles of tiles by batched matrix products,
with the same kind of checked rescaling. Viterbi bounds the window maximum chunk by chunk
(branch and bound) and evaluates only the chunks that can win.

Layout inside this module is label-major first, (C, B, positions); results are returned in
``streaming``'s dataclasses and layout, and ``streaming.gradients`` is shared.

A per-position transition (B, T, C, C) enters only where a segment starts: the block
system's coupling of a start at s takes the row of s (the system is per sequence anyway, so
it costs the same products), and the engines read the rows of one block or group at a time
(:class:`PositionMix`), reversed at each length for the backward; nothing of size T * C * C
is copied beyond the model's own float64 table.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from semicrf.crf import streaming
from semicrf.crf.streaming import (
    NEG,
    BackwardSweep,
    ForwardSweep,
    Model64,
    ViterbiSweep,
    _lse,
    censored_first_out,
)

# Positions per block (the size of the triangular systems is BLOCK * C): larger blocks cost
# fewer Python-level operations, smaller ones a smaller (B, (P C)^2) system per block;
# measured best: 64 for B C <= 12, else 32.
BLOCK, SMALL_BATCH_BLOCK = 32, 64
# Positions per group: the window before a group is summed by one product of width GROUP.
GROUP = 128
# Largest range of the rescaled emissions e inside one block (see _intra_linear).
_SPREAD = 600.0
# Positions per tile of the duration-mass correlation.
TILE = 32  # a power of two
# Positions per chunk of the Viterbi window bound (branch and bound over chunks), and the
# number of most recent chunks always evaluated.
CHUNK = 32
_RECENT = 2
# Solved linear-space values must lie in [_TINY, _HUGE]: below _TINY an underflowed term
# could matter at float64 resolution, above _HUGE a later product could overflow.
_TINY = 1e-200
_HUGE = 1e200
# A window sum of terms each <= 1 is exact to rounding when it is above this value: every
# term lost to underflow (or raised by the exp(-700) clamps) is below 1e-304, and there are
# at most K + GROUP of them.
_PAST_TINY = 1e-280
# Largest log-scale factor allowed in the fast duration-mass tiles (see _duration_mass).
_MASS_SCALE = 300.0
# Elements per batch of exactly summed tiles.
_EXACT_ELEMENTS = 1 << 21


class PositionMix:
    """A per-position transition as the engines read it, in engine positions.

    ``rows(t0, n)`` -> (B, n, C, C) [b, p, from, to], the mix of engine positions
    t0 .. t0 + n - 1 (zeros where the engine position has no transition row: those values
    are never used). Forward: engine position t is position t of ``transition``
    (B, T, C, C) [b, t, src, dst]. Reversed (the backward sweep on each sequence reversed at
    its length): engine position tau is position L_b - tau, and from / to are swapped.
    """

    def __init__(self, transition: Tensor, lengths: Tensor | None = None) -> None:
        self.transition = transition
        self.lengths = lengths  # None: forward; (B,) int64: reversed at these lengths

    def rows(self, t0: int, n: int) -> Tensor:
        batch, length = self.transition.shape[:2]
        dev = self.transition.device
        if self.lengths is None:
            out = self.transition[:, t0 : t0 + n]
            if out.shape[1] < n:
                pad = out.new_zeros((batch, n - out.shape[1]) + out.shape[2:])
                out = torch.cat([out, pad], dim=1)
            return out
        source = self.lengths.view(batch, 1) - torch.arange(t0, t0 + n, device=dev)
        source = source.clamp_(0, length - 1)
        picked = self.transition[torch.arange(batch, device=dev).view(batch, 1), source]
        return picked.transpose(2, 3)


class _Window:
    """Constant tensors of the window recursion for one duration table and exp(mix)
    (``expmix`` None for a per-position mix, whose coupling is built per block).

    Positions come in groups of ``group`` (a multiple of ``block``); the window before a
    group is ``width`` positions (a whole number of chunks of ``block``, at least K + 1).
    """

    def __init__(self, duration: Tensor, expmix: Tensor | None, block: int, group: int) -> None:
        labels, max_len = duration.shape
        dev = duration.device
        self.width = (max_len // block + 1) * block  # >= K + 1: the tail reads w[t - K - 1]
        # (a label whose every length is forbidden must not rescale NEG entries to 1)
        self.dmax = duration.amax(1).clamp(min=-600.0).view(labels, 1, 1)
        slots = torch.arange(self.width + group, device=dev)
        rows = torch.arange(group, device=dev)
        # slot j of the extended window [T0 - W, T0 + G) against row p (position T0 + p)
        lag = rows.view(1, group) + self.width - slots.view(-1, 1)  # (W + G, G)
        valid = (lag >= 1) & (lag <= max_len)
        log_t = duration[:, (lag - 1).clamp(0, max_len - 1)].masked_fill_(~valid, NEG)
        self.log_far = log_t[:, : self.width].transpose(1, 2).contiguous()  # (C, G, W)
        self.log_near = log_t[:, self.width :]  # (C, G, G) [slot, row]
        lin = (log_t - self.dmax).clamp_(min=-700.0).exp_() * valid
        self.far = lin[:, : self.width].contiguous()  # (C, W, G)
        self.near = lin[:, self.width :].contiguous()  # (C, G, G)
        p = torch.arange(block, device=dev)
        lag_in = p.view(block, 1) - p.view(1, block)  # (P, P) [row t, column s]
        ok = (lag_in >= 1) & (lag_in <= max_len)
        log_in = duration[:, (lag_in - 1).clamp(0, max_len - 1)]
        self.log_intra = log_in.masked_fill(~ok, -math.inf)  # (C, P, P)
        intra_t = (log_in.exp() * ok).permute(1, 0, 2)  # (P, C, P) [t, c, s]
        self.coupling = None
        if expmix is None:  # per-position: -exp(duration) at [t, c, s * C + c''] (the same for
            # every c''), the mix added per block; expanded so the block product is contiguous
            self.intra = (-intra_t).unsqueeze(3).expand(block, labels, block, labels).contiguous()
        else:  # -exp(duration) * exp(mix[c'', c]) at [t, c, s * C + c'']: the system's entries
            self.coupling = (intra_t.unsqueeze(3) * -expmix.T.view(1, labels, 1, labels)).reshape(
                block, labels, block * labels)


def _window_sum(
    wexp: Tensor, scale: Tensor, w: Tensor, lo: int, hi: int, lin: Tensor, log_t: Tensor,
    dmax: Tensor, block: int, work: Tensor,
) -> Tensor:
    """log sum_j exp(duration[lag] + w[j]) over buffer slots [lo, hi) for each row -> (C, B, R).

    ``lin`` (C, hi - lo, R) holds exp(duration - dmax) (0 where no segment), ``log_t``
    (C, R, hi - lo) the same in log space (NEG) for the exact repair. The window is rescaled
    chunk by chunk to its largest chunk maximum and summed by one matrix product per label;
    rows whose sum is below _PAST_TINY are recomputed in log space. ``work`` is a reusable
    buffer of at least C B (hi - lo) elements (fresh large temporaries cost page faults).
    """
    labels, batch, _ = wexp.shape
    sc = scale[:, :, lo // block : hi // block]
    top = sc.amax(2, keepdim=True)
    fac = (sc - top).clamp_(min=-700.0).exp_().unsqueeze(3)
    window = work[: labels * batch * (hi - lo)].view(labels, batch, -1, block)
    torch.mul(wexp[:, :, lo:hi].view(labels, batch, -1, block), fac, out=window)
    window = window.view(labels, batch, hi - lo)
    r = torch.bmm(window, lin)
    out = r.log().add_(top).add_(dmax)
    bad = r < _PAST_TINY
    if bad.any():
        c_i, b_i, p_i = bad.nonzero(as_tuple=True)
        out[c_i, b_i, p_i] = _lse(w[c_i, b_i, lo:hi] + log_t[c_i, p_i], 1)
    return out


def _geometric(terms: Tensor, carry: Tensor, tail: Tensor) -> Tensor:
    """x[p] = logaddexp(x[p-1], terms[p]) + tail along the last dim, from x[-1] = carry.

    terms (C, B, R), carry (C, B), tail (C,): the closed form
    x[p] = lse(carry + (p + 1) tail, lse_{i <= p} terms[i] + (p - i + 1) tail), by one
    logcumsumexp (the drift is taken out relative to the block start).
    """
    steps = torch.arange(1, terms.shape[2] + 1, dtype=terms.dtype, device=terms.device)
    drift = tail.view(-1, 1, 1) * steps  # (C, 1, R): (p + 1) tail
    run = torch.logcumsumexp(terms - drift + tail.view(-1, 1, 1), dim=2) + drift
    return torch.logaddexp(run, carry.unsqueeze(2) + drift)


def _sum_engine(
    prefix: Tensor, mix: Tensor | PositionMix, duration: Tensor, w0: Tensor, block: int,
    group: int, extra: Tensor | None = None, tail: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """The window recursion in the (+, log) semiring, forward in position.

    prefix (C, B, N + 1) emission prefix sums; mix (C, C) [from, to] or a
    :class:`PositionMix` (then ``mix[c', c]`` below is the row of position t); duration (C, K);
    w0 (C, B) the value of ``w`` at position 0. Returns v, w (C, B, N + 1) with
    ``v[t] = lse(lse_{k=1..min(K,t)} duration[k-1] + w[t-k], H[t], extra[t])`` (v[0] = NEG)
    and ``w[t, c] = lse_c'(v[t, c'] + prefix[t, c'] + mix[c', c]) - prefix[t, c]`` for t >= 1.
    ``extra`` (C, B, N + 1) is an optional known log term; ``tail`` (C,) adds runs longer than
    K: ``H[t] = lse_{s <= t-K-1} w[s] + duration[K-1] + (t - s - K) tail``, returned with its
    first moment ``Hm[t] = log sum_s (t - s - K) exp(w[s] + duration[K-1] + (t - s - K) tail)``
    (both (C, B, N + 1), None without a tail).
    """
    labels, batch, n1 = prefix.shape
    dev, f64 = prefix.device, torch.float64
    max_len = duration.shape[1]
    if tail is not None:  # H of a group must depend on earlier groups only
        group = max(1, min(group, max_len + 1))
    block = min(block, group)
    group -= group % block
    positional = isinstance(mix, PositionMix)
    expmix = None if positional else mix.exp()
    win = _Window(duration, expmix, block, group)
    width = win.width
    ngroups = -(-(n1 - 1) // group)
    # buffer slot of position t is width - 1 + t; chunk j covers slots [j P, (j+1) P)
    total = width + ngroups * group
    w = torch.full((labels, batch, total), NEG, dtype=f64, device=dev)
    w[:, :, width - 1] = w0
    wexp = torch.zeros(labels, batch, total, dtype=f64, device=dev)
    wexp[:, :, width - 1] = 1.0
    scale = torch.full((labels, batch, total // block), NEG, dtype=f64, device=dev)
    scale[:, :, width // block - 1] = w0
    v = torch.full((labels, batch, n1), NEG, dtype=f64, device=dev)
    # per-position best emission prefix: rescaled emissions e = S - Phi never increase
    phi = torch.zeros(batch, n1, dtype=f64, device=dev)
    torch.cumsum(prefix.diff(dim=2).amax(0), dim=1, out=phi[:, 1:])
    rel = prefix - phi
    work = torch.empty(batch * (block * labels) ** 2, dtype=f64, device=dev)
    window_work = torch.empty(labels * batch * max(width, group), dtype=f64, device=dev)
    run_tail = run_moment = None
    if tail is not None:
        run_tail = torch.full((labels, batch, n1), NEG, dtype=f64, device=dev)
        run_moment = torch.full((labels, batch, n1), NEG, dtype=f64, device=dev)
        carry = carry_m = torch.full((labels, batch), NEG, dtype=f64, device=dev)
    for g in range(ngroups):
        g0 = 1 + g * group  # first position of the group
        ge = min(group, n1 - g0)
        s0 = width - 1 + g0  # its buffer slot
        far = _window_sum(wexp, scale, w, s0 - width, s0, win.far[:, :, :ge],
                          win.log_far[:, :ge], win.dmax, block, window_work)
        if tail is not None:  # slots before position 0 hold NEG, so H = NEG for t <= K
            start = w[:, :, s0 - max_len - 1 : s0 - max_len - 1 + ge] + duration[:, -1:].unsqueeze(1)
            h = _geometric(start, carry, tail)
            # m[t] = r m[t-1] + h[t] in linear space: the same recurrence fed by h[t] - tail
            hm = _geometric(h - tail.view(-1, 1, 1), carry_m, tail)
            carry, carry_m = h[:, :, -1], hm[:, :, -1]
            run_tail[:, :, g0 : g0 + ge] = h
            run_moment[:, :, g0 : g0 + ge] = hm
            far = torch.logaddexp(far, h)
        if extra is not None:
            far = torch.logaddexp(far, extra[:, :, g0 : g0 + ge])
        for j in range(0, ge, block):
            t0, b0 = g0 + j, s0 + j
            pe = min(block, ge - j)
            vpast = far[:, :, j : j + pe]
            if j > 0:
                near = _window_sum(wexp, scale, w, s0, b0, win.near[:, :j, j : j + pe],
                                   win.log_near[:, :j, j : j + pe].transpose(1, 2), win.dmax,
                                   block, window_work)
                vpast = torch.logaddexp(vpast, near)
            e = rel[:, :, t0 : t0 + pe]
            if positional:
                block_mix = mix.rows(t0, pe)
                intra = win.intra[:pe, :, :pe].reshape(pe, labels, pe * labels)
                got = _intra_linear(vpast, e, intra, block_mix.exp(), work)
            else:
                block_mix = mix
                coupling = win.coupling if pe == block else win.coupling[:pe, :, : pe * labels]
                got = _intra_linear(vpast, e, coupling, expmix, work)
            if got is None:
                vb, wb = _intra_log(vpast, prefix[:, :, t0 : t0 + pe], win.log_intra, block_mix)
            else:
                vb, wb = got
            v[:, :, t0 : t0 + pe] = vb
            w[:, :, b0 : b0 + pe] = wb
            top = wb.amax(2, keepdim=True)
            scale[:, :, b0 // block] = top.squeeze(2)
            wexp[:, :, b0 : b0 + pe] = (wb - top).clamp_(min=-700.0).exp_()
    return v, w[:, :, width - 1 : width - 1 + n1], run_tail, run_moment


def _intra_linear(
    vpast: Tensor, e: Tensor, coupling: Tensor, expmix: Tensor, work: Tensor
) -> tuple[Tensor, Tensor] | None:
    """One block's recursion as a triangular solve; None when a value is out of range.

    vpast, e (C, B, P); ``work`` a reusable buffer of at least B (P C)^2 elements;
    coupling (P, C, P * C) holds -exp(duration[t - s - 1, c]) *
    exp(mix[c'', c]) at [t, c, s * C + c''] (0 where no segment), with ``expmix`` (C, C);
    for a per-position mix, ``expmix`` is (B, P, C, C) [b, s, c'', c] and ``coupling``
    (P, C, P * C) holds -exp(duration[t - s - 1, c]) at [t, c, s * C + c'']. The unknowns are
    Y[t, c] = exp(v[t, c] + e[t, c] - rho) (rho the block's largest past term), with
    X = Y @ exp(mix) = exp(w + e - rho); a segment [s, t) inside the block has the factor
    exp(duration) * exp(e[t] - e[s]), formed as exp(e[t] - mid) * exp(mid - e[s]) (mid the
    middle of e's range, which must be below _SPREAD so that neither factor under- or
    overflows); it is at most exp(max duration) since e never increases.
    """
    labels, batch, pe = vpast.shape
    first, last = e[:, :, :1], e[:, :, -1:]
    if bool(((first - last) > _SPREAD).any()):
        return None
    mid = 0.5 * (first + last)
    ve = vpast + e
    rho = ve.amax(dim=(0, 2), keepdim=True)  # (1, B, 1)
    rhs = (ve - rho).clamp_(min=-700.0).exp_().permute(1, 2, 0)  # (B, P, C)
    rows = (e - mid).exp_().permute(1, 2, 0).unsqueeze(3)  # (B, P, C, 1) [b, t, c]
    system = work[: batch * pe * labels * pe * labels].view(batch, pe, labels, pe * labels)
    if expmix.dim() == 2:
        cols = (mid - e).exp_().transpose(0, 1).repeat_interleave(labels, dim=2)  # (B, C, P C)
        torch.mul(cols.unsqueeze(1), coupling, out=system)
    else:  # the start's own mix row: cols * exp(mix[b, s, c'', c]) at [b, c, s * C + c'']
        cols = (mid - e).exp_().transpose(0, 1).unsqueeze(3) * expmix.permute(0, 3, 1, 2)
        torch.mul(cols.view(batch, 1, labels, pe * labels), coupling, out=system)
    system = system.mul_(rows).view(batch, pe * labels, pe * labels)
    y = torch.linalg.solve_triangular(system, rhs.reshape(batch, pe * labels, 1), upper=False,
                                      unitriangular=True).view(batch, pe, labels)
    if expmix.dim() == 2:
        x = torch.matmul(y, expmix)
    else:
        x = torch.matmul(y.unsqueeze(2), expmix).squeeze(2)
    both = torch.stack([y, x])  # (2, B, P, C)
    if not bool(((both >= _TINY) & (both <= _HUGE)).all()):
        return None
    both = both.log_().permute(0, 3, 1, 2).add(rho - e)  # (2, C, B, P)
    return both[0], both[1]


def _intra_log(
    vpast: Tensor, prefix: Tensor, log_intra: Tensor, mix: Tensor
) -> tuple[Tensor, Tensor]:
    """One block's recursion position by position in log space (the exact repair); mix (C, C)
    or per position (B, P, C, C) [b, p, from, to]."""
    labels, batch, pe = vpast.shape
    vb = torch.empty_like(vpast)
    wb = torch.empty_like(vpast)
    positional = mix.dim() == 4
    mix3 = mix.permute(1, 2, 3, 0) if positional else mix.view(labels, labels, 1)
    for p in range(pe):
        terms = torch.cat([vpast[:, :, p : p + 1], log_intra[:, p, :p].unsqueeze(1) + wb[:, :, :p]], 2)
        v_t = _lse(terms, 2)
        vb[:, :, p] = v_t
        a_t = v_t + prefix[:, :, p]
        into = mix3[p] if positional else mix3  # (C, C, B or 1) [from, to, b]
        wb[:, :, p] = _lse(a_t.unsqueeze(1) + into, 0) - prefix[:, :, p]
    return vb, wb


def _label_major(x: Tensor) -> Tensor:
    return x.transpose(0, 1).contiguous()


def _supported(m: Model64) -> bool:
    """Models the blocked sweeps handle (all but the ``allowed`` mask, which goes to the
    reference sweeps)."""
    return m.bad_counts is None


def _tail_of(m: Model64) -> Tensor | None:
    """The geometric tail (C,) when runs longer than K are possible, else None."""
    return m.tail if m.has_tail else None


def _cut(flags: Tensor | None, values: Tensor) -> Tensor:
    """``values`` (C, B) with NEG for the sequences whose ``flags`` (B,) are set."""
    return values if flags is None else values.masked_fill(flags.view(1, -1), NEG)


def _block(m: Model64, block: int | None) -> int:
    batch, _, labels, _ = m.shape
    if block is not None:
        return block
    return SMALL_BATCH_BLOCK if batch * labels <= 12 else BLOCK


def forward_sweep(m: Model64, block: int | None = None, group: int = GROUP) -> ForwardSweep:
    """alpha, gamma and log Z as ``streaming.forward_sweep`` computes them."""
    if not _supported(m):
        return streaming.forward_sweep(m)
    batch, length, labels, max_len = m.shape
    block = _block(m, block)
    prefix = _label_major(m.prefix)  # (C, B, T + 1)
    edges = streaming.edge_terms(m)
    # a censored first run is scored by its survival (edges.first), not from gamma[0]
    w0 = _cut(m.censored_at(0), m.start_rows.T)
    extra = None if edges.first is None else _label_major(edges.first)
    mix = PositionMix(m.transition) if m.per_position else m.transition
    v, w, _, _ = _sum_engine(prefix, mix, m.duration, w0, block, group, extra, _tail_of(m))
    alpha = _label_major(v + prefix)
    alpha[:, :, 0] = NEG
    gamma = torch.full((batch, labels, max_len + length), NEG, dtype=torch.float64,
                       device=prefix.device)
    gamma[:, :, max_len:] = w[:, :, :length].transpose(0, 1)
    return ForwardSweep(alpha=alpha, gamma=gamma, log_z=streaming.log_z_from(m, alpha, gamma, edges),
                        edges=edges)


def _reverse_index(lengths: Tensor, n1: int) -> Tensor:
    """(B, n1) original position L_b - tau of reversed position tau (clamped at 0)."""
    tau = torch.arange(n1, device=lengths.device)
    return (lengths.view(-1, 1) - tau).clamp_(min=0)


def backward_sweep(
    m: Model64, fwd: ForwardSweep, with_duration: bool = True, block: int | None = None,
    group: int = GROUP, tile: int = TILE,
) -> BackwardSweep:
    """u, out, the duration mass and the tail masses as ``streaming.backward_sweep``
    computes them: the forward engine run on every sequence reversed at its length."""
    if not _supported(m):
        return streaming.backward_sweep(m, fwd, with_duration)
    batch, length, labels, max_len = m.shape
    dev, f64 = m.prefix.device, torch.float64
    block = _block(m, block)
    prefix = _label_major(m.prefix)  # (C, B, T + 1)
    src = _reverse_index(m.lengths, length + 1).unsqueeze(0).expand(labels, batch, length + 1)
    end = prefix.gather(2, m.lengths.view(1, batch, 1).expand(labels, batch, 1))  # S[L]
    rev = end - prefix.gather(2, src)  # reversed prefix, 0 at tau = 0
    # reversed position tau of original position s = L - tau, and back
    pos = torch.arange(length + 1, device=dev)
    tau = (m.lengths.view(1, batch, 1) - pos).expand(labels, batch, length + 1)
    inside = tau >= 0
    tau = tau.clamp(min=0)
    edges = fwd.edges
    extra = None
    if edges.last is not None:  # a censored last run from s: surv(L - s) + S[L], at tau = L - s
        last = torch.cat([_label_major(edges.last),
                          torch.full((labels, batch, 1), NEG, dtype=f64, device=dev)], dim=2)
        extra = (last.gather(2, src) - end).masked_fill_(
            torch.arange(length + 1, device=dev) == 0, NEG)
    w0 = _cut(m.censored_at(1), torch.zeros(labels, batch, dtype=f64, device=dev))
    tail = _tail_of(m)
    mix = PositionMix(m.transition, m.lengths) if m.per_position else m.transition.T
    v, w, run_tail, run_moment = _sum_engine(rev, mix, m.duration, w0, block, group, extra, tail)
    # out[s] = v[tau] + S[L] - S[s], u[s] = w[tau] + S[L]
    out_lm = (v.gather(2, tau) + end - prefix).masked_fill_(~inside | (tau == 0), NEG)
    u_lm = (w.gather(2, tau) + end).masked_fill_(~inside | (pos == 0), NEG)
    u = torch.full((batch, labels, length + 1 + max_len), NEG, dtype=f64, device=dev)
    u[:, :, : length + 1] = u_lm.transpose(0, 1)
    out = out_lm[:, :, :length].transpose(0, 1).contiguous()
    censored_first_out(m, edges, u, out)
    gamma = fwd.gamma[:, :, max_len:]
    tail_mass = tail_excess = None
    if tail is not None:
        tail_mass = torch.zeros(batch, labels, dtype=f64, device=dev)
        tail_excess = torch.zeros(batch, labels, dtype=f64, device=dev)
    if not with_duration:
        mass = torch.zeros(batch, labels, max_len, dtype=f64, device=dev)
        return BackwardSweep(u=u, out=out, duration_mass=mass, tail_mass=tail_mass,
                             tail_excess=tail_excess)
    mass = _duration_mass(gamma, u[:, :, : length + 1], m.duration, fwd.log_z, tile)
    if tail is not None:  # runs longer than K starting at s: weights exp(gamma + Hb - log Z)
        starts = (~inside[:, :, :length] | (tau[:, :, :length] == 0)).transpose(0, 1)
        base = gamma + end.transpose(0, 1) - fwd.log_z.view(batch, 1, 1)
        for acc, run in ((tail_mass, run_tail), (tail_excess, run_moment)):
            weight = (run.gather(2, tau[:, :, :length]).transpose(0, 1) + base).masked_fill_(
                starts, NEG)
            acc += weight.clamp_(min=-745.0).exp_().sum(2)
    return BackwardSweep(u=u, out=out, duration_mass=mass, tail_mass=tail_mass,
                         tail_excess=tail_excess)


def _duration_mass(
    gamma: Tensor, u: Tensor, duration: Tensor, log_z: Tensor, tile: int
) -> Tensor:
    """sum_s exp(gamma[s] + duration[k-1] + u[s+k] - log Z) -> (B, C, K).

    gamma (B, C, T) segment starts, u (B, C, T + 1). The pairs (s, t = s + k) are split
    into rectangles of whole tiles: tile i of starts against tile i + d of ends (tiles of
    ``tile``, d >= 1), and inside a tile, recursively, its first half against its second half
    down to single positions. Each family of rectangles is one batched matrix product of
    exp(gamma - tile max) and exp(u - tile max), each rectangle weighted by
    f = exp(max gamma + max u - log Z); exp(duration) is multiplied in per lag at the end.
    Rectangles with log f above _MASS_SCALE - max(max duration, 0) are summed exactly in
    log space, so a term lost to underflow in the products is below exp(-400) in posterior
    units.
    """
    batch, labels, length = gamma.shape
    max_len = duration.shape[1]
    dev, f64 = gamma.device, torch.float64
    q = tile
    nq = -(-length // q)
    nd = -(-max_len // q)  # largest tile offset that holds a lag <= K
    bc = batch * labels
    g = torch.full((bc, nq * q), NEG, dtype=f64, device=dev)
    g[:, :length] = gamma.reshape(bc, length)
    uu = torch.full((bc, (nq + nd + 1) * q), NEG, dtype=f64, device=dev)
    uu[:, : length + 1] = u.reshape(bc, length + 1)
    lz = log_z.repeat_interleave(labels).view(bc, 1)
    limit = _MASS_SCALE - duration.amax(1).clamp(min=0).repeat(batch).view(bc, 1)
    size = (nd + 2) * q  # accumulator column of lag l is l + q
    fast_acc = torch.zeros(bc, size, dtype=f64, device=dev)  # divided by exp(duration)
    exact_acc = torch.zeros(bc, size, dtype=f64, device=dev)  # posterior units
    dur_pad = torch.full((labels, size), NEG, dtype=f64, device=dev)
    dur_pad[:, q + 1 : q + 1 + max_len] = duration
    work = torch.empty(bc * nq * q, dtype=f64, device=dev)

    def scaled(x: Tensor) -> tuple[Tensor, Tensor]:
        top = x.amax(2)
        diff = x - top.unsqueeze(2)
        return (diff.clamp(min=-700.0).exp_().mul_(diff > -700.0)), top

    def rectangles(gs: Tensor, us: Tensor, gt: Tensor, gm: Tensor, ut: Tensor, um: Tensor,
                   index: Tensor) -> None:
        # gs, us (bc, n, h) raw tiles; gt, ut their scaled exps; gm, um (bc, n) tile maxima
        cross = gm + um - lz
        fast = cross <= limit
        f = torch.where(fast, cross, NEG).exp_()
        weighted = work[: gt.numel()].view_as(gt)
        torch.mul(gt, f.unsqueeze(2), out=weighted)
        prod = torch.bmm(ut.transpose(1, 2), weighted)  # (bc, h, h) [a, b]
        fast_acc.index_add_(1, index.reshape(-1), prod.reshape(bc, -1))
        if not bool(fast.all()):
            r_i, i_i = (~fast).nonzero(as_tuple=True)
            _exact_tiles(exact_acc, r_i, gs[r_i, i_i], us[r_i, i_i], index, dur_pad, labels,
                         lz[r_i, 0])

    ab = torch.arange(q, device=dev)
    gs, us = g.view(bc, nq, q), uu.view(bc, -1, q)
    gt, gm = scaled(gs)
    ut, um = scaled(us)
    rel = ab.view(q, 1) - ab.view(1, q) + q  # lag of pair (t = a, s = b) at offset 0, plus q
    for d in range(1, nd + 1):
        rectangles(gs, us[:, d : d + nq], gt, gm, ut[:, d : d + nq], um[:, d : d + nq],
                   rel + d * q)
    h = q // 2
    while h >= 1:
        gs = g.view(bc, -1, h)[:, 0::2]
        us = uu[:, : nq * q].view(bc, -1, h)[:, 1::2]
        gt, gm = scaled(gs)
        ut, um = scaled(us)
        rel = ab[:h].view(h, 1) - ab[:h].view(1, h) + h + q
        rectangles(gs, us, gt, gm, ut, um, rel)
        h //= 2
    lags = slice(q + 1, q + 1 + max_len)
    fast_part = (fast_acc[:, lags].log() + dur_pad[:, lags].repeat(batch, 1)).exp_()
    return (fast_part + exact_acc[:, lags]).view(batch, labels, max_len)


def _exact_tiles(
    acc: Tensor, rows: Tensor, g: Tensor, u: Tensor, index: Tensor, dur_pad: Tensor,
    labels: int, lz: Tensor,
) -> None:
    """acc[row, index] += exp(gamma[s] + duration + u[t] - log Z) over the given tiles' pairs.

    rows (n,) rows of acc (b * C + c); g, u (n, Q) the tiles of gamma and u; index (Q, Q)
    the accumulator column of pair (a, b), i.e. lag + Q (impossible lags hold NEG in dur_pad).
    """
    step = max(1, _EXACT_ELEMENTS // index.numel())
    for lo in range(0, rows.numel(), step):
        r_i = rows[lo : lo + step]
        n = r_i.numel()
        terms = (dur_pad[r_i % labels][:, index] + u[lo : lo + step].unsqueeze(2)
                 + g[lo : lo + step].unsqueeze(1) - lz[lo : lo + step].view(n, 1, 1))  # [n, a, b]
        vals = terms.clamp(min=-700.0).exp_().mul_(terms > -700.0)
        flat = (r_i.view(n, 1) * acc.shape[1] + index.reshape(1, -1)).reshape(-1)
        acc.view(-1).index_add_(0, flat, vals.reshape(-1))


class _MaxWindow:
    """Constant tensors of the max-product window for one duration table.

    The window before a group of ``group`` positions is ``width`` slots, in chunks of
    ``chunk``; ``bound[c, p, j]`` is the largest duration that row p can give a segment
    starting in chunk j (NEG if none), ``log_far[c, p, j, i]`` the duration of slot i of
    chunk j, ``log_near[c, p, q]`` that of a segment from in-group row q to row p.
    """

    def __init__(self, duration: Tensor, chunk: int, group: int) -> None:
        labels, max_len = duration.shape
        dev = duration.device
        self.chunk = chunk
        self.chunks = max_len // chunk + 1  # width >= K + 1: the tail reads w[t - K - 1]
        self.width = self.chunks * chunk
        rows = torch.arange(group, device=dev).view(group, 1)
        slots = torch.arange(self.width, device=dev).view(1, self.width)
        lag = rows + self.width - slots  # (G, W)
        valid = lag <= max_len
        log_far = duration[:, (lag - 1).clamp(max=max_len - 1)].masked_fill_(~valid, NEG)
        self.log_far = log_far.view(labels, group, self.chunks, chunk)
        self.bound = self.log_far.amax(3)  # (C, G, chunks)
        lag_in = rows - torch.arange(group, device=dev).view(1, group)  # (G, G) [p, q]
        ok = (lag_in >= 1) & (lag_in <= max_len)
        self.log_near = duration[:, (lag_in - 1).clamp(0, max_len - 1)].masked_fill_(~ok, NEG)


def _far_max(w: Tensor, cmax: Tensor, lo: int, rows: int, win: _MaxWindow) -> tuple[Tensor, Tensor]:
    """Best segment from the window slots [lo, lo + W) into each of ``rows`` rows, exactly.

    Branch and bound over chunks: the most recent ``_RECENT`` chunks are evaluated exactly;
    an older chunk is evaluated only if its bound (its largest w plus the largest duration
    the row can reach in it) beats that value (all of them when many do).
    Returns the best value (C, B, R) and its window slot (C, B, R) int64.
    """
    labels, batch, _ = w.shape
    q, nch, width = win.chunk, win.chunks, win.width
    values = w[:, :, lo : lo + width]  # (C, B, W)
    log_far = win.log_far[:, :rows].reshape(labels, rows, width)
    recent = min(_RECENT, nch) * q
    cand = values[:, :, width - recent :].unsqueeze(2) + log_far[:, :, width - recent :].unsqueeze(1)
    best, slot = cand.max(3)
    slot += width - recent
    old = nch - recent // q
    if old == 0:
        return best, slot
    ub = cmax[:, :, lo // q : lo // q + old].unsqueeze(2) + win.bound[:, :rows, :old].unsqueeze(1)
    beaten = int((ub > best.unsqueeze(3)).sum(3).max())
    if beaten == 0:
        return best, slot
    if 4 * beaten >= old:  # most chunks are candidates: evaluate the whole window
        cand = values[:, :, : old * q].unsqueeze(2) + log_far[:, :, : old * q].unsqueeze(1)
        other, other_slot = cand.max(3)
    else:
        chunks = ub.topk(beaten, dim=3).indices  # (C, B, R, k)
        slots = chunks.unsqueeze(4) * q + torch.arange(q, device=w.device)  # (C, B, R, k, Q)
        cand = values.gather(2, slots.view(labels, batch, -1)).view(labels, batch, rows, -1)
        row_base = (torch.arange(rows, device=w.device) * width).view(1, 1, rows, 1, 1)
        cand += log_far.view(labels, -1).gather(1, (slots + row_base).view(labels, -1)).view(
            cand.shape)
        other, flat = cand.max(3)
        other_slot = slots.view(labels, batch, rows, -1).gather(3, flat.unsqueeze(3)).squeeze(3)
    better = other > best
    return torch.where(better, other, best), torch.where(better, other_slot, slot)


def _max_engine(
    prefix: Tensor, mix: Tensor | PositionMix, duration: Tensor, w0: Tensor, chunk: int,
    group: int, extra: Tensor | None = None, tail: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The window recursion in the (max, +) semiring with back-pointers, forward in position.

    Arguments as for :func:`_sum_engine` (``extra`` is a run from position 0, length t).
    Returns v and w (C, B, N + 1) (v[0] = NEG), the best segment length ending at each
    position and the best previous label of a segment starting there (C, B, N + 1, int32).
    """
    labels, batch, n1 = prefix.shape
    dev, f64 = prefix.device, torch.float64
    max_len = duration.shape[1]
    if tail is not None:  # H of a group must depend on earlier groups only
        group = min(group, max_len + 1)
        chunk = min(chunk, group)
    group = max(chunk, group - group % chunk)
    win = _MaxWindow(duration, chunk, group)
    width = win.width
    ngroups = -(-(n1 - 1) // group)
    total = width + ngroups * group  # slot of position t is width - 1 + t
    w = torch.full((labels, batch, total), NEG, dtype=f64, device=dev)
    w[:, :, width - 1] = w0
    cmax = torch.full((labels, batch, total // chunk), NEG, dtype=f64, device=dev)
    cmax[:, :, width // chunk - 1] = w0
    v = torch.full((labels, batch, n1), NEG, dtype=f64, device=dev)
    back_len = torch.zeros(labels, batch, n1, dtype=torch.int32, device=dev)
    back_label = torch.zeros(labels, batch, n1, dtype=torch.int32, device=dev)
    positional = isinstance(mix, PositionMix)
    mix3 = None if positional else mix.view(labels, labels, 1)
    cand = torch.empty(labels, batch, group + 1, dtype=f64, device=dev)
    pick = torch.empty(labels, batch, group, dtype=torch.int64, device=dev)
    prev = torch.empty(labels, batch, group, dtype=torch.int64, device=dev)
    into = torch.empty(labels, batch, dtype=f64, device=dev)
    if tail is not None:
        carry = torch.full((labels, batch, 1), NEG, dtype=f64, device=dev)
        carry_begin = torch.zeros(labels, batch, 1, dtype=torch.int64, device=dev)
    for g in range(ngroups):
        g0 = 1 + g * group
        ge = min(group, n1 - g0)
        s0 = width - 1 + g0
        far, far_slot = _far_max(w, cmax, s0 - width, ge, win)
        rows = torch.arange(ge, device=dev)
        far_len = rows + width - far_slot
        if tail is not None:  # H[t] = max(H[t-1], w[t-K-1] + D[K-1]) + tail, from the start
            steps = rows.to(f64)
            terms = (w[:, :, s0 - max_len - 1 : s0 - max_len - 1 + ge] + duration[:, -1:].unsqueeze(1)
                     - tail.view(-1, 1, 1) * steps)
            top, arg = torch.cummax(terms, dim=2)
            fresh = top > carry  # a run starting in this group beats the carried one
            drift = tail.view(-1, 1, 1) * (steps + 1)
            run = torch.where(fresh, top, carry) + drift
            begin = torch.where(fresh, g0 + arg - max_len - 1, carry_begin)
            carry, carry_begin = run[:, :, -1:], begin[:, :, -1:]
            better = run > far
            far = torch.where(better, run, far)
            far_len = torch.where(better, g0 + rows - begin, far_len)
        if extra is not None:  # a censored first run [0, t)
            edge = extra[:, :, g0 : g0 + ge]
            better = edge > far
            far = torch.where(better, edge, far)
            far_len = torch.where(better, g0 + rows, far_len)
        vg = v[:, :, g0 : g0 + ge]
        if positional:  # (ge, C, C, B) [p, from, to, b]
            group_mix = mix.rows(g0, ge).permute(1, 2, 3, 0).contiguous()
        for p in range(ge):
            t = g0 + p
            cand[:, :, 0] = far[:, :, p]
            torch.add(w[:, :, s0 : s0 + p], win.log_near[:, p, :p].unsqueeze(1),
                      out=cand[:, :, 1 : p + 1])
            torch.max(cand[:, :, : p + 1], 2, out=(vg[:, :, p], pick[:, :, p]))
            a_t = vg[:, :, p] + prefix[:, :, t]
            into_mix = group_mix[p] if positional else mix3
            torch.max(a_t.unsqueeze(1) + into_mix, 0, out=(into, prev[:, :, p]))
            torch.sub(into, prefix[:, :, t], out=w[:, :, s0 + p])
        chosen = pick[:, :, :ge]
        seg_len = torch.where(chosen == 0, far_len, rows - (chosen - 1))
        back_len[:, :, g0 : g0 + ge] = seg_len.to(torch.int32)
        back_label[:, :, g0 : g0 + ge] = prev[:, :, :ge].to(torch.int32)
        done = w[:, :, s0 : s0 + group].view(labels, batch, group // chunk, chunk).amax(3)
        cmax[:, :, s0 // chunk : s0 // chunk + group // chunk] = done
    return v, w[:, :, width - 1 : width - 1 + n1], back_len, back_label


def viterbi_sweep(m: Model64, chunk: int = CHUNK, group: int = GROUP) -> ViterbiSweep:
    """The max-product sweep as ``streaming.viterbi_sweep`` computes it (best scores are
    exact; among exactly tied segmentations another one may be returned)."""
    if not _supported(m):
        return streaming.viterbi_sweep(m)
    batch, length, labels, max_len = m.shape
    prefix = _label_major(m.prefix)
    edges = streaming.edge_terms(m)
    w0 = _cut(m.censored_at(0), m.start_rows.T)
    extra = None if edges.first is None else _label_major(edges.first)
    mix = PositionMix(m.transition) if m.per_position else m.transition
    v, w, back_len, back_label = _max_engine(prefix, mix, m.duration, w0, chunk,
                                             group, extra, _tail_of(m))
    alpha = _label_major(v + prefix)
    best, last_label = torch.max(streaming._end_prefix_of(alpha, m), dim=1)
    back_len = _label_major(back_len)
    last_len = back_len.gather(2, m.lengths.view(batch, 1, 1).expand(batch, labels, 1)).squeeze(2)
    last_begin = m.lengths - last_len.gather(1, last_label.view(batch, 1)).squeeze(1).long()
    if edges.last is not None:  # as in streaming.viterbi_sweep: a censored last run from s
        gamma = torch.full((batch, labels, max_len + length), NEG, dtype=torch.float64,
                           device=prefix.device)
        gamma[:, :, max_len:] = w[:, :, :length].transpose(0, 1)
        cut_best, flat = torch.max(streaming.last_run_terms(m, gamma, edges).flatten(1), dim=1)
        last_cut = m.censored[:, 1]
        best = torch.where(last_cut, cut_best, best)
        last_label = torch.where(last_cut, flat // length, last_label)
        last_begin = torch.where(last_cut, flat % length, last_begin)
    return ViterbiSweep(best, last_label, last_begin, back_len,
                        _label_major(back_label)[:, :, :length].contiguous())


# ----------------------------------------------------------------------------- backend protocol
def forward(m: Model64) -> ForwardSweep:
    """Backend protocol (:mod:`semicrf.crf.autograd`): the forward state, with ``log_z``."""
    return forward_sweep(m)


def backward(
    m: Model64, fwd: ForwardSweep, grad_log_z: Tensor, with_duration: bool, full_max_len: int
) -> streaming.Gradients:
    """Backend protocol: the blocked backward sweep and the shared posterior expectations."""
    return streaming.gradients(m, fwd, backward_sweep(m, fwd, with_duration), grad_log_z,
                               full_max_len)


def viterbi(m: Model64) -> ViterbiSweep:
    """Backend protocol: the max-semiring sweep with back-pointers."""
    return viterbi_sweep(m)
