"""The encoder pilot of validation run 6: which encoder the cpu scale trains, chosen by the
validation NLL of the gene-model semicrf on the gene pilot's data (seed 7, not the
validation's seed), at the cpu scale's optimiser settings.

    .venv/bin/python benchmarks/encoder_pilot.py --out results/encoder_pilot --epochs 16 \\
        --encoders conv:onehot cnn:onehot bilstm:onehot+kmer --jobs 2

Generates the signal's cpu-scale dataset if missing (96 / 32 / 100 windows of 10 kb), runs
``semicrf run --models semicrf`` once per ``encoder:features`` (``--jobs`` side by side, one
torch thread each; an interrupted run resumes), and writes ``table.md`` / ``table.json``
under ``--out``: best validation NLL (the selection statistic) and its epoch, exact boundary
F1 on the test split at that checkpoint (reported, not used to choose), s / optimiser step.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from semicrf.validation.experiment import SCALES


def _dataset(out: Path, signal: float, seed: int) -> Path:
    scale = SCALES["cpu"]
    path = out / f"data_signal{signal}"
    if not (path / "meta.json").exists():
        subprocess.run([sys.executable, "-m", "semicrf", "generate", "--output-dir", str(path),
                        "--num-train", str(scale.num_train), "--num-val", str(scale.num_val),
                        "--num-test", str(scale.num_test), "--seq-length",
                        str(scale.spec_seq_length), "--seed", str(seed), "--signal", str(signal),
                        "--quiet"], check=True)
    return path


def _command(data: Path, results: Path, encoder: str, features: str, epochs: int) -> list[str]:
    run = SCALES["cpu"].run
    flags = ["--encoder", encoder, "--features", features, "--max-duration",
             str(run.max_duration), "--hidden-dim", str(run.hidden_dim), "--num-layers",
             str(run.num_layers), "--batch-size", str(run.batch_size), "--lr", str(run.lr),
             "--duration-form", run.duration_form, "--device", "cpu", "--threads", "1",
             "--epochs", str(epochs), "--structure", "gene", "--models", "semicrf"]
    resume = ["--resume"] if (results / "config.json").exists() else []
    return [sys.executable, "-m", "semicrf", "run", "--data-dir", str(data), "--output-dir",
            str(results), *flags, *resume, "--quiet"]


def _row(name: str, entry: dict, steps: int) -> dict:
    history = entry["history"]
    best = min(history, key=lambda h: h["val_loss"])
    return {"encoder": name, "best_val_nll": best["val_loss"], "best_epoch": best["epoch"],
            "test_boundary_f1": entry["metrics"]["boundary_f1"], "test_nll": entry["test_loss"],
            "s_per_step": entry["train_time_s"] / steps}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/encoder_pilot"))
    parser.add_argument("--data-root", type=Path, default=Path("results/gene_pilot"),
                        help="where the pilot's dataset lives (shared with gene_pilot.py)")
    parser.add_argument("--signal", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--encoders", nargs="+",
                        default=["conv:onehot", "cnn:onehot", "bilstm:onehot+kmer"])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if any(":" not in e for e in args.encoders):
        parser.error("each --encoders entry is ENCODER:FEATURES, e.g. conv:onehot")
    data = _dataset(args.data_root, args.signal, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = {e: args.out / e.replace(":", "_").replace("+", "_") for e in args.encoders}
    pending = list(runs.items())
    active: list[tuple[subprocess.Popen, str]] = []
    while pending or active:
        while pending and len(active) < args.jobs:
            name, results = pending.pop(0)
            encoder, features = name.split(":")
            active.append((subprocess.Popen(_command(data, results, encoder, features,
                                                     args.epochs)), name))
        process, name = active.pop(0)
        if process.wait() != 0:
            raise SystemExit(f"encoder pilot: the run of {name} failed")
    steps = args.epochs * math.ceil(SCALES["cpu"].num_train / SCALES["cpu"].run.batch_size)
    rows = [_row(name, json.loads((path / "metrics.json").read_text())["models"]["semicrf"],
                 steps) for name, path in runs.items()]
    rows.sort(key=lambda r: r["best_val_nll"])
    lines = [f"Encoder pilot: gene-model semicrf, cpu-scale data (seed {args.seed}, signal "
             f"{args.signal}), {args.epochs} epochs = {steps} steps, "
             f"`python benchmarks/encoder_pilot.py --epochs {args.epochs} --encoders "
             f"{' '.join(args.encoders)}`", "",
             "| encoder:features | best val NLL | epoch | test exact boundary F1 | test NLL | s / step |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['encoder']} | {r['best_val_nll']:.5f} | {r['best_epoch']} | "
              f"{r['test_boundary_f1']:.3f} | {r['test_nll']:.5f} | {r['s_per_step']:.2f} |"
              for r in rows]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    (args.out / "table.json").write_text(json.dumps(rows, indent=1))
    sys.stdout.write("\n".join(lines) + "\n")
    return {"rows": rows}


if __name__ == "__main__":
    main()
