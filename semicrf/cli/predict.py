"""``semicrf predict``: argument parsing only; the work is done by :mod:`semicrf.genomes.predict`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``semicrf predict``."""
    add = parser.add_argument
    add("--checkpoint", required=True, help="A checkpoints/{model}_best.pt of `semicrf run`.")
    add("--fasta", required=True, help="Sequences to annotate (FASTA).")
    add("--output", required=True, help="GFF3 file to write (gene / mRNA / exon / CDS).")
    add("--both-strands", action="store_true",
        help="Also decode the reverse complement (minus-strand genes).")
    add("--window", type=int, default=20000, help="Decoding window length.")
    add("--overlap", type=int, default=2000, help="Overlap of consecutive windows.")
    add("--batch-size", type=int, default=4, help="Windows decoded together.")
    add("--device", default="cpu", choices=("cpu", "cuda"), help="Device (default cpu).")


def main(args: argparse.Namespace) -> int:
    import torch

    from semicrf.genomes.predict import load_predictor, predict_genes
    from semicrf.genomes.readers import read_fasta
    from semicrf.genomes.writers import write_gff3

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    sequences = read_fasta(args.fasta)
    predictor = load_predictor(args.checkpoint, args.device)
    genes = predict_genes(predictor, sequences, both_strands=args.both_strands,
                          window=args.window, overlap=args.overlap, batch_size=args.batch_size)
    write_gff3(args.output, genes, {k: len(v) for k, v in sequences.items()})
    print(f"wrote {sum(len(g) for g in genes.values())} genes on {len(sequences)} sequences "
          f"to {args.output}")
    return 0
