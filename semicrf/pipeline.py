"""``semicrf run``: train the four models on one dataset, evaluate on its test split, report.

:class:`RunConfig` defines every flag of ``semicrf run`` once (name, type, default, choices,
help); the command line is built from it (:mod:`semicrf.cli.run`) and the validation's scales
are instances of it. :func:`run_benchmark` writes into ``output_dir``::

    config.json                  the run's settings (a RunConfig)
    metrics.json                 every metric per model (schema: docs/metrics.md);
                                 rewritten after each model, so partial runs keep results;
                                 runs of other models in the same directory at the same
                                 time (``--resume``) merge into it under ``.metrics.lock``
    duration_comparison.png      the money plot
    training_curves.png          loss and validation metric per epoch
    checkpoints/{model}_best.pt  best validation boundary F1
    checkpoints/{model}_last.pt  end of the last finished epoch (for --resume)
    predictions/{model}.npz      decoded test labels (``decoder``; see :func:`load_predictions`)
    predictions/{model}.{d}.npz  the same with the other decoder d

Every file is written atomically (:mod:`semicrf.atomic_io`). A non-empty ``output_dir`` is
refused unless ``resume`` (continue the run there) or ``overwrite`` (delete this pipeline's
outputs first) is set. Under ``torchrun`` the processes train one model together
(:mod:`semicrf.distributed`); rank 0 evaluates and writes every file.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semicrf.atomic_io import locked, read_json, save_npz, write_json
from semicrf.crf.head import DECODERS, DURATION_FORMS
from semicrf.data import FEATURE_KINDS, GeneratorConfig, load_split, read_meta, true_duration_pmf
from semicrf.data.features import feature_dim
from semicrf.distributed import Group, start, stop
from semicrf.encoders import ENCODER_NAMES
from semicrf.environment import package_versions
from semicrf.labels import class_names
from semicrf.metrics import evaluate, segment_lengths
from semicrf.models import MODEL_NAMES, STRUCTURES
from semicrf.plots import plot_duration_comparison, plot_training_curves
from semicrf.report import (
    METRICS_FILENAME,
    learned_duration_entry,
    load_results,
    to_jsonable,
    write_metrics_json,
)
from semicrf.train import ProgressFactory, TrainConfig, no_progress, predict, train_model

log = logging.getLogger(__name__)

CRF_BACKENDS: tuple[str, ...] = ("streaming", "reference", "triton")
DEVICES: tuple[str, ...] = ("cuda", "cpu")
CONFIG_FILENAME = "config.json"
#: Serialises the updates of config.json and metrics.json by processes sharing a directory.
LOCK_FILENAME = ".metrics.lock"
#: What this pipeline writes into an output directory (``--overwrite`` deletes exactly these).
OUTPUTS: tuple[str, ...] = (CONFIG_FILENAME, METRICS_FILENAME, "duration_comparison.png",
                            "training_curves.png", "checkpoints", "predictions", LOCK_FILENAME)


def _flag(default: Any = dataclasses.MISSING, help: str = "", *, choices: tuple[str, ...] | None = None,
          same_on_resume: bool = True, **extra: Any) -> Any:
    """A RunConfig field with its command-line metadata. ``same_on_resume``: the setting
    defines the results, so ``--resume`` refuses a run that changes it."""
    meta = {"help": help, "choices": choices, "same_on_resume": same_on_resume, **extra}
    if isinstance(default, tuple):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """The flags of ``semicrf run``, one field each (defaults are the spec's)."""

    data_dir: str = _flag(help="Dataset written by `semicrf generate`.", same_on_resume=False)
    output_dir: str = _flag(help="Where metrics, plots and checkpoints go.", same_on_resume=False)
    encoder: str = _flag("mamba", "mamba needs mamba-ssm and CUDA; mamba_stub is the pure-PyTorch "
                         "Mamba; bilstm a bidirectional LSTM; cnn a dilated residual CNN; "
                         "cnn_bilstm the CNN then the BiLSTM; conv one wide linear convolution "
                         "(docs/encoders.md).", choices=ENCODER_NAMES)
    features: str = _flag("onehot", "Input features.", choices=FEATURE_KINDS)
    max_duration: int = _flag(1000, "Max segment duration K.")
    duration_form: str = _flag("smooth", "semicrf's duration scores: smooth (Gaussian bumps in "
                               "log-length; chosen by validation loss, docs/model.md) or a free "
                               "(K, C) table.", choices=DURATION_FORMS)
    structure: str = _flag("gene", "Output structure of linear, semicrf and semicrf_uniform: plain "
                           "(the C labels) or gene (frame-aware gene grammar with boundary "
                           "sensors, docs/model.md).", choices=STRUCTURES)
    decoder: str = _flag("viterbi", "Decoder of metrics.json's `metrics` and predictions/{model}.npz "
                         "(the other one is reported beside it).", choices=DECODERS)
    hidden_dim: int = _flag(256, "Encoder hidden dimension.")
    num_layers: int = _flag(4, "Encoder layers.")
    batch_size: int = _flag(16, "Sequences per batch and process (N processes: global batch N * this).")
    lr: float = _flag(1e-3, "Peak learning rate (AdamW, warm-up + cosine).")
    epochs: int = _flag(100, "Training epochs.", same_on_resume=False)
    weight_decay: float = _flag(0.01, "AdamW weight decay.")
    grad_clip: float = _flag(1.0, "Gradient norm clipping threshold.")
    warmup_fraction: float = _flag(0.05, "Fraction of the steps with a linear learning-rate warm-up.")
    device: str | None = _flag(None, "Default: cuda when available, else cpu.", choices=DEVICES,
                               same_on_resume=False)
    log_every: int = _flag(10, "Update the progress line every N batches.", same_on_resume=False)
    backend: str = _flag("streaming", "Semi-CRF backend: streaming (Triton on CUDA, else PyTorch), "
                         "reference, triton.", choices=CRF_BACKENDS)
    no_triton: bool = _flag(False, "Disable Triton (use the PyTorch path).")
    models: tuple[str, ...] = _flag(MODEL_NAMES, "Subset of models to train (default: all four).",
                                    choices=MODEL_NAMES, same_on_resume=False)
    seed: int = _flag(0, "Seed for initialisation and data order.")
    threads: str = _flag("auto", "torch intra-op threads per process: a number, or auto (see "
                         "docs/benchmark.md: 1, measured best on shared CPUs).", same_on_resume=False)
    resume: bool = _flag(False, "Continue a run in --output-dir from checkpoints/{model}_last.pt.",
                         same_on_resume=False)
    overwrite: bool = _flag(False, "Delete this pipeline's outputs in --output-dir first.",
                            same_on_resume=False)
    quiet: bool = _flag(False, "No progress bars, warnings and errors only.", same_on_resume=False)

    def crf_backend(self) -> str:
        """"streaming" is the O(KC) sweep: Triton on CUDA unless --no-triton, else PyTorch."""
        if self.no_triton or self.backend == "reference":
            return "reference"
        return "triton" if self.backend == "triton" else "auto"

    def num_threads(self) -> int:
        """The torch intra-op thread count: ``threads`` as a number, or the "auto" policy (1)."""
        return 1 if self.threads == "auto" else int(self.threads)

    def resolve_device(self) -> torch.device:
        if self.device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but CUDA is not available; use --device cpu")
        return torch.device(self.device)

    def validate(self) -> None:
        """Raise ValueError (naming the flag) for any setting out of range."""
        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata["choices"]
            flag = "--" + f.name.replace("_", "-")
            if choices is None or value is None:
                continue
            values = value if isinstance(value, tuple) else (value,)
            bad = [v for v in values if v not in choices]
            if bad or not values:
                raise ValueError(f"{flag} must name {'some' if isinstance(value, tuple) else 'one'} "
                                 f"of {', '.join(choices)}, got {bad or list(values)}")
        for name in ("max_duration", "hidden_dim", "num_layers", "batch_size", "epochs", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        if self.weight_decay < 0 or not self.grad_clip > 0 or not 0 <= self.warmup_fraction <= 1:
            raise ValueError("--weight-decay must be >= 0, --grad-clip > 0 and --warmup-fraction in "
                             f"[0, 1], got {self.weight_decay}, {self.grad_clip}, {self.warmup_fraction}")
        if self.threads != "auto" and not (str(self.threads).isdigit() and int(self.threads) >= 1):
            raise ValueError(f"--threads must be a number >= 1 or auto, got {self.threads!r}")
        if self.resume and self.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")

    def train_config(self, model: str, num_labels: int, real_genes: bool = False) -> TrainConfig:
        """The training settings of one model (saved in its checkpoints). ``real_genes``
        (imported data): the gene grammar ends genes after whole codons and lets windows
        start inside genes (frames latent)."""
        return TrainConfig(
            model=model, encoder=self.encoder, features=self.features,
            input_dim=feature_dim(self.features), num_labels=num_labels,
            max_duration=self.max_duration, hidden_dim=self.hidden_dim, num_layers=self.num_layers,
            batch_size=self.batch_size, lr=self.lr, epochs=self.epochs,
            weight_decay=self.weight_decay, grad_clip=self.grad_clip,
            warmup_fraction=self.warmup_fraction, crf_backend=self.crf_backend(),
            log_every=self.log_every, seed=self.seed, duration_form=self.duration_form,
            structure=self.structure, whole_codons=real_genes, start_anywhere=real_genes,
        )


def _peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset (per model); CPU: the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _check_labels(records: list, num_classes: int, split: str) -> None:
    top = max(int(r.labels.max()) for r in records)
    if top >= num_classes:
        raise ValueError(f"{split} split has label {top} but meta.json declares {num_classes} "
                         "classes: the data directory mixes label schemes")


def true_pmf_table(generator: GeneratorConfig, num_classes: int, max_len: int) -> np.ndarray:
    """(max_len, C) generating pmf over lengths 1..max_len (mass above max_len dropped)."""
    return np.stack([true_duration_pmf(generator, c, max_len) for c in range(num_classes)], axis=1)


def save_predictions(path: Path, preds: list[np.ndarray]) -> None:
    """Decoded label arrays of one model, concatenated (int8) with their offsets."""
    offsets = np.cumsum([0] + [len(p) for p in preds])
    labels = np.concatenate(preds).astype(np.int8) if preds else np.zeros(0, np.int8)
    save_npz(path, labels=labels, offsets=offsets)


def load_predictions(path: str | Path) -> list[np.ndarray]:
    """The per-sequence predicted labels (int64 arrays) written by :func:`save_predictions`."""
    with np.load(path) as data:
        labels, offsets = data["labels"].astype(np.int64), data["offsets"]
    return [labels[a:b] for a, b in zip(offsets[:-1], offsets[1:])]


@contextmanager
def torch_threads(num: int) -> Iterator[None]:
    """Use ``num`` torch intra-op threads inside the block, then restore the previous count."""
    before = torch.get_num_threads()
    torch.set_num_threads(num)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _settings(cfg: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """The fields of a run config that must not change on --resume (a saved config.json
    without a field, written before the field existed, has its default)."""
    values = asdict(cfg) if isinstance(cfg, RunConfig) else cfg
    return {f.name: to_jsonable(values.get(f.name, f.default)) for f in dataclasses.fields(RunConfig)
            if f.metadata["same_on_resume"]}


def check_output_dir(cfg: RunConfig) -> dict[str, Any] | None:
    """Decide what may be done with ``cfg.output_dir`` before anything is written.

    Returns the models of an earlier run to keep (``--resume``: its metrics.json entries, so
    a run of other models never drops them) or None. Raises ValueError for a non-empty
    directory without ``--resume`` / ``--overwrite``, and for ``--resume`` with settings that
    differ from the run there. Touches nothing.
    """
    out = Path(cfg.output_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output-dir {str(out)!r} exists and is not a directory")
    content = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if not content or cfg.overwrite:
        return None
    if not cfg.resume:
        shown = ", ".join(content[:4]) + (", ..." if len(content) > 4 else "")
        raise ValueError(f"output directory {str(out)!r} is not empty ({shown}): pass --resume to "
                         "continue the run there or --overwrite to replace its results")
    saved_path = out / CONFIG_FILENAME
    if not saved_path.is_file():
        return None
    try:
        saved = load_results(out)["models"] if (out / METRICS_FILENAME).is_file() else {}
        before = json.loads(saved_path.read_text(encoding="utf-8"))
    except (ValueError, OSError) as err:
        raise ValueError(f"cannot resume in {str(out)!r}: {err}") from None
    changed = {k: (before.get(k), v) for k, v in _settings(cfg).items()
               if _settings(before).get(k) != v}
    if changed:
        detail = ", ".join(f"--{k.replace('_', '-')}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"cannot resume in {str(out)!r}: settings differ from its {CONFIG_FILENAME} "
                         f"({detail}); use another --output-dir or --overwrite")
    return {m: e for m, e in saved.items() if m not in cfg.models}


def _remove_outputs(out: Path) -> None:
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_benchmark(cfg: RunConfig, progress: ProgressFactory = no_progress) -> dict[str, Any]:
    """Train and evaluate ``cfg.models``; returns the metrics.json payload (``{}`` on the
    processes of a distributed run other than rank 0)."""
    cfg.validate()
    meta = read_meta(cfg.data_dir)
    num_classes = int(meta["num_classes"])
    splits = {s: load_split(cfg.data_dir, s) for s in ("train", "val", "test")}
    for split, records in splits.items():
        _check_labels(records, num_classes, split)
    kept = check_output_dir(cfg)  # before anything is written, in every process
    group, device = start(cfg.resolve_device())
    try:
        group.barrier()
        with torch_threads(cfg.num_threads()):
            return _run(cfg, meta, splits, kept, group, device, progress)
    finally:
        stop(group)


def _run(cfg: RunConfig, meta: dict[str, Any], splits: dict[str, list], kept: dict[str, Any] | None,
         group: Group, device: torch.device, progress: ProgressFactory) -> dict[str, Any]:
    out = Path(cfg.output_dir)
    num_classes = int(meta["num_classes"])
    if group.is_main:
        if cfg.overwrite and out.is_dir():
            _remove_outputs(out)
        _write_config(cfg)
    true_pmf = None
    if "generator" in meta:  # generated data: the true duration pmf is known
        true_pmf = true_pmf_table(GeneratorConfig.from_dict(meta["generator"]), num_classes,
                                  cfg.max_duration)
    payload: dict[str, Any] = {
        "config": asdict(cfg), "seed": cfg.seed, "world_size": group.world_size,
        "data_meta": {k: v for k, v in meta.items() if k != "splits"},
        "versions": package_versions(), "device": str(device), "models": dict(kept or {}),
    }
    for name in cfg.models:
        entry = _train_and_evaluate(cfg, name, num_classes, splits, device, out, true_pmf,
                                    progress, group, real_genes="generator" not in meta)
        if group.is_main:
            _record_model(out, payload, name, entry)
    if not group.is_main:
        return {}
    true_labels = [r.labels for r in splits["test"]]
    predicted = {m: segment_lengths(load_predictions(out / "predictions" / f"{m}.npz"), num_classes)
                 for m in payload["models"]}
    _plots(out, payload, predicted, segment_lengths(true_labels, num_classes),
           class_names(num_classes), true_pmf)
    return payload


def _write_config(cfg: RunConfig) -> None:
    """config.json; on ``--resume`` its model list is the union with the one there (another
    process may be training other models into the same directory)."""
    out = Path(cfg.output_dir)
    config = asdict(cfg)
    with locked(out / LOCK_FILENAME):
        path = out / CONFIG_FILENAME
        if cfg.resume and path.is_file():
            before = read_json(path, CONFIG_FILENAME).get("models", [])
            config["models"] = tuple(m for m in MODEL_NAMES if m in (*before, *cfg.models))
        write_json(path, to_jsonable(config))


def _record_model(out: Path, payload: dict[str, Any], name: str, entry: dict[str, Any]) -> None:
    """Add one model's entry to ``payload`` and metrics.json: under the directory's lock the
    file is read again and merged (entries another process wrote meanwhile are kept), in the
    order of :data:`MODEL_NAMES`."""
    with locked(out / LOCK_FILENAME):
        saved = load_results(out)["models"] if (out / METRICS_FILENAME).is_file() else {}
        merged = {**payload["models"], **saved, name: entry}
        payload["models"] = {m: merged[m] for m in MODEL_NAMES if m in merged}
        write_metrics_json(out / METRICS_FILENAME, payload)


def _train_and_evaluate(cfg: RunConfig, name: str, num_classes: int, splits: dict[str, list],
                        device: torch.device, out: Path, true_pmf: np.ndarray | None,
                        progress: ProgressFactory, group: Group, real_genes: bool = False
                        ) -> dict[str, Any] | None:
    """Train one model (resuming where asked), evaluate it on the test split, save its
    predictions; returns its metrics.json entry (None on processes other than rank 0).
    ``real_genes``: imported data (see :meth:`RunConfig.train_config`)."""
    tcfg = cfg.train_config(name, num_classes, real_genes)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = train_model(tcfg, splits["train"], splits["val"], out / "checkpoints",
                         device=device, resume=cfg.resume, progress=progress, group=group)
    if not group.is_main:
        return None
    true_labels = [r.labels for r in splits["test"]]
    started = time.perf_counter()
    preds, test_loss = predict(result.model, splits["test"], tcfg, device, decoder=cfg.decoder)
    infer_time = time.perf_counter() - started
    others: dict[str, Any] = {}
    for decoder in DECODERS:
        if decoder == cfg.decoder:
            continue
        # positions are independent in softmax: every decoder gives its argmax
        other = preds if name == "softmax" else predict(result.model, splits["test"], tcfg, device,
                                                        decoder=decoder)[0]
        others[decoder] = evaluate(other, true_labels, num_classes, cfg.max_duration)
        save_predictions(out / "predictions" / f"{name}.{decoder}.npz", other)
    entry: dict[str, Any] = {
        "metrics": evaluate(preds, true_labels, num_classes, cfg.max_duration),
        "decoder": cfg.decoder,
        "metrics_other_decoders": others,
        "test_loss": test_loss,
        "train_time_s": result.train_time_s,
        "inference_seq_per_s": len(preds) / infer_time,
        "peak_memory_mb": _peak_memory_mb(device),
        "best_epoch": result.best_epoch,
        "history": result.history,
    }
    save_predictions(out / "predictions" / f"{name}.npz", preds)
    table = result.model.duration_table()
    if name in ("semicrf", "semicrf_uniform") and table is not None:
        entry["learned_duration"] = learned_duration_entry(table.detach().cpu().numpy(), true_pmf)
    log.info("%s: test boundary F1 %.4f, segment F1 %.4f", name,
             entry["metrics"]["boundary_f1"], entry["metrics"]["segment_f1"])
    return entry


def _plots(out: Path, payload: dict[str, Any], predicted: dict[str, dict[str, np.ndarray]],
           true_lengths: dict[str, np.ndarray], names: tuple[str, ...],
           true_pmf: np.ndarray | None) -> None:
    models = payload["models"]
    learned = {m: np.asarray(e["learned_duration"]["pmf"]) for m, e in models.items()
               if "learned_duration" in e}
    plot_duration_comparison(
        out / "duration_comparison.png", {n: true_lengths[n] for n in names},
        predicted,
        {m: e["metrics"]["duration_kl"] for m, e in models.items()},
        learned_pmfs=learned or None, true_pmf=true_pmf,
    )
    plot_training_curves(out / "training_curves.png", {m: e["history"] for m, e in models.items()})
