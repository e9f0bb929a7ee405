"""Gene-level accuracy of a predicted annotation against a reference (Burset & Guigó 1996).

Both annotations are :class:`~semicrf.genomes.annotation.Transcript` lists per sequence, as
:func:`~semicrf.genomes.readers.read_gff3` reads them (our GFF3 and AUGUSTUS's alike).
Everything is on the coding structure:

- **exon**: a coding exon (CDS part) is correct when a predicted one on the same sequence
  and strand has exactly its start and end. Sensitivity = correct / reference exons,
  specificity = correct / predicted exons (Burset–Guigó's "specificity" is a precision).
  ``missing_exons``: share of reference exons that no predicted exon overlaps;
  ``wrong_exons``: share of predicted exons that overlap no reference exon.
- **intron**: the same for the gaps between consecutive coding exons of a transcript.
- **gene**: a reference gene is found when a predicted transcript has exactly its coding
  exons (all of them, same strand); sensitivity = found / reference genes, specificity =
  predicted transcripts equal to some reference gene / predicted transcripts.

Counts are kept per sequence (:data:`COUNT_FIELDS`), so pooled ratios can be resampled
over loci (paired bootstrap). A ratio 0/0 is 1, as in :mod:`semicrf.metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from semicrf.genomes.annotation import Interval, Transcript

COUNT_FIELDS: tuple[str, ...] = (
    "exon_correct", "exon_ref", "exon_pred", "exon_missing", "exon_wrong",
    "intron_correct", "intron_ref", "intron_pred",
    "gene_found", "gene_ref", "gene_pred_correct", "gene_pred",
)

Annotation = Mapping[str, Sequence[Transcript]]


def _features(transcripts: Sequence[Transcript], kind: str) -> set[tuple[int, int, int]]:
    out: set[tuple[int, int, int]] = set()
    for t in transcripts:
        parts: tuple[Interval, ...] = t.cds if kind == "exon" else t.cds_introns()
        out.update((t.strand, s, e) for s, e in parts)
    return out


def _overlapping(items: set[tuple[int, int, int]], others: set[tuple[int, int, int]]) -> int:
    """How many of ``items`` overlap at least one of ``others`` on the same strand."""
    by_strand: dict[int, np.ndarray] = {}
    for strand in (1, -1):
        spans = sorted((s, e) for st, s, e in others if st == strand)
        by_strand[strand] = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    hit = 0
    for strand, s, e in items:
        spans = by_strand[strand]
        if spans.size and bool(((spans[:, 0] < e) & (s < spans[:, 1])).any()):
            hit += 1
    return hit


def sequence_counts(reference: Sequence[Transcript], predicted: Sequence[Transcript]
                    ) -> np.ndarray:
    """The :data:`COUNT_FIELDS` of one sequence, int64 (len(COUNT_FIELDS),)."""
    ref_ex, pred_ex = _features(reference, "exon"), _features(predicted, "exon")
    ref_in, pred_in = _features(reference, "intron"), _features(predicted, "intron")
    ref_genes = {(t.strand, t.cds) for t in reference}
    pred_genes = [(t.strand, t.cds) for t in predicted]
    return np.array([
        len(ref_ex & pred_ex), len(ref_ex), len(pred_ex),
        len(ref_ex) - _overlapping(ref_ex, pred_ex), len(pred_ex) - _overlapping(pred_ex, ref_ex),
        len(ref_in & pred_in), len(ref_in), len(pred_in),
        len(ref_genes & set(pred_genes)), len(ref_genes),
        sum(g in ref_genes for g in pred_genes), len(pred_genes),
    ], dtype=np.int64)


def gene_level_counts(reference: Annotation, predicted: Annotation,
                      seqids: Sequence[str] | None = None) -> np.ndarray:
    """(S, len(COUNT_FIELDS)) counts per sequence, in ``seqids`` order (default: the
    reference's). A sequence missing from ``predicted`` has no predicted gene."""
    ids = list(reference) if seqids is None else list(seqids)
    return np.stack([sequence_counts(reference.get(s, ()), predicted.get(s, ())) for s in ids]
                    ).reshape(len(ids), len(COUNT_FIELDS))


def _ratio(num: float, den: float) -> float:
    return 1.0 if den == 0 else float(num / den)


def metrics_from_counts(counts: np.ndarray) -> dict[str, float]:
    """Pooled Burset–Guigó metrics from rows of :func:`gene_level_counts`."""
    c = dict(zip(COUNT_FIELDS, np.asarray(counts, dtype=np.int64).reshape(-1, len(COUNT_FIELDS))
                 .sum(axis=0).tolist()))
    return {
        "exon_sn": _ratio(c["exon_correct"], c["exon_ref"]),
        "exon_sp": _ratio(c["exon_correct"], c["exon_pred"]),
        "missing_exons": _ratio(c["exon_missing"], c["exon_ref"]) if c["exon_ref"] else 0.0,
        "wrong_exons": _ratio(c["exon_wrong"], c["exon_pred"]) if c["exon_pred"] else 0.0,
        "intron_sn": _ratio(c["intron_correct"], c["intron_ref"]),
        "intron_sp": _ratio(c["intron_correct"], c["intron_pred"]),
        "gene_sn": _ratio(c["gene_found"], c["gene_ref"]),
        "gene_sp": _ratio(c["gene_pred_correct"], c["gene_pred"]),
        **{f"n_{k}": int(v) for k, v in c.items() if k in ("exon_ref", "exon_pred", "gene_ref",
                                                             "gene_pred")},
    }


def compare_annotations(reference: Annotation, predicted: Annotation,
                        seqids: Sequence[str] | None = None) -> dict[str, float]:
    """Exon, intron and gene sensitivity / specificity of ``predicted`` (pooled)."""
    return metrics_from_counts(gene_level_counts(reference, predicted, seqids))
