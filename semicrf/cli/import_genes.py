"""``semicrf import``: argument parsing only; the work is done by :mod:`semicrf.genomes.importer`."""

from __future__ import annotations

import argparse


def _fractions(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three fractions like 0.7,0.1,0.2, got {text!r}"
                                         ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``semicrf import``."""
    add = parser.add_argument
    add("--genbank", default=None, metavar="FILE", help="GenBank file (CDS, optional mRNA).")
    add("--fasta", default=None, metavar="FA", help="FASTA file (with --gff3).")
    add("--gff3", default=None, metavar="GFF", help="GFF3 annotation of the FASTA records.")
    add("--output-dir", required=True, help="Output directory (created if missing).")
    add("--num-classes", type=int, choices=(3, 5), default=3,
        help="3: intergenic/exon(CDS)/intron; 5: also 5'UTR and 3'UTR (needs annotated UTRs).")
    add("--seq-length", type=int, default=10000, help="Window length T.")
    add("--split", type=_fractions, default=(0.7, 0.1, 0.2),
        help="Train,val,test fractions of the loci (default 0.7,0.1,0.2).")
    add("--seed", type=int, default=42, help="Seed of the split and the window offsets.")
    add("--max-flank", type=int, default=None,
        help="Cap on each flank of a locus (default: halfway to the neighbouring gene).")


def main(args: argparse.Namespace) -> int:
    from semicrf.data import read_meta
    from semicrf.genomes.importer import import_dataset

    out = import_dataset(
        args.output_dir, genbank=args.genbank, fasta=args.fasta, gff3=args.gff3,
        num_classes=args.num_classes, seq_length=args.seq_length, split=args.split,
        seed=args.seed, max_flank=args.max_flank,
    )
    meta = read_meta(out)
    counts = ", ".join(f"{s} {len(v['loci'])} loci / {v['num_sequences']} windows"
                       for s, v in meta["splits"].items())
    print(f"imported {meta['source']['num_loci']} loci into {out}: {counts}")
    return 0
