"""Real annotations into the dataset format of ``semicrf generate`` (``semicrf import``).

1. **Loci.** Each gene becomes one locus: the gene plus its flanks, which reach halfway to
   the neighbouring genes of the same record (or to the record's ends), at most
   ``max_flank`` bases on each side when given. A locus on the minus strand is
   reverse-complemented, so every gene reads 5' to 3' on the forward strand.
2. **Split by locus.** Loci sorted by name are permuted with ``numpy.random.default_rng(seed)``
   and cut into train / val / test by the ``split`` fractions: a locus (and its sequence)
   belongs to exactly one split.
3. **Windows.** The loci of a split, in that random order, are laid end to end into one
   stream, which is cut into windows of ``seq_length`` bases: the first starts at a random
   offset in ``[0, seq_length)`` and each next one after a random gap of
   ``0 .. seq_length // 8`` bases (one ``default_rng(SeedSequence(seed, spawn_key=(k,)))``
   per split k), so window edges fall at positions unrelated to the genes (no boundary
   position within a window is favoured). A window's first / last run is flagged censored
   (``first_segment_censored`` / ``last_segment_censored``) when the window edge cuts it or
   it is a locus flank at the stream's ends (a flank is itself cut from the genome).
   Windows whose labels no frame assignment of the gene grammar can produce (real genes end
   after whole codons) are listed per split as ``gene_grammar_misfits`` and counted in the
   log: ``--structure gene`` leaves them out of its loss.

Besides ``meta.json`` and the token files, the directory holds ``{split}.loci.fa`` and
``{split}.loci.gff3``: the oriented loci of each split and their reference genes, the input
of ``semicrf predict`` and of other gene finders (``docs/real_genomes.md``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from semicrf.data.storage import (
    ALPHABET,
    FORMAT_NAME,
    FORMAT_VERSION,
    SPLITS,
    prepare_output_dir,
    remove_meta,
    tokens_file,
    write_meta,
    write_tokens,
)
from semicrf.gene_grammar import GeneGrammar
from semicrf.genomes.annotation import (
    Transcript,
    labels_from_transcripts,
    reverse_complement,
)
from semicrf.genomes.readers import (
    AnnotatedSequence,
    encode_bases,
    read_fasta_gff3,
    read_genbank,
)
from semicrf.genomes.writers import write_fasta, write_gff3
from semicrf.labels import class_names, label_runs

log = logging.getLogger(__name__)

DEFAULT_SPLIT = (0.7, 0.1, 0.2)
#: Largest random gap between consecutive windows, as a fraction of the window length.
GAP_FRACTION = 8


@dataclass(frozen=True)
class Locus:
    """One gene with its flanks, oriented 5' to 3' on the forward strand.

    ``seqid``/``start``/``end``/``strand``: where it lies on the input record (0-based,
    end-exclusive; strand of its gene). ``sequence`` and ``transcript`` are oriented (local
    coordinates); the transcript's gene ID is ``{locus name}.{gene ID in the file}``.
    """

    name: str
    seqid: str
    start: int
    end: int
    strand: int
    sequence: str
    transcript: Transcript

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seqid": self.seqid, "start": self.start, "end": self.end,
                "strand": "+" if self.strand == 1 else "-", "gene": self.transcript.gene_id}


def extract_loci(records: Sequence[AnnotatedSequence], max_flank: int | None = None
                 ) -> list[Locus]:
    """One oriented :class:`Locus` per gene (see the module docstring)."""
    if max_flank is not None and max_flank < 0:
        raise ValueError(f"max_flank must be >= 0, got {max_flank}")
    loci = []
    for rec in records:
        genes = sorted(rec.transcripts, key=lambda t: t.start)
        if not genes:
            log.info("record %s has no gene: skipped", rec.seqid)
            continue
        for i, t in enumerate(genes):
            lo = 0 if i == 0 else (genes[i - 1].end + t.start) // 2
            hi = len(rec) if i == len(genes) - 1 else (t.end + genes[i + 1].start) // 2
            if max_flank is not None:
                lo, hi = max(lo, t.start - max_flank), min(hi, t.end + max_flank)
            whole = lo == 0 and hi == len(rec)
            name = rec.seqid if whole and len(genes) == 1 else f"{rec.seqid}:{lo + 1}-{hi}"
            seq = rec.sequence[lo:hi]
            # gene IDs are only unique within their file; the locus name makes them unique
            local = replace(t.shifted(-lo, seqid=name), gene_id=f"{name}.{t.gene_id}")
            if t.strand == -1:
                seq, local = reverse_complement(seq), local.reverse_complemented(hi - lo)
            loci.append(Locus(name, rec.seqid, lo, hi, t.strand, seq, local))
    names = [locus.name for locus in loci]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"two loci are named {dup!r}: record ids must be unique")
    return loci


def split_loci(loci: Sequence[Locus], fractions: Sequence[float], seed: int
               ) -> dict[str, list[Locus]]:
    """Deterministic split by locus: names sorted, permuted by ``default_rng(seed)``, cut
    into ``len(SPLITS)`` parts by ``fractions`` (each part gets at least one locus)."""
    fr = np.asarray(fractions, dtype=np.float64)
    if fr.shape != (len(SPLITS),) or (fr < 0).any() or not np.isclose(fr.sum(), 1.0):
        raise ValueError(f"split must be {len(SPLITS)} non-negative fractions summing to 1, "
                         f"got {list(fractions)}")
    n = len(loci)
    if n < len(SPLITS):
        raise ValueError(f"need at least {len(SPLITS)} loci (one per split), found {n}")
    ordered = sorted(loci, key=lambda x: x.name)
    perm = np.random.default_rng(seed).permutation(n)
    cuts = np.round(np.cumsum(fr) * n).astype(int)
    sizes = np.diff(np.concatenate([[0], cuts]))
    if (sizes < 1).any():
        raise ValueError(f"split {list(fractions)} of {n} loci leaves a split empty "
                         f"({dict(zip(SPLITS, sizes.tolist()))})")
    out, at = {}, 0
    for split, size in zip(SPLITS, sizes):
        out[split] = [ordered[i] for i in perm[at:at + size]]
        at += size
    return out


def window_starts(stream_length: int, seq_length: int, rng: np.random.Generator) -> np.ndarray:
    """Starts of the windows cut from a stream: a random first offset in ``[0, seq_length)``,
    then a random gap of ``0 .. seq_length // GAP_FRACTION`` between windows."""
    starts = []
    at = int(rng.integers(0, seq_length))
    if stream_length - at < seq_length:  # short stream: the offset must leave one window
        at = int(rng.integers(0, stream_length - seq_length + 1))
    while at + seq_length <= stream_length:
        starts.append(at)
        at += seq_length + int(rng.integers(0, seq_length // GAP_FRACTION + 1))
    return np.asarray(starts, dtype=np.int64)


def window_segments(labels: np.ndarray, start: int, seq_length: int
                    ) -> tuple[list[list[int]], bool, bool, int]:
    """Runs of ``labels[start : start + seq_length]`` in window coordinates, whether the
    first / last run is censored (cut by the window, or touching a stream end), and the
    length of the last run in the stream."""
    end = start + seq_length
    segments = [list(s) for s in label_runs(labels[start:end])]
    first_cut = start == 0 or labels[start - 1] == labels[start]
    last_cut = end == labels.size or labels[end] == labels[end - 1]
    last_label, run_end = labels[end - 1], end
    while run_end < labels.size and labels[run_end] == last_label:
        run_end += 1
    last_run_length = run_end - (start + segments[-1][0])
    return segments, bool(first_cut), bool(last_cut), int(last_run_length)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_dataset(
    output_dir: str | os.PathLike[str],
    *,
    genbank: str | os.PathLike[str] | None = None,
    fasta: str | os.PathLike[str] | None = None,
    gff3: str | os.PathLike[str] | None = None,
    num_classes: int = 3,
    seq_length: int = 10000,
    split: Sequence[float] = DEFAULT_SPLIT,
    seed: int = 42,
    max_flank: int | None = None,
) -> Path:
    """Import ``genbank`` (or ``fasta`` + ``gff3``) into ``output_dir``; returns its path.

    Labels: intergenic (0) / exon = CDS (1) / intron (2), and with ``num_classes`` 5 the UTRs
    (3, 4) where the annotation has them. Raises ``ValueError`` for bad arguments or input
    (malformed file, unknown alphabet, overlapping genes, genes outside their sequence, a
    split too small for ``seq_length``), ``FileNotFoundError`` for a missing file.
    """
    if (genbank is None) == (fasta is None and gff3 is None):
        raise ValueError("give either --genbank FILE or both --fasta FA and --gff3 GFF")
    if genbank is None and (fasta is None or gff3 is None):
        raise ValueError("--fasta and --gff3 go together")
    names = class_names(num_classes)
    if num_classes not in (3, 5):
        raise ValueError(f"num_classes must be 3 or 5, got {num_classes}")
    if isinstance(seq_length, bool) or int(seq_length) != seq_length or seq_length < 2:
        raise ValueError(f"seq_length must be an integer >= 2, got {seq_length!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    seq_length, seed = int(seq_length), int(seed)
    records = read_genbank(genbank) if genbank is not None else read_fasta_gff3(fasta, gff3)
    loci = extract_loci(records, max_flank)
    if num_classes == 5 and not any(locus.transcript.has_utr() for locus in loci):
        raise ValueError("--num-classes 5 needs UTRs, but no gene has an annotated UTR "
                         "(use --num-classes 3)")
    parts = split_loci(loci, split, seed)
    for name, members in parts.items():
        total = sum(len(x.sequence) for x in members)
        if total < seq_length:
            raise ValueError(f"the {name} split has {len(members)} loci with {total} bases, "
                             f"fewer than one window of --seq-length {seq_length}")
    out = prepare_output_dir(output_dir)
    remove_meta(out)
    grammar = GeneGrammar(num_classes, whole_codons=True)

    import semicrf  # late import: the package root imports the CRF layer

    splits_meta: dict[str, Any] = {}
    for k, split_name in enumerate(SPLITS):
        members = parts[split_name]
        tokens = np.concatenate([encode_bases(x.sequence, x.name) for x in members])
        labels = np.concatenate([labels_from_transcripts(len(x.sequence), [x.transcript],
                                                         num_classes) for x in members])
        offsets = np.cumsum([0] + [len(x.sequence) for x in members])
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(k,)))
        starts = window_starts(tokens.size, seq_length, rng)
        segs, first, last, last_len, misfits = [], [], [], [], []
        for i, s in enumerate(starts.tolist()):
            w = window_segments(labels, s, seq_length)
            segs.append(w[0])
            first.append(w[1])
            last.append(w[2])
            last_len.append(w[3])
            if not grammar.fits(w[0], anywhere=True):
                misfits.append(i)
        write_tokens(out, split_name, np.stack([tokens[s:s + seq_length] for s in starts]))
        write_fasta(out / f"{split_name}.loci.fa", {x.name: x.sequence for x in members})
        write_gff3(out / f"{split_name}.loci.gff3", {x.name: [x.transcript] for x in members},
                   {x.name: len(x.sequence) for x in members}, source="reference")
        splits_meta[split_name] = {
            "num_sequences": int(starts.size),
            "tokens_file": tokens_file(split_name),
            "segments": segs,
            "first_segment_censored": first,
            "last_segment_censored": last,
            "last_segment_drawn_length": last_len,
            "window_starts": starts.tolist(),
            "loci": [dict(x.to_dict(), stream_start=int(o)) for x, o in zip(members, offsets)],
            "gene_grammar_misfits": misfits,
        }
        if misfits:
            log.warning("%s: %d of %d windows do not fit the gene grammar (a CDS that is not "
                        "whole codons, a frame shift): --structure gene leaves them out",
                        split_name, len(misfits), starts.size)
        log.info("%s: %d loci, %d bases, %d windows of %d", split_name, len(members),
                 tokens.size, starts.size, seq_length)
    inputs = [p for p in (genbank, fasta, gff3) if p is not None]
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "semicrf_version": semicrf.__version__,
        "seed": seed,
        "seeding": "loci sorted by name are permuted by numpy.random.default_rng(seed); the "
        "windows of split k (train 0, val 1, test 2) use default_rng(SeedSequence(seed, "
        "spawn_key=(k,)))",
        "num_classes": num_classes,
        "class_names": list(names),
        "seq_length": seq_length,
        "alphabet": ALPHABET,
        "source": {
            "kind": "genbank" if genbank is not None else "fasta+gff3",
            "files": [{"path": os.fspath(p), "sha256": file_sha256(p)} for p in inputs],
            "split": [float(x) for x in split],
            "max_flank": max_flank,
            "num_loci": len(loci),
            "minus_strand_loci": sum(x.strand == -1 for x in loci),
        },
        "splits": splits_meta,
    }
    write_meta(out, meta)
    return out
