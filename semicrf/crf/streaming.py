"""Exact streaming Semi-CRF recursions in plain PyTorch (the ``reference`` backend).

Two semantics share one recursion (see :mod:`semicrf.crf.api` for the model):

* ``segments``: consecutive segments may share a label, lengths 1..K;
* ``runs``: segments are maximal runs (the transition diagonal is masked), lengths 1..T with
  a geometric tail beyond K, and optionally censored first / last runs
  (:mod:`semicrf.crf.survival`).

Conventions (all internal tensors are float64, label-major so the k-window is contiguous):

* ``S[b, c, t] = sum_{u < t} scores[b, u, c]`` for t in [0, T] (prefix sums, float64).
* ``alpha[b, c, t]`` (t >= 1): log-mass of labelled prefixes [0, t) whose last segment has
  label c and ends at t.
* ``gamma[b, c, s]``: log-mass of everything before a segment of label c that starts at s,
  minus ``S[s]``: ``gamma[s] = logsumexp_c'(alpha[s, c'] + transition[c', c]) - S[s]`` (the
  row ``transition[b, s]`` of a per-position transition) and
  ``gamma[0] = start`` (NEG in the stored buffer when the first run is censored: that run is
  scored by the survival, outside the window). The transition is folded in here, once per
  position, so the k-loop costs O(K C + C^2) per step.
* Runs longer than K: ``H[t] = logsumexp_{s <= t-K-1}(gamma[s] + dur(t - s))`` follows
  ``H[t] = logaddexp(H[t-1], gamma[t-K-1] + duration[K-1]) + tail``, O(C) per step.
* ``u[b, c, t] = S[t] + beta[t]`` with ``beta[t, c]`` the log-mass of all completions after a
  segment of label c ends at t (``beta[L] = 0``; NEG when the last run is censored, whose
  end term is added separately), and ``out[b, c, s]`` the log-mass of all completions given
  that a segment of label c starts at s, minus ``S[s]``.

The forward reads a K-wide window of ``gamma`` per step (O(K C) live state); the C numbers
per position that later steps and the backward need (``alpha``, ``gamma``, ``u``) are kept
for the whole sequence, which is O(T C) -- the size of ``scores`` itself -- so nothing of
size T * K is ever stored and no recomputation is needed. Censored edge runs are O(T C)
vectorised terms evaluated outside the loop. Gradients are posterior expectations.

An optional ``allowed`` mask (B, T, C) restricts segments to those whose every position
allows their label (segments semantics: the gold-label partition ``log Z(y)``).

Forbidden entries (-inf in transition, duration or start) are stored as ``NEG``; a sequence
with no admissible labelling ends with log Z <= ``IMPOSSIBLE``, which the API reports as
-inf (see :func:`usable_log_z` for the backward of such a sequence).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from semicrf.crf import survival

# "Impossible" log-mass. A large finite value instead of -inf keeps every log-sum-exp free of
# NaN when all its terms are impossible, and keeps exp() off its slow path for -inf.
NEG = -1.0e30
# log Z at or below this is a sequence with no admissible labelling (every complete path
# holds at least one NEG term; finite scores are many orders of magnitude smaller).
IMPOSSIBLE = NEG / 2
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


def _exact_exp(x: Tensor) -> Tensor:
    """exp in place, exactly 0 below ``_EXP_FLOOR`` (posterior counts of forbidden entries)."""
    keep = x > _EXP_FLOOR
    return x.clamp_(min=_EXP_FLOOR).exp_().mul_(keep)


def finite_or_neg(x: Tensor) -> Tensor:
    """A float64 copy of ``x`` with -inf (a forbidden entry) replaced by ``NEG``."""
    return x.detach().to(torch.float64).clamp(min=NEG)


def usable_log_z(log_z: Tensor) -> Tensor:
    """log Z (B,) with impossible sequences set to 0: their posterior terms, all of order
    exp(NEG), then vanish instead of overflowing (their gradient weight is zeroed upstream)."""
    return torch.where(log_z <= IMPOSSIBLE, 0.0, log_z)


@dataclass
class Model64:
    """The model in float64, label-major; the window K capped at T.

    ``semantics`` is "segments" or "runs". For runs, ``transition`` has its diagonal set to
    NEG, ``tail`` (C,) is the geometric tail and ``full_duration`` (K, C) the uncapped table
    (the survival of a censored run sums over every length); ``censored`` (B, 2) bool marks
    a first / last run cut by the window, or is None.
    """

    prefix: Tensor  # S (B, C, T + 1)
    transition: Tensor  # (C, C) or per position (B, T, C, C), [..., src, dst]
    duration: Tensor  # (C, K'), [c, k - 1], K' = min(K, T)
    start: Tensor  # (C,), or per sequence (B, C)
    lengths: Tensor  # (B,) int64
    bad_counts: Tensor | None  # (B, C, T + 1) int64 prefix counts of disallowed positions
    allowed: Tensor | None  # (B, T, C) bool, the mask behind bad_counts (segments only)
    semantics: str = "segments"
    tail: Tensor | None = None  # (C,) runs only
    full_duration: Tensor | None = None  # (K, C) runs only
    censored: Tensor | None = None  # (B, 2) bool, runs only
    low_precision: bool = False  # the scores were float32 (a backend may use float32 windows)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        batch, labels, t_plus_1 = self.prefix.shape
        return batch, t_plus_1 - 1, labels, self.duration.shape[1]

    @property
    def start_rows(self) -> Tensor:
        """The start scores per sequence, (B, C)."""
        return self.start.expand(self.prefix.shape[0], self.prefix.shape[1])

    @property
    def per_position(self) -> bool:
        """The transition is the (B, T, C, C) per-position form."""
        return self.transition.dim() == 4

    def transition_at(self, t: int) -> Tensor:
        """The transition into a segment starting at t: (B, C, C) or (1, C, C)."""
        return self.transition[:, t] if self.per_position else self.transition.unsqueeze(0)

    @property
    def has_tail(self) -> bool:
        """Runs longer than K are possible inside the window (runs semantics, K < T)."""
        return self.semantics == "runs" and self.full_duration.shape[0] < self.prefix.shape[2] - 1

    def censored_at(self, side: int) -> Tensor | None:
        """(B,) bool flags of one edge (0 = first run, 1 = last run), or None if none is set."""
        if self.censored is None or not bool(self.censored[:, side].any()):
            return None
        return self.censored[:, side]


def prepare(
    scores: Tensor,
    transition: Tensor,
    duration: Tensor,
    lengths: Tensor,
    start: Tensor | None,
    allowed: Tensor | None = None,
    *,
    semantics: str = "segments",
    tail: Tensor | None = None,
    censored: Tensor | None = None,
) -> Model64:
    """Convert validated inputs to the float64 label-major layout used by the sweeps."""
    batch, length, labels = scores.shape
    f64, dev = torch.float64, scores.device
    prefix = torch.zeros(batch, labels, length + 1, dtype=f64, device=dev)
    torch.cumsum(scores.detach().to(f64).transpose(1, 2), dim=2, out=prefix[:, :, 1:])
    max_len = min(duration.shape[0], length)
    start64 = torch.zeros(labels, dtype=f64, device=dev) if start is None else finite_or_neg(start)
    bad_counts = None
    if allowed is not None:
        bad_counts = torch.zeros(batch, labels, length + 1, dtype=torch.int64, device=dev)
        torch.cumsum((~allowed).transpose(1, 2).to(torch.int64), dim=2, out=bad_counts[:, :, 1:])
    trans64 = finite_or_neg(transition)
    runs = semantics == "runs"
    if runs:
        trans64.diagonal(dim1=-2, dim2=-1).fill_(NEG)
    duration64 = finite_or_neg(duration)
    return Model64(
        prefix=prefix,
        transition=trans64,
        duration=duration64[:max_len].T.contiguous(),
        start=start64,
        lengths=lengths.to(device=dev, dtype=torch.int64),
        bad_counts=bad_counts,
        allowed=allowed,
        semantics=semantics,
        tail=(torch.zeros(labels, dtype=f64, device=dev) if tail is None else tail.detach().to(f64))
        if runs else None,
        full_duration=duration64 if runs else None,
        censored=censored.to(dev) if runs and censored is not None else None,
        low_precision=scores.dtype == torch.float32,
    )


# ----------------------------------------------------------------------------- edge terms
@dataclass
class EdgeTerms:
    """Censored-edge scores (runs semantics), NEG where an edge is not censored.

    ``first[b, c, t]`` (t in [0, T]): start + surv(t) for a censored first run ending at t;
    ``last[b, c, s]`` (s in [0, T)): surv(L - s) + S[L] for a censored last run starting at s
    (s = 0 with both edges censored: surv2(L) + S[L], the whole window one run).
    """

    first: Tensor | None
    last: Tensor | None


def survival_table(m: Model64, duration: Tensor | None = None, tail: Tensor | None = None) -> Tensor:
    """surv(l, c) for l = 1..T -> (T, C); ``duration``/``tail`` override the model's (autograd)."""
    length = m.prefix.shape[2] - 1
    lengths = torch.arange(1, length + 1, device=m.prefix.device)
    return survival.log_survival(
        m.full_duration if duration is None else duration, m.tail if tail is None else tail, lengths
    )


def edge_terms(m: Model64) -> EdgeTerms:
    """The O(T C) censored-edge terms of :class:`EdgeTerms` (all None for segments)."""
    first_cut, last_cut = m.censored_at(0), m.censored_at(1)
    if first_cut is None and last_cut is None:
        return EdgeTerms(None, None)
    batch, length, labels, _ = m.shape
    dev = m.prefix.device
    table = survival_table(m).T  # (C, T): column l - 1
    first = last = None
    if first_cut is not None:
        first = torch.full((batch, labels, length + 1), NEG, dtype=torch.float64, device=dev)
        first[:, :, 1:] = torch.where(first_cut.view(batch, 1, 1),
                                      m.start_rows.unsqueeze(2) + table, NEG)
    if last_cut is not None:
        s = torch.arange(length, device=dev)
        run_len = m.lengths.view(batch, 1) - s  # (B, T)
        valid = (run_len >= 1) & last_cut.view(batch, 1)
        gathered = table[:, (run_len.clamp(min=1) - 1)]  # (C, B, T)
        end_prefix = _end_prefix_of(m.prefix, m).unsqueeze(2)  # (B, C, 1)
        last = torch.where(valid.unsqueeze(1), gathered.permute(1, 0, 2) + end_prefix, NEG)
        if first_cut is not None:
            both_cut = (first_cut & last_cut).view(batch, 1)
            surv2 = survival.log_survival2(m.full_duration, m.tail, m.lengths)  # (B, C)
            last[:, :, 0] = torch.where(both_cut, surv2 + end_prefix[:, :, 0], last[:, :, 0])
    return EdgeTerms(first, last)


# ----------------------------------------------------------------------------- forward
@dataclass
class ForwardSweep:
    alpha: Tensor  # (B, C, T + 1); alpha[..., 0] = NEG
    gamma: Tensor  # (B, C, K + T); gamma at s is stored at index K + s, NEG before
    log_z: Tensor  # (B,)
    edges: EdgeTerms


def _forward_buffers(m: Model64) -> tuple[Tensor, Tensor]:
    """gamma (B, C, K + T) holding ``start`` at s = 0 (NEG for a censored first run) and NEG
    before; alpha (B, C, T + 1)."""
    batch, length, labels, max_len = m.shape
    gamma = torch.full((batch, labels, max_len + length), NEG, dtype=torch.float64,
                       device=m.prefix.device)
    gamma[:, :, max_len] = m.start
    first_cut = m.censored_at(0)
    if first_cut is not None:
        gamma[first_cut, :, max_len] = NEG
    alpha = torch.empty(batch, labels, length + 1, dtype=torch.float64, device=m.prefix.device)
    alpha[:, :, 0] = NEG
    return gamma, alpha


def _tail_inputs(m: Model64) -> tuple[Tensor, Tensor] | None:
    """(duration[K-1], tail) as (1, C) rows when runs longer than K are possible, else None."""
    if not m.has_tail:
        return None
    return m.full_duration[-1].view(1, -1), m.tail.view(1, -1)


def forward_sweep(m: Model64) -> ForwardSweep:
    """alpha and gamma for every position, and log Z at each sequence's length."""
    batch, length, labels, max_len = m.shape
    dev = m.prefix.device
    prefix = m.prefix
    duration_rev = m.duration.flip(1)  # window slot j holds segment length K - j
    gamma, alpha = _forward_buffers(m)
    edges = edge_terms(m)
    tail = _tail_inputs(m)
    if tail is not None:
        last_dur, tail_step = tail[0].view(1, labels), tail[1].view(1, labels)
        run_tail = torch.full((batch, labels), NEG, dtype=torch.float64, device=dev)
    if m.bad_counts is not None:
        # counts padded in front so that window slot j of step t reads count[t - K + j]
        pad = torch.full((batch, labels, max_len - 1), -1, dtype=torch.int64, device=dev)
        counts = torch.cat([pad, m.bad_counts], dim=2)
    for t in range(1, length + 1):
        window = gamma[:, :, t : t + max_len] + duration_rev
        if m.bad_counts is not None:
            blocked = counts[:, :, t - 1 : t - 1 + max_len] != m.bad_counts[:, :, t : t + 1]
            window.masked_fill_(blocked, NEG)
        a_t = _lse(window, dim=2)
        if tail is not None and t > max_len:
            run_tail = torch.logaddexp(run_tail, gamma[:, :, t - 1] + last_dur).add_(tail_step)
            a_t = torch.logaddexp(a_t, run_tail)
        if edges.first is not None:
            a_t = torch.logaddexp(a_t, edges.first[:, :, t])
        a_t.add_(prefix[:, :, t])
        alpha[:, :, t] = a_t
        if t < length:
            into = _lse(a_t.unsqueeze(2) + m.transition_at(t), dim=1)
            gamma[:, :, max_len + t] = into.sub_(prefix[:, :, t])
    return ForwardSweep(alpha=alpha, gamma=gamma, log_z=log_z_from(m, alpha, gamma, edges),
                        edges=edges)


def log_z_from(m: Model64, alpha: Tensor, gamma: Tensor, edges: EdgeTerms) -> Tensor:
    """log Z (B,) from the forward state: ends at each length, or censored last runs."""
    batch, _, labels, max_len = m.shape
    log_z = torch.logsumexp(_end_prefix_of(alpha, m), dim=1)  # ends at L (uncensored)
    if edges.last is None:
        return log_z
    cut = torch.logsumexp(last_run_terms(m, gamma, edges).flatten(1), dim=1)
    return torch.where(m.censored[:, 1], cut, log_z)


def last_run_terms(m: Model64, gamma: Tensor, edges: EdgeTerms) -> Tensor:
    """(B, C, T) log-mass of every censored last run starting at s (the whole window: s = 0)."""
    batch, _, _, max_len = m.shape
    cut = gamma[:, :, max_len:] + edges.last
    if m.censored_at(0) is not None:  # gamma[0] is NEG there: the first run is that last run
        first_cut = m.censored[:, 0].view(batch, 1)
        cut[:, :, 0] = torch.where(first_cut, m.start + edges.last[:, :, 0], cut[:, :, 0])
    return cut


def _end_prefix_of(x: Tensor, m: Model64) -> Tensor:
    """x[b, :, L_b] for a (B, C, T + 1) tensor -> (B, C)."""
    batch, labels = x.shape[:2]
    return x.gather(2, m.lengths.view(batch, 1, 1).expand(batch, labels, 1)).squeeze(2)


# ----------------------------------------------------------------------------- backward
@dataclass
class BackwardSweep:
    u: Tensor  # (B, C, T + 1 + K); u[t] = S[t] + beta[t], ~NEG beyond each length
    out: Tensor  # (B, C, T); log-mass of completions after a segment start at s, minus S[s]
    duration_mass: Tensor  # (B, C, K'): expected number of uncensored segments of each length
    tail_mass: Tensor | None = None  # (B, C): expected number of uncensored runs longer than K
    tail_excess: Tensor | None = None  # (B, C): expected sum of (length - K) over those runs


def _end_bonus(m: Model64) -> Tensor:
    """(B, T + 1): 0 at each length (NEG where the last run is censored), NEG elsewhere."""
    batch, length, _, _ = m.shape
    positions = torch.arange(length + 1, device=m.prefix.device)
    at_end = positions == m.lengths.view(batch, 1)
    last_cut = m.censored_at(1)
    if last_cut is not None:
        at_end &= ~last_cut.view(batch, 1)
    return torch.where(at_end, 0.0, NEG).to(torch.float64)


def backward_sweep(m: Model64, fwd: ForwardSweep, with_duration: bool = True) -> BackwardSweep:
    """The mirrored recursion (beta as u = S + beta, segment-start completions ``out``).

    The exponentials of each step's window are reused for the segment posteriors
    ``exp(gamma[s] + duration[k-1] + u[s+k] - log Z)``, accumulated per sequence into
    ``duration_mass`` (the duration gradient), so that costs one fused multiply-add per step
    (skipped, leaving zeros, when ``with_duration`` is False). Runs longer than K are summed
    by the mirrored tail recurrence, whose expected excess length ``M[s] = 1 + w M[s+1]``
    gives the tail gradient.
    """
    batch, length, labels, max_len = m.shape
    f64, dev = torch.float64, m.prefix.device
    prefix = m.prefix
    u = torch.full((batch, labels, length + 1 + max_len), NEG, dtype=f64, device=dev)
    out = torch.empty(batch, labels, length, dtype=f64, device=dev)
    duration_mass = torch.zeros(batch, labels, max_len, dtype=f64, device=dev)
    start_weight = fwd.gamma[:, :, max_len:] - usable_log_z(fwd.log_z).view(batch, 1, 1)
    end_bonus = _end_bonus(m)
    edges = fwd.edges
    tail = _tail_inputs(m)
    tail_mass = tail_excess = None
    if tail is not None:
        last_dur, tail_step = tail
        run_tail = torch.full((batch, labels), NEG, dtype=f64, device=dev)
        excess = torch.ones(batch, labels, dtype=f64, device=dev)
        tail_mass = torch.zeros(batch, labels, dtype=f64, device=dev)
        tail_excess = torch.zeros(batch, labels, dtype=f64, device=dev)
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
        o_t = weights.sum(2).log_().add_(top)
        if tail is not None and t + max_len + 1 <= length:
            grown = torch.logaddexp(run_tail, u[:, :, t + max_len + 1] + last_dur).add_(tail_step)
            excess = _exp(run_tail + tail_step - grown).mul_(excess).add_(1.0)
            run_tail = grown
            if with_duration:
                weight = _exp(run_tail + start_weight[:, :, t])
                tail_mass += weight
                tail_excess.addcmul_(weight, excess)
            o_t = torch.logaddexp(o_t, run_tail)
        if edges.last is not None:
            o_t = torch.logaddexp(o_t, edges.last[:, :, t])
        o_t.sub_(prefix[:, :, t])
        out[:, :, t] = o_t
        if t > 0:
            beta = _lse(o_t.unsqueeze(1) + m.transition_at(t), dim=2)
            beta = torch.maximum(beta, end_bonus[:, t : t + 1])
            u[:, :, t] = beta.add_(prefix[:, :, t])
    censored_first_out(m, edges, u, out)
    return BackwardSweep(u=u, out=out, duration_mass=duration_mass, tail_mass=tail_mass,
                         tail_excess=tail_excess)


def censored_first_out(m: Model64, edges: EdgeTerms, u: Tensor, out: Tensor) -> None:
    """Set ``out[:, :, 0]`` (in place) of sequences whose first run is censored: every end e
    of that run is scored by surv(e) (and the whole window, with a censored last run, by
    surv2(L)); ``u`` (B, C, >= T + 1) from the backward sweep."""
    if edges.first is None:
        return
    batch, length, labels, _ = m.shape
    first_cut = m.censored[:, 0].view(batch, 1)
    ends = edges.first[:, :, 1:] - m.start_rows.unsqueeze(2) + u[:, :, 1 : length + 1]
    first_out = torch.logsumexp(ends, dim=2)
    if edges.last is not None:
        first_out = torch.logaddexp(first_out, edges.last[:, :, 0])
    out[:, :, 0] = torch.where(first_cut, first_out, out[:, :, 0])


# ----------------------------------------------------------------------------- gradients
@dataclass
class Gradients:
    scores: Tensor  # (B, T, C): d(sum_b g_b log Z_b)/d scores, i.e. g-weighted marginals
    transition: Tensor  # (C, C), or (B, T, C, C) for a per-position transition
    duration: Tensor  # (K, C), rows beyond min(K, T) are zero in segments semantics
    start: Tensor  # the shape of the model's start: (C,) or (B, C)
    tail: Tensor | None  # (C,), runs semantics only


def true_gamma(m: Model64, fwd: ForwardSweep) -> Tensor:
    """gamma (B, C, T) for segment starts s = 0..T-1, with ``start`` at s = 0 everywhere."""
    gamma = fwd.gamma[:, :, m.shape[3]:].clone()
    gamma[:, :, 0] = m.start
    return gamma


def _edge_duration_gradients(
    m: Model64, fwd: ForwardSweep, bwd: BackwardSweep, g: Tensor
) -> tuple[Tensor, Tensor]:
    """Gradients (K, C) and (C,) of the censored-edge runs' survival scores.

    The posterior weight of every censored run is computed from the sweeps, then contracted
    with d surv / d(duration, tail) by autograd on the O(T K C) survival graph. Weights below
    exp(-700) are exactly 0: a forbidden length's survival (near NEG) has a meaningless local
    derivative there.
    """
    batch, length, labels, _ = m.shape
    dev, log_z = m.prefix.device, usable_log_z(fwd.log_z).view(batch, 1, 1)
    by_length = torch.zeros(length, labels, dtype=torch.float64, device=dev)  # row l - 1
    whole = None
    edges = fwd.edges
    if edges.first is not None:  # first run [0, e): weight by its length e
        weight = _exact_exp(edges.first[:, :, 1:] + bwd.u[:, :, 1 : length + 1] - log_z)
        by_length += torch.einsum("b,bcl->lc", g, weight)
    if edges.last is not None:  # last run [s, L): length L - s
        weight = _exact_exp(last_run_terms(m, fwd.gamma, edges) - log_z) * g.view(batch, 1, 1)
        if edges.first is not None:  # s = 0 with both edges cut scores surv2 instead
            both_cut = (m.censored[:, 0] & m.censored[:, 1]).view(batch, 1)
            whole = torch.where(both_cut, weight[:, :, 0], 0.0)
            weight[:, :, 0] = torch.where(both_cut, 0.0, weight[:, :, 0])
        run_len = m.lengths.view(batch, 1) - torch.arange(length, device=dev)  # (B, T)
        valid = run_len >= 1
        rows = (run_len.clamp(min=1) - 1)[valid]
        by_length.index_add_(0, rows, weight.transpose(1, 2)[valid])
    with torch.enable_grad():
        duration = m.full_duration.detach().requires_grad_()
        tail = m.tail.detach().requires_grad_()
        total = (by_length * survival_table(m, duration, tail)).sum()
        if whole is not None:
            total = total + (whole * survival.log_survival2(duration, tail, m.lengths)).sum()
        grad_duration, grad_tail = torch.autograd.grad(total, (duration, tail))
    return grad_duration, grad_tail


def gradients(
    m: Model64, fwd: ForwardSweep, bwd: BackwardSweep, grad_out: Tensor, full_max_len: int
) -> Gradients:
    """Posterior expectations, each weighted by ``grad_out[b]`` and summed over the batch
    (a per-position transition gets its (B, T, C, C) expectations, zero at t = 0 and past
    each length). Impossible sequences must come with ``grad_out[b] = 0``."""
    batch, length, labels, max_len = m.shape
    prefix, log_z = m.prefix, usable_log_z(fwd.log_z).view(batch, 1, 1)
    g = grad_out.to(torch.float64)
    gamma = true_gamma(m, fwd)  # (B, C, T): segment starts at s = 0..T-1
    start_mass = _exp(gamma + prefix[:, :, :length] + bwd.out - log_z)
    end_mass = _exp(fwd.alpha - prefix + bwd.u[:, :, : length + 1] - log_z)
    # P(position u has label c) = starts at s <= u minus ends at t <= u (end_mass[0] = 0)
    marg = torch.cumsum(start_mass - end_mass[:, :, :length], dim=2)
    marg *= (torch.arange(length, device=marg.device) < m.lengths.view(batch, 1)).unsqueeze(1)
    grad_scores = (marg * g.view(batch, 1, 1)).transpose(1, 2)
    grad_start = start_mass[:, :, 0] * g.view(batch, 1)
    if m.start.dim() == 1:
        grad_start = grad_start.sum(0)
    # transitions c' -> c into a segment starting at s in [1, T), in blocks of positions
    grad_trans = torch.zeros_like(m.transition)
    block = max(1, _BLOCK_ELEMENTS // (batch * labels * labels))
    inside = torch.arange(length, device=prefix.device) < m.lengths.view(batch, 1)
    for s0 in range(1, length, block):
        s1 = min(length, s0 + block)
        if m.per_position:
            into = m.transition[:, s0:s1].permute(0, 2, 3, 1)  # (B, C, C, s)
        else:
            into = m.transition.view(1, labels, labels, 1)
        pair = (
            fwd.alpha[:, :, s0:s1].unsqueeze(2)
            + into
            + (bwd.out[:, :, s0:s1] - log_z).unsqueeze(1)
        )
        mass = _exact_exp(pair) * inside[:, s0:s1].view(batch, 1, 1, -1)
        if m.per_position:
            grad_trans[:, s0:s1] = (mass * g.view(batch, 1, 1, 1)).permute(0, 3, 1, 2)
        else:
            grad_trans += torch.einsum("b,bijs->ij", g, mass)
    grad_dur = torch.zeros(full_max_len, labels, dtype=torch.float64, device=prefix.device)
    grad_dur[:max_len] = torch.einsum("b,bck->kc", g, bwd.duration_mass)
    grad_tail = None
    if m.semantics == "runs":
        grad_tail = torch.zeros(labels, dtype=torch.float64, device=prefix.device)
        if bwd.tail_mass is not None:
            grad_dur[-1] += torch.einsum("b,bc->c", g, bwd.tail_mass)
            grad_tail += torch.einsum("b,bc->c", g, bwd.tail_excess)
        if fwd.edges.first is not None or fwd.edges.last is not None:
            edge_dur, edge_tail = _edge_duration_gradients(m, fwd, bwd, g)
            grad_dur += edge_dur
            grad_tail += edge_tail
    return Gradients(scores=grad_scores, transition=grad_trans, duration=grad_dur,
                     start=grad_start, tail=grad_tail)


# ----------------------------------------------------------------------------- Viterbi
@dataclass
class ViterbiSweep:
    best: Tensor  # (B,) best score
    last_label: Tensor  # (B,) label of the last segment
    last_begin: Tensor  # (B,) start of the last segment
    back_len: Tensor  # (B, C, T + 1) int: length of the best last segment ending at t
    back_label: Tensor  # (B, C, T) int: best previous label for a segment starting at s


def viterbi_sweep(m: Model64) -> ViterbiSweep:
    """The forward recursion in the max semiring, with back-pointers (length and c')."""
    batch, length, labels, max_len = m.shape
    dev = m.prefix.device
    prefix = m.prefix
    duration_rev = m.duration.flip(1)
    gamma, alpha = _forward_buffers(m)
    edges = edge_terms(m)
    tail = _tail_inputs(m)
    if tail is not None:
        last_dur, tail_step = tail
        run_tail = torch.full((batch, labels), NEG, dtype=torch.float64, device=dev)
        tail_begin = torch.zeros(batch, labels, dtype=torch.int64, device=dev)
    back_len = torch.zeros(batch, labels, length + 1, dtype=torch.int32, device=dev)
    back_label = torch.zeros(batch, labels, length, dtype=torch.int32, device=dev)
    for t in range(1, length + 1):
        best, slot = torch.max(gamma[:, :, t : t + max_len] + duration_rev, dim=2)
        seg_len = max_len - slot
        if tail is not None and t > max_len:
            fresh = gamma[:, :, t - 1] + last_dur  # a run from t - K - 1 of length K + 1
            take = fresh > run_tail
            run_tail = torch.where(take, fresh, run_tail).add_(tail_step)
            tail_begin = torch.where(take, t - max_len - 1, tail_begin)
            better = run_tail > best
            best = torch.where(better, run_tail, best)
            seg_len = torch.where(better, t - tail_begin, seg_len)
        if edges.first is not None:
            better = edges.first[:, :, t] > best
            best = torch.where(better, edges.first[:, :, t], best)
            seg_len = torch.where(better, t, seg_len)
        a_t = best.add_(prefix[:, :, t])
        alpha[:, :, t] = a_t
        back_len[:, :, t] = seg_len.to(torch.int32)
        if t < length:
            into, prev = torch.max(a_t.unsqueeze(2) + m.transition_at(t), dim=1)
            gamma[:, :, max_len + t] = into.sub_(prefix[:, :, t])
            back_label[:, :, t] = prev
    best, last_label = torch.max(_end_prefix_of(alpha, m), dim=1)
    last_len = back_len.gather(2, m.lengths.view(batch, 1, 1).expand(batch, labels, 1)).squeeze(2)
    last_begin = m.lengths - last_len.gather(1, last_label.view(batch, 1)).squeeze(1).long()
    if edges.last is not None:
        cut = last_run_terms(m, gamma, edges)  # (B, C, T)
        cut_best, flat = torch.max(cut.flatten(1), dim=1)
        last_cut = m.censored[:, 1]
        best = torch.where(last_cut, cut_best, best)
        last_label = torch.where(last_cut, flat // length, last_label)
        last_begin = torch.where(last_cut, flat % length, last_begin)
    return ViterbiSweep(best, last_label, last_begin, back_len, back_label)


def traceback(sweep: ViterbiSweep, lengths: Tensor) -> list[list[tuple[int, int, int]]]:
    """Follow the back-pointers on the host; segments as (start, end_exclusive, label)."""
    back_len = sweep.back_len.cpu().numpy()
    back_label = sweep.back_label.cpu().numpy()
    last = sweep.last_label.cpu().tolist()
    last_begin = sweep.last_begin.cpu().tolist()
    paths = []
    for b, end in enumerate(lengths.cpu().tolist()):
        label, begin = last[b], last_begin[b]
        segments = [(begin, end, label)]
        while begin > 0:
            label = int(back_label[b, label, begin])
            end = begin
            begin = end - int(back_len[b, label, end])
            segments.append((begin, end, label))
        segments.reverse()
        paths.append(segments)
    return paths


# ----------------------------------------------------------------------------- backend protocol
def forward(m: Model64) -> ForwardSweep:
    """Backend protocol (:mod:`semicrf.crf.autograd`): the forward state, with ``log_z``."""
    return forward_sweep(m)


def backward(
    m: Model64, fwd: ForwardSweep, grad_log_z: Tensor, with_duration: bool, full_max_len: int
) -> Gradients:
    """Backend protocol: the mirrored sweep and the posterior expectations."""
    return gradients(m, fwd, backward_sweep(m, fwd, with_duration), grad_log_z, full_max_len)


def viterbi(m: Model64) -> ViterbiSweep:
    """Backend protocol: the max-semiring sweep with back-pointers."""
    return viterbi_sweep(m)
