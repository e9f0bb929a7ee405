"""Fast CPU sweeps of the Semi-CRF: blocked linear-space sums with exact repair.

The reference sweeps (``streaming``) evaluate one K-wide log-sum-exp per position. Here the
positions are taken in blocks of ``BLOCK`` and the work is split in two:

* the *past* part of a block (segments that start before it) is one matrix product per label:
  the Toeplitz matrix ``exp(duration - max)`` (the same for every block) times the previous
  window of ``exp(w - chunk max)``, batched over the sequences (BLAS, float64);
* the *intra-block* part (segments that start inside the block) is a unit lower-triangular
  linear system of size ``BLOCK * C`` per sequence, solved with one ``solve_triangular``,
  in variables rescaled by the prefix of the per-position best emission so that every
  factor is at most ``exp(max duration)``.

Every linear-space quantity is checked: a past sum below ``_PAST_TINY`` is recomputed in
log space from its window, and a block whose solved values leave ``[_TINY, _HUGE]`` (or are
not finite) is recomputed position by position in log space, so the result always equals
the reference sweep up to float64 rounding. The duration mass of the backward is a
cross-correlation of ``exp(gamma)`` and ``exp(u)`` evaluated in tiles of ``_TILE`` positions:
one batched matrix product per tile offset, with the same kind of checked rescaling.

The backward is the forward recursion run on each sequence reversed at its own length
(the segment-start completions ``out`` play the part of ``alpha``, ``u`` that of ``gamma``),
so one engine serves both directions. Layout inside this module is label-major first,
(C, B, positions); results are returned in ``streaming``'s dataclasses and layout.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from semicrf.crf import streaming
from semicrf.crf.streaming import NEG, BackwardSweep, ForwardSweep, Model64, ViterbiSweep

# Positions per block (the size of the triangular systems is BLOCK * C).
BLOCK = 16
# Positions per tile of the duration-mass correlation.
_TILE = 32
# Solved linear-space values must lie in [_TINY, _HUGE]: below _TINY an underflowed term
# could matter at float64 resolution, above _HUGE a later product could overflow.
_TINY = 1e-200
_HUGE = 1e200
# A past-window sum of terms each <= 1 is exact to rounding when it is above this value:
# every term lost to underflow is below 2.3e-308 and there are at most K of them.
_PAST_TINY = 1e-280
# Largest log-scale factor allowed in the fast duration-mass tiles (see _duration_mass).
_MASS_SCALE = 300.0
# Elements per batch of exactly summed tiles.
_EXACT_ELEMENTS = 1 << 21


def _lse(x: Tensor, dim: int) -> Tensor:
    """log-sum-exp over ``dim`` with streaming's conventions (NEG for impossible)."""
    top = x.amax(dim, keepdim=True).clamp_(min=NEG)
    return (x - top).clamp_(min=-700.0).exp_().sum(dim).log_().add_(top.squeeze(dim))


class _Window:
    """Constant tensors of the window recursion for one duration table and block size."""

    def __init__(self, duration: Tensor, block: int) -> None:
        labels, max_len = duration.shape
        dev, f64 = duration.device, torch.float64
        self.block = block
        self.chunks = -(-max_len // block)
        self.width = self.chunks * block  # past window length, a whole number of chunks
        self.dmax = duration.amax(1)  # (C,)
        lag = torch.arange(block, device=dev).view(block, 1) + self.width - torch.arange(
            self.width, device=dev
        ).view(1, self.width)  # (P, W): segment length from window slot j to row p
        valid = lag <= max_len
        idx = (lag - 1).clamp(max=max_len - 1)
        log_past = duration[:, idx].masked_fill(~valid, NEG)  # (C, P, W)
        self.log_past = log_past
        self.past = (log_past - self.dmax.view(labels, 1, 1)).exp().transpose(1, 2).contiguous()
        p = torch.arange(block, device=dev)
        lag_in = p.view(block, 1) - p.view(1, block)  # (P, P)
        ok = (lag_in >= 1) & (lag_in <= max_len)
        self.log_intra = torch.where(
            ok, duration[:, (lag_in - 1).clamp(0, max_len - 1)], torch.tensor(-math.inf, dtype=f64)
        )  # (C, P, P), -inf where no segment


def _sum_engine(
    prefix: Tensor, mix: Tensor, duration: Tensor, w0: Tensor, block: int
) -> tuple[Tensor, Tensor]:
    """The window recursion in the (+, log) semiring, forward in position.

    prefix (C, B, N + 1) emission prefix sums; mix (C, C) [from, to]; duration (C, K);
    w0 (C, B) the value of ``w`` at position 0. Returns v, w (C, B, N + 1) with
    ``v[t] = lse_{k=1..min(K,t)} duration[k-1] + w[t-k]`` (v[0] = NEG) and
    ``w[t, c] = lse_c'(v[t, c'] + prefix[t, c'] + mix[c', c]) - prefix[t, c]`` for t >= 1.
    """
    labels, batch, n1 = prefix.shape
    dev, f64 = prefix.device, torch.float64
    win = _Window(duration, block)
    width, chunks = win.width, win.chunks
    nblocks = -(-(n1 - 1) // block)
    # buffer index of position t is width - 1 + t; chunk j covers indices [j P, (j+1) P)
    total = width + nblocks * block
    w = torch.full((labels, batch, total), NEG, dtype=f64, device=dev)
    w[:, :, width - 1] = w0
    wexp = torch.zeros(labels, batch, total, dtype=f64, device=dev)
    wexp[:, :, width - 1] = 1.0
    scale = torch.full((labels, batch, total // block), NEG, dtype=f64, device=dev)
    scale[:, :, chunks - 1] = w0
    v = torch.full((labels, batch, n1), NEG, dtype=f64, device=dev)
    # per-position best emission prefix: rescaled emissions e = S - Phi never increase
    phi = torch.zeros(batch, n1, dtype=f64, device=dev)
    torch.cumsum(prefix.diff(dim=2).amax(0), dim=1, out=phi[:, 1:])
    rel = prefix - phi
    expmix = mix.exp()
    mix_t = expmix.T.reshape(1, 1, labels, 1, labels)
    dmax = win.dmax.view(labels, 1, 1)
    for i in range(nblocks):
        t0 = 1 + i * block
        pe = min(block, n1 - t0)
        b0 = width + i * block
        # past part: one (B, W) @ (W, P) product per label over the rescaled window
        sc = scale[:, :, i : i + chunks]
        top = sc.amax(2, keepdim=True)
        window = (wexp[:, :, b0 - width : b0].view(labels, batch, chunks, block)
                  * (sc - top).exp_().unsqueeze(3)).view(labels, batch, width)
        r = torch.bmm(window, win.past)  # (C, B, P)
        vpast = r.log().add_(top).add_(dmax)
        bad = r < _PAST_TINY
        if bad.any():
            c_i, b_i, p_i = bad.nonzero(as_tuple=True)
            terms = w[c_i, b_i, b0 - width : b0] + win.log_past[c_i, p_i]
            vpast[c_i, b_i, p_i] = _lse(terms, 1)
        vpast = vpast[:, :, :pe]
        e = rel[:, :, t0 : t0 + pe]
        got = _intra_linear(vpast, e, win.log_intra[:, :pe, :pe], expmix, mix_t)
        if got is None:
            vb, wb = _intra_log(vpast, prefix[:, :, t0 : t0 + pe], win.log_intra, mix)
        else:
            vb, wb = got
        v[:, :, t0 : t0 + pe] = vb
        w[:, :, b0 : b0 + pe] = wb
        top = wb.amax(2, keepdim=True)
        scale[:, :, chunks + i] = top.squeeze(2)
        wexp[:, :, b0 : b0 + pe] = (wb - top).exp_()
    return v, w[:, :, width - 1 : width - 1 + n1]


def _intra_linear(
    vpast: Tensor, e: Tensor, log_intra: Tensor, expmix: Tensor, mix_t: Tensor
) -> tuple[Tensor, Tensor] | None:
    """One block's recursion as a triangular solve; None when a value is out of range.

    Unknowns X[t, c] = exp(w[t, c] + e[t, c] - rho) and Y = exp(v + e - rho) with rho the
    block's largest past term; segments inside the block have factor
    exp(duration + e[t] - e[s]) <= exp(max duration) since e never increases.
    """
    labels, batch, pe = vpast.shape
    ve = vpast + e
    rho = ve.amax(dim=(0, 2), keepdim=True)  # (1, B, 1)
    ypast = (ve - rho).exp_()  # (C, B, P)
    g = (log_intra.unsqueeze(1) + e.unsqueeze(3) - e.unsqueeze(2)).exp_()  # (C, B, P, P)
    system = g.permute(1, 2, 3, 0).unsqueeze(2) * mix_t  # (B, P, C, P, C): [b, t, c, s, c']
    system = system.reshape(batch, pe * labels, pe * labels).neg_()
    rhs = torch.matmul(ypast.permute(1, 2, 0), expmix).reshape(batch, pe * labels, 1)
    x = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    x = x.view(batch, pe, labels).permute(2, 0, 1)  # (C, B, P)
    y = torch.matmul(g, x.unsqueeze(3)).squeeze(3).add_(ypast)
    ok = ((y >= _TINY) & (y <= _HUGE)).all() and ((x >= _TINY) & (x <= _HUGE)).all()
    if not ok:
        return None
    shift = rho - e
    return y.log().add_(shift), x.log().add_(shift)


def _intra_log(
    vpast: Tensor, prefix: Tensor, log_intra: Tensor, mix: Tensor
) -> tuple[Tensor, Tensor]:
    """One block's recursion position by position in log space (the exact repair)."""
    labels, batch, pe = vpast.shape
    vb = torch.empty_like(vpast)
    wb = torch.empty_like(vpast)
    mix3 = mix.view(labels, labels, 1)
    for p in range(pe):
        terms = torch.cat([vpast[:, :, p : p + 1], log_intra[:, p, :p].unsqueeze(1) + wb[:, :, :p]], 2)
        v_t = _lse(terms, 2)
        vb[:, :, p] = v_t
        a_t = v_t + prefix[:, :, p]
        wb[:, :, p] = _lse(a_t.unsqueeze(1) + mix3, 0) - prefix[:, :, p]
    return vb, wb


def _label_major(x: Tensor) -> Tensor:
    return x.transpose(0, 1).contiguous()


def forward_sweep(m: Model64, block: int = BLOCK) -> ForwardSweep:
    """alpha, gamma and log Z as ``streaming.forward_sweep`` computes them."""
    if m.bad_counts is not None:
        return streaming.forward_sweep(m)
    batch, length, labels, max_len = m.shape
    prefix = _label_major(m.prefix)  # (C, B, T + 1)
    w0 = m.start.view(labels, 1).expand(labels, batch)
    v, w = _sum_engine(prefix, m.transition, m.duration, w0, block)
    alpha = _label_major(v + prefix)
    alpha[:, :, 0] = NEG
    gamma = torch.full((batch, labels, max_len + length), NEG, dtype=torch.float64,
                       device=prefix.device)
    gamma[:, :, max_len:] = w[:, :, :length].transpose(0, 1)
    edges = streaming.edge_terms(m)
    return ForwardSweep(alpha=alpha, gamma=gamma, log_z=streaming.log_z_from(m, alpha, gamma, edges),
                        edges=edges)


def _reverse_index(lengths: Tensor, n1: int) -> Tensor:
    """(B, n1) original position L_b - tau of reversed position tau (clamped at 0)."""
    tau = torch.arange(n1, device=lengths.device)
    return (lengths.view(-1, 1) - tau).clamp_(min=0)


def backward_sweep(
    m: Model64, fwd: ForwardSweep, with_duration: bool = True, block: int = BLOCK
) -> BackwardSweep:
    """u, out and the duration mass as ``streaming.backward_sweep`` computes them."""
    if m.bad_counts is not None:
        return streaming.backward_sweep(m, fwd, with_duration)
    batch, length, labels, max_len = m.shape
    dev, f64 = m.prefix.device, torch.float64
    prefix = _label_major(m.prefix)  # (C, B, T + 1)
    src = _reverse_index(m.lengths, length + 1).unsqueeze(0).expand(labels, batch, length + 1)
    end = prefix.gather(2, m.lengths.view(1, batch, 1).expand(labels, batch, 1))  # S[L]
    rev = end - prefix.gather(2, src)  # reversed prefix, 0 at tau = 0
    zeros = torch.zeros(labels, batch, dtype=f64, device=dev)
    v, w = _sum_engine(rev, m.transition.T, m.duration, zeros, block)
    # back to original positions s = L - tau: out[s] = v[tau] + S[L] - S[s], u[s] = w[tau] + S[L]
    pos = torch.arange(length + 1, device=dev)
    tau = (m.lengths.view(1, batch, 1) - pos).expand(labels, batch, length + 1)
    inside = tau >= 0
    tau = tau.clamp(min=0)
    out_lm = (v.gather(2, tau) + end - prefix).masked_fill_(~inside | (tau == 0), NEG)
    u_lm = (w.gather(2, tau) + end).masked_fill_(~inside | (pos == 0), NEG)
    u = torch.full((batch, labels, length + 1 + max_len), NEG, dtype=f64, device=dev)
    u[:, :, : length + 1] = u_lm.transpose(0, 1)
    out = out_lm[:, :, :length].transpose(0, 1).contiguous()
    if with_duration:
        mass = _duration_mass(fwd.gamma[:, :, max_len:], u[:, :, : length + 1], m.duration,
                              fwd.log_z)
    else:
        mass = torch.zeros(batch, labels, max_len, dtype=f64, device=dev)
    return BackwardSweep(u=u, out=out, duration_mass=mass)


def _duration_mass(gamma: Tensor, u: Tensor, duration: Tensor, log_z: Tensor) -> Tensor:
    """sum_s exp(gamma[s] + duration[k-1] + u[s+k] - log Z) -> (B, C, K).

    gamma (B, C, T) segment starts, u (B, C, T + 1). Positions are cut into tiles of Q; the
    pairs (s-tile i, t-tile i + d) for d >= 1 give one (Q, Q) product per (b, c), summed
    over i by a batched matrix product after scaling each s-tile row by
    f = exp(max gamma_i + max u_{i+d} - log Z); these products leave out exp(duration),
    multiplied in per lag at the end. Tiles with log f > _MASS_SCALE - max(max duration, 0)
    and the d = 0 pairs (where the terms span the widest range) are summed exactly in log
    space, so a product lost to underflow in the fast tiles is below exp(-708 + _MASS_SCALE)
    in posterior units.
    """
    batch, labels, length = gamma.shape
    max_len = duration.shape[1]
    dev, f64 = gamma.device, torch.float64
    q = _TILE
    nq = -(-length // q)
    nd = -(-max_len // q)  # largest tile offset that holds a lag <= K
    bc = batch * labels
    g = torch.full((bc, nq, q), NEG, dtype=f64, device=dev)
    g.view(bc, nq * q)[:, :length] = gamma.reshape(bc, length)
    uu = torch.full((bc, nq + nd + 1, q), NEG, dtype=f64, device=dev)
    uu.view(bc, -1)[:, : length + 1] = u.reshape(bc, length + 1)
    lz = log_z.repeat_interleave(labels).view(bc, 1)
    gm = g.amax(2)  # (bc, nq)
    um = uu.amax(2)  # (bc, nq + nd + 1)
    gt = (g - gm.unsqueeze(2)).exp_()
    ut = (uu - um.unsqueeze(2)).exp_()
    limit = _MASS_SCALE - duration.amax(1).clamp(min=0).repeat(batch).view(bc, 1)
    # lag of pair (t = (i + d) q + a, s = i q + b) is d q + a - b; stored at index lag + q
    ab = torch.arange(q, device=dev)
    rel_lag = ab.view(q, 1) - ab.view(1, q)  # (Q, Q) [a, b]
    size = (nd + 2) * q
    fast_acc = torch.zeros(bc, size, dtype=f64, device=dev)  # divided by exp(duration)
    exact_acc = torch.zeros(bc, size, dtype=f64, device=dev)  # posterior units
    dur_pad = torch.full((labels, size), NEG, dtype=f64, device=dev)
    dur_pad[:, q + 1 : q + 1 + max_len] = duration
    for d in range(1, nd + 1):
        cross = gm + um[:, d : d + nq] - lz  # (bc, nq)
        fast = cross <= limit
        f = torch.where(fast, cross, NEG).exp_()
        prod = torch.bmm(ut[:, d : d + nq].transpose(1, 2), gt * f.unsqueeze(2))  # (bc, Q, Q)
        fast_acc.index_add_(1, (rel_lag + d * q + q).reshape(-1), prod.reshape(bc, q * q))
        if not fast.all():
            r_i, i_i = (~fast).nonzero(as_tuple=True)
            _exact_tiles(exact_acc, r_i, g[r_i, i_i], uu[r_i, i_i + d], rel_lag + d * q + q,
                         dur_pad, labels, lz[r_i, 0])
    # d = 0: pairs inside one tile (lags 1 .. Q - 1), exactly in log space
    r_all = torch.arange(bc, device=dev).repeat_interleave(nq)
    i_all = torch.arange(nq, device=dev).repeat(bc)
    step = max(1, _EXACT_ELEMENTS // (q * q))
    for lo in range(0, r_all.numel(), step):
        r_i, i_i = r_all[lo : lo + step], i_all[lo : lo + step]
        _exact_tiles(exact_acc, r_i, g[r_i, i_i], uu[r_i, i_i], rel_lag + q, dur_pad, labels,
                     lz[r_i, 0])
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
    n = rows.numel()
    terms = (dur_pad[rows % labels][:, index] + u.unsqueeze(2) + g.unsqueeze(1)
             - lz.view(n, 1, 1))  # [n, a, b]
    vals = terms.clamp_(min=-745.0).exp_()
    flat = (rows.view(n, 1) * acc.shape[1] + index.reshape(1, -1)).reshape(-1)
    acc.view(-1).index_add_(0, flat, vals.reshape(-1))


def viterbi_sweep(m: Model64) -> ViterbiSweep:
    """The max-product sweep (the reference implementation for now)."""
    return streaming.viterbi_sweep(m)
