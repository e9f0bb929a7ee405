"""Share of predicted exon lengths divisible by 4, against the truth's, for a `semicrf run`.

The segments semantics let the learned duration table model pieces of runs: in validation
run 2, 464 of 469 predicted exons of the learned-duration model had lengths divisible by 4.
This reads a results dir's test predictions and the data dir's test truth and prints, per
model, the number of complete predicted exon runs and the share whose length is divisible
by 4 (JSON). Runs touching a sequence end are skipped (their length is cut).

    python benchmarks/length_quantisation.py --data-dir DATA --results-dir RESULTS
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from semicrf.data.storage import load_split
from semicrf.labels import EXON, label_runs
from semicrf.pipeline import load_predictions


def exon_lengths(labels: list[np.ndarray]) -> np.ndarray:
    """Lengths of the exon runs that touch neither end of their sequence."""
    out = []
    for row in labels:
        out += [e - s for s, e, c in label_runs(row) if c == EXON and s > 0 and e < len(row)]
    return np.asarray(out, dtype=np.int64)


def summary(lengths: np.ndarray) -> dict:
    share = float(np.mean(lengths % 4 == 0)) if lengths.size else None
    return {"exons": int(lengths.size), "share_divisible_by_4": share}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--results-dir", required=True)
    args = parser.parse_args()
    truth = [r.labels for r in load_split(args.data_dir, "test")]
    out = {"truth": summary(exon_lengths(truth))}
    for path in sorted(Path(args.results_dir, "predictions").glob("*.npz")):
        out[path.stem] = summary(exon_lengths(load_predictions(path)))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
