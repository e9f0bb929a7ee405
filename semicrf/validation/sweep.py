"""The signal sweep: when do learned durations help? (informational, decides no claim)"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from semicrf.atomic_io import write_text
from semicrf.environment import machine_info
from semicrf.labels import class_names
from semicrf.metrics import boundary_match_counts, per_sequence_length_histograms
from semicrf.report import write_metrics_json
from semicrf.train import ProgressFactory, no_progress
from semicrf.validation.claims import (
    ALPHA,
    BOOT_SEED,
    DURATION_CLASSES,
    N_BOOT,
    boundary_claim,
    duration_comparison_claim,
)
from semicrf.validation.experiment import (
    NUM_CLASSES,
    SCALES,
    ExperimentResult,
    Scale,
    build_experiment,
    load_experiment,
    read_generator_overrides,
    run_experiment,
)
from semicrf.validation.report import _fmt

log = logging.getLogger(__name__)


SWEEP_MODELS: tuple[str, ...] = ("semicrf", "semicrf_uniform")


def sweep_row(result: ExperimentResult, signal: float, *, n_boot: int = N_BOOT,
              seed: int = BOOT_SEED, alpha: float = ALPHA) -> dict[str, Any]:
    """What duration modelling adds at one signal strength: semicrf vs semicrf_uniform,
    paired bootstrap of the boundary-F1 gain and of the exon and intron KL reductions."""
    k = result.experiment.scale.max_duration
    names = class_names(NUM_CLASSES)
    true = result.true_labels
    counts = {m: boundary_match_counts(result.predictions[m], true, NUM_CLASSES) for m in SWEEP_MODELS}
    hists = {m: per_sequence_length_histograms(result.predictions[m], NUM_CLASSES, k)
             for m in SWEEP_MODELS}
    hist_true = per_sequence_length_histograms(true, NUM_CLASSES, k)
    opts = dict(n_boot=n_boot, seed=seed, alpha=alpha)
    row: dict[str, Any] = {"signal": signal, "results_dir": str(result.root)}
    for m in SWEEP_MODELS:
        metrics = result.payload["models"][m]["metrics"]
        row[m] = {"boundary_f1": metrics["boundary_f1"], "segment_f1": metrics["segment_f1"],
                  "position_f1_macro": metrics["position_f1_macro"],
                  "duration_kl": metrics["duration_kl"]}
    row["boundary_f1_gain"] = boundary_claim(counts["semicrf"], counts["semicrf_uniform"],
                                             "semicrf_uniform", **opts).__dict__
    for cls in DURATION_CLASSES:
        c = names.index(cls)
        row[f"{cls}_kl_reduction"] = duration_comparison_claim(
            hists["semicrf"][:, c], hists["semicrf_uniform"][:, c], hist_true[:, c], cls,
            "semicrf_uniform", **opts).__dict__
    return row


def signal_sweep(scale: Scale | str, signals: Sequence[float], results_root: str | os.PathLike,
                 *, overrides: Mapping[str, Any] | None = None,
                 progress: ProgressFactory = no_progress) -> dict[str, Any]:
    """Train semicrf and semicrf_uniform at each generator ``signal`` (cached like the main
    experiment; a completed main experiment with the same ground truth is reused) and write
    ``<results_root>/signal_sweep_<scale>.{json,md}``. Informational: decides no claim."""
    if isinstance(scale, str):
        scale = SCALES[scale]
    root = Path(results_root)
    rows = []
    for signal in signals:
        ground = dict(overrides or {}) | {"signal": float(signal)}
        main = build_experiment(scale, ground)
        if (main.directory(root) / "complete.json").is_file():
            result = load_experiment(main, main.directory(root), from_cache=True)
        else:
            sweep = build_experiment(replace(scale, run_shifted=False), ground, models=SWEEP_MODELS)
            result = run_experiment(sweep, root, progress=progress)
        rows.append(sweep_row(result, float(signal)))
        log.info("signal %.2f: boundary F1 gain %.4f", signal, rows[-1]["boundary_f1_gain"]["estimate"])
    out = {"scale": scale.name, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_info(), "rows": rows}
    write_metrics_json(root / f"signal_sweep_{scale.name}.json", out)
    write_text(root / f"signal_sweep_{scale.name}.md", sweep_markdown(out))
    return out


def sweep_markdown(sweep: Mapping[str, Any]) -> str:
    """Markdown table of a signal sweep: the gain of learned over uniform durations."""
    def ci(d: Mapping[str, Any]) -> str:
        return f"{_fmt(d['estimate'])} [{_fmt(d['ci_low'])}, {_fmt(d['ci_high'])}]"

    lines = [
        f"# Signal sweep ({sweep['scale']} scale, {sweep['date']})",
        "",
        "semicrf (learned durations) against semicrf_uniform (same K, durations fixed), paired "
        "bootstrap over test sequences (95% CI).",
        "",
        "| signal | boundary F1 semicrf | boundary F1 uniform | F1 gain | exon KL semicrf | "
        "exon KL uniform | exon KL reduction | intron KL reduction |",
        "| ---: | ---: | ---: | --- | ---: | ---: | --- | --- |",
    ]
    for r in sweep["rows"]:
        s, u = r["semicrf"], r["semicrf_uniform"]
        lines.append(
            f"| {r['signal']:g} | {_fmt(s['boundary_f1'])} | {_fmt(u['boundary_f1'])} | "
            f"{ci(r['boundary_f1_gain'])} | {_fmt(s['duration_kl']['exon'])} | "
            f"{_fmt(u['duration_kl']['exon'])} | {ci(r['exon_kl_reduction'])} | "
            f"{ci(r['intron_kl_reduction'])} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m semicrf.validation sweep --scale cpu --signals 0.2 0.5 0.8``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m semicrf.validation")
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="signal sweep of semicrf vs semicrf_uniform")
    sweep.add_argument("--scale", choices=sorted(SCALES), default="cpu")
    sweep.add_argument("--signals", type=float, nargs="+", default=[0.2, 0.5, 0.8])
    sweep.add_argument("--results-root", default="validation_results")
    sweep.add_argument("--generator-config", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = signal_sweep(args.scale, args.signals, args.results_root,
                       overrides=read_generator_overrides(args.generator_config))
    log.info("wrote %s", Path(args.results_root) / f"signal_sweep_{out['scale']}.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
