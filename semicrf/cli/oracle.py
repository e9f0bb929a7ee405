"""``semicrf oracle``: argument parsing only; the work is done by :mod:`semicrf.validation.oracle`."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``semicrf oracle``."""
    from semicrf.validation.oracle import DECODERS, DURATION_MODELS

    add = parser.add_argument
    add("--data-dir", required=True, metavar="DIR", help="A dataset `semicrf generate` wrote.")
    add("--split", default="test", choices=("train", "val", "test"), help="Split to decode.")
    add("--durations", default="true", choices=DURATION_MODELS,
        help="Duration model: the generator's pmfs, geometric with the same means, or flat.")
    add("--decoder", default="viterbi", choices=DECODERS,
        help="Best labelling (viterbi) or the most probable label per position (posterior).")
    add("--max-duration", type=int, default=1000,
        help="K of the duration metrics (the models' K; default 1000).")
    add("--output", default=None, metavar="FILE.json",
        help="Where to write the metrics (default DIR/oracle_{durations}_{decoder}.json).")


def main(args: argparse.Namespace) -> int:
    """Decode the split with the generator's own model and write its metrics."""
    from pathlib import Path

    from tqdm import tqdm

    from semicrf.validation.oracle import evaluate_split, load_generator

    name = f"oracle_{args.durations}_{args.decoder}.json"
    output = args.output or str(Path(args.data_dir) / name)
    meta = load_generator(args.data_dir)[1]
    total = meta.get("splits", {}).get(args.split, {}).get("num_sequences")
    with tqdm(total=total, unit="seq", desc=f"oracle {args.durations} {args.decoder}") as bar:
        result = evaluate_split(args.data_dir, args.split, args.durations, args.decoder,
                                args.max_duration, output, progress=bar.update)
    print(f"boundary_f1 {result['boundary_f1']:.3f}  segment_f1 {result['segment_f1']:.3f}  "
          f"({result['timing']['seconds_per_sequence']:.2f} s per sequence); wrote {output}")
    return 0
