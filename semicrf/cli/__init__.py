"""The ``semicrf`` command line: ``semicrf generate | run | compare | import | predict | oracle``.

Each subcommand lives in its own module with ``add_arguments(parser)`` and
``main(args) -> int``; this module only wires them together.
"""

from __future__ import annotations

import argparse
import logging
import sys

from semicrf.cli import compare, generate, import_genes, oracle, predict, run

_COMMANDS = {
    "generate": (generate, "Generate a synthetic genome dataset with known ground truth."),
    "run": (run, "Train and evaluate the four models (softmax, linear, semicrf, semicrf_uniform)."),
    "compare": (compare, "Print and save the comparison table of one or more results dirs."),
    "import": (import_genes, "Import real annotations (GenBank, or FASTA + GFF3) as a dataset."),
    "oracle": (oracle, "Decode a generated split with the generator's own model (Bayes ceiling)."),
    "predict": (predict, "Predict genes on FASTA sequences with a trained checkpoint (GFF3)."),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="semicrf", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="Debug logging.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, help_text) in _COMMANDS.items():
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    module, _ = _COMMANDS[args.command]
    try:
        return module.main(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, ImportError) as err:
        print(f"semicrf {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"semicrf {args.command}: interrupted", file=sys.stderr)
        return 130
