"""``semicrf generate``: argument parsing only; the work is done by library functions."""

from __future__ import annotations

import argparse
import logging
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``semicrf generate``."""
    parser.add_argument("--output-dir", required=True,
                        help="Output directory (created if missing).")
    parser.add_argument("--num-train", type=int, default=1000, help="Training sequences.")
    parser.add_argument("--num-val", type=int, default=200, help="Validation sequences.")
    parser.add_argument("--num-test", type=int, default=200, help="Test sequences.")
    parser.add_argument("--seq-length", type=int, default=20000,
                        help="Length T of every sequence (the last segment is cut at T).")
    parser.add_argument("--num-classes", type=int, choices=(3, 5), default=3,
                        help="3: intergenic/exon/intron; 5: also 5'UTR and 3'UTR.")
    parser.add_argument("--seed", type=int, default=42, help="Random seed (>= 0).")
    parser.add_argument(
        "--config", default=None, metavar="FILE",
        help="JSON object overriding generator parameters (durations, bound_mode, "
             "exons_per_gene, signal, splice_motifs, composition, sites); see docs/data.md.",
    )
    parser.add_argument(
        "--signal", type=float, default=None,
        help="Strength in [0, 1] of class-specific composition and site profiles "
             "(0: only the GT...AG motifs; default 0.5, human-like). Overrides --config.",
    )
    parser.add_argument("--quiet", action="store_true", help="No progress bar, warnings and errors only.")


def main(args: argparse.Namespace) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from semicrf.data import generate_dataset, read_overrides_file
    from semicrf.train import progress_bars

    if args.quiet:
        logging.getLogger().setLevel(logging.WARNING)
    overrides = read_overrides_file(args.config)
    total = args.num_train + args.num_val + args.num_test
    t0 = time.perf_counter()
    bars = progress_bars(args.quiet)
    with logging_redirect_tqdm(), bars(total=max(total, 0), unit="seq", desc="generate") as bar:
        out = generate_dataset(
            args.output_dir,
            num_train=args.num_train,
            num_val=args.num_val,
            num_test=args.num_test,
            seq_length=args.seq_length,
            num_classes=args.num_classes,
            seed=args.seed,
            config=overrides,
            signal=args.signal,
            progress=bar.update,
        )
    print(f"wrote {total} sequences x {args.seq_length} bases to {out} "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0
