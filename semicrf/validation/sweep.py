"""The signal sweep ("money curve"): when do learned durations help?

One command, ``python -m semicrf.validation.sweep --scale cpu`` (or ``python -m
semicrf.validation sweep``), trains ``semicrf``, ``semicrf_uniform`` and ``linear`` at each
generator ``signal`` with the scale's settings (cached like the main experiment; a completed
main experiment with the same ground truth is reused; the models of all signals run side by
side in ``--workers`` processes) and writes
``<results_root>/signal_sweep_<scale>.{json,md,png}``: per signal the gain of semicrf over
each baseline in boundary F1 (paired percentile bootstrap) and in exon duration KL (the
claims' ``duration_kl_log``, paired basic bootstrap), 95% CIs, plus the mechanism ablation
(semicrf decoded with uniform durations). Viterbi labels. Informational: decides no claim.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tqdm.contrib.logging import logging_redirect_tqdm

from semicrf.atomic_io import atomic_write, write_text
from semicrf.data import read_overrides_file
from semicrf.environment import machine_info
from semicrf.labels import class_names
from semicrf.metrics import (
    boundary_match_counts,
    f1_from_counts,
    log_length_edges,
    per_sequence_log_histograms,
)
from semicrf.report import write_metrics_json
from semicrf.train import ProgressFactory, no_progress, progress_bars
from semicrf.validation.claims import (
    ALPHA,
    BOOT_SEED,
    N_BOOT,
    ablation_claim,
    boundary_claim,
    duration_comparison_claim,
)
from semicrf.validation.experiment import (
    ABLATED_MODEL,
    DEFAULT_WORKERS,
    NUM_CLASSES,
    SCALES,
    ExperimentResult,
    Scale,
    build_experiment,
    run_experiments,
)
from semicrf.validation.oracle import ceiling_rows
from semicrf.validation.report import _fmt

log = logging.getLogger(__name__)

SWEEP_MODELS: tuple[str, ...] = ("semicrf", "semicrf_uniform", "linear")
SWEEP_BASELINES: tuple[str, ...] = ("semicrf_uniform", "linear")
#: Boundary tolerance (bp) of the second, approximate boundary-F1 gain (reported beside the
#: exact one: at the cpu scale no model places exon edges exactly).
NEAR_TOLERANCE = 10
#: Default signal strengths (the generator default 0.5 among them).
DEFAULT_SIGNALS: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)


def sweep_row(result: ExperimentResult, signal: float, *, n_boot: int = N_BOOT,
              seed: int = BOOT_SEED, alpha: float = ALPHA) -> dict[str, Any]:
    """One signal: every sweep model's metrics, and semicrf's gains over each baseline with
    bootstrap intervals (boundary F1 and exon duration KL reduction) and the ablation."""
    true = result.true_labels
    preds = result.predictions
    exon = class_names(NUM_CLASSES).index("exon")
    edges = log_length_edges(max(len(t) for t in true))
    counts = {m: boundary_match_counts(preds[m], true, NUM_CLASSES) for m in (*SWEEP_MODELS, ABLATED_MODEL)}
    near = {m: boundary_match_counts(preds[m], true, NUM_CLASSES, NEAR_TOLERANCE)
            for m in SWEEP_MODELS}
    hists = {m: per_sequence_log_histograms(preds[m], NUM_CLASSES, edges)[:, exon] for m in SWEEP_MODELS}
    hist_true = per_sequence_log_histograms(true, NUM_CLASSES, edges)[:, exon]
    opts = dict(n_boot=n_boot, seed=seed, alpha=alpha)
    row: dict[str, Any] = {"signal": signal, "results_dir": str(result.root)}
    for m in SWEEP_MODELS:
        entry = result.payload["models"][m]
        metrics = entry["metrics"]
        row[m] = {"boundary_f1": metrics["boundary_f1"], "segment_f1": metrics["segment_f1"],
                  "boundary_f1_near": f1_from_counts(near[m]),
                  "position_f1_macro": metrics["position_f1_macro"],
                  "duration_kl_log": metrics["duration_kl_log"], "test_loss": entry.get("test_loss"),
                  "boundary_f1_posterior": (entry.get("metrics_other_decoders") or {})
                  .get("posterior", {}).get("boundary_f1")}
    for b in SWEEP_BASELINES:
        row[f"boundary_f1_gain_vs_{b}"] = asdict(boundary_claim(counts["semicrf"], counts[b], b, **opts))
        row[f"boundary_f1_near_gain_vs_{b}"] = asdict(boundary_claim(near["semicrf"], near[b], b, **opts))
        row[f"exon_kl_reduction_vs_{b}"] = asdict(duration_comparison_claim(
            hists["semicrf"], hists[b], hist_true, "exon", b, **opts))
    row["ablation_boundary_f1_drop"] = asdict(ablation_claim(counts["semicrf"], counts[ABLATED_MODEL],
                                                             **opts))
    row["oracle"] = ceiling_rows(result.root / "data", result.experiment.scale.max_duration,
                                 NEAR_TOLERANCE)
    ceiling = row["oracle"]["true"]["boundary_f1"]
    row["fraction_of_ceiling"] = {m: row[m]["boundary_f1"] / ceiling if ceiling else None
                                  for m in SWEEP_MODELS}
    return row


def signal_sweep(scale: Scale | str, signals: Sequence[float], results_root: str | os.PathLike,
                 *, overrides: Mapping[str, Any] | None = None, n_boot: int = N_BOOT,
                 workers: int = DEFAULT_WORKERS,
                 progress: ProgressFactory = no_progress) -> dict[str, Any]:
    """Train the sweep models at each generator ``signal`` (all signals' models side by side
    in ``workers`` processes) and write ``<results_root>/signal_sweep_<scale>.{json,md,png}``;
    returns the JSON content."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown validation scale {scale!r}; choose from {sorted(SCALES)}")
        scale = SCALES[scale]
    if not signals:
        raise ValueError("give at least one signal")
    root = Path(results_root)
    experiments = []
    for signal in signals:
        ground = dict(overrides or {}) | {"signal": float(signal)}
        main = build_experiment(scale, ground)
        if not (main.directory(root) / "complete.json").is_file():  # else reuse the validation's
            main = build_experiment(replace(scale, run_shifted=False), ground, models=SWEEP_MODELS)
        experiments.append(main)
    results = run_experiments(experiments, root, workers=workers, progress=progress)
    rows = []
    for signal, result in zip(signals, results):
        rows.append(sweep_row(result, float(signal), n_boot=n_boot))
        log.info("signal %.2f: boundary F1 gain vs linear %.4f", signal,
                 rows[-1]["boundary_f1_gain_vs_linear"]["estimate"])
    out = {"scale": scale.name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "n_boot": n_boot, "rows": rows}
    write_metrics_json(root / f"signal_sweep_{scale.name}.json", out)
    write_text(root / f"signal_sweep_{scale.name}.md", sweep_markdown(out))
    plot_sweep(root / f"signal_sweep_{scale.name}.png", out)
    return out


def _ci(d: Mapping[str, Any]) -> str:
    return f"{_fmt(d['estimate'])} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]"


def sweep_markdown(sweep: Mapping[str, Any]) -> str:
    """Markdown tables of a signal sweep: the gain of learned over geometric durations."""
    lines = [
        f"# Signal sweep ({sweep['scale']} scale, {sweep['date']})",
        "",
        "Gain of semicrf (learned durations) over each geometric baseline, Viterbi labels, "
        "95% paired bootstrap over test sequences: boundary F1 difference (percentile) and "
        "exon duration KL reduction (`duration_kl_log`, basic). Ablation: semicrf minus the same "
        "trained model decoded with zero duration scores and tail. ![money curve]"
        f"(signal_sweep_{sweep['scale']}.png)",
        "",
        "| signal | bF1 semicrf | bF1 uniform | bF1 linear | gain vs uniform | gain vs linear | "
        "ablation drop | exon KL semicrf | exon KL uniform | exon KL linear | KL reduction vs "
        "uniform | KL reduction vs linear |",
        "| ---: | ---: | ---: | ---: | --- | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in sweep["rows"]:
        s, u, li = r["semicrf"], r["semicrf_uniform"], r["linear"]
        lines.append(
            f"| {r['signal']:g} | {_fmt(s['boundary_f1'])} | {_fmt(u['boundary_f1'])} | "
            f"{_fmt(li['boundary_f1'])} | {_ci(r['boundary_f1_gain_vs_semicrf_uniform'])} | "
            f"{_ci(r['boundary_f1_gain_vs_linear'])} | {_ci(r['ablation_boundary_f1_drop'])} | "
            f"{_fmt(s['duration_kl_log']['exon'])} | {_fmt(u['duration_kl_log']['exon'])} | "
            f"{_fmt(li['duration_kl_log']['exon'])} | {_ci(r['exon_kl_reduction_vs_semicrf_uniform'])} | "
            f"{_ci(r['exon_kl_reduction_vs_linear'])} |")
    lines += ["", f"Boundary F1 within {NEAR_TOLERANCE} bp (a predicted boundary matches a true "
              "one at most that far away), the gain of semicrf with the same paired bootstrap:",
              "", "| signal | semicrf | uniform | linear | gain vs uniform | gain vs linear |",
              "| ---: | ---: | ---: | ---: | --- | --- |"]
    for r in sweep["rows"]:
        lines.append(f"| {r['signal']:g} | " + " | ".join(
            _fmt(r[m]["boundary_f1_near"]) for m in SWEEP_MODELS) + " | "
            f"{_ci(r['boundary_f1_near_gain_vs_semicrf_uniform'])} | "
            f"{_ci(r['boundary_f1_near_gain_vs_linear'])} |")
    lines += ["", "Test NLL per position and the posterior decoder's boundary F1:", "",
              "| signal | NLL semicrf | NLL uniform | NLL linear | bF1 posterior semicrf | "
              "bF1 posterior uniform | bF1 posterior linear |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sweep["rows"]:
        cells = [_fmt(r[m]["test_loss"], 5) for m in SWEEP_MODELS]
        cells += [_fmt(r[m]["boundary_f1_posterior"]) for m in SWEEP_MODELS]
        lines.append(f"| {r['signal']:g} | " + " | ".join(cells) + " |")
    lines += ["", "The Bayes ceiling (the limit money curve): the generator's own model decoded "
              "exactly (`semicrf oracle`, Viterbi; docs/validation.md) with true and with "
              "geometric durations of the same means, and each model's exact boundary F1 as a "
              "fraction of the true-duration ceiling:", "",
              f"| signal | bF1 true | bF1 geometric | limit gain | bF1 {NEAR_TOLERANCE} bp true | "
              "segment F1 true | exon KL true | semicrf / ceiling | uniform / ceiling | "
              "linear / ceiling | s per window true |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in sweep["rows"]:
        t, g = r["oracle"]["true"], r["oracle"]["geometric"]
        cells = [_fmt(t["boundary_f1"]), _fmt(g["boundary_f1"]),
                 _fmt(t["boundary_f1"] - g["boundary_f1"]),
                 _fmt(t[f"boundary_f1_tol{NEAR_TOLERANCE}"]), _fmt(t["segment_f1"]),
                 _fmt(t["duration_kl_log"]["exon"])]
        cells += [_fmt(r["fraction_of_ceiling"][m]) for m in SWEEP_MODELS]
        cells.append(_fmt(t["seconds_per_sequence"], 2))
        lines.append(f"| {r['signal']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_sweep(path: str | os.PathLike, sweep: Mapping[str, Any]) -> Path:
    """The money curve: gain in boundary F1 and exon KL reduction vs signal, per baseline,
    with 95% CIs as error bars."""
    fig = Figure(figsize=(15, 4), constrained_layout=True)
    FigureCanvasAgg(fig)
    rows = sorted(sweep["rows"], key=lambda r: r["signal"])
    x = [r["signal"] for r in rows]
    panels = (("boundary_f1_gain_vs_{}", "boundary F1 gain of semicrf (exact)"),
              ("boundary_f1_near_gain_vs_{}",
               f"boundary F1 gain of semicrf (within {NEAR_TOLERANCE} bp)"),
              ("exon_kl_reduction_vs_{}", "exon duration KL reduction (log bins)"))
    for i, (key, title) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j, (b, color) in enumerate(zip(SWEEP_BASELINES, ("tab:purple", "tab:green"))):
            est = [r[key.format(b)]["estimate"] for r in rows]
            lo = [e - r[key.format(b)]["ci_low"] for e, r in zip(est, rows)]
            hi = [r[key.format(b)]["ci_high"] - e for e, r in zip(est, rows)]
            shift = (j - 0.5) * 0.01
            ax.errorbar([v + shift for v in x], est, yerr=[lo, hi], marker="o", capsize=3,
                        color=color, label=f"vs {b}")
        if i == 0:
            est = [r["ablation_boundary_f1_drop"]["estimate"] for r in rows]
            ax.plot(x, est, linestyle=":", marker="x", color="tab:blue",
                    label="ablation (durations zeroed)")
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xlabel("signal (composition strength)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"When do learned durations help? ({sweep['scale']} scale, 95% CIs)")
    return atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m semicrf.validation.sweep --scale cpu --signals 0.25 0.5 0.75 1.0``."""
    parser = argparse.ArgumentParser(prog="python -m semicrf.validation.sweep",
                                     description="Signal sweep of semicrf vs its geometric baselines.")
    parser.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    parser.add_argument("--signals", type=float, nargs="+", default=list(DEFAULT_SIGNALS))
    parser.add_argument("--results-root", default="validation_results")
    parser.add_argument("--generator-config", default=None)
    parser.add_argument("--n-boot", type=int, default=N_BOOT)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                        help="processes training models side by side (default: %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if any(not 0.0 <= s <= 1.0 for s in args.signals):
            raise ValueError(f"--signals must lie in [0, 1], got {args.signals}")
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        with logging_redirect_tqdm():  # a bar over the finished models (on a terminal)
            out = signal_sweep(args.scale, args.signals, args.results_root, n_boot=args.n_boot,
                               overrides=read_overrides_file(args.generator_config),
                               workers=args.workers, progress=progress_bars(quiet=False))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("wrote %s", Path(args.results_root) / f"signal_sweep_{out['scale']}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
