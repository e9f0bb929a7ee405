"""The validation report: ``validation_report.{json,md}`` of one experiment."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from semicrf.atomic_io import write_text
from semicrf.environment import machine_info
from semicrf.report import write_metrics_json
from semicrf.validation.claims import (
    ALPHA,
    CLAIM_DECODER,
    COMPETENCE_FRACTION,
    KL_INTERVAL,
    KL_THRESHOLDS,
    LEARNED_KL_THRESHOLD,
    MEDIAN_REL_TOLERANCE,
    N_BOOT,
    SPEC_EXPECTED_KL,
    TRITON_RTOL,
    Claim,
    decoded_claims,
    discrete_median,
)
from semicrf.validation.experiment import SHIFTED_MODEL, ExperimentResult
from semicrf.validation.oracle import ceiling_rows


def model_summary(result: ExperimentResult) -> dict[str, dict[str, Any]]:
    """Per model: the headline test metrics (boundary F1, segment F1, duration KLs, medians)."""
    out: dict[str, dict[str, Any]] = {}
    entries = dict(result.payload["models"])
    if result.shifted_payload is not None:
        entries[SHIFTED_MODEL] = result.shifted_payload["models"]["semicrf"]
    for name, entry in entries.items():
        m = entry["metrics"]
        row = {
            "boundary_f1": m["boundary_f1"], "boundary_f1_tol2": m.get("boundary_f1_tol2"),
            "segment_f1": m["segment_f1"], "position_f1_macro": m["position_f1_macro"],
            "duration_kl": m["duration_kl"], "duration_kl_log": m.get("duration_kl_log"),
            "exon_median_true": m["duration_summary"]["exon"]["median_true"],
            "exon_median_pred": m["duration_summary"]["exon"]["median_pred"],
            "train_time_s": entry.get("train_time_s"), "epochs": len(entry.get("history") or []),
            "best_epoch": entry.get("best_epoch"), "test_loss": entry.get("test_loss"),
            "val_loss_last_epoch_rel_change": _last_change(entry.get("history") or []),
            "posterior": {k: (entry.get("metrics_other_decoders") or {}).get("posterior", {}).get(k)
                          for k in ("boundary_f1", "segment_f1", "duration_kl_log")},
        }
        learned = entry.get("learned_duration")
        if learned:
            pmf = np.asarray(learned["pmf"])
            row["learned_kl"] = learned.get("kl")
            row["learned_exon_median"] = discrete_median(pmf[:, 1])
        out[name] = row
    return out


def _last_change(history: Sequence[Mapping[str, Any]]) -> float | None:
    """|v[-1] - v[-2]| / |v[-2]| of the validation losses (the plateau of the curve)."""
    val = [row.get("val_loss") for row in history]
    if len(val) < 2 or val[-2] in (None, 0) or val[-1] is None:
        return None
    return abs(float(val[-1]) - float(val[-2])) / abs(float(val[-2]))


def write_report(
    result: ExperimentResult,
    claims: Sequence[Claim],
    *,
    command: str,
    session_wall_s: float | None = None,
    results_root: str | os.PathLike | None = None,
    n_boot: int = N_BOOT,
) -> dict[str, Path]:
    """Write ``validation_report.json`` and ``.md`` into the experiment directory and copy the
    Markdown to ``<results_root>/latest_<scale>.md``. Beside the claims, the same statistics
    with the posterior decoder's labels are reported (not asserted). Returns the paths."""
    beside = decoded_claims(result, "posterior", n_boot=n_boot)
    scale = result.experiment.scale
    root = result.root
    plots = {name: os.path.relpath(p, root) for name, p in (
        ("duration_comparison", root / "run" / "duration_comparison.png"),
        ("training_curves", root / "run" / "training_curves.png"),
        ("shifted_duration_comparison", root / "shifted" / "run" / "duration_comparison.png"),
    ) if p.is_file()}
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "scale": scale.name,
        "key": result.experiment.key(),
        "results_dir": str(root),
        "from_cache": result.from_cache,
        "machine": machine_info(),
        "trained_on": _trained_on(root),
        "experiment_wall_s": result.timing.get("total_s"),
        "experiment_timing": result.timing,
        "session_wall_s": session_wall_s,
        "experiment": result.experiment.describe(),
        "generator_overrides": result.experiment.overrides,
        "thresholds": {
            "kl_absolute": KL_THRESHOLDS, "spec_expected_kl": SPEC_EXPECTED_KL,
            "learned_kl": LEARNED_KL_THRESHOLD, "median_rel_tolerance": MEDIAN_REL_TOLERANCE,
            "triton_rtol": TRITON_RTOL, "alpha": ALPHA, "kl_interval": KL_INTERVAL,
            "competence_fraction": COMPETENCE_FRACTION,
            "claim_decoder": CLAIM_DECODER,
        },
        "claims": [asdict(c) | {"verdict": c.verdict} for c in claims],
        "posterior_decoder": [asdict(c) | {"verdict": c.verdict} for c in beside],
        "probe": {name: {k: v for k, v in (probe or {}).items() if k != "posterior_durations"}
                  for name, probe in (("semicrf", result.probe), (SHIFTED_MODEL, result.shifted_probe))},
        "summary": {"passed": sum(c.passed is True for c in claims),
                    "failed": sum(c.passed is False for c in claims),
                    "not_run": sum(c.passed is None for c in claims)},
        "models": model_summary(result),
        "plots": plots,
    }
    if (root / "data" / "meta.json").is_file():  # the Bayes ceiling (docs/validation.md)
        report["oracle"] = ceiling_rows(root / "data", scale.max_duration)
        top = report["oracle"]["true"]["boundary_f1"]
        # the shifted model is tested on other windows: its ceiling is not this one
        report["fraction_of_ceiling"] = {name: r["boundary_f1"] / top if top else None
                                         for name, r in report["models"].items()
                                         if name != SHIFTED_MODEL}
    json_path = write_metrics_json(root / "validation_report.json", report)
    md_path = root / "validation_report.md"
    write_text(md_path, report_markdown(report))
    written = {"json": json_path, "md": md_path}
    if results_root is not None:
        latest = Path(results_root) / f"latest_{scale.name}.md"
        text = md_path.read_text(encoding="utf-8").replace(
            "](run/", f"]({root.name}/run/").replace("](shifted/", f"]({root.name}/shifted/")
        write_text(latest, text)
        written["latest"] = latest
    return written


def _trained_on(root: Path) -> dict[str, Any]:
    """{"git": ...} of the source the experiment was trained with (at the start of the last
    training session; older markers only have the commit at completion)."""
    if not (root / "complete.json").is_file():
        return {}
    marker = json.loads((root / "complete.json").read_text())
    if marker.get("code_at_start") is not None:
        return {"git": marker["code_at_start"]}
    return marker.get("machine", {})


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(value)
    return f"{value:.{digits}f}"


def _commit(machine: Mapping[str, Any]) -> str:
    git = machine.get("git") or {}
    if not git:
        return "unknown"
    dirty = f" (+{git['modified_files']} modified files)" if git.get("modified_files") else ""
    return f"{git['commit'][:10]}{dirty}"


def _claim_rows(claims: Sequence[Mapping[str, Any]]) -> list[str]:
    rows = []
    for c in claims:
        ci = (f"[{_fmt(c['ci_low'], 4)}, {_fmt(c['ci_high'], 4)}]"
              if c["ci_low"] is not None else "-")
        statistic = c["statistic"].replace("|", "\\|")  # a table cell
        rows.append(f"| {c['id']} | {statistic} | {_fmt(c['estimate'], 4)} | {ci} | "
                    f"{_fmt(c['threshold'], 4)} | {c['rule']} | **{c['verdict']}** |")
    return rows


def report_markdown(report: Mapping[str, Any]) -> str:
    """The Markdown form of a validation report (claims table, model table, plots)."""
    exp = report["experiment"]
    scale = exp["scale"]
    run = scale["run"]
    gen = exp["generator"]["durations"]
    s = report["summary"]
    wall = report.get("experiment_wall_s")
    lines = [
        f"# Validation report: {report['scale']} scale",
        "",
        f"- date: {report['date']}",
        f"- machine: {report['machine']['platform']}, {report['machine']['cpu_count']} CPUs, "
        f"torch threads {report['machine']['torch_threads']}, "
        f"accelerator {report['machine']['cuda'] or 'none'}",
        f"- command: `{report['command']}`",
        f"- experiment wall time (generate + train + evaluate): "
        f"{_fmt(wall / 60 if wall else None, 1)} min"
        + (" (cached from an earlier session)" if report["from_cache"] else ""),
        f"- this session: {_fmt((report.get('session_wall_s') or 0) / 60, 1)} min",
        f"- code: commit {_commit(report['machine'])}; experiment trained at commit "
        f"{_commit(report.get('trained_on') or {})}",
        f"- results: `{report['results_dir']}` (key {report['key']})",
        f"- verdicts: {s['passed']} passed, {s['failed']} failed, {s['not_run']} not run",
        "",
        f"Scale: T = {exp['seq_length']}, K = {exp['max_duration']}, "
        f"{scale['num_train']}/{scale['num_val']}/{scale['num_test']} sequences, encoder "
        f"{run['encoder']} (hidden {run['hidden_dim']}, {run['num_layers']} layer(s)), "
        f"batch {run['batch_size']}, lr {run['lr']}, {run['epochs']} epochs, "
        f"torch threads while training {run['threads']}, semicrf duration form "
        f"{run.get('duration_form', 'table')}, claims decoded with {report['thresholds']['claim_decoder']}, "
        f"signal {exp['generator']['signal']}.",
        "",
        "Ground truth (median, min-max; the changed ground truth doubles the exon):",
        "",
        "| class | median | sigma | min | max |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name in ("intergenic", "exon", "intron"):
        d = gen[name]
        lines.append(f"| {name} | {d['median']:g} | {d['sigma']:g} | {d['min']} | {d['max']} |")
    lines += [
        "",
        "## Claims",
        "",
        "| claim | statistic | estimate | 95% CI | threshold | rule | verdict |",
        "| --- | --- | ---: | --- | ---: | --- | --- |",
    ]
    lines += _claim_rows(report["claims"])
    notes = [c for c in report["claims"] if c.get("note")]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {c['id']}: {c['note']}" for c in notes]
    if report.get("posterior_decoder"):
        lines += ["", "## The same statistics with the posterior decoder (reported, not asserted)",
                  "", "| claim | statistic | estimate | 95% CI | threshold | rule | would be |",
                  "| --- | --- | ---: | --- | ---: | --- | --- |"]
        lines += _claim_rows(report["posterior_decoder"])
    lines += [
        "",
        "## Models on the test split",
        "",
        "Viterbi labels; `posterior` columns: the posterior decoder. KLs: `duration_kl_log` "
        "(log-spaced bins, the claims' statistic) and, in brackets, the spec's `duration_kl` "
        "(1..K, clamped). Plateau: relative change of the validation NLL over the last epoch.",
        "",
        "| model | boundary F1 | boundary F1 posterior | segment F1 | exon KL log (1..K) | "
        "intron KL log (1..K) | pred. exon median | learned exon KL | test NLL | plateau | "
        "epochs (best) | train s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["models"].items():
        lk = (r.get("learned_kl") or {}).get("exon")
        log_kl = r.get("duration_kl_log") or {}
        lines.append(
            f"| {name} | {_fmt(r['boundary_f1'])} | {_fmt((r.get('posterior') or {}).get('boundary_f1'))} | "
            f"{_fmt(r['segment_f1'])} | {_fmt(log_kl.get('exon'))} ({_fmt(r['duration_kl']['exon'])}) | "
            f"{_fmt(log_kl.get('intron'))} ({_fmt(r['duration_kl']['intron'])}) | "
            f"{_fmt(r['exon_median_pred'], 1)} (true {_fmt(r['exon_median_true'], 1)}) | {_fmt(lk)} | "
            f"{_fmt(r.get('test_loss'), 5)} | {_fmt(r.get('val_loss_last_epoch_rel_change'), 4)} | "
            f"{r['epochs']} ({r.get('best_epoch')}) | {_fmt(r['train_time_s'], 0)} |"
        )
    if report.get("oracle"):
        lines += ceiling_markdown(report["oracle"], report["fraction_of_ceiling"])
    if report["plots"]:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({path})" for name, path in report["plots"].items()]
    return "\n".join(lines) + "\n"


def ceiling_markdown(oracle: Mapping[str, Any], fractions: Mapping[str, Any]) -> list[str]:
    """The report's "Bayes ceiling" section: the oracle rows (:func:`ceiling_rows`) and each
    model's exact boundary F1 as a fraction of the true-duration ceiling."""
    lines = ["", "## The Bayes ceiling", "",
             "The generator's own model decoded exactly (`semicrf oracle`, Viterbi; "
             "docs/validation.md) on the same test windows, with true and with geometric "
             "durations of the same means:", "",
             "| durations | boundary F1 | within 10 bp | segment F1 | exon KL log | "
             "intron KL log | s per window |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind, r in oracle.items():
        lines.append(f"| {kind} | {_fmt(r['boundary_f1'])} | {_fmt(r['boundary_f1_tol10'])} | "
                     f"{_fmt(r['segment_f1'])} | {_fmt(r['duration_kl_log'].get('exon'))} | "
                     f"{_fmt(r['duration_kl_log'].get('intron'))} | "
                     f"{_fmt(r['seconds_per_sequence'], 2)} |")
    lines += ["", "Each model's exact boundary F1 as a fraction of the true-duration ceiling: "
              + ", ".join(f"{name} {_fmt(v)}" for name, v in fractions.items()) + "."]
    return lines
