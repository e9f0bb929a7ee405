"""Figures of a benchmark run: the duration "money plot" and the training curves.

Uses matplotlib's object-oriented API with the Agg canvas (no pyplot, no global state),
so it works headless and from worker threads.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from semicrf.atomic_io import atomic_write
from semicrf.labels import CLASS_NAMES
from semicrf.models import MODEL_NAMES

_MODEL_COLORS = {
    "softmax": "tab:orange",
    "linear": "tab:green",
    "semicrf": "tab:blue",
    "semicrf_uniform": "tab:purple",
}
_EXTRA_COLORS = ("tab:red", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
_TRUTH_COLOR = "0.55"
_NUM_BINS = 40
#: Use a log length axis when the longest length is at least this many times the shortest.
LOG_AXIS_RATIO = 30.0


def _model_color(name: str, index: int) -> str:
    return _MODEL_COLORS.get(name, _EXTRA_COLORS[index % len(_EXTRA_COLORS)])


def _ordered_models(names: Sequence[str]) -> list[str]:
    known = [m for m in MODEL_NAMES if m in names]
    return known + sorted(m for m in names if m not in MODEL_NAMES)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    FigureCanvasAgg(fig)
    kind = Path(path).suffix.lstrip(".") or "png"
    return atomic_write(path, lambda handle: fig.savefig(handle, dpi=150, format=kind))


def _length_bins(lengths: list[np.ndarray], extra_max: int = 0) -> tuple[np.ndarray, bool]:
    """Shared bins for one row of panels; log-spaced when lengths span decades."""
    arrays = [np.asarray(x) for x in lengths if np.asarray(x).size]
    lo = min((int(a.min()) for a in arrays), default=1)
    hi = max([int(a.max()) for a in arrays] + [extra_max, lo])
    lo = max(lo, 1)
    if hi / lo >= LOG_AXIS_RATIO:
        return np.geomspace(lo, hi + 1, _NUM_BINS + 1), True
    count = int(min(hi - lo + 1, _NUM_BINS))
    return np.linspace(lo - 0.5, hi + 0.5, count + 1), False


def _binned_pmf(pmf: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """Mass of a pmf over lengths 1..len(pmf) in each bin."""
    lengths = np.arange(1, pmf.size + 1)
    idx = np.searchsorted(bins, lengths, side="right") - 1
    inside = (idx >= 0) & (idx < bins.size - 1)
    return np.bincount(idx[inside], weights=pmf[inside], minlength=bins.size - 1)


def _fractions(lengths: np.ndarray, bins: np.ndarray) -> np.ndarray:
    counts, _ = np.histogram(lengths, bins=bins)
    return counts / max(int(np.asarray(lengths).size), 1)


def _fmt_kl(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.2f}"


def plot_duration_comparison(
    path: str | os.PathLike,
    true_durations: Mapping[str, np.ndarray],
    predicted_durations: Mapping[str, Mapping[str, np.ndarray]],
    kl: Mapping[str, Mapping[str, float | None]],
    learned_pmfs: Mapping[str, np.ndarray] | None = None,
    true_pmf: np.ndarray | None = None,
    *,
    max_duration: int | None = None,
    kl_name: str = "KL",
) -> Path:
    """The money plot: segment-length distributions, true and predicted, per class.

    Rows are classes (the keys of ``true_durations``, in order); columns are the ground
    truth and each model (benchmark order). Each panel shows the fraction of segments per
    length bin, with the truth as a dashed outline in model panels, the divergence
    ``kl[model][class]`` and the segment count. Bins are shared along a row and log-spaced
    when lengths span decades.

    Args:
        path: PNG file to write.
        true_durations: class name -> lengths of the true segments.
        predicted_durations: model -> class name -> lengths of predicted segments.
        kl: model -> class name -> divergence shown in the panel (``None``: n/a).
        learned_pmfs: model -> (K, C) learned duration pmf (column c = label c), drawn
            as a line over lengths 1..K.
        true_pmf: (L, C) generating pmf over lengths 1..L (column c = label c), drawn in
            the truth column.
        max_duration: K, marked by a dotted vertical line (default: rows of a learned pmf).
        kl_name: label of the divergence in the panels.
    """
    classes = list(true_durations)
    if not classes:
        raise ValueError("true_durations is empty")
    models = _ordered_models(list(predicted_durations))
    learned_pmfs = dict(learned_pmfs or {})
    if max_duration is None and learned_pmfs:
        max_duration = int(np.asarray(next(iter(learned_pmfs.values()))).shape[0])
    ncols, nrows = 1 + len(models), len(classes)
    fig = Figure(figsize=(2.9 * ncols + 0.6, 2.3 * nrows + 0.9), layout="constrained")
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    used_learned = used_truth_pmf = False
    for r, name in enumerate(classes):
        true_len = np.asarray(true_durations[name])
        # pmf columns follow the label order, whatever the order of the rows
        col_idx = CLASS_NAMES.index(name) if name in CLASS_NAMES else r
        row = [true_len] + [np.asarray(predicted_durations[m].get(name, [])) for m in models]
        bins, log_x = _length_bins(row, extra_max=max_duration or 0)
        truth_frac = _fractions(true_len, bins) if true_len.size else None
        for c, col in enumerate(["ground truth", *models]):
            ax = axes[r, c]
            lengths = row[c]
            color = _TRUTH_COLOR if c == 0 else _model_color(col, c)
            if lengths.size:
                ax.stairs(_fractions(lengths, bins), bins, fill=True, color=color, alpha=0.75)
            else:
                ax.text(
                    0.5,
                    0.5,
                    "no segments",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    color="0.4",
                    fontsize=9,
                )
            if c > 0 and truth_frac is not None:
                ax.stairs(truth_frac, bins, color="black", linestyle="--", linewidth=1.0)
            if c == 0 and true_pmf is not None:
                pmf = np.asarray(true_pmf, dtype=float)[:, col_idx]
                ax.stairs(_binned_pmf(pmf, bins), bins, color="black", linewidth=1.2)
                used_truth_pmf = True
            if c > 0 and col in learned_pmfs:
                pmf = np.asarray(learned_pmfs[col], dtype=float)[:, col_idx]
                ax.stairs(_binned_pmf(pmf, bins), bins, color="crimson", linewidth=1.4)
                used_learned = True
            if max_duration:
                ax.axvline(max_duration, color="0.3", linestyle=":", linewidth=1.0)
            if log_x:
                ax.set_xscale("log")
            ax.set_xlim(bins[0], bins[-1])
            # headroom so the text box does not cover the data
            ax.set_ylim(0, max(ax.get_ylim()[1], 1e-9) * 1.3)
            label = f"n = {lengths.size}"
            if c > 0:
                label = f"{kl_name} = {_fmt_kl(kl.get(col, {}).get(name))}\n" + label
            ax.text(
                0.97,
                0.95,
                label,
                transform=ax.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "0.7", "alpha": 0.9},
            )
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(col, fontsize=10, fontweight="bold")
            if c == 0:
                ax.set_ylabel(f"{name}\nfraction of segments", fontsize=9)
            if r == nrows - 1:
                ax.set_xlabel("segment length (bp)", fontsize=8)
    handles = [
        Patch(color=_TRUTH_COLOR, alpha=0.75, label="true segments"),
        Patch(color=_model_color("semicrf", 0), alpha=0.75, label="predicted segments"),
        Line2D([], [], color="black", linestyle="--", label="truth (outline)"),
    ]
    if used_truth_pmf:
        handles.append(Line2D([], [], color="black", label="generating pmf"))
    if used_learned:
        handles.append(Line2D([], [], color="crimson", label="learned duration pmf (1..K)"))
    if max_duration:
        handles.append(Line2D([], [], color="0.3", linestyle=":", label=f"K = {max_duration}"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.suptitle(f"Segment length distributions per class ({kl_name}: true \u2016 predicted)", fontsize=11)
    return _save(fig, path)


_NON_METRIC_KEYS = {"epoch", "step", "time_s", "lr"}


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for i, row in enumerate(rows):
        value = row.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if math.isfinite(float(value)):
                xs.append(float(row.get("epoch", i + 1)))
                ys.append(float(value))
    return np.asarray(xs), np.asarray(ys)


def plot_training_curves(
    path: str | os.PathLike,
    history: Mapping[str, Sequence[Mapping[str, Any]]],
    keys: Sequence[str] | None = None,
) -> Path:
    """Training curves, one panel per quantity and one line per model.

    ``history`` maps model -> list of per-epoch dicts (``epoch``, ``train_loss``,
    ``val_loss``, validation metrics ...). Panels: ``keys`` if given, else ``train_loss``,
    ``val_loss`` and every other numeric key found (``epoch``, ``lr``, ``time_s``
    excluded). Loss axes are logarithmic when the values are positive and span more than
    a decade. Missing or non-finite values are skipped; an empty history gives a figure
    that says so.
    """
    models = _ordered_models(list(history))
    if keys is None:
        found = dict.fromkeys(
            k
            for m in models
            for row in history[m]
            for k, v in row.items()
            if k not in _NON_METRIC_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
        )
        keys = [k for k in ("train_loss", "val_loss") if k in found]
        keys += [k for k in found if k not in keys]
    keys = list(keys)
    if not keys:
        fig = Figure(figsize=(5, 2.5), layout="constrained")
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no training history", ha="center", va="center")
        ax.set_axis_off()
        return _save(fig, path)

    ncols = min(len(keys), 3)
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(4.3 * ncols, 3.0 * nrows + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, key in zip(axes, keys, strict=False):
        all_y = []
        for i, model in enumerate(models):
            x, y = _series(history[model], key)
            if x.size:
                ax.plot(
                    x,
                    y,
                    color=_model_color(model, i),
                    marker="o" if x.size <= 30 else None,
                    markersize=3,
                    linewidth=1.5,
                    label=model,
                )
                all_y.append(y)
        if all_y:
            y = np.concatenate(all_y)
            if "loss" in key and (y > 0).all() and y.max() / y.min() > 10:
                ax.set_yscale("log")
        else:
            ax.text(0.5, 0.5, "no values", transform=ax.transAxes, ha="center", va="center")
        ax.set_title(key.replace("_", " "), fontsize=10)
        ax.set_xlabel("epoch", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_axis_off()
    handles = [
        Line2D([], [], color=_model_color(m, i), marker="o", markersize=3, label=m)
        for i, m in enumerate(models)
    ]
    fig.legend(
        handles=handles, loc="outside lower center", ncol=max(len(handles), 1), fontsize=9, frameon=False
    )
    return _save(fig, path)
