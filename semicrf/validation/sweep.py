"""The signal sweep ("money curve"): when do learned durations help, and how close is it to
the limit?

One command, ``python -m semicrf.validation.sweep --scale cpu`` (or ``python -m
semicrf.validation sweep``), trains ``semicrf`` (learned durations) and ``linear`` (the
geometric baseline) at each generator ``signal`` with the scale's settings (cached like the
main experiment; a completed main experiment with the same ground truth is reused; the units
of all signals, the Bayes oracle's among them, run side by side in ``--workers``
processes) and writes ``<results_root>/signal_sweep_<scale>.{json,md,png}``: per signal
each model's exact boundary F1 beside the Bayes ceiling (the generator's model decoded
exactly with true and with geometric durations on the same test windows) and its fraction
of it; the learned gain (semicrf - linear) beside the limit gain (true - geometric), both
paired percentile bootstraps, and their difference; the exon duration KL reduction (paired
basic bootstrap), the boundary-F1 gain within 10 bp and the mechanism ablation (semicrf
decoded with uniform durations), 95% CIs; and the limit curve of a sharper-duration ground
truth (:data:`~semicrf.validation.oracle.SHARP_DURATIONS`, oracle only, ``--sharp-windows``
test windows per signal). Viterbi labels. Informational: decides no claim.
"""

from __future__ import annotations

import argparse
import json
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
from semicrf.pipeline import load_predictions
from semicrf.report import write_metrics_json
from semicrf.train import ProgressFactory, no_progress, progress_bars
from semicrf.validation.claims import (
    ALPHA,
    BOOT_SEED,
    N_BOOT,
    ablation_claim,
    boundary_claim,
    duration_comparison_claim,
    limit_gain_claim,
)
from semicrf.validation.experiment import (
    ABLATED_MODEL,
    DEFAULT_WORKERS,
    NUM_CLASSES,
    ORACLE_UNITS,
    SCALES,
    ExperimentResult,
    Scale,
    build_experiment,
    ensure_data,
    run_experiments,
)
from semicrf.validation.oracle import SHARP_DURATIONS, ceiling_paths, ceiling_rows, limit_curve
from semicrf.validation.report import _fmt

log = logging.getLogger(__name__)

#: The trained models of the sweep: learned durations and the geometric baseline (the
#: main experiment also has semicrf_uniform and softmax; run 6 dropped them here for time).
SWEEP_MODELS: tuple[str, ...] = ("semicrf", "linear")
SWEEP_BASELINES: tuple[str, ...] = ("linear",)
#: Test windows per signal of the sharper-duration limit curve (oracle only).
SHARP_WINDOWS = 20
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
    row: dict[str, Any] = {"signal": signal, "results_dir": str(result.root), "trained": True}
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
    oracle_counts = {name: boundary_match_counts(
        load_predictions(ceiling_paths(result.root / "data", durations)[1]), true, NUM_CLASSES)
        for name, durations in ORACLE_UNITS.items()}
    row["learned_vs_limit_gain"] = asdict(limit_gain_claim(counts | oracle_counts, **opts))
    ceiling = row["oracle"]["true"]["boundary_f1"]
    row["fraction_of_ceiling"] = {m: row[m]["boundary_f1"] / ceiling if ceiling else None
                                  for m in SWEEP_MODELS}
    return row


def signal_sweep(scale: Scale | str, signals: Sequence[float], results_root: str | os.PathLike,
                 *, overrides: Mapping[str, Any] | None = None, n_boot: int = N_BOOT,
                 workers: int = DEFAULT_WORKERS, sharp_windows: int = SHARP_WINDOWS,
                 limit_only: Sequence[float] = (),
                 progress: ProgressFactory = no_progress) -> dict[str, Any]:
    """Train the sweep models at each generator ``signal`` (all signals' models side by side
    in ``workers`` processes), decode the ``limit_only`` signals' test windows with the
    Bayes oracle alone (no model trained), and write
    ``<results_root>/signal_sweep_<scale>.{json,md,png}``; returns the JSON content."""
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
    for signal in limit_only:
        experiment = build_experiment(replace(scale, run_shifted=False),
                                      dict(overrides or {}) | {"signal": float(signal)},
                                      models=SWEEP_MODELS)
        data = ensure_data(experiment.directory(root) / "data", experiment.generator, scale)
        rows.append({"signal": float(signal), "results_dir": str(experiment.directory(root)),
                     "trained": False,
                     "oracle": ceiling_rows(data, scale.max_duration, NEAR_TOLERANCE)})
    rows.sort(key=lambda r: r["signal"])
    all_signals = [r["signal"] for r in rows]
    sharp = []
    if sharp_windows > 0:
        truth = build_experiment(scale, SHARP_DURATIONS).generator
        for r in limit_curve(truth, all_signals, sharp_windows, scale.seq_length,
                             root / f"limit_sharp_{scale.name}", max_duration=scale.max_duration):
            sharp.append({"signal": r["signal"], **{k: {m: r[k][m] for m in ("boundary_f1", "segment_f1")}
                                                    for k in ("true", "geometric")}})
    out = {"scale": scale.name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "n_boot": n_boot, "rows": rows,
           "sharp_limit": sharp and {"overrides": SHARP_DURATIONS, "num_test": sharp_windows,
                                     "rows": sharp}}
    write_metrics_json(root / f"signal_sweep_{scale.name}.json", out)
    write_text(root / f"signal_sweep_{scale.name}.md", sweep_markdown(out))
    plot_sweep(root / f"signal_sweep_{scale.name}.png", out)
    return out


def _ci(d: Mapping[str, Any]) -> str:
    return f"{_fmt(d['estimate'])} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]"


def sweep_markdown(sweep: Mapping[str, Any]) -> str:
    """Markdown tables of a signal sweep: the trained models beside the Bayes ceiling."""
    lines = [
        f"# Signal sweep ({sweep['scale']} scale, {sweep['date']})",
        "",
        "Exact boundary F1 (Viterbi labels) of the trained models beside the Bayes ceiling "
        "(the generator's own model decoded exactly on the same test windows, `semicrf "
        "oracle`, with true and with geometric durations of the same means) and each model's "
        "fraction of the true-duration ceiling. Learned gain: semicrf - linear; limit gain: "
        "true - geometric; their difference: learned - limit (all paired percentile "
        "bootstraps over test sequences, 95% CIs; an interval containing 0 means the learned "
        "gain is consistent with the limit gain). Ablation: semicrf minus the same trained "
        f"model decoded with zero duration scores and tail. ![money curve](signal_sweep_"
        f"{sweep['scale']}.png)",
        "",
        "| signal | ceiling true | ceiling geometric | semicrf | linear | semicrf / ceiling | "
        "linear / ceiling | learned gain | limit gain | learned - limit | ablation drop |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    for r in sweep["rows"]:
        t, g = r["oracle"]["true"], r["oracle"]["geometric"]
        cells = [f"{r['signal']:g}", _fmt(t["boundary_f1"]), _fmt(g["boundary_f1"])]
        if r["trained"]:
            gain = r["learned_vs_limit_gain"]
            cells += [_fmt(r[m]["boundary_f1"]) for m in SWEEP_MODELS]
            cells += [_fmt(r["fraction_of_ceiling"][m]) for m in SWEEP_MODELS]
            cells += [_ci(gain["details"]["learned_gain"]), _ci(gain["details"]["limit_gain"]),
                      _ci(gain), _ci(r["ablation_boundary_f1_drop"])]
        else:
            cells += ["not trained"] * (2 * len(SWEEP_MODELS)) + [
                "-", _fmt(t["boundary_f1"] - g["boundary_f1"]), "-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Exon duration KL (`duration_kl_log`) and its reduction by semicrf (paired "
              f"basic bootstrap); boundary F1 within {NEAR_TOLERANCE} bp and its gain; test NLL "
              "per position; the posterior decoder's exact boundary F1:", "",
              "| signal | exon KL semicrf | exon KL linear | KL reduction | "
              f"bF1 {NEAR_TOLERANCE} bp semicrf | linear | gain | NLL semicrf | NLL linear | "
              "bF1 posterior semicrf | linear |",
              "| ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |"]
    for r in (r for r in sweep["rows"] if r["trained"]):
        s, li = r["semicrf"], r["linear"]
        lines.append(
            f"| {r['signal']:g} | {_fmt(s['duration_kl_log']['exon'])} | "
            f"{_fmt(li['duration_kl_log']['exon'])} | {_ci(r['exon_kl_reduction_vs_linear'])} | "
            f"{_fmt(s['boundary_f1_near'])} | {_fmt(li['boundary_f1_near'])} | "
            f"{_ci(r['boundary_f1_near_gain_vs_linear'])} | {_fmt(s['test_loss'], 5)} | "
            f"{_fmt(li['test_loss'], 5)} | {_fmt(s['boundary_f1_posterior'])} | "
            f"{_fmt(li['boundary_f1_posterior'])} |")
    sharp = sweep.get("sharp_limit")
    if sharp:
        lines += ["", f"The limit curve of a sharper-duration ground truth (overrides "
                  f"`{json.dumps(sharp['overrides'])}`; oracle only, {sharp['num_test']} test "
                  "windows per signal, data seed 42): exact boundary F1 of the Bayes ceiling with "
                  "true and with geometric durations.", "",
                  "| signal | true | geometric | limit gain | segment F1 true | geometric |",
                  "| ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in sharp["rows"]:
            t, g = r["true"], r["geometric"]
            lines.append(f"| {r['signal']:g} | {_fmt(t['boundary_f1'])} | "
                         f"{_fmt(g['boundary_f1'])} | {_fmt(t['boundary_f1'] - g['boundary_f1'])} | "
                         f"{_fmt(t['segment_f1'])} | {_fmt(g['segment_f1'])} |")
    return "\n".join(lines) + "\n"


def _errorbar(ax: Any, x: Sequence[float], stats: Sequence[Mapping[str, Any]], **style: Any) -> None:
    est = [d["estimate"] for d in stats]
    ax.errorbar(x, est, yerr=[[e - d["ci_low"] for e, d in zip(est, stats)],
                              [d["ci_high"] - e for e, d in zip(est, stats)]],
                marker="o", capsize=3, **style)


def plot_sweep(path: str | os.PathLike, sweep: Mapping[str, Any]) -> Path:
    """The money curve: (1) exact boundary F1 of the trained models and of the Bayes ceiling
    (true and geometric durations) vs signal; (2) learned gain vs limit gain with 95% CIs;
    (3) the sharper-duration ground truth's limit curve."""
    sharp = sweep.get("sharp_limit")
    panels = 3 if sharp else 2
    fig = Figure(figsize=(5 * panels, 4), constrained_layout=True)
    FigureCanvasAgg(fig)
    every = sorted(sweep["rows"], key=lambda r: r["signal"])
    rows = [r for r in every if r["trained"]]
    x = [r["signal"] for r in rows]
    ax = fig.add_subplot(1, panels, 1)
    ax.plot([r["signal"] for r in every], [r["oracle"]["true"]["boundary_f1"] for r in every],
            color="black", label="ceiling, true durations")
    ax.plot([r["signal"] for r in every], [r["oracle"]["geometric"]["boundary_f1"] for r in every],
            color="grey", linestyle="--", label="ceiling, geometric durations")
    for m, color in zip(SWEEP_MODELS, ("tab:blue", "tab:green")):
        ax.plot(x, [r[m]["boundary_f1"] for r in rows], marker="o", linestyle=":", color=color,
                label=f"{m} (trained)")
    ax.set_ylim(0, 1)
    ax.set_title("exact boundary F1: trained vs the limit")
    ax = fig.add_subplot(1, panels, 2)
    _errorbar(ax, [v - 0.005 for v in x], [r["learned_vs_limit_gain"]["details"]["learned_gain"]
                                           for r in rows], color="tab:blue",
              label="learned: semicrf - linear")
    _errorbar(ax, [v + 0.005 for v in x], [r["learned_vs_limit_gain"]["details"]["limit_gain"]
                                           for r in rows], color="black",
              label="limit: true - geometric")
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.set_title("boundary F1 gain of durations (95% CIs)")
    if sharp:
        ax = fig.add_subplot(1, panels, 3)
        sx = [r["signal"] for r in sharp["rows"]]
        ax.plot(sx, [r["true"]["boundary_f1"] for r in sharp["rows"]], color="black",
                label="ceiling, true durations")
        ax.plot(sx, [r["geometric"]["boundary_f1"] for r in sharp["rows"]], color="grey",
                linestyle="--", label="ceiling, geometric durations")
        ax.set_ylim(0, 1)
        ax.set_title(f"sharper durations: the limit ({sharp['num_test']} windows)")
    for ax in fig.axes:
        ax.set_xlabel("signal (composition strength)")
        ax.legend(fontsize=8)
    fig.suptitle(f"When do learned durations help? ({sweep['scale']} scale)")
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
    parser.add_argument("--limit-only-signals", type=float, nargs="*", default=[],
                        help="signals decoded by the Bayes oracle alone (no model trained)")
    parser.add_argument("--sharp-windows", type=int, default=SHARP_WINDOWS,
                        help="test windows per signal of the sharper-duration limit curve "
                             "(0: leave it out)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if any(not 0.0 <= s <= 1.0 for s in [*args.signals, *args.limit_only_signals]):
            raise ValueError(f"signals must lie in [0, 1], got {args.signals} "
                             f"{args.limit_only_signals}")
        if set(args.signals) & set(args.limit_only_signals):
            raise ValueError("a signal is either trained (--signals) or limit-only, not both")
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        if args.sharp_windows < 0:
            raise ValueError(f"--sharp-windows must be >= 0, got {args.sharp_windows}")
        with logging_redirect_tqdm():  # a bar over the finished models (on a terminal)
            out = signal_sweep(args.scale, args.signals, args.results_root, n_boot=args.n_boot,
                               overrides=read_overrides_file(args.generator_config),
                               workers=args.workers, sharp_windows=args.sharp_windows,
                               limit_only=args.limit_only_signals,
                               progress=progress_bars(quiet=False))
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log.info("wrote %s", Path(args.results_root) / f"signal_sweep_{out['scale']}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
