"""Training loop: AdamW, gradient clipping, warm-up + cosine schedule, checkpoints, resume.

Each epoch ends with a validation pass (loss and boundary F1 of the decoded labels) and
two atomic checkpoint writes: ``{model}_last.pt`` (everything needed to resume) and, when
the validation NLL per position is the lowest so far, ``{model}_best.pt``.
Killing the process loses at most the epoch in progress; ``resume=True`` continues from the
last checkpoint. The data order of epoch e is drawn from a generator seeded with (seed, e),
so a resumed run on CPU reproduces the uninterrupted one exactly.

Data parallel (``torchrun``, :mod:`semicrf.distributed`): each epoch's permutation is cut into
global batches of ``world_size * batch_size`` sequences, and process r trains on the r-th
slice of each; the model is wrapped in ``DistributedDataParallel`` and each process's loss is
weighted by its share of the global batch's positions, so the averaged gradient is the
gradient of the global batch's per-position loss: N processes with batch b take the same
steps as one process with batch N * b. Rank 0 alone validates, writes checkpoints and
returns the best weights.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from semicrf.atomic_io import save_torch
from semicrf.data import SequenceDataset, collate
from semicrf.data.storage import SequenceRecord
from semicrf.distributed import SINGLE, Group
from semicrf.metrics import evaluate
from semicrf.models import SegmentationModel, build_model

log = logging.getLogger(__name__)

#: The validation metric logged beside the validation loss each epoch. Model selection
#: (``{model}_best.pt``) is on the validation NLL: selecting on this F1 picked noise-level
#: epochs while every model's F1 was 0-0.02 (validation run 5, docs/validation.md).
LOGGED_METRIC = "boundary_f1"

ProgressFactory = Callable[..., Iterable]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message names model, epoch and batch."""


@dataclass
class TrainConfig:
    """Everything that defines one model's training (saved in every checkpoint); built by
    :meth:`semicrf.pipeline.RunConfig.train_config`, which holds the defaults."""

    model: str
    encoder: str
    features: str
    input_dim: int
    num_labels: int
    max_duration: int
    hidden_dim: int
    num_layers: int
    batch_size: int
    lr: float
    epochs: int
    weight_decay: float
    grad_clip: float
    warmup_fraction: float
    crf_backend: str
    log_every: int
    seed: int
    duration_form: str = "table"
    structure: str = "plain"
    whole_codons: bool = False
    start_anywhere: bool = False

    def build(self) -> SegmentationModel:
        torch.manual_seed(self.seed)  # the same initial encoder for every model
        return build_model(
            self.model, input_dim=self.input_dim, num_labels=self.num_labels,
            encoder=self.encoder, hidden_dim=self.hidden_dim, num_layers=self.num_layers,
            max_duration=self.max_duration, crf_backend=self.crf_backend,
            duration_form=self.duration_form, structure=self.structure,
            whole_codons=self.whole_codons, start_anywhere=self.start_anywhere,
        )


@dataclass
class TrainResult:
    model: SegmentationModel  # with the best validation weights loaded
    history: list[dict[str, Any]]
    best_epoch: int
    train_time_s: float


def no_progress(iterable: Iterable, **_: Any) -> Iterable:
    """The default progress factory: iterate without showing anything."""
    return iterable


def progress_bars(quiet: bool) -> ProgressFactory:
    """tqdm bars on stderr, shown only when stderr is a terminal and ``quiet`` is not set
    (use inside ``tqdm.contrib.logging.logging_redirect_tqdm`` so log lines do not break them)."""
    from tqdm import tqdm

    return functools.partial(tqdm, disable=True if quiet else None)  # None: off unless a TTY


def _schedule(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def epoch_batches(num_items: int, cfg: TrainConfig, epoch: int, world_size: int = 1) -> list[Tensor]:
    """The global batches of one epoch: a permutation of ``range(num_items)`` drawn from a
    (seed, epoch) generator, cut into pieces of ``world_size * cfg.batch_size`` indices."""
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    order = torch.randperm(num_items, generator=generator)
    return list(order.split(world_size * cfg.batch_size))


def make_loader(records: Sequence[SequenceRecord], cfg: TrainConfig, *,
                shuffle_epoch: int | None, group: Group = SINGLE) -> DataLoader:
    """Batches of (features, labels, lengths): in order, or this process's slices of the
    global batches of epoch ``shuffle_epoch`` (:func:`epoch_batches`). A process whose slice
    of the last global batch is empty gets its first sequence (weighted 0 by the caller)."""
    if shuffle_epoch is None:
        batches = [list(range(i, min(i + cfg.batch_size, len(records))))
                   for i in range(0, len(records), cfg.batch_size)]
    else:
        batches = []
        for batch in epoch_batches(len(records), cfg, shuffle_epoch, group.world_size):
            mine = batch[group.rank * cfg.batch_size:(group.rank + 1) * cfg.batch_size]
            batches.append((mine if len(mine) else batch[:1]).tolist())
    return DataLoader(SequenceDataset(records, cfg.features), batch_sampler=batches,
                      collate_fn=collate)


class TrainingLoss(nn.Module):
    """A batch's training loss as a module (what ``DistributedDataParallel`` wraps)."""

    def __init__(self, model: SegmentationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """Scalar loss of a collated batch already on the model's device."""
        return self.model.loss(batch["features"], batch["lengths"], batch["labels"],
                               batch["censored"])


@torch.no_grad()
def predict(model: SegmentationModel, records: Sequence[SequenceRecord], cfg: TrainConfig,
            device: torch.device, decoder: str = "viterbi") -> tuple[list[np.ndarray], float]:
    """Decoded labels per record (np.int64 arrays, ``decoder`` of
    :data:`semicrf.crf.head.DECODERS`) and the mean loss (NLL per position) over batches."""
    model.eval()
    preds, losses, skipped = [], [], 0
    for batch in make_loader(records, cfg, shuffle_epoch=None):
        feats, labels, lengths, censored = (
            batch[k].to(device) for k in ("features", "labels", "lengths", "censored"))
        loss, decoded = model.loss_and_decode(feats, lengths, labels, censored, decoder=decoder)
        losses.append(loss.item())
        skipped += skipped_windows(model)
        decoded = decoded.cpu().numpy()
        preds.extend(decoded[b, : int(n)] for b, n in enumerate(lengths.tolist()))
    if skipped:
        log.warning("%s: %d of %d windows left out of the loss: the gene grammar cannot "
                    "produce their labels", cfg.model, skipped, len(records))
    return preds, float(np.mean(losses))


def skipped_windows(model: SegmentationModel) -> int:
    """Windows the last loss left out because the gene grammar cannot produce their labels
    (:attr:`semicrf.crf.gene_head.GeneHead.skipped_windows`; 0 for other heads)."""
    return int(getattr(model.head, "skipped_windows", 0))


def _check_resume(state: dict[str, Any], cfg: TrainConfig, path: Path, global_batch: int) -> None:
    saved = state["config"]
    if state.get("global_batch", saved["batch_size"]) != global_batch:
        raise ValueError(f"cannot resume from {path}: it was trained with a global batch of "
                         f"{state.get('global_batch', saved['batch_size'])} sequences, this run has "
                         f"{global_batch} (processes x --batch-size)")
    if saved["input_dim"] != cfg.input_dim:
        raise ValueError(
            f"checkpoint {path} was trained on {saved['features']} features of dimension "
            f"{saved['input_dim']}, but this run uses {cfg.features} (dimension {cfg.input_dim})"
        )
    changed = {k: (saved.get(k), v) for k, v in asdict(cfg).items()
               if k not in ("epochs", "log_every") and saved.get(k) != v}
    if changed:
        detail = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changed.items())
        raise ValueError(f"cannot resume from {path}: settings differ ({detail})")


def _global_weights(records: Sequence[SequenceRecord], cfg: TrainConfig, epoch: int,
                    group: Group) -> list[tuple[float, int, int]]:
    """Per step: (this process's share of the global batch's positions times world_size, the
    global batch's sequences, its positions). The weight makes DDP's gradient average the
    gradient of the global per-position loss; it is exactly 1 for a single process."""
    out = []
    for batch in epoch_batches(len(records), cfg, epoch, group.world_size):
        sizes = [len(records[i]) for i in batch.tolist()]
        mine = sum(sizes[group.rank * cfg.batch_size:(group.rank + 1) * cfg.batch_size])
        weight = 1.0 if group.world_size == 1 else group.world_size * mine / sum(sizes)
        out.append((weight, len(sizes), sum(sizes)))
    return out


def _check_finite(loss: Tensor, group: Group, device: torch.device) -> bool:
    """Whether the loss is finite on every process (one collective when distributed)."""
    finite = float(torch.isfinite(loss.detach()).item())
    return group.sum([finite], device)[0] == group.world_size


def train_model(
    cfg: TrainConfig,
    train: Sequence[SequenceRecord],
    val: Sequence[SequenceRecord],
    checkpoint_dir: str | os.PathLike,
    *,
    device: torch.device | str = "cpu",
    resume: bool = False,
    progress: ProgressFactory = no_progress,
    group: Group = SINGLE,
) -> TrainResult:
    """Train one model; returns it with the best validation weights loaded (on rank 0; the
    other processes of a distributed run return the last weights and no history)."""
    device = torch.device(device)
    ckpt_dir = Path(checkpoint_dir)
    last_path, best_path = ckpt_dir / f"{cfg.model}_last.pt", ckpt_dir / f"{cfg.model}_best.pt"
    model = cfg.build().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    global_batch = group.world_size * cfg.batch_size
    steps_per_epoch = math.ceil(len(train) / global_batch)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _schedule(cfg.epochs * steps_per_epoch, cfg.warmup_fraction))
    history: list[dict[str, Any]] = []
    best_loss, best_epoch, first_epoch, train_time = math.inf, 0, 0, 0.0
    if resume and last_path.exists():
        state = torch.load(last_path, map_location=device, weights_only=False)
        _check_resume(state, cfg, last_path, global_batch)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        history, first_epoch = state["history"], state["epoch"]
        best_loss, best_epoch = state["best_val_loss"], state["best_epoch"]
        train_time = state["train_time_s"]
        log.info("%s: resuming after epoch %d of %d", cfg.model, first_epoch, cfg.epochs)
    objective: nn.Module = TrainingLoss(model)
    if group.world_size > 1:
        objective = DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None)

    for epoch in range(first_epoch, cfg.epochs):
        model.train()
        started, total, seen, positions, skipped = time.perf_counter(), 0.0, 0, 0, 0
        weights = _global_weights(train, cfg, epoch, group)
        bar = (progress if group.is_main else no_progress)(
            make_loader(train, cfg, shuffle_epoch=epoch, group=group), total=steps_per_epoch,
            desc=f"{cfg.model} epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for step, (batch, (weight, batch_seqs, batch_positions)) in enumerate(zip(bar, weights)):
            loss = objective({k: v.to(device) for k, v in batch.items()})
            skipped += skipped_windows(model)
            if not _check_finite(loss, group, device):
                raise NonFiniteLossError(
                    f"model {cfg.model}: loss is not finite at epoch {epoch + 1}, batch "
                    f"{step + 1}; stopping (the last good checkpoint is {last_path})")
            opt.zero_grad(set_to_none=True)
            (loss if weight == 1.0 else loss * weight).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            total += loss.item() * weight / group.world_size * batch_seqs
            seen += batch_seqs
            positions += batch_positions
            if (step + 1) % max(1, cfg.log_every) == 0:
                rate = positions / 1000 / (time.perf_counter() - started)
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{loss.item():.4f}", kb_per_s=f"{rate:.1f}")
                log.debug("%s epoch %d step %d loss %.5f (%.1f kb/s)", cfg.model, epoch + 1,
                          step + 1, loss.item(), rate)
        (total,) = group.sum([total], device)
        epoch_time = time.perf_counter() - started
        train_time += epoch_time
        if not group.is_main:
            continue
        preds, val_loss = predict(model, val, cfg, device)
        val_metrics = evaluate(preds, [r.labels for r in val], cfg.num_labels, cfg.max_duration)
        row = {
            "epoch": epoch + 1, "train_loss": total / max(1, seen), "val_loss": val_loss,
            f"val_{LOGGED_METRIC}": val_metrics[LOGGED_METRIC],
            "lr": sched.get_last_lr()[0], "time_s": epoch_time,
        }
        if skipped:  # counted on this process only (each sees its slice of the batches)
            row["skipped_windows"] = skipped
            log.warning("%s epoch %d: %d training windows left out of the loss: the gene "
                        "grammar cannot produce their labels", cfg.model, epoch + 1, skipped)
        history.append(row)
        log.info("%s epoch %d/%d: train loss %.4f, val loss %.4f, val %s %.4f (%.1f s)",
                 cfg.model, epoch + 1, cfg.epochs, row["train_loss"], val_loss,
                 LOGGED_METRIC, row[f"val_{LOGGED_METRIC}"], epoch_time)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch + 1
            save_torch({"model": model.state_dict(), "config": asdict(cfg), "epoch": epoch + 1,
                        "val_loss": best_loss}, best_path)
        save_torch({
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "config": asdict(cfg), "epoch": epoch + 1,
            "history": history, "best_val_loss": best_loss,
            "best_epoch": best_epoch, "global_batch": global_batch,
            "train_time_s": train_time,
        }, last_path)

    if group.is_main and best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location=device)["model"])
    return TrainResult(model=model, history=history, best_epoch=best_epoch, train_time_s=train_time)


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> SegmentationModel:
    """Rebuild a model from a ``_best.pt`` or ``_last.pt`` checkpoint."""
    state = torch.load(path, map_location=device, weights_only=False)
    model = TrainConfig(**state["config"]).build().to(device)
    model.load_state_dict(state["model"])
    return model
