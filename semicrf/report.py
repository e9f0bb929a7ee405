"""Results on disk: ``metrics.json`` (schema in ``docs/metrics.md``) and comparison tables.

A results directory holds one ``metrics.json``::

    {"config": {...}, "seed": 42, "data_meta": {...}, "versions": {...}, "device": "cpu",
     "models": {"semicrf": {"metrics": {...}, "train_time_s": ..., ...}, ...}}

:func:`comparison_table` turns one or several of them into a pandas table with one row per
metric and one column per model (several runs: columns ``(run, model)``, side by side).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from semicrf.atomic_io import read_json, write_text
from semicrf.labels import CLASS_NAMES
from semicrf.metrics import duration_table_kl, learned_duration_pmf, tilt_profiled_pmf
from semicrf.models import MODEL_NAMES

METRICS_FILENAME = "metrics.json"

#: Metrics shown by default (prefix ``x_`` stands for one column per class ``x_<class>``).
HEADLINE: tuple[str, ...] = (
    "boundary_f1",
    "boundary_f1_of_ceiling",
    "boundary_f1_tol1",
    "boundary_f1_tol2",
    "boundary_f1_tol5",
    "boundary_f1_tol10",
    "segment_f1",
    "position_f1_macro",
    "exon_sensitivity",
    "exon_specificity",
    "duration_kl_",
    "duration_kl_log_",
    "duration_wasserstein_",
    "learned_duration_kl_",
    "train_time_s",
    "inference_seq_per_s",
    "peak_memory_mb",
)

_ENTRY_SCALARS = ("train_time_s", "inference_seq_per_s", "peak_memory_mb")
_PER_CLASS = (
    "duration_kl",
    "duration_kl_log",
    "duration_wasserstein",
    "segment_f1_per_class",
    "position_f1",
    "position_precision",
    "base_sensitivity",
    "base_specificity",
)


# --------------------------------------------------------------------------------------
# Writing and reading metrics.json


def to_jsonable(obj: Any) -> Any:
    """Plain-JSON copy of ``obj``: numpy scalars and arrays become numbers and lists,
    tuples lists, paths strings, and NaN or infinite floats ``None`` (strict JSON)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to metrics.json: {obj!r}")


def write_metrics_json(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as strict JSON atomically (:func:`semicrf.atomic_io.write_text`), so a
    reader never sees a half-written file. A directory ``path`` means ``path/metrics.json``.
    Returns the file written."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILENAME
    return write_text(path, json.dumps(to_jsonable(payload), indent=2, allow_nan=False) + "\n")


def load_results(results_dir: str | os.PathLike) -> dict[str, Any]:
    """Read ``results_dir/metrics.json`` (or a metrics JSON file given directly); each
    ``oracle*.json`` beside it (``semicrf oracle``) joins as a model named by its stem."""
    path = Path(results_dir)
    if path.is_dir():
        path = path / METRICS_FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"no {METRICS_FILENAME} found at {path}")
    payload = read_json(path, str(path))
    if not isinstance(payload, dict) or not isinstance(payload.get("models"), dict):
        raise ValueError(f"{path} has no 'models' mapping (see docs/metrics.md)")
    # the Bayes ceiling (`semicrf oracle --output DIR/oracle*.json`) as one more column
    for oracle in sorted(path.parent.glob("oracle*.json")):
        payload["models"][oracle.stem] = {"metrics": read_json(oracle, str(oracle))}
    return payload


def learned_duration_entry(duration_table: Any, true_pmf: np.ndarray | None = None) -> dict[str, Any]:
    """The ``learned_duration`` entry of a model: the head's (K, C) pmf, the true pmf it is
    compared with (if given) and KL(true || learned) per class.

    With a true pmf, ``pmf`` is the tilt-profiled pmf (:func:`semicrf.metrics.tilt_profiled_pmf`;
    the raw table is identified only up to a linear tilt) and ``tilt`` the profiled tilts;
    ``raw_pmf`` is always the plain softmax of the table over lengths."""
    raw = learned_duration_pmf(duration_table)
    entry: dict[str, Any] = {"pmf": raw, "raw_pmf": raw, "tilt": None, "true_pmf": None, "kl": None}
    if true_pmf is not None:
        entry["true_pmf"] = np.asarray(true_pmf, dtype=np.float64)
        entry["pmf"], entry["tilt"] = tilt_profiled_pmf(duration_table, entry["true_pmf"])
        entry["kl"] = duration_table_kl(entry["pmf"], entry["true_pmf"])
    return to_jsonable(entry)


# --------------------------------------------------------------------------------------
# Tables


def flatten_entry(entry: Mapping[str, Any]) -> dict[str, float | None]:
    """One model entry as scalar columns: ``metrics`` scalars, per-class dicts as
    ``<metric>_<class>``, the entry's timings and ``learned_duration_kl_<class>``."""
    out: dict[str, float | None] = {}
    metrics = entry.get("metrics") or {}
    for key, value in metrics.items():
        if key in _PER_CLASS and isinstance(value, Mapping):
            for name, v in value.items():
                out[f"{key}_{name}"] = _scalar(v)
        elif value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            out[key] = _scalar(value)
    for key in _ENTRY_SCALARS:
        if key in entry:
            out[key] = _scalar(entry[key])
    learned = entry.get("learned_duration") or {}
    for name, v in (learned.get("kl") or {}).items():
        out[f"learned_duration_kl_{name}"] = _scalar(v)
    return out


def _scalar(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _model_sort_key(name: str) -> tuple[int, str]:
    return (MODEL_NAMES.index(name) if name in MODEL_NAMES else len(MODEL_NAMES), name)


def _select_rows(available: Sequence[str], metrics: Iterable[str] | str | None) -> list[str]:
    if metrics == "all":
        return list(available)
    wanted = HEADLINE if metrics is None else tuple(metrics)
    rows: list[str] = []
    for pattern in wanted:
        if pattern.endswith("_"):
            rows += [m for m in available if m.startswith(pattern) and _is_class_of(m, pattern)]
        elif pattern in available:
            rows.append(pattern)
    return list(dict.fromkeys(rows))


def _is_class_of(column: str, prefix: str) -> bool:
    """``duration_kl_exon`` belongs to ``duration_kl_``; ``duration_kl_log_exon`` and
    ``position_f1_macro`` do not belong to ``duration_kl_`` and ``position_f1_``."""
    return column[len(prefix) :] in CLASS_NAMES


def _as_runs(
    results: Mapping[str, Any] | str | os.PathLike | Sequence[Any],
) -> dict[str, dict[str, Any]]:
    """Normalise the accepted inputs to {run label: payload}."""
    if isinstance(results, Mapping):
        if "models" in results:
            return {"": dict(results)}
        return {str(k): v if isinstance(v, Mapping) else load_results(v) for k, v in results.items()}
    if isinstance(results, (str, os.PathLike)):
        return {"": load_results(results)}
    items = list(results)
    if len(items) == 1:
        only = items[0]
        return {"": dict(only) if isinstance(only, Mapping) else load_results(only)}
    labels = _run_labels(items)
    return {
        label: dict(item) if isinstance(item, Mapping) else load_results(item)
        for label, item in zip(labels, items, strict=True)
    }


def _run_labels(items: Sequence[Any]) -> list[str]:
    """Short unique labels for several runs: the directory names where they are unique."""
    names = [
        Path(os.fspath(x)).name if not isinstance(x, Mapping) else f"run{i}" for i, x in enumerate(items)
    ]
    if len(set(names)) == len(names):
        return names
    paths = [os.fspath(x) if not isinstance(x, Mapping) else f"run{i}" for i, x in enumerate(items)]
    if len(set(paths)) == len(paths):
        return paths
    return [f"{i}:{p}" for i, p in enumerate(paths)]


def comparison_table(
    results: Mapping[str, Any] | str | os.PathLike | Sequence[Any],
    metrics: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """The comparison table: one row per metric, one column per model.

    Args:
        results: a loaded ``metrics.json`` payload, a results directory, a list of
            directories (or payloads), or a mapping {run label: directory or payload}.
        metrics: ``None`` for the headline metrics (:data:`HEADLINE`), ``"all"`` for every
            scalar, or an explicit list (a name ending in ``_`` selects its per-class rows).

    With several runs the columns are a ``(run, model)`` MultiIndex, runs side by side in
    the given order (labels: directory names). Missing values are NaN.
    """
    runs = _as_runs(results)
    columns: dict[tuple[str, str], dict[str, float | None]] = {}
    for label, payload in runs.items():
        models = payload.get("models")
        if not isinstance(models, Mapping):
            raise ValueError(f"results {label or '(single run)'} have no 'models' mapping")
        run = {model: flatten_entry(models[model]) for model in sorted(models, key=_model_sort_key)}
        _add_fraction_of_ceiling(run)
        columns.update({(label, model): col for model, col in run.items()})
    available = list(dict.fromkeys(k for col in columns.values() for k in col))
    rows = _select_rows(available, metrics)
    data = {key: [col.get(r) for r in rows] for key, col in columns.items()}
    table = pd.DataFrame(data, index=pd.Index(rows, name="metric"), dtype=float)
    if len(runs) == 1:
        table.columns = pd.Index([model for _, model in columns], name="model")
    else:
        table.columns = pd.MultiIndex.from_tuples(list(columns), names=["run", "model"])
    return table


def _add_fraction_of_ceiling(run: dict[str, dict[str, float | None]]) -> None:
    """``boundary_f1_of_ceiling``: each model's exact boundary F1 over the Bayes ceiling's
    (the run's ``oracle`` column, from ``semicrf oracle``), when the run has one."""
    ceiling = run.get("oracle", {}).get("boundary_f1")
    if not ceiling:
        return
    for col in run.values():
        if col.get("boundary_f1") is not None:
            col["boundary_f1_of_ceiling"] = col["boundary_f1"] / ceiling


def format_value(metric: str, value: Any) -> str:
    """Human format of one table cell (``-`` for missing)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if metric.endswith(("_time_s", "_seq_per_s")) or "wasserstein" in metric:
        return f"{value:.1f}"
    if metric.endswith("_mb"):
        return f"{value:.0f}"
    return f"{value:.3f}"


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every cell formatted as text (see :func:`format_value`)."""
    out = table.copy().astype(object)
    for metric in table.index:
        out.loc[metric] = [format_value(str(metric), v) for v in table.loc[metric]]
    return out


def _column_label(col: Any) -> str:
    return " / ".join(str(c) for c in col) if isinstance(col, tuple) else str(col)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""
    text = format_table(table)
    header = [str(table.index.name or "metric")] + [_column_label(c) for c in table.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join(["---"] + ["---:"] * len(table.columns)) + " |",
    ]
    for metric, row in text.iterrows():
        lines.append("| " + " | ".join([str(metric)] + [str(v) for v in row]) + " |")
    return "\n".join(lines) + "\n"


def _default_out_dir(results_dirs: Sequence[Any]) -> Path:
    paths = [Path(os.fspath(p)).resolve() for p in results_dirs]
    if len(paths) == 1:
        return paths[0] if paths[0].is_dir() else paths[0].parent
    return Path(os.path.commonpath([str(p) for p in paths]))


def compare(
    results_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike | None = None,
    metrics: Iterable[str] | str | None = None,
) -> pd.DataFrame:
    """Build the comparison table of one or more results dirs and write it as
    ``comparison.csv`` (full precision) and ``comparison.md`` (formatted).

    ``out_dir`` defaults to the results dir (one run) or the runs' common parent folder.
    Returns the table (see :func:`comparison_table`); ``table.attrs["output_dir"]`` is the
    folder written to.
    """
    if isinstance(results_dirs, (str, os.PathLike)):
        results_dirs = [results_dirs]
    results_dirs = list(results_dirs)
    if not results_dirs:
        raise ValueError("give at least one results directory")
    table = comparison_table(results_dirs, metrics)
    out = Path(out_dir) if out_dir is not None else _default_out_dir(results_dirs)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "comparison.csv", table.to_csv())
    md = to_markdown(table)
    if len(results_dirs) > 1:
        labels = _run_labels(results_dirs)
        md += "\nRuns:\n\n" + "".join(
            f"- {label}: `{os.fspath(path)}`\n" for label, path in zip(labels, results_dirs, strict=True)
        )
    write_text(out / "comparison.md", md)
    table.attrs["output_dir"] = str(out)
    return table
