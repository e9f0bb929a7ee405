"""The two-axis limit table: the Bayes oracle's boundary F1 per signal x duration sharpness.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/limit_table.py --num-test 20 \\
        --out docs/validation_runs/limit_table.md

For each ground truth (``default``: the generator's defaults; ``sharp``: exon sigma 0.2 and
a narrow unimodal intron of median 65 bp) and each signal, generates the test windows of the
cpu scale (10 kb, data seed 42; the first ``--num-test`` of them) and decodes them (Viterbi)
with the oracle of true and of geometric (same means) durations. Writes a Markdown table of
exact boundary F1, boundary F1 within 2 bp and segment F1, the gain of true over geometric
durations, and the seconds per window.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from semicrf.validation.oracle import SHARP_DURATIONS, limit_curve

TRUTHS = {"default": {}, "sharp": SHARP_DURATIONS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-test", type=int, default=100)
    parser.add_argument("--signals", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seq-length", type=int, default=10000)
    parser.add_argument("--out", default="docs/validation_runs/limit_table.md")
    args = parser.parse_args()
    lines = [
        "| ground truth | signal | boundary F1 true | geometric | gain | tol 2 bp true | "
        "geometric | segment F1 true | geometric | s / window true | geometric |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for truth, overrides in TRUTHS.items():
            for row in limit_curve(overrides, args.signals, args.num_test, args.seq_length,
                                   Path(tmp) / truth):
                t, g = row["true"], row["geometric"]
                lines.append(
                    f"| {truth} | {row['signal']:g} | {t['boundary_f1']:.3f} | "
                    f"{g['boundary_f1']:.3f} | {t['boundary_f1'] - g['boundary_f1']:+.3f} | "
                    f"{t['boundary_f1_tol2']:.3f} | {g['boundary_f1_tol2']:.3f} | "
                    f"{t['segment_f1']:.3f} | {g['segment_f1']:.3f} | "
                    f"{t['timing']['seconds_per_sequence']:.2f} | "
                    f"{g['timing']['seconds_per_sequence']:.2f} |")
                print(lines[-1], flush=True)
    header = (f"# Bayes ceiling: signal x duration sharpness\n\nViterbi decoding by the "
              f"generator's own model (`semicrf.validation.oracle`), {args.num_test} test "
              f"windows of {args.seq_length} bases (data seed 42), one thread.\n\n"
              f"    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/limit_table.py "
              f"--num-test {args.num_test}\n\nGround truths: `default` (the generator's "
              f"defaults), `sharp` (overrides `{json.dumps(TRUTHS['sharp'])}`).\n\n")
    Path(args.out).write_text(header + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
