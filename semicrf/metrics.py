"""Evaluation metrics for per-position label predictions.

All metrics are computed from two lists of per-position label arrays (one array per
sequence) and are *pooled* (micro-averaged) over the whole set of sequences: counts are
summed over sequences before any ratio is taken. Full definitions: ``docs/metrics.md``.

Definitions used throughout:

- **Padding.** Positions labelled ``-100`` in ``true`` are padding. Padding must be a
  suffix of the array; the prediction is truncated to the unpadded length.
- **Segment.** A maximal run of one label inside a sequence, written ``(start, end, label)``
  with ``end`` exclusive. Segments never span two sequences.
- **Boundary.** A position ``t`` with ``label[t - 1] != label[t]``, i.e. the start of every
  segment except the first; the two sequence ends are not boundaries. Boundaries carry
  no label: a boundary is detected if any predicted boundary is matched to it.
- **Matching within tolerance k.** Maximum one-to-one matching between predicted and true
  boundaries of the same sequence with ``|p - t| <= k``. It is computed exactly by a greedy
  sweep (true boundaries in order, each takes the leftmost unmatched predicted boundary in
  its window), which is optimal because all windows have the same width.
- **Empty sets.** A ratio 0/0 (nothing to find and nothing claimed) is 1; precision with no
  predictions, or recall with nothing to find, is 0 when the other side is not empty.

The spec's duration KL ``KL(true || predicted)`` compares histograms of segment lengths over
``1..K`` with lengths above ``K`` clamped into bin ``K``; both histograms are smoothed by
mixing with the uniform distribution, ``p~ = (1 - eps) p + eps / bins`` (``eps = 1e-3``), which
keeps KL finite (at most about ``log(bins / eps)``) and exactly 0 for identical histograms.
Because most introns and intergenic regions are longer than ``K``, two extra divergences
use the whole length range: KL over log-spaced bins (no clamping) and the Wasserstein-1
distance in base pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from semicrf.labels import EXON, PAD_LABEL, class_names, runs

#: Boundary tolerances (in positions) reported by :func:`evaluate`.
TOLERANCES: tuple[int, ...] = (0, 1, 2, 5, 10)
#: Weight of the uniform distribution mixed into histograms before a KL is taken.
KL_SMOOTHING = 1e-3
#: Resolution of the log-spaced length bins of ``duration_kl_log``.
LOG_BINS_PER_DECADE = 10

LabelArrays = Sequence[Any]  # sequence of 1-D integer arrays (numpy, lists, CPU tensors)


# --------------------------------------------------------------------------------------
# Input handling: concatenate all sequences into one flat array.


@dataclass(frozen=True)
class _Flat:
    """Predictions and truth of all sequences, concatenated (padding removed)."""

    true: np.ndarray  # (N,) int64
    pred: np.ndarray  # (N,) int64
    offsets: np.ndarray  # (S + 1,) start of each sequence in the flat arrays
    num_classes: int

    @property
    def num_sequences(self) -> int:
        return len(self.offsets) - 1


def _as_int_array(x: Any, what: str, index: int) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{what}[{index}] must be 1-D, got shape {arr.shape}")
    if arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"{what}[{index}] must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _flatten(pred: LabelArrays, true: LabelArrays, num_classes: int) -> _Flat:
    names = class_names(num_classes)  # validates num_classes
    if len(pred) != len(true):
        raise ValueError(f"pred has {len(pred)} sequences but true has {len(true)}")
    if len(true) == 0:
        raise ValueError("pred and true must hold at least one sequence")
    trues, preds, lengths = [], [], []
    for i, (p, t) in enumerate(zip(pred, true, strict=True)):
        t = _as_int_array(t, "true", i)
        p = _as_int_array(p, "pred", i)
        pad = np.flatnonzero(t == PAD_LABEL)
        n = int(pad[0]) if pad.size else t.size
        if pad.size and pad.size != t.size - n:
            raise ValueError(f"true[{i}]: padding (-100) must be a suffix of the sequence")
        if p.size < n:
            raise ValueError(f"pred[{i}] has length {p.size} < unpadded true length {n}")
        t, p = t[:n], p[:n]
        for arr, what in ((t, "true"), (p, "pred")):
            if n and (arr.min() < 0 or arr.max() >= num_classes):
                raise ValueError(
                    f"{what}[{i}] has labels outside [0, {num_classes}) (classes {', '.join(names)})"
                )
        trues.append(t)
        preds.append(p)
        lengths.append(n)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _Flat(np.concatenate(trues), np.concatenate(preds), offsets, num_classes)


def _boundaries(labels: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Flat positions t with labels[t - 1] != labels[t] inside one sequence."""
    if labels.size < 2:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    return change[~np.isin(change, offsets)]


# --------------------------------------------------------------------------------------
# Counting


def _prf(matched: float, n_pred: float, n_true: float) -> tuple[float, float, float]:
    """Precision, recall, F1 with the 0/0 conventions of the module docstring."""
    both_empty = n_pred == 0 and n_true == 0
    precision = matched / n_pred if n_pred else float(both_empty)
    recall = matched / n_true if n_true else float(both_empty)
    f1 = 2.0 * matched / (n_pred + n_true) if (n_pred + n_true) else 1.0
    return float(precision), float(recall), float(f1)


def _match_within(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Maximum one-to-one matching of sorted positions a, b with ``|a_i - b_j| <= k``.

    Returns a boolean mask over ``a`` marking the matched elements. Greedy sweep over
    ``a`` in order, each element taking the leftmost unmatched ``b`` in ``[a - k, a + k]``;
    optimal because all windows have the same width (exchange argument).
    """
    matched = np.zeros(a.size, dtype=bool)
    if a.size == 0 or b.size == 0:
        return matched
    if k == 0:
        return np.isin(a, b, assume_unique=True)
    lo = np.searchsorted(b, a - k, side="left")
    hi = np.searchsorted(b, a + k, side="right")
    candidates = np.flatnonzero(hi > lo)  # elements with no b in reach never match
    if candidates.size == 0:
        return matched
    lo_c, hi_c = lo[candidates], hi[candidates]

    # ptr = index of the leftmost b not yet used (every b left of ptr is used or out of
    # reach of all later windows). A plain loop is ~4x faster here than itertools.
    took = []
    take = took.append
    ptr = 0
    for lo_j, hi_j in zip(lo_c.tolist(), hi_c.tolist(), strict=True):
        if ptr < lo_j:
            ptr = lo_j
        if ptr < hi_j:
            ptr += 1
            take(True)
        else:
            take(False)
    took = np.array(took, dtype=bool)
    matched[candidates[took]] = True
    return matched


def _boundary_positions(flat: _Flat) -> tuple[np.ndarray, ...]:
    """Boundaries of truth and prediction with their sequence index: bt, seq_t, bp, seq_p."""
    bt = _boundaries(flat.true, flat.offsets)
    bp = _boundaries(flat.pred, flat.offsets)
    seq_t = np.searchsorted(flat.offsets, bt, side="right") - 1
    seq_p = np.searchsorted(flat.offsets, bp, side="right") - 1
    return bt, seq_t, bp, seq_p


def _boundary_counts(
    flat: _Flat, tolerance: int, positions: tuple[np.ndarray, ...] | None = None
) -> np.ndarray:
    """Per sequence (matched, n_pred, n_true) boundaries within ``tolerance``."""
    bt, seq_t, bp, seq_p = positions if positions is not None else _boundary_positions(flat)
    # Spread sequences apart so that no window reaches into a neighbouring sequence.
    gap = tolerance + 1
    st, sp = bt + seq_t * gap, bp + seq_p * gap
    # Loop over the smaller side (maximum matching is symmetric).
    if st.size <= sp.size:
        hit_seq = seq_t[_match_within(st, sp, tolerance)]
    else:
        hit_seq = seq_p[_match_within(sp, st, tolerance)]
    s = flat.num_sequences
    return np.stack(
        [
            np.bincount(hit_seq, minlength=s),
            np.bincount(seq_p, minlength=s),
            np.bincount(seq_t, minlength=s),
        ],
        axis=1,
    ).astype(np.int64)


def _segment_matches(
    flat: _Flat,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], np.ndarray]:
    """Runs of pred and true, and a mask over predicted runs that exactly match a true run."""
    true_runs = runs(flat.true, flat.offsets)
    pred_runs = runs(flat.pred, flat.offsets)
    ts, te, tl = true_runs
    ps, pe, pl = pred_runs
    # True runs have distinct starts: look up the true run starting where each pred run starts.
    idx = np.searchsorted(ts, ps)
    ok = idx < ts.size
    hit = np.zeros(ps.size, dtype=bool)
    j = idx[ok]
    hit[ok] = (ts[j] == ps[ok]) & (te[j] == pe[ok]) & (tl[j] == pl[ok])
    return pred_runs, true_runs, hit


def _segment_counts(flat: _Flat) -> np.ndarray:
    (ps, _, _), (ts, _, _), hit = _segment_matches(flat)
    s = flat.num_sequences
    seq_p = np.searchsorted(flat.offsets, ps, side="right") - 1
    seq_t = np.searchsorted(flat.offsets, ts, side="right") - 1
    return np.stack(
        [
            np.bincount(seq_p[hit], minlength=s),
            np.bincount(seq_p, minlength=s),
            np.bincount(seq_t, minlength=s),
        ],
        axis=1,
    ).astype(np.int64)


def boundary_match_counts(
    pred: LabelArrays, true: LabelArrays, num_classes: int, tolerance: int = 0
) -> np.ndarray:
    """Per-sequence boundary counts, shape (num_sequences, 3): matched, predicted, true.

    Sufficient statistics for pooled boundary precision/recall/F1 (see
    :func:`f1_from_counts`); cheap to resample in :func:`semicrf.stats.paired_bootstrap`.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return _boundary_counts(_flatten(pred, true, num_classes), int(tolerance))


def segment_match_counts(pred: LabelArrays, true: LabelArrays, num_classes: int) -> np.ndarray:
    """Per-sequence segment counts, shape (num_sequences, 3): exact matches, predicted, true."""
    return _segment_counts(_flatten(pred, true, num_classes))


def f1_from_counts(counts: np.ndarray) -> float:
    """Pooled F1 from rows of (matched, n_pred, n_true) counts (0/0 counts as 1)."""
    m, n_pred, n_true = np.asarray(counts, dtype=np.int64).reshape(-1, 3).sum(axis=0)
    return _prf(float(m), float(n_pred), float(n_true))[2]


# --------------------------------------------------------------------------------------
# Segments and durations


def segment_lengths(
    labels: LabelArrays, num_classes: int, *, drop_edge_segments: bool = False
) -> dict[str, np.ndarray]:
    """Lengths of all segments (maximal runs) of each class: class name -> int array.

    With ``drop_edge_segments`` the first and last segment of every sequence (whose true
    length is censored by the sequence ends) are left out.
    """
    flat = _flatten(labels, labels, num_classes)
    return _lengths_by_class(flat.true, flat.offsets, num_classes, drop_edge_segments)


def _lengths_by_class(
    labels: np.ndarray, offsets: np.ndarray, num_classes: int, drop_edges: bool
) -> dict[str, np.ndarray]:
    s, e, lab = runs(labels, offsets)
    keep = np.ones(s.size, dtype=bool)
    if drop_edges:
        keep &= ~np.isin(s, offsets) & ~np.isin(e, offsets)
    lengths = e - s
    return {name: lengths[keep & (lab == c)] for c, name in enumerate(class_names(num_classes))}


def _smooth(hist: np.ndarray, eps: float) -> np.ndarray:
    """Normalise along axis 0 and mix with the uniform distribution (weight eps).

    An all-zero column (no observations) becomes the uniform distribution.
    """
    hist = np.asarray(hist, dtype=np.float64)
    bins = hist.shape[0]
    total = hist.sum(axis=0, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.where(total > 0, hist / np.where(total > 0, total, 1.0), 1.0 / bins)
    return (1.0 - eps) * p + eps / bins


def kl_divergence(p: np.ndarray, q: np.ndarray, smoothing: float = KL_SMOOTHING) -> float:
    """KL(p || q) in nats between two histograms (counts or probabilities) of equal shape.

    Both are normalised and mixed with the uniform distribution with weight ``smoothing``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(f"p and q must be non-empty 1-D arrays of equal shape: {p.shape} {q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("histograms must be non-negative")
    if not 0 < smoothing < 1:
        raise ValueError(f"smoothing must be in (0, 1), got {smoothing}")
    ps, qs = _smooth(p, smoothing), _smooth(q, smoothing)
    return float(max(np.sum(ps * (np.log(ps) - np.log(qs))), 0.0))


def clamped_length_histogram(lengths: np.ndarray, max_duration: int) -> np.ndarray:
    """Counts of lengths 1..K (index d-1 = length d); lengths above K are counted at K."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.bincount(np.minimum(lengths, max_duration) - 1, minlength=max_duration)[:max_duration]


def per_sequence_length_histograms(labels: LabelArrays, num_classes: int,
                                   max_duration: int) -> np.ndarray:
    """(S, C, K) counts of segment lengths 1..K per sequence and class, lengths above K in
    bin K: summed over sequences, the histograms of :func:`evaluate`'s ``duration_kl``
    (per-sequence rows are what :mod:`semicrf.stats` resamples)."""
    return _per_sequence_histograms(labels, num_classes, max_duration,
                                    lambda length: np.minimum(length, max_duration) - 1)


def per_sequence_log_histograms(labels: LabelArrays, num_classes: int,
                                edges: np.ndarray) -> np.ndarray:
    """(S, C, len(edges) - 1) counts of segment lengths per sequence and class in the
    log-spaced bins ``[edges[i], edges[i+1])`` of :func:`log_length_edges` (no clamping):
    summed over sequences, the histograms of ``duration_kl_log`` when ``edges`` is
    ``log_length_edges(longest sequence)``."""
    edges = np.asarray(edges, dtype=np.int64)
    return _per_sequence_histograms(labels, num_classes, edges.size - 1,
                                    lambda length: np.searchsorted(edges, length, side="right") - 1)


def _per_sequence_histograms(labels: LabelArrays, num_classes: int, bins: int,
                             bin_of: Any) -> np.ndarray:
    flat = _flatten(labels, labels, num_classes)
    s, e, lab = runs(flat.true, flat.offsets)
    seq = np.searchsorted(flat.offsets, s, side="right") - 1
    idx = bin_of(e - s)
    if idx.size and (idx.min() < 0 or idx.max() >= bins):
        raise ValueError(f"segment lengths outside the {bins} histogram bins")
    out = np.zeros((flat.num_sequences, num_classes, bins), dtype=np.int64)
    np.add.at(out, (seq, lab, idx), 1)
    return out


def pooled_kl(pred_hists: np.ndarray, true_hists: np.ndarray,
              smoothing: float = KL_SMOOTHING) -> float:
    """KL(true || predicted) of (S, K) per-sequence length histograms summed over sequences."""
    return kl_divergence(np.asarray(true_hists).sum(axis=0), np.asarray(pred_hists).sum(axis=0),
                         smoothing)


def log_length_edges(max_length: int, per_decade: int = LOG_BINS_PER_DECADE) -> np.ndarray:
    """Integer edges of log-spaced length bins covering 1..max_length (bin i = [e_i, e_i+1))."""
    top = np.log10(max_length + 1)
    num = int(np.ceil(top * per_decade)) + 1
    edges = np.unique(np.round(np.logspace(0.0, top, max(num, 2))).astype(np.int64))
    edges[-1] = max(edges[-1], max_length + 1)
    return edges


def _log_histogram(lengths: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(edges, lengths, side="right") - 1
    return np.bincount(idx, minlength=edges.size - 1)[: edges.size - 1]


def learned_duration_pmf(duration_table: Any) -> np.ndarray:
    """The head's duration distribution: softmax over lengths of a (K, C) log-duration table.

    Row ``d - 1`` is length ``d``. A zero table (``semicrf_uniform``) gives the uniform pmf.
    """
    if hasattr(duration_table, "detach"):
        duration_table = duration_table.detach().cpu().numpy()
    table = np.asarray(duration_table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 1:
        raise ValueError(f"duration_table must have shape (K, C), got {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("duration_table must be finite")
    z = np.exp(table - table.max(axis=0, keepdims=True))
    return z / z.sum(axis=0, keepdims=True)


def tilt_profiled_pmf(duration_table: Any, reference_pmf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head's duration pmf over 1..K after profiling out the linear tilt, per class.

    The duration scores are identified only up to ``lambda * length`` (it trades exactly with
    the emission bias), so the softmax of the raw table is not comparable with a true pmf.
    This returns ``q_lambda ∝ exp(duration[:, c] + lambda_c * length)`` with ``lambda_c``
    minimising KL(reference || q_lambda), which for this exponential family is the tilt whose
    mean length equals the reference's (found by bisection), and the tilts (C,). Columns of
    ``reference_pmf`` are renormalised over 1..K; a column without mass keeps lambda = 0.
    """
    table = learned_duration_pmf(duration_table)  # validates; log of it is the table up to a constant
    log_q = np.log(np.maximum(table, 1e-300))
    ref = np.asarray(reference_pmf, dtype=np.float64)
    if ref.shape != table.shape:
        raise ValueError(f"reference_pmf must have shape {table.shape}, got {ref.shape}")
    length = np.arange(1, table.shape[0] + 1, dtype=np.float64)
    out, tilts = np.empty_like(table), np.zeros(table.shape[1])

    def tilted(c: int, lam: float) -> np.ndarray:
        z = log_q[:, c] + lam * length
        w = np.exp(z - z.max())
        return w / w.sum()

    for c in range(table.shape[1]):
        mass = ref[:, c].sum()
        if mass > 0:
            target = float(length @ ref[:, c]) / mass
            lo, hi = -50.0, 50.0
            for _ in range(200):  # the tilted mean is increasing in lambda
                mid = 0.5 * (lo + hi)
                lo, hi = (mid, hi) if length @ tilted(c, mid) < target else (lo, mid)
            tilts[c] = 0.5 * (lo + hi)
        out[:, c] = tilted(c, tilts[c])
    return out, tilts


def duration_table_kl(
    learned_pmf: np.ndarray, true_pmf: np.ndarray, smoothing: float = KL_SMOOTHING
) -> dict[str, float | None]:
    """KL(true || learned) per class between two (K, C) duration pmfs over lengths 1..K.

    Each column is renormalised over 1..K (so a true pmf truncated at K is compared with
    the head, which cannot represent longer segments) and smoothed as in
    :func:`kl_divergence`. Classes whose true pmf has no mass on 1..K get ``None``.
    """
    learned = np.asarray(learned_pmf, dtype=np.float64)
    true = np.asarray(true_pmf, dtype=np.float64)
    if learned.ndim != 2 or learned.shape != true.shape:
        raise ValueError(
            f"learned_pmf and true_pmf must both have shape (K, C); got {learned.shape} and {true.shape}"
        )
    names = class_names(learned.shape[1])
    # a class with no true mass on 1..K (all its segments longer than K) has no defined KL
    return {name: kl_divergence(true[:, c], learned[:, c], smoothing) if true[:, c].sum() > 0 else None
            for c, name in enumerate(names)}


def empirical_duration_pmf(
    lengths: Mapping[str, np.ndarray], max_duration: int, num_classes: int
) -> np.ndarray:
    """(K, C) pmf of observed segment lengths 1..K per class, lengths above K dropped.

    The truncated, renormalised pmf is what a duration table of size K can represent; a
    class with no length <= K gets an all-zero column.
    """
    pmf = np.zeros((max_duration, num_classes))
    for c, name in enumerate(class_names(num_classes)):
        arr = np.asarray(lengths.get(name, ()), dtype=np.int64)
        arr = arr[arr <= max_duration]
        if arr.size:
            pmf[:, c] = np.bincount(arr - 1, minlength=max_duration) / arr.size
    return pmf


def _duration_metrics(
    flat: _Flat, max_duration: int, smoothing: float, drop_edges: bool, per_decade: int
) -> dict[str, Any]:
    names = class_names(flat.num_classes)
    true_len = _lengths_by_class(flat.true, flat.offsets, flat.num_classes, drop_edges)
    pred_len = _lengths_by_class(flat.pred, flat.offsets, flat.num_classes, drop_edges)
    seq_len = np.diff(flat.offsets)
    edges = log_length_edges(max(int(seq_len.max(initial=1)), 1), per_decade)
    kl, kl_log, w1, summary = {}, {}, {}, {}
    for name in names:
        t, p = true_len[name], pred_len[name]
        summary[name] = {
            "n_true": int(t.size),
            "n_pred": int(p.size),
            "median_true": float(np.median(t)) if t.size else None,
            "median_pred": float(np.median(p)) if p.size else None,
            "frac_true_over_k": float((t > max_duration).mean()) if t.size else None,
        }
        if t.size == 0:  # nothing to compare against
            kl[name] = kl_log[name] = w1[name] = None
            continue
        kl[name] = kl_divergence(
            clamped_length_histogram(t, max_duration),
            clamped_length_histogram(p, max_duration),
            smoothing,
        )
        kl_log[name] = kl_divergence(_log_histogram(t, edges), _log_histogram(p, edges), smoothing)
        w1[name] = float(wasserstein_distance(t, p)) if p.size else None
    return {
        "duration_kl": kl,
        "duration_kl_log": kl_log,
        "duration_wasserstein": w1,
        "duration_summary": summary,
    }


# --------------------------------------------------------------------------------------
# The entry point


def evaluate(
    pred: LabelArrays,
    true: LabelArrays,
    num_classes: int,
    max_duration: int,
    *,
    tolerances: Sequence[int] = TOLERANCES,
    kl_smoothing: float = KL_SMOOTHING,
    drop_edge_segments: bool = False,
    log_bins_per_decade: int = LOG_BINS_PER_DECADE,
) -> dict[str, Any]:
    """Every metric of one model on one test set (pooled over sequences).

    Args:
        pred: predicted labels, one 1-D integer array per sequence.
        true: true labels, same number of sequences; ``-100`` marks (suffix) padding and
            the prediction is truncated to the unpadded length.
        num_classes: C; labels must lie in ``[0, C)``.
        max_duration: K, the number of length bins of the spec's ``duration_kl``.
        tolerances: boundary tolerances reported as ``boundary_*_tol{k}``.
        kl_smoothing: weight of the uniform distribution mixed into length histograms.
        drop_edge_segments: leave the (censored) first and last segment of each sequence
            out of the duration metrics.
        log_bins_per_decade: resolution of ``duration_kl_log``.

    Returns:
        A JSON-ready dict; keys and definitions are listed in ``docs/metrics.md``.
        Undefined values (no true segment of a class) are ``None``.
    """
    if isinstance(max_duration, bool) or int(max_duration) != max_duration or max_duration < 1:
        raise ValueError(f"max_duration must be an int >= 1, got {max_duration!r}")
    max_duration = int(max_duration)
    tolerances = tuple(int(k) for k in tolerances)
    if any(k < 0 for k in tolerances):
        raise ValueError(f"tolerances must be >= 0, got {tolerances}")
    flat = _flatten(pred, true, num_classes)
    names = class_names(num_classes)
    out: dict[str, Any] = {
        "n_sequences": flat.num_sequences,
        "n_positions": int(flat.true.size),
    }

    # Boundaries
    positions = _boundary_positions(flat)
    for k in sorted(set(tolerances) | {0}):
        m, n_pred, n_true = _boundary_counts(flat, k, positions).sum(axis=0)
        p, r, f = _prf(m, n_pred, n_true)
        out[f"boundary_precision_tol{k}"] = p
        out[f"boundary_recall_tol{k}"] = r
        out[f"boundary_f1_tol{k}"] = f
        if k == 0:
            out["n_boundaries_true"], out["n_boundaries_pred"] = int(n_true), int(n_pred)
    out["boundary_precision"] = out["boundary_precision_tol0"]
    out["boundary_recall"] = out["boundary_recall_tol0"]
    out["boundary_f1"] = out["boundary_f1_tol0"]

    # Segments (exact start, end and label)
    (ps, pe, pl), (ts, te, tl), hit = _segment_matches(flat)
    p, r, f = _prf(int(hit.sum()), ps.size, ts.size)
    out.update(
        segment_precision=p,
        segment_recall=r,
        segment_f1=f,
        n_segments_true=int(ts.size),
        n_segments_pred=int(ps.size),
    )
    hits_c = np.bincount(pl[hit], minlength=num_classes)
    pred_c = np.bincount(pl, minlength=num_classes)
    true_c = np.bincount(tl, minlength=num_classes)
    out["segment_f1_per_class"] = {
        name: _prf(hits_c[c], pred_c[c], true_c[c])[2] for c, name in enumerate(names)
    }

    # Exon level (Burset & Guigo 1996): exact both ends; missing / wrong exons by overlap.
    if num_classes > EXON:
        # Burset-Guigo "specificity" is TP / predicted (a precision), sensitivity a recall.
        ex_sp, ex_sn, _ = _prf(hits_c[EXON], pred_c[EXON], true_c[EXON])
        cum_pred = np.concatenate([[0], np.cumsum(flat.pred == EXON, dtype=np.int64)])
        cum_true = np.concatenate([[0], np.cumsum(flat.true == EXON, dtype=np.int64)])
        t_ex, p_ex = tl == EXON, pl == EXON
        missing = (cum_pred[te[t_ex]] - cum_pred[ts[t_ex]]) == 0
        wrong = (cum_true[pe[p_ex]] - cum_true[ps[p_ex]]) == 0
        out.update(
            exon_sensitivity=ex_sn,
            exon_specificity=ex_sp,
            exon_missing=float(missing.mean()) if missing.size else 0.0,
            exon_wrong=float(wrong.mean()) if wrong.size else 0.0,
        )

    # Positions
    conf = np.bincount(flat.true * num_classes + flat.pred, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )
    tp = np.diag(conf).astype(np.float64)
    n_pred_c, n_true_c = conf.sum(axis=0), conf.sum(axis=1)
    n = conf.sum()
    prec, rec, f1, spec = {}, {}, {}, {}
    for c, name in enumerate(names):
        prec[name], rec[name], f1[name] = _prf(tp[c], n_pred_c[c], n_true_c[c])
        negatives = n - n_true_c[c]
        true_neg = negatives - (n_pred_c[c] - tp[c])
        spec[name] = float(true_neg / negatives) if negatives else 1.0
    present = [name for c, name in enumerate(names) if n_pred_c[c] or n_true_c[c]]
    out.update(
        position_accuracy=float(tp.sum() / n) if n else 1.0,
        position_f1_macro=float(np.mean([f1[x] for x in present])) if present else 1.0,
        position_f1=f1,
        position_precision=prec,
        base_sensitivity=rec,
        base_specificity=spec,
        confusion_matrix=conf.tolist(),
    )

    # Durations
    out.update(_duration_metrics(flat, max_duration, kl_smoothing, drop_edge_segments, log_bins_per_decade))
    out["settings"] = {
        "num_classes": num_classes,
        "class_names": list(names),
        "max_duration": max_duration,
        "tolerances": sorted(set(tolerances) | {0}),
        "kl_smoothing": kl_smoothing,
        "log_bins_per_decade": log_bins_per_decade,
        "drop_edge_segments": drop_edge_segments,
    }
    return out
