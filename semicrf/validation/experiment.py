"""The validation experiment behind ``pytest -m validation``: the spec's claims as statistics.

One experiment per scale and ground truth:

1. generate a data set from the (scaled) ground truth,
2. train the four models with :func:`semicrf.pipeline.run_benchmark` and evaluate them on
   the test split,
3. generate a second data set whose exon lengths are doubled and train only ``semicrf`` on
   it (does the learned duration table follow the ground truth?),
4. decide every claim (:func:`decide_claims`) with a paired bootstrap over test sequences
   where the claim is about a test-set statistic, and write the report
   (:func:`write_report`).

Steps 1-3 are cached on disk under ``<results_root>/<scale>-<hash>/``, the hash covering
everything that defines them (:meth:`Experiment.key`); a ``complete.json`` marker says they
finished, and an interrupted run is resumed from its checkpoints, never trusted. The claims
and the report are recomputed on every run (seconds). Thresholds are module constants,
fixed before the first full run; ``docs/validation.md`` argues each of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semicrf.atomic_io import write_json, write_text
from semicrf.data import GeneratorConfig, generate_dataset, load_split
from semicrf.environment import git_state, machine_info
from semicrf.labels import class_names, label_runs
from semicrf.metrics import (
    boundary_match_counts,
    clamped_length_histogram,
    duration_table_kl,
    f1_from_counts,
    kl_divergence,
)
from semicrf.models import MODEL_NAMES
from semicrf.pipeline import RunConfig, load_predictions, run_benchmark, true_pmf_table
from semicrf.report import load_results, to_jsonable, write_metrics_json
from semicrf.stats import paired_bootstrap
from semicrf.train import ProgressFactory, no_progress

log = logging.getLogger(__name__)

#: Bump when the experiment protocol changes, so that old caches are not reused.
EXPERIMENT_VERSION = 1
NUM_CLASSES = 3
BASELINES: tuple[str, ...] = ("semicrf_uniform", "linear", "softmax")
DURATION_CLASSES: tuple[str, ...] = ("exon", "intron")
#: Name of the semicrf model trained on the shifted ground truth, in claims and reports.
SHIFTED_MODEL = "semicrf@shifted"

# ---- thresholds: fixed before the first full run (docs/validation.md) --------------------

#: The spec's "Expected Results": semicrf's duration KL and the best (lowest) baseline's.
SPEC_EXPECTED_KL: dict[str, dict[str, float]] = {
    "exon": {"semicrf": 0.3, "best_baseline": 1.8},
    "intron": {"semicrf": 0.5, "best_baseline": 2.5},
}
#: Absolute duration-KL thresholds: the midpoint between "low" and "high" in the spec.
KL_THRESHOLDS: dict[str, float] = {
    c: 0.5 * (v["semicrf"] + v["best_baseline"]) for c, v in SPEC_EXPECTED_KL.items()
}
#: KL(true pmf || learned exon pmf of the head) must be below this (the spec's "low" exon value).
LEARNED_KL_THRESHOLD = 0.3
#: The learned exon median must lie within this relative distance of the true median.
MEDIAN_REL_TOLERANCE = 0.25
#: The changed ground truth multiplies the exon median, min and max by this.
SHIFT_EXON_FACTOR = 2.0
#: Triton vs reference: optimiser steps compared and their relative tolerance on the loss.
TRITON_STEPS = 8
TRITON_RTOL = 1e-4
#: Bootstrap settings.
ALPHA = 0.05
N_BOOT = 2000
BOOT_SEED = 20240611


# ---- scales and ground truth -----------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    """One validation experiment's size: the data (counts, lengths) plus the ``semicrf run``
    settings it trains with (a :class:`RunConfig` whose data and output dirs are filled in
    per run; its ``max_duration`` is K at this scale)."""

    name: str
    length_factor: int  # every generator length and T are the spec's divided by this
    num_train: int
    num_val: int
    num_test: int
    run: RunConfig
    data_seed: int = 42
    run_shifted: bool = True
    spec_seq_length: int = 20000

    @property
    def seq_length(self) -> int:
        return round(self.spec_seq_length / self.length_factor)

    @property
    def max_duration(self) -> int:
        return self.run.max_duration


def scale_run(**settings: Any) -> RunConfig:
    """The run settings of a scale (``data_dir`` and ``output_dir`` are set per run)."""
    return RunConfig(data_dir="", output_dir="", **settings)


#: ``cpu``: the spec scaled down by 10 in every length (docs/validation.md argues the sizes);
#: ``full``: the spec's defaults, for a GPU.
SCALES: dict[str, Scale] = {
    "cpu": Scale(
        name="cpu", length_factor=10, num_train=256, num_val=48, num_test=200,
        run=scale_run(encoder="bilstm", max_duration=100, hidden_dim=32, num_layers=1,
                      batch_size=16, lr=1e-2, epochs=40, device="cpu", threads="1"),
    ),
    "full": Scale(
        name="full", length_factor=1, num_train=1000, num_val=200, num_test=200,
        run=scale_run(batch_size=16, device=None),
    ),
}


def scale_ground_truth(config: GeneratorConfig, factor: float) -> GeneratorConfig:
    """``config`` with every duration length (median, min, max of every class) divided by
    ``factor``; sigmas (log-scale shapes) are unchanged. Integer bounds are rounded, min >= 1
    (>= 4 for introns while splice motifs are on), max >= min."""
    if factor == 1:
        return config
    data = config.to_dict()
    for name, spec in data["durations"].items():
        low = max(1, round(spec["min"] / factor))
        if name == "intron" and data["splice_motifs"]:
            low = max(low, 4)
        spec["median"] = spec["median"] / factor
        spec["min"] = low
        spec["max"] = max(low, round(spec["max"] / factor))
    return GeneratorConfig.from_dict(data)


def shift_exon_lengths(config: GeneratorConfig, factor: float = SHIFT_EXON_FACTOR) -> GeneratorConfig:
    """``config`` with the exon median, min and max multiplied by ``factor``."""
    data = config.to_dict()
    exon = data["durations"]["exon"]
    exon["median"] *= factor
    exon["min"] = max(1, round(exon["min"] * factor))
    exon["max"] = max(exon["min"], round(exon["max"] * factor))
    return GeneratorConfig.from_dict(data)


def read_generator_overrides(path: str | os.PathLike | None) -> dict[str, Any] | None:
    """The JSON object of a ``--generator-config`` file (as ``semicrf generate --config``)."""
    if path is None:
        return None
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"generator config {os.fspath(path)!r} not found")
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"generator config {os.fspath(path)!r} must hold a JSON object")
    return data


@dataclass(frozen=True)
class Experiment:
    """A scale plus the ground truths it runs on (both as complete generator configs)."""

    scale: Scale
    generator: dict[str, Any]
    shifted_generator: dict[str, Any] | None
    overrides: dict[str, Any] | None = None  # what --generator-config asked for (report only)
    models: tuple[str, ...] = MODEL_NAMES  # trained on the main ground truth

    def describe(self) -> dict[str, Any]:
        """Everything that defines the cached part (data, training): what the key hashes."""
        return {
            "experiment_version": EXPERIMENT_VERSION,
            "num_classes": NUM_CLASSES,
            "models": list(self.models),
            "scale": asdict(self.scale),
            "seq_length": self.scale.seq_length,
            "max_duration": self.scale.max_duration,
            "generator": self.generator,
            "shifted_generator": self.shifted_generator,
        }

    def key(self) -> str:
        """12 hex digits of the SHA-256 of :meth:`describe` (canonical JSON)."""
        text = json.dumps(to_jsonable(self.describe()), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def directory(self, results_root: str | os.PathLike) -> Path:
        return Path(results_root) / f"{self.scale.name}-{self.key()}"


def build_experiment(scale: Scale | str, overrides: Mapping[str, Any] | None = None, *,
                     models: tuple[str, ...] = MODEL_NAMES) -> Experiment:
    """The experiment of ``scale`` on the defaults with ``overrides`` (a ``--generator-config``
    object) applied, all lengths then divided by the scale's factor."""
    if isinstance(scale, str):
        if scale not in SCALES:
            raise ValueError(f"unknown validation scale {scale!r}; choose from {sorted(SCALES)}")
        scale = SCALES[scale]
    base = GeneratorConfig.from_overrides(dict(overrides) if overrides else None)
    effective = scale_ground_truth(base, scale.length_factor)
    shifted = shift_exon_lengths(effective) if scale.run_shifted else None
    return Experiment(
        scale=scale, generator=effective.to_dict(),
        shifted_generator=shifted.to_dict() if shifted is not None else None,
        overrides=dict(overrides) if overrides else None, models=tuple(models),
    )


# ---- running (cached) -------------------------------------------------------------------


@dataclass
class ExperimentResult:
    """The trained experiment as read back from disk."""

    experiment: Experiment
    root: Path
    payload: dict[str, Any]  # metrics.json of the four-model run
    predictions: dict[str, list[np.ndarray]]  # model -> decoded test labels per sequence
    true_labels: list[np.ndarray]
    shifted_payload: dict[str, Any] | None
    timing: dict[str, Any]
    from_cache: bool = False

    @property
    def run_dir(self) -> Path:
        return self.root / "run"


def _ensure_data(path: Path, generator: dict[str, Any], scale: Scale) -> Path:
    """Generate the data set unless a complete one (``meta.json`` written last) is there."""
    if (path / "meta.json").is_file():
        return path
    generate_dataset(
        path, num_train=scale.num_train, num_val=scale.num_val, num_test=scale.num_test,
        seq_length=scale.seq_length, num_classes=NUM_CLASSES, seed=scale.data_seed,
        config=generator,
    )
    return path


def run_config(scale: Scale, data_dir: Path, output_dir: Path,
               models: tuple[str, ...] = MODEL_NAMES) -> RunConfig:
    """The ``semicrf run`` settings of one experiment (resuming from checkpoints)."""
    return replace(scale.run, data_dir=str(data_dir), output_dir=str(output_dir), models=models,
                   resume=True)


def _add_time(root: Path, phase: str, seconds: float) -> dict[str, Any]:
    """Accumulate the wall time of ``phase`` in ``timing.json`` (over resumed sessions)."""
    path = root / "timing.json"
    timing = json.loads(path.read_text()) if path.is_file() else {"phases": {}, "sessions": 0}
    timing["phases"][phase] = timing["phases"].get(phase, 0.0) + seconds
    timing["total_s"] = sum(timing["phases"].values())
    write_json(path, timing)
    return timing


def run_experiment(
    experiment: Experiment,
    results_root: str | os.PathLike,
    *,
    rebuild: bool = False,
    progress: ProgressFactory = no_progress,
) -> ExperimentResult:
    """Generate, train and evaluate (or load the cached, completed result)."""
    root = experiment.directory(results_root)
    marker = root / "complete.json"
    if rebuild and root.exists():
        log.info("--validation-rebuild: removing %s", root)
        shutil.rmtree(root)
    if marker.is_file():
        log.info("validation experiment %s: cached, loading", root)
        return load_experiment(experiment, root, from_cache=True)
    root.mkdir(parents=True, exist_ok=True)
    write_json(root / "experiment.json", to_jsonable(experiment.describe()))
    if (root / "timing.json").is_file():
        log.info("validation experiment %s: resuming an interrupted run", root)
    scale = experiment.scale
    code = git_state()  # the source the training runs with (HEAD may move while it runs)
    started = time.perf_counter()
    data = _ensure_data(root / "data", experiment.generator, scale)
    _add_time(root, "generate", time.perf_counter() - started)
    started = time.perf_counter()
    run_benchmark(run_config(scale, data, root / "run", experiment.models), progress=progress)
    _add_time(root, "train_four_models", time.perf_counter() - started)
    if experiment.shifted_generator is not None:
        started = time.perf_counter()
        shifted = _ensure_data(root / "shifted" / "data", experiment.shifted_generator, scale)
        run_benchmark(run_config(scale, shifted, root / "shifted" / "run", ("semicrf",)),
                      progress=progress)
        _add_time(root, "train_shifted_semicrf", time.perf_counter() - started)
    timing = json.loads((root / "timing.json").read_text())
    write_json(marker, to_jsonable({
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "key": experiment.key(), "timing": timing, "machine": machine_info(),
        "code_at_start": code,
    }))
    return load_experiment(experiment, root, from_cache=False)


def load_experiment(experiment: Experiment, root: Path, *, from_cache: bool) -> ExperimentResult:
    """Read a completed experiment directory."""
    payload = load_results(root / "run")
    missing = [m for m in experiment.models if m not in payload["models"]]
    if missing:
        raise ValueError(f"{root / 'run'} lacks models {missing}: the run did not complete")
    predictions = {m: load_predictions(root / "run" / "predictions" / f"{m}.npz")
                   for m in experiment.models}
    true_labels = [r.labels for r in load_split(root / "data", "test")]
    shifted = None
    if experiment.shifted_generator is not None:
        shifted = load_results(root / "shifted" / "run")
    marker = root / "complete.json"
    timing = json.loads(marker.read_text())["timing"] if marker.is_file() else {}
    return ExperimentResult(experiment, root, payload, predictions, true_labels, shifted, timing,
                            from_cache)


# ---- statistics -------------------------------------------------------------------------


def bootstrap_interval(
    metric_fn: Callable[[Any, Any], float],
    items: Sequence[Any],
    true: Sequence[Any],
    n_boot: int = N_BOOT,
    seed: int = BOOT_SEED,
    alpha: float = ALPHA,
) -> dict[str, float]:
    """Percentile bootstrap of ``metric_fn(items, true)`` over sequences (one model).

    Draws the same resamples as :func:`semicrf.stats.paired_bootstrap` with the same seed.
    Returns ``estimate``, ``ci_low``, ``ci_high``, ``n_boot``, ``alpha``.
    """
    n = len(true)
    if len(items) != n or n == 0:
        raise ValueError(f"items and true must have the same, non-zero length: {len(items)}, {n}")
    take = (lambda x, idx: x[idx]) if isinstance(items, np.ndarray) else (
        lambda x, idx: [x[i] for i in idx])
    estimate = float(metric_fn(items, true))
    rng = np.random.default_rng(seed)
    values = np.empty(int(n_boot))
    for i in range(int(n_boot)):
        idx = rng.integers(0, n, size=n)
        values[i] = float(metric_fn(take(items, idx), take(true, idx)))
    low, high = np.quantile(values, [alpha / 2.0, 1.0 - alpha / 2.0])
    return {"estimate": estimate, "ci_low": float(low), "ci_high": float(high),
            "n_boot": int(n_boot), "alpha": float(alpha)}


def per_sequence_length_histograms(labels: Sequence[np.ndarray], num_classes: int,
                                   max_duration: int) -> np.ndarray:
    """(S, C, K) counts of segment lengths 1..K per sequence and class, lengths above K in
    bin K: summed over sequences they are the histograms of the spec's ``duration_kl``."""
    out = np.zeros((len(labels), num_classes, max_duration), dtype=np.int64)
    for i, seq in enumerate(labels):
        runs = np.asarray(label_runs(seq), dtype=np.int64).reshape(-1, 3)
        lengths, labs = runs[:, 1] - runs[:, 0], runs[:, 2]
        for c in range(num_classes):
            out[i, c] = clamped_length_histogram(lengths[labs == c], max_duration)
    return out


def pooled_kl(pred_hists: np.ndarray, true_hists: np.ndarray) -> float:
    """KL(true || predicted) of (S, K) per-sequence histograms pooled over sequences."""
    return kl_divergence(true_hists.sum(axis=0), pred_hists.sum(axis=0))


def discrete_median(pmf: np.ndarray) -> int:
    """Smallest length d (1-based) with P(length <= d) >= 1/2 (the pmf is renormalised)."""
    pmf = np.asarray(pmf, dtype=np.float64)
    cdf = np.cumsum(pmf) / pmf.sum()
    return int(np.searchsorted(cdf, 0.5 - 1e-12) + 1)


# ---- claims -----------------------------------------------------------------------------


@dataclass
class Claim:
    """One claim: what was estimated, its interval, the rule and the verdict."""

    id: str
    title: str
    statistic: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    threshold: float | None
    rule: str
    passed: bool | None  # None: not decided (e.g. needs CUDA)
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "NOT RUN"}[self.passed]

    def message(self) -> str:
        ci = ""
        if self.ci_low is not None and self.ci_high is not None:
            ci = f", 95% CI [{self.ci_low:.4f}, {self.ci_high:.4f}]"
        est = "n/a" if self.estimate is None else f"{self.estimate:.4f}"
        return (f"{self.id}: {self.verdict}: {self.statistic} = {est}{ci}; rule {self.rule} "
                f"(threshold {self.threshold}){'; ' + self.note if self.note else ''}")


def claim_ids(shifted: bool = True) -> list[str]:
    """Every claim id :func:`decide_claims` produces, in report order."""
    ids = [f"boundary_f1_vs_{b}" for b in BASELINES]
    ids += [f"duration_kl_{c}_vs_{b}" for c in DURATION_CLASSES for b in BASELINES]
    ids += [f"duration_kl_{c}_absolute" for c in DURATION_CLASSES]
    ids += ["learned_exon_kl", "learned_exon_median"]
    if shifted:
        ids += ["shifted_learned_exon_median"]
    ids += [f"stable_{m}" for m in MODEL_NAMES] + ([f"stable_{SHIFTED_MODEL}"] if shifted else [])
    ids += ["triton_matches_reference"]
    return ids


def boundary_claim(counts_semicrf: np.ndarray, counts_base: np.ndarray, baseline: str, *,
                   n_boot: int = N_BOOT, seed: int = BOOT_SEED, alpha: float = ALPHA) -> Claim:
    """semicrf boundary F1 - baseline's, paired bootstrap over sequences; pass iff CI > 0."""
    res = paired_bootstrap(lambda c, _t: f1_from_counts(c), counts_semicrf, counts_base,
                           counts_semicrf, n_boot=n_boot, seed=seed, alpha=alpha)
    return Claim(
        id=f"boundary_f1_vs_{baseline}",
        title=f"semicrf boundary F1 > {baseline}",
        statistic=f"boundary F1(semicrf) - boundary F1({baseline})",
        estimate=res["estimate"], ci_low=res["ci_low"], ci_high=res["ci_high"], threshold=0.0,
        rule="ci_low > 0", passed=bool(res["ci_low"] > 0.0),
        details={"semicrf": f1_from_counts(counts_semicrf), baseline: f1_from_counts(counts_base),
                 "n_boot": n_boot},
    )


def duration_comparison_claim(hist_semicrf: np.ndarray, hist_base: np.ndarray,
                              hist_true: np.ndarray, cls: str, baseline: str, *,
                              n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                              alpha: float = ALPHA) -> Claim:
    """duration KL(baseline) - KL(semicrf) for one class (S, K histograms); pass iff CI > 0."""
    res = paired_bootstrap(pooled_kl, hist_base, hist_semicrf, hist_true, n_boot=n_boot,
                           seed=seed, alpha=alpha)
    return Claim(
        id=f"duration_kl_{cls}_vs_{baseline}",
        title=f"semicrf {cls} duration KL < {baseline}",
        statistic=f"duration_kl_{cls}({baseline}) - duration_kl_{cls}(semicrf)",
        estimate=res["estimate"], ci_low=res["ci_low"], ci_high=res["ci_high"], threshold=0.0,
        rule="ci_low > 0", passed=bool(res["ci_low"] > 0.0),
        details={"semicrf": pooled_kl(hist_semicrf, hist_true),
                 baseline: pooled_kl(hist_base, hist_true), "n_boot": n_boot},
    )


def absolute_kl_claim(hist_semicrf: np.ndarray, hist_true: np.ndarray, cls: str, *,
                      threshold: float | None = None, n_boot: int = N_BOOT,
                      seed: int = BOOT_SEED, alpha: float = ALPHA) -> Claim:
    """semicrf duration KL of one class below an absolute threshold: pass iff CI high < it."""
    threshold = KL_THRESHOLDS[cls] if threshold is None else threshold
    res = bootstrap_interval(pooled_kl, hist_semicrf, hist_true, n_boot=n_boot, seed=seed,
                             alpha=alpha)
    spec = SPEC_EXPECTED_KL.get(cls, {})
    return Claim(
        id=f"duration_kl_{cls}_absolute",
        title=f"semicrf {cls} duration KL low (spec ~{spec.get('semicrf')})",
        statistic=f"duration_kl_{cls}(semicrf)",
        estimate=res["estimate"], ci_low=res["ci_low"], ci_high=res["ci_high"],
        threshold=threshold, rule="ci_high < threshold", passed=bool(res["ci_high"] < threshold),
        details={"spec_semicrf": spec.get("semicrf"), "spec_best_baseline": spec.get("best_baseline"),
                 "n_boot": n_boot},
    )


def learned_pmf_claims(learned_pmf: np.ndarray, true_pmf: np.ndarray, *, prefix: str = "",
                       with_kl: bool = True) -> list[Claim]:
    """Exon column of the head's (K, C) pmf vs the generating pmf (truncated to 1..K):
    KL below :data:`LEARNED_KL_THRESHOLD` and the median within :data:`MEDIAN_REL_TOLERANCE`."""
    exon = class_names(NUM_CLASSES).index("exon")
    learned_pmf, true_pmf = np.asarray(learned_pmf), np.asarray(true_pmf)
    kl = duration_table_kl(learned_pmf, true_pmf)["exon"]
    m_learned = discrete_median(learned_pmf[:, exon])
    m_true = discrete_median(true_pmf[:, exon])
    rel = abs(m_learned - m_true) / m_true
    note = "single trained table: no test-set resampling applies (point estimate)"
    claims = []
    if with_kl:
        claims.append(Claim(
            id=f"{prefix}learned_exon_kl", title=f"{prefix}learned exon pmf matches the truth",
            statistic="KL(true exon pmf || learned exon pmf)", estimate=kl, ci_low=None,
            ci_high=None, threshold=LEARNED_KL_THRESHOLD, rule="estimate < threshold",
            passed=bool(kl < LEARNED_KL_THRESHOLD), note=note,
            details={"learned_median": m_learned, "true_median": m_true},
        ))
    claims.append(Claim(
        id=f"{prefix}learned_exon_median",
        title=f"{prefix}learned exon median within {MEDIAN_REL_TOLERANCE:.0%} of the true median",
        statistic="|median(learned) - median(true)| / median(true)", estimate=rel, ci_low=None,
        ci_high=None, threshold=MEDIAN_REL_TOLERANCE, rule="estimate <= threshold",
        passed=bool(rel <= MEDIAN_REL_TOLERANCE),
        note=f"learned median {m_learned}, true median {m_true}; {note}",
        details={"learned_median": m_learned, "true_median": m_true, "kl": kl},
    ))
    return claims


def stability_claim(model: str, entry: Mapping[str, Any]) -> Claim:
    """Every train/validation/test loss finite and the final validation loss below the first."""
    history = entry.get("history") or []
    losses = [row.get(k) for row in history for k in ("train_loss", "val_loss")]
    losses.append(entry.get("test_loss"))
    finite = bool(losses) and all(v is not None and math.isfinite(float(v)) for v in losses)
    val = [row.get("val_loss") for row in history]
    ratio = None
    if len(val) >= 1 and val[0] is not None and val[-1] is not None and float(val[0]) > 0:
        ratio = float(val[-1]) / float(val[0])
    passed = finite and ratio is not None and len(val) >= 2 and ratio < 1.0
    return Claim(
        id=f"stable_{model}", title=f"{model}: training stable",
        statistic="final / first validation loss", estimate=ratio, ci_low=None, ci_high=None,
        threshold=1.0, rule="all losses finite and estimate < threshold", passed=bool(passed),
        note=f"{len(history)} epochs; all losses finite: {finite}",
        details={"first_val_loss": val[0] if val else None,
                 "final_val_loss": val[-1] if val else None, "finite": finite},
    )


def triton_trajectories(data_dir: str | os.PathLike, scale: Scale, steps: int = TRITON_STEPS,
                        device: str = "cuda") -> dict[str, list[float]]:
    """Losses of the first ``steps`` optimiser steps of ``semicrf`` training, once with the
    Triton CRF backend and once with the reference, from the same initial weights and
    batches (encoder: a small BiLSTM, cuDNN deterministic, so only the CRF path differs)."""
    from semicrf.train import make_loader

    train = load_split(data_dir, "train")
    out: dict[str, list[float]] = {}
    torch.backends.cudnn.deterministic = True
    for backend in ("reference", "triton"):
        cfg = replace(scale.run, encoder="bilstm", features="onehot", hidden_dim=32, num_layers=1,
                      batch_size=4, epochs=1, backend=backend, no_triton=False,
                      ).train_config("semicrf", NUM_CLASSES)
        model = cfg.build().to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        losses: list[float] = []
        for batch in make_loader(train[: steps * cfg.batch_size], cfg, shuffle_epoch=0):
            feats, labels, lengths = (batch[k].to(device) for k in ("features", "labels", "lengths"))
            loss = model.loss(feats, lengths, labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(float(loss.item()))
        out[backend] = losses
    return out


def triton_claim(trajectories: Mapping[str, Sequence[float]] | None) -> Claim:
    """Triton and reference loss trajectories equal within :data:`TRITON_RTOL` (relative)."""
    base = dict(id="triton_matches_reference",
                title="Triton and reference CRF give the same semicrf loss trajectory",
                statistic="max relative loss difference over the first steps",
                ci_low=None, ci_high=None, threshold=TRITON_RTOL, rule="estimate <= threshold")
    if trajectories is None:
        return Claim(**base, estimate=None, passed=None, note="needs CUDA; not run")
    ref = np.asarray(trajectories["reference"], dtype=np.float64)
    tri = np.asarray(trajectories["triton"], dtype=np.float64)
    finite = ref.size > 0 and ref.shape == tri.shape and np.isfinite(ref).all() and np.isfinite(tri).all()
    worst = float(np.max(np.abs(tri - ref) / np.maximum(np.abs(ref), 1e-12))) if finite else math.inf
    return Claim(**base, estimate=worst, passed=bool(finite and worst <= TRITON_RTOL),
                 note=f"{ref.size} steps", details={k: list(v) for k, v in trajectories.items()})


def decide_claims(result: ExperimentResult, *, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
                  alpha: float = ALPHA, check_triton: bool | None = None) -> list[Claim]:
    """Every claim of the validation suite on one experiment (see :func:`claim_ids`)."""
    scale = result.experiment.scale
    k = scale.max_duration
    names = class_names(NUM_CLASSES)
    true = result.true_labels
    counts = {m: boundary_match_counts(result.predictions[m], true, NUM_CLASSES) for m in MODEL_NAMES}
    hists = {m: per_sequence_length_histograms(result.predictions[m], NUM_CLASSES, k) for m in MODEL_NAMES}
    hist_true = per_sequence_length_histograms(true, NUM_CLASSES, k)
    opts = dict(n_boot=n_boot, seed=seed, alpha=alpha)
    claims = [boundary_claim(counts["semicrf"], counts[b], b, **opts) for b in BASELINES]
    for cls in DURATION_CLASSES:
        c = names.index(cls)
        for b in BASELINES:
            claims.append(duration_comparison_claim(hists["semicrf"][:, c], hists[b][:, c],
                                                    hist_true[:, c], cls, b, **opts))
    for cls in DURATION_CLASSES:
        c = names.index(cls)
        claims.append(absolute_kl_claim(hists["semicrf"][:, c], hist_true[:, c], cls, **opts))

    generator = GeneratorConfig.from_dict(result.experiment.generator)
    learned = np.asarray(result.payload["models"]["semicrf"]["learned_duration"]["pmf"])
    base = learned_pmf_claims(learned, true_pmf_table(generator, NUM_CLASSES, k))
    claims += base
    if result.shifted_payload is not None:
        shifted_gen = GeneratorConfig.from_dict(result.experiment.shifted_generator)
        shifted_learned = np.asarray(
            result.shifted_payload["models"]["semicrf"]["learned_duration"]["pmf"])
        (shifted,) = learned_pmf_claims(
            shifted_learned, true_pmf_table(shifted_gen, NUM_CLASSES, k), prefix="shifted_",
            with_kl=False)
        shifted.details["base_learned_median"] = base[-1].details["learned_median"]
        claims.append(shifted)
    for m in MODEL_NAMES:
        claims.append(stability_claim(m, result.payload["models"][m]))
    if result.shifted_payload is not None:
        claims.append(stability_claim(SHIFTED_MODEL, result.shifted_payload["models"]["semicrf"]))
    if check_triton is None:
        check_triton = torch.cuda.is_available()
    trajectories = triton_trajectories(result.root / "data", scale) if check_triton else None
    claims.append(triton_claim(trajectories))
    return claims


# ---- report -----------------------------------------------------------------------------


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
            "best_epoch": entry.get("best_epoch"),
        }
        learned = entry.get("learned_duration")
        if learned:
            pmf = np.asarray(learned["pmf"])
            row["learned_kl"] = learned.get("kl")
            row["learned_exon_median"] = discrete_median(pmf[:, 1])
        out[name] = row
    return out


def write_report(
    result: ExperimentResult,
    claims: Sequence[Claim],
    *,
    command: str,
    session_wall_s: float | None = None,
    results_root: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write ``validation_report.json`` and ``.md`` into the experiment directory and copy the
    Markdown to ``<results_root>/latest_<scale>.md``. Returns the paths written."""
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
            "triton_rtol": TRITON_RTOL, "alpha": ALPHA,
        },
        "claims": [asdict(c) | {"verdict": c.verdict} for c in claims],
        "summary": {"passed": sum(c.passed is True for c in claims),
                    "failed": sum(c.passed is False for c in claims),
                    "not_run": sum(c.passed is None for c in claims)},
        "models": model_summary(result),
        "plots": plots,
    }
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
        f"torch threads while training {run['threads']}, "
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
    for c in report["claims"]:
        ci = (f"[{_fmt(c['ci_low'], 4)}, {_fmt(c['ci_high'], 4)}]"
              if c["ci_low"] is not None else "-")
        lines.append(f"| {c['id']} | {c['statistic']} | {_fmt(c['estimate'], 4)} | {ci} | "
                     f"{_fmt(c['threshold'], 4)} | {c['rule']} | **{c['verdict']}** |")
    notes = [c for c in report["claims"] if c.get("note")]
    if notes:
        lines += ["", "Notes:", ""] + [f"- {c['id']}: {c['note']}" for c in notes]
    lines += [
        "",
        "## Models on the test split",
        "",
        "| model | boundary F1 | boundary F1 tol2 | segment F1 | duration KL exon | "
        "duration KL intron | pred. exon median | learned exon KL | learned exon median | "
        "epochs | train s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in report["models"].items():
        lk = (r.get("learned_kl") or {}).get("exon")
        lines.append(
            f"| {name} | {_fmt(r['boundary_f1'])} | {_fmt(r['boundary_f1_tol2'])} | "
            f"{_fmt(r['segment_f1'])} | {_fmt(r['duration_kl']['exon'])} | "
            f"{_fmt(r['duration_kl']['intron'])} | {_fmt(r['exon_median_pred'], 1)} "
            f"(true {_fmt(r['exon_median_true'], 1)}) | {_fmt(lk)} | "
            f"{_fmt(r.get('learned_exon_median'))} | {r['epochs']} | {_fmt(r['train_time_s'], 0)} |"
        )
    if report["plots"]:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({path})" for name, path in report["plots"].items()]
    return "\n".join(lines) + "\n"


def with_overrides(scale: Scale, **changes: Any) -> Scale:
    """A copy of ``scale`` with fields of the scale or of its run settings replaced (for tests
    and sweeps), e.g. ``with_overrides(scale, num_train=8, epochs=2)``."""
    own = {f.name for f in fields(Scale)}
    run = {k: v for k, v in changes.items() if k not in own}
    base = {k: v for k, v in changes.items() if k in own}
    return replace(scale, **base, run=replace(base.get("run", scale.run), **run))


# ---- signal sweep (informational, no thresholds) ----------------------------------------

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
