"""``semicrf run``: train the four models on one dataset, evaluate on its test split, report.

Writes into ``output_dir`` (the spec's "Output Structure")::

    config.json                  the run's settings
    metrics.json                 every metric per model (schema: docs/metrics.md);
                                 rewritten after each model, so partial runs keep results
    duration_comparison.png      the money plot
    training_curves.png          loss and validation metric per epoch
    checkpoints/{model}_best.pt  best validation boundary F1
    checkpoints/{model}_last.pt  end of the last finished epoch (for --resume)
    predictions/{model}.npz      decoded test labels (see :func:`load_predictions`)
"""

from __future__ import annotations

import logging
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semicrf.atomic_io import save_npz, write_json
from semicrf.data import GeneratorConfig, load_split, read_meta, true_duration_pmf
from semicrf.data.features import feature_dim
from semicrf.environment import package_versions
from semicrf.labels import class_names
from semicrf.metrics import evaluate, segment_lengths
from semicrf.models import MODEL_NAMES
from semicrf.plots import plot_duration_comparison, plot_training_curves
from semicrf.report import learned_duration_entry, to_jsonable, write_metrics_json
from semicrf.train import ProgressFactory, TrainConfig, no_progress, predict, train_model

log = logging.getLogger(__name__)

CRF_BACKENDS = ("streaming", "reference", "triton")


@dataclass
class RunConfig:
    """The flags of ``semicrf run`` (defaults are the spec's)."""

    data_dir: str
    output_dir: str
    encoder: str = "mamba"
    features: str = "onehot"
    max_duration: int = 1000
    hidden_dim: int = 256
    num_layers: int = 4
    batch_size: int = 16
    lr: float = 1e-3
    epochs: int = 100
    device: str | None = None  # None: cuda when available, else cpu
    log_every: int = 10
    backend: str = "streaming"
    no_triton: bool = False
    models: tuple[str, ...] = field(default=MODEL_NAMES)
    seed: int = 0
    resume: bool = False

    def crf_backend(self) -> str:
        """"streaming" is the O(KC) sweep: Triton on CUDA unless --no-triton, else PyTorch."""
        if self.backend not in CRF_BACKENDS:
            raise ValueError(f"--backend must be one of {CRF_BACKENDS}, got {self.backend!r}")
        if self.no_triton or self.backend == "reference":
            return "reference"
        return "triton" if self.backend == "triton" else "auto"

    def resolve_device(self) -> torch.device:
        if self.device is None:
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but CUDA is not available; use --device cpu")
        return torch.device(self.device)

    def validate(self) -> None:
        for name, value in (("max-duration", self.max_duration), ("hidden-dim", self.hidden_dim),
                            ("num-layers", self.num_layers), ("batch-size", self.batch_size),
                            ("epochs", self.epochs), ("log-every", self.log_every)):
            if value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")
        if not self.lr > 0:
            raise ValueError(f"--lr must be > 0, got {self.lr}")
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown or not self.models:
            raise ValueError(f"--models must name some of {', '.join(MODEL_NAMES)}, got {unknown}")
        self.crf_backend()


def _peak_memory_mb(device: torch.device) -> float:
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


def run_benchmark(cfg: RunConfig, progress: ProgressFactory = no_progress) -> dict[str, Any]:
    """Train and evaluate ``cfg.models``; returns the metrics.json payload."""
    cfg.validate()
    meta = read_meta(cfg.data_dir)
    num_classes = int(meta["num_classes"])
    splits = {s: load_split(cfg.data_dir, s) for s in ("train", "val", "test")}
    for split, records in splits.items():
        _check_labels(records, num_classes, split)
    device = cfg.resolve_device()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", to_jsonable(asdict(cfg)))
    names = class_names(num_classes)
    generator = GeneratorConfig.from_dict(meta["generator"])
    true_pmf = true_pmf_table(generator, num_classes, cfg.max_duration)
    true_labels = [r.labels for r in splits["test"]]
    payload: dict[str, Any] = {
        "config": asdict(cfg), "seed": cfg.seed,
        "data_meta": {k: v for k, v in meta.items() if k != "splits"},
        "versions": package_versions(), "device": str(device), "models": {},
    }
    predicted: dict[str, dict[str, np.ndarray]] = {}  # model -> class -> segment lengths
    for name in cfg.models:
        tcfg = TrainConfig(
            model=name, encoder=cfg.encoder, features=cfg.features,
            input_dim=feature_dim(cfg.features), num_labels=num_classes,
            max_duration=cfg.max_duration, hidden_dim=cfg.hidden_dim, num_layers=cfg.num_layers,
            batch_size=cfg.batch_size, lr=cfg.lr, epochs=cfg.epochs,
            crf_backend=cfg.crf_backend(), log_every=cfg.log_every, seed=cfg.seed,
        )
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        result = train_model(tcfg, splits["train"], splits["val"], out / "checkpoints",
                             device=device, resume=cfg.resume, progress=progress)
        started = time.perf_counter()
        preds, test_loss = predict(result.model, splits["test"], tcfg, device)
        infer_time = time.perf_counter() - started
        entry: dict[str, Any] = {
            "metrics": evaluate(preds, true_labels, num_classes, cfg.max_duration),
            "test_loss": test_loss,
            "train_time_s": result.train_time_s,
            "inference_seq_per_s": len(preds) / infer_time,
            "peak_memory_mb": _peak_memory_mb(device),
            "best_epoch": result.best_epoch,
            "history": result.history,
        }
        predicted[name] = segment_lengths(preds, num_classes)
        save_predictions(out / "predictions" / f"{name}.npz", preds)
        table = result.model.duration_table()
        if name in ("semicrf", "semicrf_uniform") and table is not None:
            entry["learned_duration"] = learned_duration_entry(table.detach().cpu().numpy(), true_pmf)
        payload["models"][name] = entry
        write_metrics_json(out / "metrics.json", payload)
        log.info("%s: test boundary F1 %.4f, segment F1 %.4f", name,
                 entry["metrics"]["boundary_f1"], entry["metrics"]["segment_f1"])
    _plots(out, payload, predicted, segment_lengths(true_labels, num_classes), names, true_pmf)
    return payload


def _plots(out: Path, payload: dict[str, Any], predicted: dict[str, dict[str, np.ndarray]],
           true_lengths: dict[str, np.ndarray], names: tuple[str, ...], true_pmf: np.ndarray) -> None:
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
