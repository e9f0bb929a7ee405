"""The gene-model pilot: linear and semicrf with ``--structure gene`` against ``plain``, at the
validation's cpu-scale data and settings (another data seed), per signal.

    .venv/bin/python benchmarks/gene_pilot.py --out results/gene_pilot --signals 1.0 0.5 \\
        --epochs 8 [--seed 7]

Generates each signal's dataset (cpu scale: 96 / 32 / 100 windows of 10 kb), runs
``semicrf run`` once per structure (models linear and semicrf, the cpu scale's encoder,
features and optimiser, ``--epochs`` epochs), resumes whatever finished before an
interruption, and writes ``table.md`` and ``table.json`` under ``--out``: exact and within-2-bp
boundary F1, exon sensitivity / specificity, test NLL and seconds per optimiser step.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from semicrf.validation.experiment import SCALES

MODELS = ("linear", "semicrf")
STRUCTURES = ("plain", "gene")


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True)


def _dataset(out: Path, signal: float, seed: int) -> Path:
    scale = SCALES["cpu"]
    path = out / f"data_signal{signal}"
    if not (path / "meta.json").exists():
        _run([sys.executable, "-m", "semicrf", "generate", "--output-dir", str(path),
              "--num-train", str(scale.num_train), "--num-val", str(scale.num_val),
              "--num-test", str(scale.num_test), "--seq-length", str(scale.spec_seq_length),
              "--seed", str(seed), "--signal", str(signal), "--quiet"])
    return path


def _train(data: Path, out: Path, structure: str, epochs: int) -> Path:
    run = SCALES["cpu"].run
    results = out / f"{data.name}_{structure}"
    flags = ["--encoder", run.encoder, "--features", run.features, "--max-duration",
             str(run.max_duration), "--hidden-dim", str(run.hidden_dim), "--num-layers",
             str(run.num_layers), "--batch-size", str(run.batch_size), "--lr", str(run.lr),
             "--duration-form", run.duration_form, "--device", "cpu", "--threads", "1",
             "--epochs", str(epochs), "--structure", structure, "--models", *MODELS]
    resume = ["--resume"] if (results / "config.json").exists() else []
    _run([sys.executable, "-m", "semicrf", "run", "--data-dir", str(data), "--output-dir",
          str(results), *flags, *resume, "--quiet"])
    return results


def _row(entry: dict, steps: int) -> dict:
    m = entry["metrics"]
    return {
        "boundary_f1": m["boundary_f1"], "boundary_f1_tol2": m["boundary_f1_tol2"],
        "exon_sn": m.get("exon_sensitivity"), "exon_sp": m.get("exon_specificity"),
        "test_nll": entry["test_loss"], "s_per_step": entry["train_time_s"] / steps,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("results/gene_pilot"))
    parser.add_argument("--signals", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    scale = SCALES["cpu"]
    steps = args.epochs * math.ceil(scale.num_train / scale.run.batch_size)
    table: dict = {}
    for signal in args.signals:
        data = _dataset(args.out, signal, args.seed)
        for structure in STRUCTURES:
            results = _train(data, args.out, structure, args.epochs)
            models = json.loads((results / "metrics.json").read_text())["models"]
            for model in MODELS:
                table[f"{signal}/{model}/{structure}"] = _row(models[model], steps)
    lines = [f"Gene-model pilot: cpu-scale data (seed {args.seed}), {args.epochs} epochs = "
             f"{steps} steps, `python benchmarks/gene_pilot.py --epochs {args.epochs} "
             f"--signals {' '.join(map(str, args.signals))}`", "",
             "| signal | model | structure | exact boundary F1 | within 2 bp | exon Sn | exon Sp "
             "| test NLL | s / step |", "|---:|---|---|---:|---:|---:|---:|---:|---:|"]

    def fmt(x: float | None, digits: int = 3) -> str:
        return "n/a" if x is None else f"{x:.{digits}f}"

    for key, row in table.items():
        signal, model, structure = key.split("/")
        lines.append(f"| {signal} | {model} | {structure} | {fmt(row['boundary_f1'])} | "
                     f"{fmt(row['boundary_f1_tol2'])} | {fmt(row['exon_sn'])} | "
                     f"{fmt(row['exon_sp'])} | {fmt(row['test_nll'], 4)} | "
                     f"{fmt(row['s_per_step'], 2)} |")
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    (args.out / "table.json").write_text(json.dumps(table, indent=1))
    sys.stdout.write("\n".join(lines) + "\n")
    return table


if __name__ == "__main__":
    main()
