"""Exact streaming Semi-CRF recursions in plain PyTorch (the ``reference`` backend).

Conventions (all internal tensors are float64, label-major so the k-window is contiguous):

* ``S[b, c, t] = sum_{u < t} scores[b, u, c]`` for t in [0, T] (prefix sums, float64).
* ``alpha[b, c, t]`` (t >= 1): log-mass of segmentations of [0, t) whose last segment has label c.
* ``gamma[b, c, s]``: log-mass of everything before a segment of label c that starts at s,
  minus ``S[s]``: ``gamma[s] = logsumexp_c'(alpha[s, c'] + transition[c', c]) - S[s]`` and
  ``gamma[0] = start``. The transition is folded in here, once per position, so the k-loop
  ``alpha[t] = S[t] + logsumexp_k(duration[k-1] + gamma[t-k])`` costs O(K C + C^2) per step.
* ``u[b, c, t] = S[t] + beta[t]`` with ``beta[t, c]`` the log-mass of all completions after a
  segment of label c ends at t (``beta[L] = 0``), and
  ``out[b, c, s] = logsumexp_k(duration[k-1] + u[s+k]) - S[s]``, the log-mass of all
  completions given that a segment of label c starts at s.

The forward reads a K-wide window of ``gamma`` per step (O(K C) live state); the C numbers
per position that later steps and the backward need (``alpha``, ``gamma``, ``u``) are kept
for the whole sequence, which is O(T C) -- the size of ``scores`` itself -- so nothing of
size T * K is ever stored and no recomputation is needed. Gradients are posterior
expectations evaluated in blocks after the two sweeps.

An optional ``allowed`` mask (B, T, C) restricts segments to those whose every position
allows their label (used for the gold-label partition ``log Z(y)`` in training).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

# "Impossible" log-mass. A large finite value instead of -inf keeps every log-sum-exp free of
# NaN when all its terms are impossible, and keeps exp() off its slow path for -inf.
NEG = -1.0e30
# exp() of arguments below about -708 underflows and takes a path ~30x slower on CPU; terms
# that small are below float64 resolution next to the largest term (exp(0) = 1), so they
# are clamped here, which changes no result by more than K * 1e-304 relative.
_EXP_FLOOR = -700.0
# Elements per block in the vectorised gradient phase (float64: 8 bytes each).
_BLOCK_ELEMENTS = 1 << 22


def _lse(x: Tensor, dim: int) -> Tensor:
    """log-sum-exp over ``dim`` (consumes ``x``); results below ~NEG mean impossible."""
    top = x.amax(dim, keepdim=True)
    return x.sub_(top).clamp_(min=_EXP_FLOOR).exp_().sum(dim).log_().add_(top.squeeze(dim))


def _exp(x: Tensor) -> Tensor:
    """exp in place with the underflow clamp (see ``_EXP_FLOOR``)."""
    return x.clamp_(min=_EXP_FLOOR).exp_()


@dataclass
class Model64:
    """The model in float64, label-major; K already capped at T."""

    prefix: Tensor  # S (B, C, T + 1)
    transition: Tensor  # (C, C), [src, dst]
    duration: Tensor  # (C, K), [c, k - 1]
    start: Tensor  # (C,)
    lengths: Tensor  # (B,) int64
    bad_counts: Tensor | None  # (B, C, T + 1) int64 prefix counts of disallowed positions

    @property
    def shape(self) -> tuple[int, int, int, int]:
        batch, labels, t_plus_1 = self.prefix.shape
        return batch, t_plus_1 - 1, labels, self.duration.shape[1]


def prepare(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None,
    allowed: Tensor | None = None,
) -> Model64:
    """Convert validated inputs to the float64 label-major layout used by the sweeps."""
    batch, length, labels = scores.shape
    f64 = torch.float64
    prefix = torch.zeros(batch, labels, length + 1, dtype=f64, device=scores.device)
    torch.cumsum(scores.detach().to(f64).transpose(1, 2), dim=2, out=prefix[:, :, 1:])
    max_len = min(duration.shape[0], length)
    start64 = (
        torch.zeros(labels, dtype=f64, device=scores.device)
        if start is None
        else start.detach().to(f64)
    )
    bad_counts = None
    if allowed is not None:
        bad_counts = torch.zeros(batch, labels, length + 1, dtype=torch.int64, device=scores.device)
        torch.cumsum((~allowed).transpose(1, 2).to(torch.int64), dim=2, out=bad_counts[:, :, 1:])
    return Model64(
        prefix=prefix,
        transition=transition.detach().to(f64),
        duration=duration.detach()[:max_len].to(f64).T.contiguous(),
        start=start64,
        lengths=lengths.to(device=scores.device, dtype=torch.int64),
        bad_counts=bad_counts,
    )


@dataclass
class ForwardSweep:
    alpha: Tensor  # (B, C, T + 1); alpha[..., 0] = -inf
    gamma: Tensor  # (B, C, K + T); gamma at s is stored at index K + s, -inf before
    log_z: Tensor  # (B,)


def _forward_buffers(m: Model64) -> tuple[Tensor, Tensor]:
    """gamma (B, C, K + T) holding ``start`` at s = 0 and NEG before; alpha (B, C, T + 1)."""
    batch, length, labels, max_len = m.shape
    gamma = torch.full((batch, labels, max_len + length), NEG, dtype=torch.float64,
                       device=m.prefix.device)
    gamma[:, :, max_len] = m.start
    alpha = torch.empty(batch, labels, length + 1, dtype=torch.float64, device=m.prefix.device)
    alpha[:, :, 0] = NEG
    return gamma, alpha


def forward_sweep(m: Model64) -> ForwardSweep:
    """alpha and gamma for every position, and log Z at each sequence's length."""
    batch, length, labels, max_len = m.shape
    dev = m.prefix.device
    prefix, trans_t = m.prefix, m.transition.unsqueeze(0)
    duration_rev = m.duration.flip(1)  # window slot j holds segment length K - j
    gamma, alpha = _forward_buffers(m)
    if m.bad_counts is not None:
        # counts padded in front so that window slot j of step t reads count[t - K + j]
        pad = torch.full((batch, labels, max_len - 1), -1, dtype=torch.int64, device=dev)
        counts = torch.cat([pad, m.bad_counts], dim=2)
    for t in range(1, length + 1):
        window = gamma[:, :, t : t + max_len] + duration_rev
        if m.bad_counts is not None:
            blocked = counts[:, :, t - 1 : t - 1 + max_len] != m.bad_counts[:, :, t : t + 1]
            window.masked_fill_(blocked, NEG)
        a_t = _lse(window, dim=2).add_(prefix[:, :, t])
        alpha[:, :, t] = a_t
        if t < length:
            into = _lse(a_t.unsqueeze(2) + trans_t, dim=1)
            gamma[:, :, max_len + t] = into.sub_(prefix[:, :, t])
    ends = alpha.gather(2, m.lengths.view(batch, 1, 1).expand(batch, labels, 1)).squeeze(2)
    return ForwardSweep(alpha=alpha, gamma=gamma, log_z=torch.logsumexp(ends, dim=1))


@dataclass
class BackwardSweep:
    u: Tensor  # (B, C, T + 1 + K); u[t] = S[t] + beta[t], ~NEG beyond each length
    out: Tensor  # (B, C, T); log-mass of completions after a segment start at s, minus S[s]
    duration_mass: Tensor  # (B, C, K): expected number of segments of each (label, length)


def backward_sweep(m: Model64, fwd: ForwardSweep, with_duration: bool = True) -> BackwardSweep:
    """The mirrored recursion (beta as u = S + beta, segment-start completions ``out``).

    The exponentials of each step's window are reused for the segment posteriors
    ``exp(gamma[s] + duration[k-1] + u[s+k] - log Z)``, accumulated per sequence into
    ``duration_mass`` (the duration gradient), so that costs one fused multiply-add per step
    (skipped, leaving zeros, when ``with_duration`` is False).
    """
    batch, length, labels, max_len = m.shape
    f64, dev = torch.float64, m.prefix.device
    prefix, trans = m.prefix, m.transition.unsqueeze(0)
    u = torch.full((batch, labels, length + 1 + max_len), NEG, dtype=f64, device=dev)
    out = torch.empty(batch, labels, length, dtype=f64, device=dev)
    duration_mass = torch.zeros(batch, labels, max_len, dtype=f64, device=dev)
    start_weight = fwd.gamma[:, :, max_len:] - fwd.log_z.view(batch, 1, 1)  # (B, C, T)
    positions = torch.arange(length + 1, device=dev)
    end_bonus = torch.where(positions == m.lengths.view(batch, 1), 0.0, NEG).to(f64)
    if m.bad_counts is not None:
        pad = torch.full((batch, labels, max_len), -1, dtype=torch.int64, device=dev)
        counts = torch.cat([m.bad_counts, pad], dim=2)
    beta = end_bonus[:, length].view(batch, 1).expand(batch, labels)
    u[:, :, length] = prefix[:, :, length] + beta
    for t in range(length - 1, -1, -1):
        window = u[:, :, t + 1 : t + 1 + max_len] + m.duration  # slot j: length j + 1
        if m.bad_counts is not None:
            blocked = counts[:, :, t + 1 : t + 1 + max_len] != m.bad_counts[:, :, t : t + 1]
            window.masked_fill_(blocked, NEG)
        top = window.amax(2)
        weights = _exp(window.sub_(top.unsqueeze(2)))
        if with_duration:
            duration_mass.addcmul_(weights, _exp(top + start_weight[:, :, t]).unsqueeze(2))
        o_t = weights.sum(2).log_().add_(top).sub_(prefix[:, :, t])
        out[:, :, t] = o_t
        if t > 0:
            beta = _lse(o_t.unsqueeze(1) + trans, dim=2)
            beta = torch.maximum(beta, end_bonus[:, t : t + 1])
            u[:, :, t] = beta.add_(prefix[:, :, t])
    return BackwardSweep(u=u, out=out, duration_mass=duration_mass)


@dataclass
class Gradients:
    scores: Tensor  # (B, T, C): d(sum_b g_b log Z_b)/d scores, i.e. g-weighted marginals
    transition: Tensor  # (C, C)
    duration: Tensor  # (K, C), rows beyond min(K, T) are zero
    start: Tensor  # (C,)


def gradients(
    m: Model64, fwd: ForwardSweep, bwd: BackwardSweep, grad_out: Tensor, full_max_len: int
) -> Gradients:
    """Posterior expectations, each weighted by ``grad_out[b]`` and summed over the batch."""
    batch, length, labels, max_len = m.shape
    prefix, log_z = m.prefix, fwd.log_z.view(batch, 1, 1)
    g = grad_out.to(torch.float64)
    gamma = fwd.gamma[:, :, max_len:]  # (B, C, T): segment starts at s = 0..T-1
    start_mass = _exp(gamma + prefix[:, :, :length] + bwd.out - log_z)
    end_mass = _exp(fwd.alpha - prefix + bwd.u[:, :, : length + 1] - log_z)
    # P(position u has label c) = starts at s <= u minus ends at t <= u (end_mass[0] = 0)
    marg = torch.cumsum(start_mass - end_mass[:, :, :length], dim=2)
    marg *= (torch.arange(length, device=marg.device) < m.lengths.view(batch, 1)).unsqueeze(1)
    grad_scores = (marg * g.view(batch, 1, 1)).transpose(1, 2)
    grad_start = torch.einsum("b,bc->c", g, start_mass[:, :, 0])
    # transitions c' -> c into a segment starting at s in [1, T), in blocks of positions
    grad_trans = torch.zeros_like(m.transition)
    block = max(1, _BLOCK_ELEMENTS // (batch * labels * labels))
    for s0 in range(1, length, block):
        s1 = min(length, s0 + block)
        pair = (
            fwd.alpha[:, :, s0:s1].unsqueeze(2)
            + m.transition.view(1, labels, labels, 1)
            + (bwd.out[:, :, s0:s1] - log_z).unsqueeze(1)
        )
        grad_trans += torch.einsum("b,bijs->ij", g, _exp(pair))
    grad_dur = torch.zeros(full_max_len, labels, dtype=torch.float64, device=prefix.device)
    grad_dur[:max_len] = torch.einsum("b,bck->kc", g, bwd.duration_mass)
    return Gradients(scores=grad_scores, transition=grad_trans, duration=grad_dur, start=grad_start)


@dataclass
class ViterbiSweep:
    best: Tensor  # (B,) best score
    last_label: Tensor  # (B,) label of the last segment
    back_len: Tensor  # (B, C, T + 1) int: length of the best last segment ending at t
    back_label: Tensor  # (B, C, T) int: best previous label for a segment starting at s


def viterbi_sweep(m: Model64) -> ViterbiSweep:
    """The forward recursion in the max semiring, with back-pointers (k and c')."""
    batch, length, labels, max_len = m.shape
    dev = m.prefix.device
    prefix, trans_t = m.prefix, m.transition.unsqueeze(0)
    duration_rev = m.duration.flip(1)
    gamma, alpha = _forward_buffers(m)
    back_len = torch.zeros(batch, labels, length + 1, dtype=torch.int32, device=dev)
    back_label = torch.zeros(batch, labels, length, dtype=torch.int32, device=dev)
    for t in range(1, length + 1):
        best, slot = torch.max(gamma[:, :, t : t + max_len] + duration_rev, dim=2)
        a_t = best.add_(prefix[:, :, t])
        alpha[:, :, t] = a_t
        back_len[:, :, t] = max_len - slot
        if t < length:
            into, prev = torch.max(a_t.unsqueeze(2) + trans_t, dim=1)
            gamma[:, :, max_len + t] = into.sub_(prefix[:, :, t])
            back_label[:, :, t] = prev
    ends = alpha.gather(2, m.lengths.view(batch, 1, 1).expand(batch, labels, 1)).squeeze(2)
    best, last_label = torch.max(ends, dim=1)
    return ViterbiSweep(best, last_label, back_len, back_label)


def traceback(sweep: ViterbiSweep, lengths: Tensor) -> list[list[tuple[int, int, int]]]:
    """Follow the back-pointers on the host; segments as (start, end_exclusive, label)."""
    back_len = sweep.back_len.cpu().numpy()
    back_label = sweep.back_label.cpu().numpy()
    last = sweep.last_label.cpu().tolist()
    paths = []
    for b, end in enumerate(lengths.cpu().tolist()):
        label, segments = last[b], []
        while end > 0:
            begin = end - int(back_len[b, label, end])
            segments.append((begin, end, label))
            if begin > 0:
                label = int(back_label[b, label, begin])
            end = begin
        segments.reverse()
        paths.append(segments)
    return paths
