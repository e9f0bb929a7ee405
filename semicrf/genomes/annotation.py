"""Gene models on real sequences, and their conversion to and from per-position labels.

Coordinates are 0-based, end-exclusive (``(start, end)`` covers bases ``start .. end-1``) on
the forward strand of the sequence they belong to; GFF3 and GenBank files are 1-based and
inclusive and are converted when read or written. A :class:`Transcript` is one gene's
chosen transcript: its coding exons (CDS parts) and its exons (CDS plus UTR parts; equal to
the CDS when no UTR is annotated).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from semicrf.labels import EXON, INTERGENIC, INTRON, UTR3, UTR5, label_runs

Interval = tuple[int, int]

_COMPLEMENT = str.maketrans("ACGTNacgtnRYKMSWBDHVrykmswbdhv", "TGCANtgcanYRMKSWVHDByrmkswvhdb")


@dataclass(frozen=True)
class Transcript:
    """One transcript of one gene on sequence ``seqid``.

    ``cds``: coding parts, sorted, disjoint, non-empty. ``exons``: sorted, disjoint, each CDS
    part inside one exon (UTRs are the exon parts outside the CDS). ``strand``: +1 or -1.
    ``score``: optional confidence in [0, 1] (predictions only). ``exon_scores`` and
    ``cds_scores``: optional per-feature confidences, aligned with ``exons`` and ``cds``.
    ``cds_start_phase``: GFF3 phase of the 5'-most CDS part (0 unless the CDS is cut at a
    sequence edge, as a prediction's may be).
    """

    gene_id: str
    seqid: str
    strand: int
    cds: tuple[Interval, ...]
    exons: tuple[Interval, ...]
    score: float | None = None
    exon_scores: tuple[float, ...] | None = field(default=None, compare=False)
    cds_scores: tuple[float, ...] | None = field(default=None, compare=False)
    cds_start_phase: int = 0

    def __post_init__(self) -> None:
        if self.strand not in (1, -1):
            raise ValueError(f"gene {self.gene_id!r}: strand must be +1 or -1, got {self.strand}")
        if self.cds_start_phase not in (0, 1, 2):
            raise ValueError(f"gene {self.gene_id!r}: cds_start_phase must be 0, 1 or 2, "
                             f"got {self.cds_start_phase}")
        for what, parts in (("CDS", self.cds), ("exon", self.exons)):
            if not parts:
                raise ValueError(f"gene {self.gene_id!r} has no {what}")
            for (s, e), nxt in zip(parts, list(parts[1:]) + [None]):
                if not 0 <= s < e:
                    raise ValueError(f"gene {self.gene_id!r}: empty or negative {what} {s + 1}..{e}")
                if nxt is not None and nxt[0] < e:
                    raise ValueError(f"gene {self.gene_id!r}: overlapping or unsorted {what} parts")
        for s, e in self.cds:
            if not any(a <= s and e <= b for a, b in self.exons):
                raise ValueError(f"gene {self.gene_id!r}: CDS {s + 1}..{e} is not inside an exon")

    @property
    def start(self) -> int:
        """First base of the transcript (0-based)."""
        return self.exons[0][0]

    @property
    def end(self) -> int:
        """One past the last base of the transcript."""
        return self.exons[-1][1]

    @property
    def cds_start(self) -> int:
        return self.cds[0][0]

    @property
    def cds_end(self) -> int:
        return self.cds[-1][1]

    def coding_length(self) -> int:
        return sum(e - s for s, e in self.cds)

    def cds_introns(self) -> tuple[Interval, ...]:
        """Gaps between consecutive coding exons (the introns a CDS-level evaluation scores)."""
        return tuple((a[1], b[0]) for a, b in zip(self.cds, self.cds[1:]))

    def introns(self) -> tuple[Interval, ...]:
        """Gaps between consecutive exons."""
        return tuple((a[1], b[0]) for a, b in zip(self.exons, self.exons[1:]))

    def has_utr(self) -> bool:
        return self.exons != self.cds

    def cds_phases(self) -> tuple[int, ...]:
        """GFF3 phase of each CDS part (in ``cds`` order): bases to skip to the next codon,
        counted from the 5' end of the transcript (the high end on the minus strand), whose
        part has ``cds_start_phase``."""
        order = range(len(self.cds)) if self.strand == 1 else range(len(self.cds) - 1, -1, -1)
        phases = [0] * len(self.cds)
        done = (3 - self.cds_start_phase) % 3
        for i in order:
            phases[i] = (3 - done % 3) % 3
            done += self.cds[i][1] - self.cds[i][0]
        return tuple(phases)

    def shifted(self, offset: int, seqid: str | None = None) -> Transcript:
        """The same transcript with every coordinate plus ``offset`` (and a new ``seqid``)."""
        return replace(
            self, seqid=self.seqid if seqid is None else seqid,
            cds=tuple((s + offset, e + offset) for s, e in self.cds),
            exons=tuple((s + offset, e + offset) for s, e in self.exons),
        )

    def reverse_complemented(self, length: int, seqid: str | None = None) -> Transcript:
        """The transcript on the reverse complement of a sequence of ``length`` bases."""
        def flip(parts: tuple[Interval, ...]) -> tuple[Interval, ...]:
            return tuple((length - e, length - s) for s, e in reversed(parts))

        return replace(
            self, seqid=self.seqid if seqid is None else seqid, strand=-self.strand,
            cds=flip(self.cds), exons=flip(self.exons),
            exon_scores=None if self.exon_scores is None else tuple(reversed(self.exon_scores)),
            cds_scores=None if self.cds_scores is None else tuple(reversed(self.cds_scores)),
        )


def reverse_complement(sequence: str) -> str:
    """Reverse complement of a DNA string (IUPAC codes complemented, case kept)."""
    return sequence.translate(_COMPLEMENT)[::-1]


def check_no_overlap(transcripts: Sequence[Transcript], where: str) -> None:
    """Raise ``ValueError`` naming the first two transcripts (by gene) whose spans overlap."""
    ordered = sorted(transcripts, key=lambda t: (t.start, t.end))
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            raise ValueError(
                f"{where}: overlapping genes {a.gene_id!r} ({a.start + 1}..{a.end}) and "
                f"{b.gene_id!r} ({b.start + 1}..{b.end}); overlapping genes are not supported"
            )


def labels_from_transcripts(length: int, transcripts: Sequence[Transcript], num_classes: int
                            ) -> np.ndarray:
    """Per-position labels (int64, (length,)) of forward-strand transcripts.

    CDS parts are exon (1), gaps between exons inside the CDS span are intron (2). With
    ``num_classes`` 3, UTRs and any intron outside the CDS span are intergenic (0); with 5,
    UTR exon parts are utr5 (3) / utr3 (4) and every gap between exons is intron.
    """
    if num_classes not in (3, 5):
        raise ValueError(f"num_classes must be 3 or 5, got {num_classes}")
    labels = np.full(length, INTERGENIC, dtype=np.int64)
    for t in transcripts:
        if t.strand != 1:
            raise ValueError(f"gene {t.gene_id!r} is on the minus strand: orient it first")
        if t.end > length:
            raise ValueError(f"gene {t.gene_id!r} ends at {t.end}, beyond the sequence ({length})")
        if num_classes == 5:
            labels[t.start:t.end] = INTRON
            for s, e in t.exons:
                labels[s:e] = UTR5
            labels[t.cds_end:t.end][labels[t.cds_end:t.end] == UTR5] = UTR3
        else:
            labels[t.cds_start:t.cds_end] = INTRON
        for s, e in t.cds:
            labels[s:e] = EXON
    return labels


def transcripts_from_labels(
    labels: np.ndarray,
    seqid: str,
    *,
    marginals: np.ndarray | None = None,
    id_prefix: str = "gene",
) -> list[Transcript]:
    """Forward-strand transcripts read off a label array (the inverse of
    :func:`labels_from_transcripts` for well-formed labellings).

    A gene is a maximal stretch without intergenic positions that contains at least one
    exon (1) run; intron runs at its ends are dropped (a transcript starts and ends with an
    exon), so are stretches without any coding run. Coding runs are CDS parts; utr5 / utr3
    runs are exon parts outside the CDS (adjacent UTR and CDS runs form one exon).

    ``marginals`` (T, C), when given, scores each feature with the mean posterior marginal of
    its label over its bases (the gene: of "not intergenic" over its span).
    """
    labels = np.asarray(labels, dtype=np.int64)
    runs = label_runs(labels)
    # the marginal of each base's own label
    own = None if marginals is None else marginals[np.arange(labels.size), labels]
    out: list[Transcript] = []
    group: list[tuple[int, int, int]] = []

    def close() -> None:
        while group and group[0][2] == INTRON:
            group.pop(0)
        while group and group[-1][2] == INTRON:
            group.pop()
        if not any(c == EXON for _, _, c in group):
            group.clear()
            return
        cds = tuple((s, e) for s, e, c in group if c == EXON)
        exons: list[list[int]] = []
        for s, e, c in group:
            if c == INTRON:
                continue
            if exons and exons[-1][1] == s:
                exons[-1][1] = e
            else:
                exons.append([s, e])
        score = exon_scores = cds_scores = None
        if marginals is not None and own is not None:
            lo, hi = group[0][0], group[-1][1]
            score = float(1.0 - marginals[lo:hi, INTERGENIC].mean())
            cds_scores = tuple(float(marginals[s:e, EXON].mean()) for s, e in cds)
            exon_scores = tuple(float(own[s:e].mean()) for s, e in exons)
        out.append(Transcript(
            gene_id=f"{id_prefix}{len(out) + 1}", seqid=seqid, strand=1, cds=cds,
            exons=tuple((s, e) for s, e in exons), score=score,
            exon_scores=exon_scores, cds_scores=cds_scores,
        ))
        group.clear()

    for run in runs:
        if run[2] == INTERGENIC:
            close()
        else:
            group.append(run)
    close()
    return out
