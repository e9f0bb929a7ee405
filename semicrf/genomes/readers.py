"""Read annotated sequences: GenBank (Biopython), FASTA (Biopython) and GFF3 (bcbio-gff).

Every reader returns :class:`AnnotatedSequence` objects (or a mapping of them): the
sequence's bases (upper-cased) and one :class:`~semicrf.genomes.annotation.Transcript` per
gene. A gene with several transcripts keeps the one with the longest coding sequence.
Problems are ``ValueError`` with one line naming the file and the record or line.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from semicrf.genomes.annotation import Interval, Transcript, check_no_overlap

log = logging.getLogger(__name__)

#: Letters accepted in a sequence: A C G T, N, and the IUPAC ambiguity codes (read as N).
_CODES = {"A": 0, "C": 1, "G": 2, "T": 3, **{c: 4 for c in "NRYKMSWBDHV"}}
_LOOKUP = np.full(256, 255, dtype=np.uint8)
for _letter, _code in _CODES.items():
    _LOOKUP[ord(_letter)] = _LOOKUP[ord(_letter.lower())] = _code

#: GFF3 feature types read as the UTR parts of a transcript's exons (when it has no exons).
_UTR_TYPES = ("five_prime_UTR", "three_prime_UTR", "UTR", "5'UTR", "3'UTR")


@dataclass(frozen=True)
class AnnotatedSequence:
    """One sequence record: ``seqid``, its ``sequence`` (upper case) and its genes."""

    seqid: str
    sequence: str
    transcripts: tuple[Transcript, ...]

    def __len__(self) -> int:
        return len(self.sequence)


def encode_bases(sequence: str, where: str) -> np.ndarray:
    """uint8 codes (A=0 C=1 G=2 T=3, N and IUPAC ambiguity codes 4) of a DNA string (any
    case). Raises ``ValueError`` naming the first letter outside that alphabet."""
    raw = np.frombuffer(sequence.encode("latin-1", errors="replace"), dtype=np.uint8)
    codes = _LOOKUP[raw]
    bad = np.flatnonzero(codes == 255)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{where}: unknown alphabet: letter {sequence[i]!r} at position {i + 1} "
                         "(expected DNA: A, C, G, T, N or IUPAC ambiguity codes)")
    return codes


def _check_file(path: str | os.PathLike[str], what: str) -> Path:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} file {str(file)!r} not found")
    return file


def _checked_sequence(seqid: str, sequence: str, where: str) -> str:
    if not sequence:
        raise ValueError(f"{where}: record {seqid!r} has an empty sequence")
    encode_bases(sequence, f"{where}: record {seqid!r}")
    return sequence.upper()


def _longest_per_gene(transcripts: Iterable[Transcript]) -> list[Transcript]:
    best: dict[str, Transcript] = {}
    for t in transcripts:
        if t.gene_id not in best or t.coding_length() > best[t.gene_id].coding_length():
            best[t.gene_id] = t
    return sorted(best.values(), key=lambda t: (t.start, t.gene_id))


def _check_inside(t: Transcript, length: int, where: str) -> None:
    if t.end > length:
        raise ValueError(f"{where}: gene {t.gene_id!r} ({t.start + 1}..{t.end}) lies outside the "
                         f"sequence {t.seqid!r} of {length} bases")


# ----------------------------------------------------------------------------- GenBank


def _parts(feature: Any, where: str) -> tuple[tuple[Interval, ...], int]:
    parts = feature.location.parts
    strands = {p.strand for p in parts}
    if len(strands) != 1 or next(iter(strands)) not in (1, -1):
        raise ValueError(f"{where}: a {feature.type} has parts on mixed or unknown strands "
                         f"({feature.location}); trans-splicing is not supported")
    spans = sorted((int(p.start), int(p.end)) for p in parts)
    return tuple(spans), int(next(iter(strands)))


def _genbank_transcripts(record: Any, where: str) -> list[Transcript]:
    by_gene: dict[str, list[Any]] = defaultdict(list)
    mrnas: dict[str, list[Any]] = defaultdict(list)
    for i, feature in enumerate(record.features):
        if feature.type not in ("CDS", "mRNA"):
            continue
        names = feature.qualifiers.get("gene") or feature.qualifiers.get("locus_tag")
        key = names[0] if names else f"{record.id}.cds{i + 1}"
        (by_gene if feature.type == "CDS" else mrnas)[key].append(feature)
    out = []
    for gene, cds_features in by_gene.items():
        for feature in cds_features:
            cds, strand = _parts(feature, f"{where}: record {record.id!r}")
            exons = cds
            for mrna in mrnas.get(gene, ()):
                spans, mrna_strand = _parts(mrna, f"{where}: record {record.id!r}")
                if mrna_strand == strand and all(any(a <= s and e <= b for a, b in spans)
                                                 for s, e in cds):
                    exons = spans
                    break
            out.append(Transcript(gene_id=gene, seqid=record.id, strand=strand, cds=cds,
                                  exons=exons))
    return _longest_per_gene(out)


def read_genbank(path: str | os.PathLike[str]) -> list[AnnotatedSequence]:
    """Every record of a GenBank file with its CDS (and mRNA, for UTRs) features.

    CDS features are grouped into genes by their ``/gene`` (else ``/locus_tag``) qualifier;
    a CDS without either is a gene of its own. An mRNA of the same gene whose parts contain
    every CDS part gives the exons (and so the UTRs).
    """
    from Bio import SeqIO
    from Bio.Seq import UndefinedSequenceError

    file = _check_file(path, "GenBank")
    where = str(file)
    out = []
    try:
        with warnings.catch_warnings(), open(file, encoding="utf-8", errors="replace") as handle:
            warnings.simplefilter("ignore")  # Biopython warns about non-standard LOCUS lines
            records = list(SeqIO.parse(handle, "genbank"))
    except (ValueError, AssertionError, IndexError) as err:
        raise ValueError(f"{where}: not a valid GenBank file: {err}") from None
    if not records:
        raise ValueError(f"{where}: no GenBank record found (is it a GenBank flat file?)")
    for record in records:
        try:
            sequence = str(record.seq)
        except UndefinedSequenceError:
            raise ValueError(f"{where}: record {record.id!r} has no sequence (ORIGIN)") from None
        sequence = _checked_sequence(record.id, sequence, where)
        transcripts = _genbank_transcripts(record, where)
        for t in transcripts:
            _check_inside(t, len(sequence), f"{where}: record {record.id!r}")
        check_no_overlap(transcripts, f"{where}: record {record.id!r}")
        out.append(AnnotatedSequence(record.id, sequence, tuple(transcripts)))
    return out


# ------------------------------------------------------------------------------- FASTA


def read_fasta(path: str | os.PathLike[str]) -> dict[str, str]:
    """The records of a FASTA file: id -> upper-cased sequence, in file order."""
    from Bio import SeqIO

    file = _check_file(path, "FASTA")
    where = str(file)
    with open(file, encoding="utf-8", errors="replace") as handle:
        first = handle.read(1)
        if first != ">":
            raise ValueError(f"{where}: not a FASTA file (the first character is {first!r}, "
                             "expected '>')")
        handle.seek(0)
        out: dict[str, str] = {}
        for record in SeqIO.parse(handle, "fasta"):
            if record.id in out:
                raise ValueError(f"{where}: duplicate record id {record.id!r}")
            out[record.id] = _checked_sequence(record.id, str(record.seq), where)
    return out


# -------------------------------------------------------------------------------- GFF3


def _validate_gff3_lines(file: Path) -> None:
    """One-line errors for what bcbio-gff would reject with an assertion or a traceback."""
    with open(file, encoding="utf-8", errors="replace") as handle:
        for n, line in enumerate(handle, 1):
            line = line.rstrip("\n\r")
            if line.startswith("##FASTA"):
                return
            if not line.strip() or line.startswith("#"):
                continue
            cols = line.split("\t")
            if len(cols) != 9:
                raise ValueError(f"{file}: line {n}: a GFF3 feature line needs 9 tab-separated "
                                 f"columns, found {len(cols)}")
            try:
                start, end = int(cols[3]), int(cols[4])
            except ValueError:
                raise ValueError(f"{file}: line {n}: start and end must be integers, got "
                                 f"{cols[3]!r} and {cols[4]!r}") from None
            if not 1 <= start <= end:
                raise ValueError(f"{file}: line {n}: need 1 <= start <= end, got {start}..{end}")
            if cols[6] not in ("+", "-", ".", "?"):
                raise ValueError(f"{file}: line {n}: strand must be +, -, . or ?, got {cols[6]!r}")


def _span(feature: Any) -> Interval:
    return int(feature.location.start), int(feature.location.end)


def _merge(spans: Iterable[Interval]) -> tuple[Interval, ...]:
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return tuple((s, e) for s, e in merged)


def _gff3_transcripts(feature: Any, gene_id: str, seqid: str, exclude_stop_codon: bool,
                      where: str) -> Iterable[Transcript]:
    children = list(getattr(feature, "sub_features", []))
    cds = [c for c in children if c.type == "CDS"]
    if cds:
        strand = feature.location.strand
        if strand not in (1, -1):
            raise ValueError(f"{where}: feature {gene_id!r} has no strand (+ or -)")
        spans = _merge(_span(c) for c in cds)
        if exclude_stop_codon:
            for stop in (c for c in children if c.type == "stop_codon"):
                s, e = _span(stop)
                spans = tuple(x for x in ((a, min(b, s)) if strand == 1 else (max(a, e), b)
                                          for a, b in spans) if x[0] < x[1])
        exon_spans = [_span(c) for c in children if c.type == "exon"]
        if not exon_spans:
            exon_spans = list(spans) + [_span(c) for c in children if c.type in _UTR_TYPES]
        yield Transcript(gene_id=gene_id, seqid=seqid, strand=int(strand), cds=spans,
                         exons=_merge(exon_spans))
    for child in children:
        if child.type not in ("CDS", "exon", "stop_codon", "start_codon", *_UTR_TYPES):
            yield from _gff3_transcripts(child, gene_id, seqid, exclude_stop_codon, where)


def read_gff3(path: str | os.PathLike[str], *, exclude_stop_codon: bool = False
              ) -> dict[str, list[Transcript]]:
    """Genes of a GFF3 file per seqid (our ``predict`` output, AUGUSTUS ``--gff3=on``, ...).

    A transcript is any feature with CDS children (an mRNA, AUGUSTUS's "transcript", or a
    gene with CDS directly below it); its exons are its ``exon`` children, else its CDS and
    UTR children. The gene is its top-level ancestor. ``exclude_stop_codon`` removes
    ``stop_codon`` bases from the CDS (GFF3 CDS include the stop codon; GenBank training
    files such as AUGUSTUS's exclude it).
    """
    from BCBio import GFF

    file = _check_file(path, "GFF3")
    where = str(file)
    _validate_gff3_lines(file)
    out: dict[str, list[Transcript]] = {}
    try:
        with open(file, encoding="utf-8", errors="replace") as handle:
            for record in GFF.parse(handle):
                seqid = unquote(record.id)  # GFF3 percent-encodes seqids
                transcripts = []
                for i, top in enumerate(record.features):
                    gene_id = top.qualifiers.get("ID", [f"{record.id}.gene{i + 1}"])[0]
                    transcripts.extend(_gff3_transcripts(top, gene_id, seqid,
                                                         exclude_stop_codon, where))
                out.setdefault(seqid, []).extend(transcripts)
    except (AssertionError, KeyError, IndexError) as err:
        raise ValueError(f"{where}: not a valid GFF3 file: {err!r}") from None
    return {seqid: _longest_per_gene(ts) for seqid, ts in out.items()}


def read_fasta_gff3(fasta: str | os.PathLike[str], gff3: str | os.PathLike[str]
                    ) -> list[AnnotatedSequence]:
    """The FASTA records with the genes of a GFF3 file (records without genes included)."""
    sequences = read_fasta(fasta)
    genes = read_gff3(gff3)
    unknown = sorted(set(genes) - set(sequences))
    if unknown:
        raise ValueError(f"{gff3}: seqid {unknown[0]!r} is not a record of {fasta}")
    out = []
    for seqid, sequence in sequences.items():
        transcripts = genes.get(seqid, [])
        for t in transcripts:
            _check_inside(t, len(sequence), str(gff3))
        check_no_overlap(transcripts, f"{gff3}: {seqid}")
        out.append(AnnotatedSequence(seqid, sequence, tuple(transcripts)))
    return out
