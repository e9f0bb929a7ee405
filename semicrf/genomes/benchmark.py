"""The real-genes benchmark: the four models and AUGUSTUS on Drosophila loci.

``python -m semicrf.genomes.benchmark --genbank genes.gb --output-dir DIR [--scale full]``
(``make real-genes`` fetches ``genes.gb`` first) runs:

1. ``semicrf import`` of the loci (split by locus, 70/10/20) into ``DIR/data``;
2. ``semicrf run`` (the four models on the train windows, selection on val) into ``DIR/run``;
3. ``semicrf predict`` of every model on the whole test loci, and AUGUSTUS
   (``--species=fly --strand=forward``) on the same upper-cased loci, into
   ``DIR/predictions/{method}.gff3``;
4. the evaluation of all five GFF3 files read by one reader against the reference: gene
   level (exon / intron / gene Sn and Sp), label level (boundary F1, per-class length
   distances), the pre-registered claims (:data:`CLAIMS`) by paired bootstrap over test
   loci, ``DIR/report.{json,md}`` and the money plot ``DIR/length_distributions.png``.

AUGUSTUS's fly parameters were trained on fly genes (possibly these loci): its numbers are
an optimistic reference, not a held-out peer. See ``docs/real_genomes.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from semicrf.atomic_io import write_json, write_text
from semicrf.data import read_meta
from semicrf.genomes.annotation import Transcript, labels_from_transcripts
from semicrf.genomes.augustus import augustus_version, run_augustus
from semicrf.genomes.gene_metrics import gene_level_counts, metrics_from_counts
from semicrf.genomes.importer import file_sha256, import_dataset
from semicrf.genomes.predict import load_predictor, predict_genes
from semicrf.genomes.readers import read_fasta, read_gff3
from semicrf.genomes.writers import write_gff3
from semicrf.labels import EXON, INTRON, label_runs
from semicrf.metrics import (
    boundary_match_counts,
    evaluate,
    f1_from_counts,
    log_length_edges,
    pooled_kl,
)
from semicrf.models import MODEL_NAMES
from semicrf.pipeline import RunConfig
from semicrf.plots import plot_duration_comparison
from semicrf.report import to_jsonable
from semicrf.stats import paired_bootstrap
from semicrf.train import no_progress
from semicrf.validation.experiment import Task, execute_tasks

log = logging.getLogger(__name__)

AUGUSTUS = "augustus"
NUM_CLASSES = 3
#: Paired bootstrap settings of the claims (as :mod:`semicrf.validation`).
N_BOOT, BOOT_SEED, ALPHA = 2000, 20240611, 0.05
#: Bins of the intron-peak claim: 5 bp wide, lengths 1..500.
PEAK_BIN, PEAK_MAX = 5, 500
#: The peak claim passes when the modes of predicted and true intron lengths differ by at
#: most this many bp.
PEAK_TOLERANCE_BP = 10

#: The pre-registered claims (fixed before the first run; docs/real_genomes.md).
CLAIMS: dict[str, str] = {
    "real_intron_kl_vs_uniform": "KL_log(intron; semicrf_uniform) - KL_log(intron; semicrf): "
                                 "95% paired-bootstrap CI over test loci above 0",
    "real_boundary_f1_vs_uniform": "boundary F1(semicrf) - boundary F1(semicrf_uniform): "
                                   "95% paired-bootstrap CI over test loci above 0",
    "real_intron_peak": f"mode of semicrf's predicted intron lengths ({PEAK_BIN} bp bins up to "
                        f"{PEAK_MAX} bp) within {PEAK_TOLERANCE_BP} bp of the true mode",
    # added before run 2 (the gene model)
    "real_exon_f1_vs_linear": "exon F1(semicrf) - exon F1(linear) (Burset-Guigo exons, "
                              "exact coordinates): 95% paired-bootstrap CI over test loci above 0",
}


@dataclass(frozen=True)
class Scale:
    """Sizes of one benchmark run."""

    name: str
    seq_length: int
    max_duration: int
    hidden_dim: int
    num_layers: int
    batch_size: int
    lr: float
    epochs: int
    max_loci: int | None  # use only the first loci of the file (smoke tests)
    features: str = "kmer"
    window: int = 20000
    overlap: int = 2000
    encoder: str = "bilstm"


SCALES: dict[str, Scale] = {
    # run 2 (docs/real_genomes.md): the gene model, 6 epochs of the 2.3 Mb train split (run 1:
    # 12 three-label epochs in ~50 min), one-hot beside the 4-mers as in validation run 5
    "full": Scale("full", seq_length=8000, max_duration=1000, hidden_dim=32, num_layers=1,
                  batch_size=4, lr=2e-2, epochs=6, max_loci=None, features="onehot+kmer"),
    # the machinery end to end in about a minute
    "smoke": Scale("smoke", seq_length=1500, max_duration=60, hidden_dim=8, num_layers=1,
                   batch_size=4, lr=3e-3, epochs=1, max_loci=24, window=4000, overlap=500),
}


def subset_genbank(src: str | Path, dest: Path, max_loci: int) -> Path:
    """The first ``max_loci`` records of a GenBank file, rewritten by Biopython."""
    import warnings

    from Bio import SeqIO

    with warnings.catch_warnings(), open(src, encoding="utf-8") as handle:
        warnings.simplefilter("ignore")
        records = []
        for rec in SeqIO.parse(handle, "genbank"):
            rec.annotations.setdefault("molecule_type", "DNA")
            records.append(rec)
            if len(records) == max_loci:
                break
    dest.parent.mkdir(parents=True, exist_ok=True)
    SeqIO.write(records, dest, "genbank")
    return dest


def _import(genbank: Path, data: Path, seq_length: int, seed: int) -> Path:
    """``semicrf import`` into ``data``, unless it already holds this import (same file
    checksum, window length and seed), which a resumed run keeps as it is."""
    if (data / "meta.json").is_file():
        meta = read_meta(data)
        src = meta.get("source", {})
        if (meta["seq_length"], meta["seed"]) == (seq_length, seed) and \
                [f["sha256"] for f in src.get("files", [])] == [file_sha256(genbank)]:
            return data
    return import_dataset(data, genbank=genbank, seq_length=seq_length, seed=seed)


def _train(scale: Scale, data: Path, run_dir: Path, device: str, models: Sequence[str],
           workers: int) -> None:
    """The models into ``run_dir``, one unit each in ``workers`` processes (one torch thread
    each on the CPU; resuming from their checkpoints)."""
    def config(model: str) -> RunConfig:
        return RunConfig(
            data_dir=str(data), output_dir=str(run_dir), encoder=scale.encoder,
            features=scale.features, max_duration=scale.max_duration,
            hidden_dim=scale.hidden_dim, num_layers=scale.num_layers,
            batch_size=scale.batch_size, lr=scale.lr, epochs=scale.epochs, device=device,
            models=(model,), resume=True)

    execute_tasks([Task(m, config(m), probe=False) for m in models],
                  workers if device == "cpu" else 1, progress=no_progress)


def _is_newer(path: Path, than: Path) -> bool:
    return path.is_file() and path.stat().st_mtime >= than.stat().st_mtime


def _predict(scale: Scale, run_dir: Path, fasta: Path, out: Path, models: Sequence[str],
             device: str) -> dict[str, float | None]:
    """Each model's GFF3 on the test loci (unscored: the scores cost two more sweeps and the
    benchmark does not use them); a GFF3 newer than its checkpoint is kept (None seconds)."""
    sequences = read_fasta(fasta)
    seconds: dict[str, float | None] = {}
    for name in models:
        ckpt, gff = run_dir / "checkpoints" / f"{name}_best.pt", out / f"{name}.gff3"
        if _is_newer(gff, ckpt):
            seconds[name] = None
            continue
        started = time.perf_counter()
        pred = load_predictor(ckpt, device)
        genes = predict_genes(pred, sequences, window=scale.window, overlap=scale.overlap,
                              scores=False)
        write_gff3(gff, genes, {k: len(v) for k, v in sequences.items()})
        seconds[name] = time.perf_counter() - started
    return seconds


def _intron_lengths(labels: np.ndarray) -> np.ndarray:
    runs = np.asarray(label_runs(labels), dtype=np.int64).reshape(-1, 3)
    return (runs[:, 1] - runs[:, 0])[runs[:, 2] == INTRON]


def _log_hist(labels: Sequence[np.ndarray], edges: np.ndarray) -> np.ndarray:
    """(S, bins) histograms of intron lengths per locus on log-spaced ``edges``."""
    return np.stack([np.histogram(_intron_lengths(x), bins=edges)[0] for x in labels])


def _mode(lengths: np.ndarray) -> float | None:
    lengths = lengths[lengths <= PEAK_MAX]
    if lengths.size == 0:
        return None
    counts = np.bincount((lengths - 1) // PEAK_BIN)
    return float(np.argmax(counts) * PEAK_BIN + PEAK_BIN / 2 + 0.5)  # bin centre


def decide_claims(true_labels: Sequence[np.ndarray], predicted: Mapping[str, Sequence[np.ndarray]],
                  gene_counts: Mapping[str, np.ndarray] | None = None, *, n_boot: int = N_BOOT,
                  seed: int = BOOT_SEED) -> dict[str, dict[str, Any]]:
    """The verdicts of :data:`CLAIMS` from per-locus label arrays (truth and each model) and
    per-locus :func:`gene_level_counts` rows of each model (the exon-F1 claim)."""
    a, b = predicted["semicrf"], predicted["semicrf_uniform"]
    edges = log_length_edges(max(int(x.size) for x in true_labels))
    h_true, h_a, h_b = (_log_hist(x, edges) for x in (true_labels, a, b))
    kl = paired_bootstrap(pooled_kl, h_b, h_a, h_true, n_boot=n_boot, seed=seed, alpha=ALPHA)
    ca, cb = (boundary_match_counts(x, true_labels, NUM_CLASSES) for x in (a, b))
    f1 = paired_bootstrap(lambda c, _t: f1_from_counts(c), ca, cb, ca, n_boot=n_boot,
                          seed=seed, alpha=ALPHA)
    m_true = _mode(np.concatenate([_intron_lengths(x) for x in true_labels]))
    m_pred = _mode(np.concatenate([_intron_lengths(x) for x in a]))
    gap = None if m_true is None or m_pred is None else abs(m_pred - m_true)
    claims = {
        "real_intron_kl_vs_uniform": dict(kl, passed=bool(kl["ci_low"] > 0), rule="ci_low > 0",
                                          semicrf=pooled_kl(h_a, h_true),
                                          semicrf_uniform=pooled_kl(h_b, h_true)),
        "real_boundary_f1_vs_uniform": dict(f1, passed=bool(f1["ci_low"] > 0), rule="ci_low > 0",
                                            semicrf=f1_from_counts(ca),
                                            semicrf_uniform=f1_from_counts(cb)),
        "real_intron_peak": {"estimate": gap, "true_mode": m_true, "semicrf_mode": m_pred,
                             "passed": gap is not None and gap <= PEAK_TOLERANCE_BP,
                             "rule": f"|mode difference| <= {PEAK_TOLERANCE_BP} bp"},
    }
    if gene_counts is not None and {"semicrf", "linear"} <= set(gene_counts):
        ex = paired_bootstrap(lambda c, _t: exon_f1(c), gene_counts["semicrf"],
                              gene_counts["linear"], gene_counts["semicrf"], n_boot=n_boot,
                              seed=seed, alpha=ALPHA)
        claims["real_exon_f1_vs_linear"] = dict(
            ex, passed=bool(ex["ci_low"] > 0), rule="ci_low > 0",
            semicrf=exon_f1(gene_counts["semicrf"]), linear=exon_f1(gene_counts["linear"]))
    return claims


def exon_f1(counts: np.ndarray) -> float:
    """Pooled exon F1 (harmonic mean of exon Sn and Sp) of rows of :func:`gene_level_counts`."""
    m = metrics_from_counts(counts)
    total = m["exon_sn"] + m["exon_sp"]
    return 2 * m["exon_sn"] * m["exon_sp"] / total if total > 0 else 0.0


def evaluate_methods(reference: Mapping[str, Sequence[Transcript]],
                     predicted: Mapping[str, Mapping[str, Sequence[Transcript]]],
                     lengths: Mapping[str, int], max_duration: int) -> dict[str, Any]:
    """Every method's gene-level and label-level metrics on the loci of ``lengths``, the
    claims, and the per-class predicted lengths (for the plot)."""
    loci = list(lengths)
    true_labels = [labels_from_transcripts(lengths[s], reference.get(s, ()), NUM_CLASSES)
                   for s in loci]
    methods: dict[str, Any] = {}
    label_arrays, gene_counts = {}, {}
    for name, genes in predicted.items():
        labels = [labels_from_transcripts(lengths[s], genes.get(s, ()), NUM_CLASSES) for s in loci]
        label_arrays[name] = labels
        gene_counts[name] = gene_level_counts(reference, genes, loci)
        m = evaluate(labels, true_labels, NUM_CLASSES, max_duration)
        methods[name] = {
            "gene_level": metrics_from_counts(gene_counts[name]),
            "exon_f1": exon_f1(gene_counts[name]),
            "boundary_f1": m["boundary_f1"],
            "exon_sensitivity": m["exon_sensitivity"], "exon_specificity": m["exon_specificity"],
            "duration_kl": m["duration_kl"], "duration_kl_log": m["duration_kl_log"],
            "duration_wasserstein": m["duration_wasserstein"],
            "duration_summary": m["duration_summary"],
        }
    claims = None
    if {"semicrf", "semicrf_uniform"} <= set(label_arrays):
        claims = decide_claims(true_labels, label_arrays, gene_counts)
    return {"methods": methods, "claims": claims, "true_labels": true_labels,
            "label_arrays": label_arrays}


_COLUMNS = (
    ("boundary F1", lambda m: m["boundary_f1"]),
    ("exon F1", lambda m: m.get("exon_f1")),
    ("exon Sn", lambda m: m["gene_level"]["exon_sn"]),
    ("exon Sp", lambda m: m["gene_level"]["exon_sp"]),
    ("intron Sn", lambda m: m["gene_level"]["intron_sn"]),
    ("intron Sp", lambda m: m["gene_level"]["intron_sp"]),
    ("gene Sn", lambda m: m["gene_level"]["gene_sn"]),
    ("gene Sp", lambda m: m["gene_level"]["gene_sp"]),
    ("KL exon", lambda m: m["duration_kl"]["exon"]),
    ("KL intron", lambda m: m["duration_kl"]["intron"]),
    ("logKL exon", lambda m: m["duration_kl_log"]["exon"]),
    ("logKL intron", lambda m: m["duration_kl_log"]["intron"]),
    ("W1 exon (bp)", lambda m: m["duration_wasserstein"]["exon"]),
    ("W1 intron (bp)", lambda m: m["duration_wasserstein"]["intron"]),
)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def report_markdown(report: Mapping[str, Any]) -> str:
    """The table (one row per method) and the claims, as Markdown."""
    title = f"# Real genes: {report['num_test_loci']} Drosophila test loci"
    lines = [f"{title} (scale {report['scale']['name']})",
             "", "| method | " + " | ".join(c for c, _ in _COLUMNS) + " |",
             "|---|" + "---:|" * len(_COLUMNS)]
    for name, m in report["methods"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(f(m)) for _, f in _COLUMNS) + " |")
    lines += ["", "Exon/intron/gene Sn and Sp: Burset-Guigo, coding structure, exact coordinates. "
              "KL: over lengths 1..K (clamped at K); logKL: log-spaced bins, no clamping; "
              "W1: Wasserstein-1 between predicted and true lengths.",
              "AUGUSTUS's fly parameters were trained on fly genes (possibly these): an "
              "optimistic reference, not a held-out peer."]
    if report.get("claims"):
        lines += ["", "## Pre-registered claims", "", "| claim | rule | estimate | 95% CI | verdict |",
                  "|---|---|---:|---|---|"]
        for cid, c in report["claims"].items():
            ci = (f"[{c['ci_low']:.4f}, {c['ci_high']:.4f}]" if "ci_low" in c else "-")
            est = "n/a" if c["estimate"] is None else f"{c['estimate']:.4f}"
            lines.append(f"| {cid} | {CLAIMS[cid]} | {est} | {ci} | "
                         f"{'PASS' if c['passed'] else 'FAIL'} |")
    lines += ["", f"Command: `{report['command']}`; wall time {report['wall_s'] / 60:.1f} min."]
    return "\n".join(lines) + "\n"


def run_real_genes(genbank: str | Path, output_dir: str | Path, scale: Scale, *,
                   device: str = "cpu", augustus: bool = True, seed: int = 42,
                   command: str = "", workers: int = 2) -> dict[str, Any]:
    """Run the whole benchmark (see the module docstring); returns the report."""
    started = time.perf_counter()
    out = Path(output_dir)
    source = Path(genbank)
    if scale.max_loci is not None:
        source = subset_genbank(genbank, out / "subset.gb", scale.max_loci)
    data = _import(source, out / "data", scale.seq_length, seed)
    models = list(MODEL_NAMES)
    _train(scale, data, out / "run", device, models, workers)
    preds_dir = out / "predictions"
    fasta = data / "test.loci.fa"
    seconds = _predict(scale, out / "run", fasta, preds_dir, models, device)
    methods = list(models)
    versions: dict[str, str] = {}
    if augustus:
        t0 = time.perf_counter()
        seconds[AUGUSTUS] = None
        if not _is_newer(preds_dir / f"{AUGUSTUS}.gff3", fasta):
            run_augustus(fasta, preds_dir / f"{AUGUSTUS}.gff3")
            seconds[AUGUSTUS] = time.perf_counter() - t0
        versions[AUGUSTUS] = augustus_version()
        methods.append(AUGUSTUS)
    reference = read_gff3(data / "test.loci.gff3")
    lengths = {k: len(v) for k, v in read_fasta(fasta).items()}
    predicted = {m: read_gff3(preds_dir / f"{m}.gff3", exclude_stop_codon=(m == AUGUSTUS))
                 for m in methods}
    ev = evaluate_methods(reference, predicted, lengths, scale.max_duration)
    true_len = {"exon": [], "intron": []}
    for x in ev["true_labels"]:
        runs = np.asarray(label_runs(x)).reshape(-1, 3)
        for c, name in ((EXON, "exon"), (INTRON, "intron")):
            true_len[name].extend((runs[:, 1] - runs[:, 0])[runs[:, 2] == c].tolist())
    pred_len = {}
    for m, arrays in ev["label_arrays"].items():
        runs = [np.asarray(label_runs(x)).reshape(-1, 3) for x in arrays]
        pred_len[m] = {name: np.concatenate([(r[:, 1] - r[:, 0])[r[:, 2] == c] for r in runs])
                       for c, name in ((EXON, "exon"), (INTRON, "intron"))}
    plot_duration_comparison(
        out / "length_distributions.png", {k: np.asarray(v) for k, v in true_len.items()},
        pred_len, {m: e["duration_kl_log"] for m, e in ev["methods"].items()},
        max_duration=scale.max_duration, kl_name="logKL")
    meta = read_meta(data)
    report = {
        "scale": asdict(scale), "seed": seed, "device": device, "command": command,
        "data": {"source": meta["source"], "loci": {s: len(v["loci"]) for s, v in meta["splits"].items()},
                 "windows": {s: v["num_sequences"] for s, v in meta["splits"].items()}},
        "num_test_loci": len(lengths), "methods": ev["methods"], "claims": ev["claims"],
        "predict_seconds": seconds, "versions": versions,
        "train": json.loads((out / "run" / "metrics.json").read_text())["models"],
        "wall_s": time.perf_counter() - started,
    }
    for entry in report["train"].values():  # keep the report small: no per-epoch history
        entry.pop("history", None)
        entry.pop("learned_duration", None)
        entry.pop("metrics", None)
    write_json(out / "report.json", to_jsonable(report))
    write_text(out / "report.md", report_markdown(report))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m semicrf.genomes.benchmark",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--genbank", required=True, help="AUGUSTUS's genes.gb (make real-genes-data).")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--scale", choices=sorted(SCALES), default="full")
    parser.add_argument("--epochs", type=int, default=None, help="Override the scale's epochs.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--no-augustus", action="store_true", help="Skip the AUGUSTUS run.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--workers", type=int, default=2,
                        help="Processes training models side by side on the CPU (one thread each).")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    scale = SCALES[args.scale]
    if args.epochs is not None:
        scale = replace(scale, epochs=args.epochs)
    command = "python -m semicrf.genomes.benchmark " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        report = run_real_genes(args.genbank, args.output_dir, scale, device=args.device,
                                augustus=not args.no_augustus, seed=args.seed, command=command,
                                workers=args.workers)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"real-genes benchmark: error: {err}", file=sys.stderr)
        return 2
    print(report_markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
