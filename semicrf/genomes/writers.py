"""Write gene models as GFF3 (gene / mRNA / exon / CDS), valid for ``gt gff3validator``,
and sequences as FASTA.

Coordinates are written 1-based and inclusive. The score column holds a feature's
confidence when it has one (``Transcript.score``, ``exon_scores``, ``cds_scores``) and ``.``
otherwise; CDS lines carry their phase. IDs are ``{gene}``, ``{gene}.t1``,
``{gene}.t1.exon{i}`` and ``{gene}.t1.cds`` (one ID shared by the CDS parts, as GFF3 allows).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from semicrf.atomic_io import write_text
from semicrf.genomes.annotation import Transcript

GFF3_HEADER = "##gff-version 3"


def _escape(value: str) -> str:
    """Percent-encode the characters GFF3 reserves in column 9 values (; = & , controls)."""
    return quote(value, safe=" !\"$'()*+-./:<>?@[]^_`{|}~")


def _escape_seqid(value: str) -> str:
    """Percent-encode a seqid: GFF3 allows only ``[a-zA-Z0-9.:^*$@!+_?-|]`` unescaped."""
    return quote(value, safe=".:^*$@!+_?-|")


def _score(value: float | None) -> str:
    return "." if value is None else f"{value:.4g}"


def gff3_lines(transcripts: Sequence[Transcript], seqid: str, *, source: str = "semicrf"
               ) -> list[str]:
    """The feature lines of one sequence's transcripts, sorted by start."""
    lines = []
    sid = _escape_seqid(seqid)
    for t in sorted(transcripts, key=lambda x: (x.start, x.end, x.gene_id)):
        strand = "+" if t.strand == 1 else "-"
        gene, mrna = _escape(t.gene_id), _escape(f"{t.gene_id}.t1")

        def line(kind: str, s: int, e: int, score: float | None, phase: str, attrs: str,
                 strand: str = strand) -> str:
            return "\t".join((sid, source, kind, str(s + 1), str(e), _score(score), strand,
                              phase, attrs))

        lines.append(line("gene", t.start, t.end, t.score, ".", f"ID={gene}"))
        lines.append(line("mRNA", t.start, t.end, t.score, ".", f"ID={mrna};Parent={gene}"))
        for i, (s, e) in enumerate(t.exons):
            score = None if t.exon_scores is None else t.exon_scores[i]
            lines.append(line("exon", s, e, score, ".", f"ID={mrna}.exon{i + 1};Parent={mrna}"))
        for (s, e), phase, i in zip(t.cds, t.cds_phases(), range(len(t.cds))):
            score = None if t.cds_scores is None else t.cds_scores[i]
            lines.append(line("CDS", s, e, score, str(phase), f"ID={mrna}.cds;Parent={mrna}"))
    return lines


def write_gff3(
    path: str | os.PathLike[str],
    transcripts: Mapping[str, Sequence[Transcript]],
    sequence_lengths: Mapping[str, int],
    *,
    source: str = "semicrf",
) -> Path:
    """Write ``transcripts`` (seqid -> list) as one GFF3 file; returns its path.

    Every seqid gets a ``##sequence-region`` line from ``sequence_lengths`` (in that
    mapping's order). Raises ``ValueError`` for duplicate gene IDs, a seqid without a length
    or a gene outside its sequence.
    """
    seen: set[str] = set()
    out = [GFF3_HEADER]
    missing = sorted(set(transcripts) - set(sequence_lengths))
    if missing:
        raise ValueError(f"no sequence length given for seqid {missing[0]!r}")
    for seqid, length in sequence_lengths.items():
        out.append(f"##sequence-region {_escape_seqid(seqid)} 1 {int(length)}")
    for seqid in sequence_lengths:
        for t in transcripts.get(seqid, ()):
            if t.gene_id in seen:
                raise ValueError(f"duplicate gene ID {t.gene_id!r} in the GFF3 output")
            seen.add(t.gene_id)
            if t.end > sequence_lengths[seqid]:
                raise ValueError(f"gene {t.gene_id!r} ends at {t.end}, beyond {seqid!r} "
                                 f"({sequence_lengths[seqid]} bases)")
        out.extend(gff3_lines(transcripts.get(seqid, ()), seqid, source=source))
    return write_text(path, "\n".join(out) + "\n")


def write_fasta(path: str | os.PathLike[str], sequences: Mapping[str, str], width: int = 60) -> Path:
    """Write ``sequences`` (id -> bases) as FASTA with ``width`` bases a line."""
    out = []
    for seqid, seq in sequences.items():
        out.append(f">{seqid}")
        out.extend(seq[i:i + width] for i in range(0, len(seq), width))
    return write_text(path, "\n".join(out) + "\n")
