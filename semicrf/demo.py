"""``make demo``: a small benchmark end to end on CPU (generate -> run -> compare).

The one home of the demo's settings (the Makefile and the demo test use them). Lengths are
shrunk (exon median 60, intron 300, intergenic 600 bp in 2 kb sequences) and the signal is
the strongest (1.0). The encoder is one wide linear convolution over one-hot bases (``conv``:
its model class holds the generator's own site and codon scores) and the structured models
decode the gene grammar (the default ``--structure gene``), so within 96 optimisation steps
(12 batches of 4, 8 epochs) the CRF models place exon edges exactly and the four models
differ visibly; the comparison ends with the Bayes ceiling (``semicrf oracle``: the
generator's own model decoded exactly) and its second row is each model's exact boundary F1
as a fraction of the ceiling's (``boundary_f1_of_ceiling``). It is a smoke test of the
pipeline, not a result: the claims are decided by ``pytest -m validation``.

    python -m semicrf.demo [--data-dir data/demo] [--output-dir results/demo]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from semicrf.cli import main as cli_main

GROUND_TRUTH = Path(__file__).with_name("demo_truth.json")
GENERATE_ARGS = ("--num-train", "48", "--num-val", "8", "--num-test", "16",
                 "--seq-length", "2000", "--seed", "42", "--config", str(GROUND_TRUTH))
RUN_ARGS = ("--encoder", "conv", "--features", "onehot", "--max-duration", "100",
            "--hidden-dim", "32", "--num-layers", "1", "--batch-size", "4", "--epochs", "8",
            "--lr", "0.01", "--device", "cpu", "--log-every", "2", "--overwrite")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data/demo")
    parser.add_argument("--output-dir", default="results/demo")
    args = parser.parse_args(argv)
    steps = (
        ["generate", "--output-dir", args.data_dir, *GENERATE_ARGS],
        ["run", "--data-dir", args.data_dir, "--output-dir", args.output_dir, *RUN_ARGS],
        # the Bayes ceiling: the generator's own model decoded exactly on the same test split,
        # shown by compare as the column "oracle"
        ["oracle", "--data-dir", args.data_dir, "--output", f"{args.output_dir}/oracle.json"],
        ["compare", "--results-dir", args.output_dir],
    )
    for step in steps:
        code = cli_main(step)
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
