"""Gene prediction on long sequences with a trained model (``semicrf predict``).

A sequence is cut into windows of ``window`` bases overlapping by ``overlap``; each window is
decoded (Viterbi for the CRF heads, arg-max for softmax) and its posterior marginals are
computed. Consecutive windows are stitched inside their overlap at the agreeing position
nearest its middle (where both windows predict the same label; the middle if none does), so
every base takes the label of exactly one window. Genes are read off the stitched labels by
:func:`~semicrf.genomes.annotation.transcripts_from_labels`, scored by the mean posterior
marginals. With ``both_strands`` the reverse complement is decoded too, its genes mapped back
to the minus strand, and of two genes on opposite strands that overlap the one with the
higher score is kept.

A gene model (``--structure gene``) decodes internal states: they are stitched instead of the
labels (frames moved to the sequence's coordinates, cut where both windows agree on the state,
so a cut never breaks the grammar when such a position exists). Each gene's first CDS part
gets its GFF3 phase from the decoded frame (a CDS cut at a sequence edge may start
mid-codon), and a gene whose stretch holds a boundary the grammar forbids (two windows that
disagree over their whole overlap) is left out and counted in the log: never an impossible
gene.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch.nn import functional

from semicrf.crf.gene_head import GeneHead
from semicrf.data.features import encode
from semicrf.gene_grammar import EXON_STATES, GeneGrammar
from semicrf.genomes.annotation import Transcript, reverse_complement, transcripts_from_labels
from semicrf.genomes.readers import encode_bases
from semicrf.labels import INTERGENIC
from semicrf.models import SegmentationModel, SoftmaxHead

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predictor:
    """A trained model with the input features it was trained on (a ``FEATURE_KINDS`` entry)."""

    model: SegmentationModel
    features: str
    num_labels: int
    device: torch.device


def load_predictor(checkpoint: str | os.PathLike[str], device: str | torch.device = "cpu"
                   ) -> Predictor:
    """A :class:`Predictor` from a ``checkpoints/{model}_best.pt`` of ``semicrf run`` (a gene
    model's windows may start in any state)."""
    from semicrf.train import TrainConfig, load_checkpoint

    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint {path!r} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        cfg = TrainConfig(**state["config"])
    except (KeyError, TypeError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path!r} is not a semicrf checkpoint: {err}") from None
    device = torch.device(device)
    model = load_checkpoint(path, device)
    model.eval()
    if isinstance(model.head, GeneHead):  # a window cut from a genome may start in a gene
        model.head.start_allowed.fill_(True)
    return Predictor(model, cfg.features, cfg.num_labels, device)


def gene_grammar(pred: Predictor) -> GeneGrammar | None:
    """The grammar of a gene model's head (``--structure gene``), None for other models."""
    head = getattr(pred.model, "head", None)
    return head.grammar if isinstance(head, GeneHead) else None


@torch.no_grad()
def _decode_batch(pred: Predictor, tokens: list[np.ndarray], scores: bool = True
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Labels (B, n) int64 (a gene model: window-local internal states) and marginals
    (B, n, C) float of equal-length token windows ((B, n, 0) without ``scores``: the
    marginals cost about two more sweeps).

    The CRF heads score both edge runs of every window as censored (a window, and a FASTA
    record, is a cut of a longer genome)."""
    feats = torch.from_numpy(np.stack([encode(t, pred.features) for t in tokens])).to(pred.device)
    lengths = torch.full((len(tokens),), feats.shape[1], dtype=torch.int64, device=pred.device)
    hidden = pred.model.encoder(feats, lengths)
    head = pred.model.head
    post = None
    if isinstance(head, SoftmaxHead):
        labels, _ = head.decode(hidden, lengths)
        if scores:
            post = functional.softmax(head.projection(hidden).double(), dim=-1)
    elif isinstance(head, GeneHead):
        censored = torch.ones(len(tokens), 2, dtype=torch.bool, device=pred.device)
        runs = head.decode_states(hidden, lengths, censored)
        labels = torch.from_numpy(np.stack([
            np.repeat([state for _, _, state in r], [e - s for s, e, _ in r]) for r in runs]))
        if scores:
            post = head.marginals(hidden, lengths, censored)
    else:
        censored = torch.ones(len(tokens), 2, dtype=torch.bool, device=pred.device)
        labels, _ = head.decode(hidden, lengths, censored)
        if scores:
            post = head.marginals(hidden, lengths, censored)
    if post is None:
        post = hidden.new_zeros(*labels.shape, 0)
    return labels.cpu().numpy(), post.double().cpu().numpy()


def window_bounds(length: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, end)`` of overlapping windows covering ``[0, length)``; the last one is
    aligned to the end (it may overlap its neighbour by more than ``overlap``)."""
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"need window >= 1 and 0 <= overlap < window, got {window}, {overlap}")
    if length <= window:
        return [(0, length)]
    step = window - overlap
    starts = list(range(0, length - window, step)) + [length - window]
    return [(s, s + window) for s in starts]


def _cut(prev: np.ndarray, nxt: np.ndarray, lo: int, hi: int) -> int:
    """Stitch position in the overlap ``[lo, hi)``; ``prev`` and ``nxt`` are the two windows'
    labels on it."""
    agree = np.flatnonzero(prev == nxt)
    mid = (hi - lo) // 2
    if agree.size == 0:
        return lo + mid
    return lo + int(agree[np.argmin(np.abs(agree - mid))])


def _decoded_windows(pred: Predictor, tokens: np.ndarray, bounds: list[tuple[int, int]],
                     batch_size: int, scores: bool) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per window: labels (internal states in the sequence's frames for a gene model) and
    marginals."""
    grammar = gene_grammar(pred)
    for i in range(0, len(bounds), batch_size):
        chunk = bounds[i:i + batch_size]  # equal lengths: all `window` long, or one window
        labels, post = _decode_batch(pred, [tokens[s:e] for s, e in chunk], scores)
        if grammar is not None:
            labels = [grammar.shift_frames(lab, s) for lab, (s, _) in zip(labels, chunk)]
        yield from zip(labels, post)


def decode_sequence(pred: Predictor, tokens: np.ndarray, *, window: int = 20000,
                    overlap: int = 2000, batch_size: int = 4, scores: bool = True
                    ) -> tuple[np.ndarray, np.ndarray | None]:
    """Stitched labels (T,) int64 and marginals (T, C) (None without ``scores``) of one token
    sequence (uint8 (T,)).

    Windows are stitched as they are decoded: at most one batch plus one window is held
    besides the outputs."""
    codes, post = _stitched(pred, tokens, window, overlap, batch_size, scores)
    grammar = gene_grammar(pred)
    return (codes if grammar is None else grammar.state_label.numpy()[codes]), post


def decode_states(pred: Predictor, tokens: np.ndarray, *, window: int = 20000,
                  overlap: int = 2000, batch_size: int = 4, scores: bool = True
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """A gene model's stitched internal states (T,) int64, exon frames relative to the
    sequence's start, and output-label marginals (T, C) (None without ``scores``)."""
    if gene_grammar(pred) is None:
        raise ValueError("decode_states needs a gene model (semicrf run --structure gene)")
    return _stitched(pred, tokens, window, overlap, batch_size, scores)


def _stitched(pred: Predictor, tokens: np.ndarray, window: int, overlap: int, batch_size: int,
              scores: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The windows' labels (a gene model: internal states) stitched where they agree."""
    bounds = window_bounds(int(tokens.size), window, overlap)
    labels = np.empty(tokens.size, dtype=np.int64)
    post = np.empty((tokens.size, pred.num_labels if scores else 0))
    at, prev = 0, None
    for j, (lab, mar) in enumerate(_decoded_windows(pred, tokens, bounds, batch_size, scores)):
        if prev is not None:  # cut the previous window against this one
            (s, e), (ns, _) = bounds[j - 1], bounds[j]
            lo = max(ns, at)  # the end-aligned last window may start before the previous cut
            stop = _cut(prev[0][lo - s:], lab[lo - ns:e - ns], lo, e)
            labels[at:stop], post[at:stop] = prev[0][at - s:stop - s], prev[1][at - s:stop - s]
            at = stop
        prev = (lab, mar)
    s = bounds[-1][0]
    labels[at:], post[at:] = prev[0][at - s:], prev[1][at - s:]
    return labels, (post if scores else None)


def gene_transcripts(grammar: GeneGrammar, states: np.ndarray, seqid: str,
                     marginals: np.ndarray | None = None) -> list[Transcript]:
    """Forward-strand genes of internal states (T,) (frames relative to the sequence start):
    :func:`transcripts_from_labels` of their labels, each first CDS part phased by its frame,
    less the genes whose stretch between intergenic runs holds a boundary the grammar forbids
    (counted in the log)."""
    states = np.asarray(states, dtype=np.int64)
    labels = grammar.state_label.numpy()[states]
    broken = grammar.broken_boundaries(states)
    intergenic = np.flatnonzero(labels == INTERGENIC)
    genes, kept = transcripts_from_labels(labels, seqid, marginals=marginals), []
    for gene in genes:
        k = np.searchsorted(intergenic, gene.start)
        lo = int(intergenic[k - 1]) + 1 if k > 0 else 0  # the gene's stretch [lo, hi)
        after = intergenic[intergenic >= gene.end]
        hi = int(after[0]) if after.size else states.size
        if np.any((broken >= lo) & (broken <= hi)):
            continue
        first = gene.cds_start  # codon position of its base: (t - frame) mod 3
        position = (first - (int(states[first]) - EXON_STATES[0])) % 3
        kept.append(replace(gene, cds_start_phase=(3 - position) % 3))
    if len(kept) < len(genes):
        log.warning("%s: %d decoded genes break the gene grammar where windows were stitched: "
                    "left out", seqid, len(genes) - len(kept))
    return kept


def _strand_genes(pred: Predictor, seqid: str, sequence: str, minus: bool, **kw: Any
                  ) -> list[Transcript]:
    seq = reverse_complement(sequence) if minus else sequence
    tokens = encode_bases(seq, f"record {seqid!r}")
    grammar = gene_grammar(pred)
    if grammar is None:
        labels, post = decode_sequence(pred, tokens, **kw)
        genes = transcripts_from_labels(labels, seqid, marginals=post)
    else:
        states, post = decode_states(pred, tokens, **kw)
        genes = gene_transcripts(grammar, states, seqid, post)
    if minus:
        genes = [g.reverse_complemented(len(sequence)) for g in reversed(genes)]  # sorted
    return genes


def _resolve_strands(plus: list[Transcript], minus: list[Transcript]) -> list[Transcript]:
    """Both strands' genes, less those that overlap a higher-scoring gene of the other
    strand (ties keep the plus strand). Genes of one strand are disjoint and sorted."""
    def score(g: Transcript) -> float:
        return g.score or 0.0

    kept = []
    for own, other in ((plus, minus), (minus, plus)):
        starts = [h.start for h in other]
        ends = [h.end for h in other]
        for g in own:
            rivals = other[bisect_right(ends, g.start):bisect_left(starts, g.end)]
            if all(score(g) > score(h) or (score(g) == score(h) and g.strand == 1)
                   for h in rivals):
                kept.append(g)
    return kept


def predict_genes(
    pred: Predictor,
    sequences: Mapping[str, str],
    *,
    both_strands: bool = False,
    window: int = 20000,
    overlap: int = 2000,
    batch_size: int = 4,
    scores: bool = True,
) -> dict[str, list[Transcript]]:
    """Predicted genes per sequence id, sorted by start, with IDs ``{seqid}.g{n}``
    (unscored without ``scores``, which saves the marginals' sweeps)."""
    window_bounds(1, window, overlap)  # validates window / overlap
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out = {}
    kw = {"window": window, "overlap": overlap, "batch_size": batch_size, "scores": scores}
    for seqid, sequence in sequences.items():
        genes = _strand_genes(pred, seqid, sequence, False, **kw)
        if both_strands:
            genes = _resolve_strands(genes, _strand_genes(pred, seqid, sequence, True, **kw))
        genes.sort(key=lambda g: (g.start, g.end))
        out[seqid] = [replace(g, gene_id=f"{seqid}.g{i + 1}", seqid=seqid)
                      for i, g in enumerate(genes)]
        log.info("%s: %d genes", seqid, len(out[seqid]))
    return out
