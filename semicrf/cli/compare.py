"""``semicrf compare``: argument parsing only; the work is done by library functions."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``semicrf compare``."""
    parser.add_argument(
        "--results-dir",
        nargs="+",
        required=True,
        metavar="DIR",
        help="One or more results directories (each with metrics.json; an oracle*.json beside "
        "it adds the Bayes ceiling as a column), shown side by side.",
    )
    parser.add_argument(
        "--output",
        default=None,
        metavar="DIR",
        help="Where to write comparison.csv and comparison.md "
        "(default: the results dir, or the common parent of several).",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="Show every scalar metric, not only the headline ones.",
    )


def main(args: argparse.Namespace) -> int:
    """Print the comparison table and write it as CSV and Markdown."""
    from semicrf.report import compare, format_table

    table = compare(args.results_dir, args.output, metrics="all" if args.all else None)
    print(format_table(table).to_string())
    print(f"\nWrote comparison.csv and comparison.md to {table.attrs['output_dir']}")
    return 0
