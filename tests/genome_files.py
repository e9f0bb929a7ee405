"""Tiny annotated genomes written by the tests themselves (GenBank via Biopython, FASTA and
GFF3 as text). Coordinates in the specs are 0-based, end-exclusive."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class GeneSpec:
    """A gene: CDS parts and (optionally) the exons of its mRNA, on ``strand``."""

    name: str
    strand: int
    cds: list[tuple[int, int]]
    exons: list[tuple[int, int]] | None = None


def random_dna(length: int, rng: np.random.Generator) -> str:
    return "".join(rng.choice(list("ACGT"), size=length))


def write_genbank(path: Path, records: Sequence[tuple[str, str, Sequence[GeneSpec]]]) -> Path:
    """Write ``(record id, sequence, genes)`` records as a GenBank file."""
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import CompoundLocation, SeqFeature, SimpleLocation
    from Bio.SeqRecord import SeqRecord

    def location(parts: list[tuple[int, int]], strand: int):
        locs = [SimpleLocation(s, e, strand=strand) for s, e in parts]
        if strand == -1:
            locs = locs[::-1]
        return locs[0] if len(locs) == 1 else CompoundLocation(locs)

    out = []
    for rid, seq, genes in records:
        rec = SeqRecord(Seq(seq), id=rid, name=rid, annotations={"molecule_type": "DNA"})
        for g in genes:
            if g.exons is not None:
                rec.features.append(SeqFeature(location(g.exons, g.strand), type="mRNA",
                                               qualifiers={"gene": [g.name]}))
            rec.features.append(SeqFeature(location(g.cds, g.strand), type="CDS",
                                           qualifiers={"gene": [g.name]}))
        out.append(rec)
    SeqIO.write(out, path, "genbank")
    return path


def write_fasta_gff3(fasta: Path, gff3: Path,
                     records: Sequence[tuple[str, str, Sequence[GeneSpec]]]) -> None:
    """The same records as a FASTA file plus a GFF3 file (gene / mRNA / exon / CDS)."""
    fasta.write_text("".join(f">{rid}\n{seq}\n" for rid, seq, _ in records))
    lines = ["##gff-version 3"]
    for rid, _, genes in records:
        for g in genes:
            s = "+" if g.strand == 1 else "-"
            exons = g.exons or g.cds
            lo, hi = exons[0][0] + 1, exons[-1][1]
            lines.append(f"{rid}\tt\tgene\t{lo}\t{hi}\t.\t{s}\t.\tID={g.name}")
            lines.append(f"{rid}\tt\tmRNA\t{lo}\t{hi}\t.\t{s}\t.\tID={g.name}.m;Parent={g.name}")
            for a, b in exons:
                lines.append(f"{rid}\tt\texon\t{a + 1}\t{b}\t.\t{s}\t.\tParent={g.name}.m")
            for a, b in g.cds:
                lines.append(f"{rid}\tt\tCDS\t{a + 1}\t{b}\t.\t{s}\t0\tID={g.name}.c;Parent={g.name}.m")
    gff3.write_text("\n".join(lines) + "\n")


def toy_records(rng: np.random.Generator, n: int = 12, utr: bool = False
                ) -> list[tuple[str, str, list[GeneSpec]]]:
    """``n`` loci alternating plus and minus strand, each one gene of 2-3 exons with flanks
    of random length (and 5'/3' UTRs with ``utr``)."""
    records = []
    for i in range(n):
        flank5, flank3 = int(rng.integers(50, 400)), int(rng.integers(50, 400))
        parts, at = [], flank5 + (30 if utr else 0)
        for _ in range(int(rng.integers(2, 4))):
            length = int(rng.integers(40, 120))
            parts.append((at, at + length))
            at += length + int(rng.integers(30, 200))
        end = parts[-1][1] + (40 if utr else 0)
        total = end + flank3
        exons = None
        if utr:
            exons = [(parts[0][0] - 30, parts[0][1]), *parts[1:-1], (parts[-1][0], end)]
        strand = 1 if i % 2 == 0 else -1
        if strand == -1:  # the same gene drawn on the minus strand
            parts = [(total - e, total - s) for s, e in reversed(parts)]
            exons = None if exons is None else [(total - e, total - s) for s, e in reversed(exons)]
        records.append((f"loc{i:02d}", random_dna(total, rng),
                        [GeneSpec(f"g{i}", strand, parts, exons)]))
    return records
