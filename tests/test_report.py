"""metrics.json I/O, the comparison table, `semicrf compare` and the plots."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from semicrf import metrics, plots, report
from semicrf.environment import package_versions
from semicrf.models import MODEL_NAMES

K = 20
MODELS = ("semicrf_uniform", "softmax", "semicrf", "linear")  # deliberately out of order


def _true_labels(rng: np.random.Generator, n: int = 6, length: int = 300) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        lab = rng.integers(0, 3, 40)
        y = np.repeat(lab, rng.integers(1, 30, 40))[:length]
        out.append(np.pad(y, (0, length - y.size), mode="edge"))
    return out


def fake_run(root: Path, seed: int = 0, flip: float = 0.05) -> tuple[Path, dict]:
    """A results dir with the documented metrics.json schema, as a tiny run would write."""
    rng = np.random.default_rng(seed)
    true = _true_labels(rng)
    models = {}
    for i, name in enumerate(MODELS):
        p = flip * (i + 1) / len(MODELS)
        pred = [np.where(rng.random(t.size) < p, rng.integers(0, 3, t.size), t) for t in true]
        entry = {
            "metrics": metrics.evaluate(pred, true, 3, K),
            "train_time_s": 1.5 + i,
            "inference_seq_per_s": np.float32(100.0 + i),
            "peak_memory_mb": None if name == "softmax" else 12.0,
            "history": [
                {"epoch": e, "train_loss": 2.0 / e, "val_loss": 2.2 / e, "val_boundary_f1": 0.1 * e}
                for e in range(1, 4)
            ],
            "learned_duration": None,
        }
        if name.startswith("semicrf"):
            table = rng.normal(size=(K, 3)) if name == "semicrf" else np.zeros((K, 3))
            true_pmf = np.full((K, 3), 1.0 / K)
            entry["learned_duration"] = report.learned_duration_entry(table, true_pmf)
        models[name] = entry
    payload = {
        "config": {"max_duration": K, "epochs": 3, "encoder": "bilstm"},
        "seed": seed,
        "data_meta": {"seq_length": 300, "num_classes": 3},
        "versions": package_versions(),
        "device": "cpu",
        "models": models,
    }
    root.mkdir(parents=True, exist_ok=True)
    report.write_metrics_json(root / "metrics.json", payload)
    return root, payload


# --------------------------------------------------------------------------------------
# metrics.json


def test_write_and_load_round_trip(tmp_path):
    run, payload = fake_run(tmp_path / "run")
    loaded = report.load_results(run)
    assert loaded == report.to_jsonable(payload)
    assert loaded == report.load_results(run / "metrics.json")
    assert set(loaded["models"]) == set(MODELS)
    entry = loaded["models"]["semicrf"]
    assert np.asarray(entry["learned_duration"]["pmf"]).shape == (K, 3)
    np.testing.assert_allclose(np.asarray(entry["learned_duration"]["pmf"]).sum(axis=0), 1.0)
    assert set(entry["learned_duration"]["kl"]) == {"intergenic", "exon", "intron"}
    uniform = loaded["models"]["semicrf_uniform"]["learned_duration"]["kl"]
    assert uniform == pytest.approx({"intergenic": 0.0, "exon": 0.0, "intron": 0.0}, abs=1e-12)
    assert loaded["models"]["softmax"]["peak_memory_mb"] is None
    assert [p.name for p in run.iterdir()] == ["metrics.json"]  # no temporary files left


def test_json_is_strict_and_numpy_aware(tmp_path):
    path = report.write_metrics_json(
        tmp_path,  # a directory: writes metrics.json inside
        {
            "models": {},
            "a": np.int64(3),
            "b": np.float32(0.5),
            "c": float("nan"),
            "d": np.array([1.0, np.inf]),
            "e": (1, 2),
            "f": tmp_path,
            "g": np.bool_(True),
        },
    )
    assert path == tmp_path / "metrics.json"
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {
        "models": {},
        "a": 3,
        "b": 0.5,
        "c": None,
        "d": [1.0, None],
        "e": [1, 2],
        "f": str(tmp_path),
        "g": True,
    }
    with pytest.raises(TypeError, match="object"):
        report.write_metrics_json(path, {"models": {}, "x": object()})


def test_write_is_atomic(tmp_path, monkeypatch):
    path = report.write_metrics_json(tmp_path / "metrics.json", {"models": {}, "v": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        report.write_metrics_json(path, {"models": {}, "v": 2})
    assert json.loads(path.read_text()) == {"models": {}, "v": 1}  # old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_load_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        report.load_results(tmp_path / "missing")
    (tmp_path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        report.load_results(tmp_path)
    (tmp_path / "metrics.json").write_text('{"config": {}}')
    with pytest.raises(ValueError, match="models"):
        report.load_results(tmp_path)


def test_package_versions():
    info = package_versions()
    assert info["numpy"] == np.__version__
    assert info["python"].count(".") == 2
    assert "torch" in info and "triton" in info


# --------------------------------------------------------------------------------------
# comparison table


def test_comparison_table_single_run(tmp_path):
    run, payload = fake_run(tmp_path / "run")
    table = report.comparison_table(run)
    assert list(table.columns) == list(MODEL_NAMES)
    semi = payload["models"]["semicrf"]
    assert table.loc["boundary_f1", "semicrf"] == pytest.approx(semi["metrics"]["boundary_f1"])
    assert table.loc["duration_kl_exon", "linear"] == pytest.approx(
        payload["models"]["linear"]["metrics"]["duration_kl"]["exon"]
    )
    kl_rows = [r for r in table.index if r.startswith("duration_kl_") and "log" not in r]
    assert kl_rows == ["duration_kl_intergenic", "duration_kl_exon", "duration_kl_intron"]
    assert "duration_kl_log_intron" in table.index
    assert "duration_wasserstein_exon" in table.index
    assert table.loc["learned_duration_kl_exon", "semicrf"] == pytest.approx(
        semi["learned_duration"]["kl"]["exon"]
    )
    assert math.isnan(table.loc["learned_duration_kl_exon", "softmax"])
    assert math.isnan(table.loc["peak_memory_mb", "softmax"])
    assert table.loc["inference_seq_per_s", "linear"] == pytest.approx(103.0)
    assert "n_boundaries_true" not in table.index  # not a headline metric
    # the same table from the loaded payload, and every scalar with metrics="all"
    pd.testing.assert_frame_equal(report.comparison_table(report.load_results(run)), table)
    full = report.comparison_table(run, metrics="all")
    assert {"n_boundaries_true", "boundary_recall_tol5", "base_specificity_exon"} <= set(full.index)
    assert "settings" not in full.index and "confusion_matrix" not in full.index
    chosen = report.comparison_table(run, metrics=["segment_f1", "position_f1_"])
    assert list(chosen.index) == [
        "segment_f1",
        "position_f1_intergenic",
        "position_f1_exon",
        "position_f1_intron",
    ]


def test_comparison_table_several_runs_side_by_side(tmp_path):
    a, pa = fake_run(tmp_path / "10k", seed=1)
    b, pb = fake_run(tmp_path / "20k", seed=2, flip=0.2)
    table = report.comparison_table([a, b])
    assert table.columns.names == ["run", "model"]
    assert list(table.columns) == [(r, m) for r in ("10k", "20k") for m in MODEL_NAMES]
    for run, payload in (("10k", pa), ("20k", pb)):
        for model in MODEL_NAMES:
            assert table.loc["segment_f1", (run, model)] == pytest.approx(
                payload["models"][model]["metrics"]["segment_f1"]
            )
    labelled = report.comparison_table({"short": a, "long": pb})
    assert list(labelled.columns.get_level_values("run").unique()) == ["short", "long"]
    # same directory name twice: labels fall back to the paths
    c, _ = fake_run(tmp_path / "x" / "10k", seed=3)
    twice = report.comparison_table([a, c])
    assert len(set(twice.columns.get_level_values("run"))) == 2


def test_compare_writes_csv_and_markdown(tmp_path):
    run, _ = fake_run(tmp_path / "run")
    table = report.compare(run)
    csv = pd.read_csv(run / "comparison.csv", index_col=0)
    pd.testing.assert_frame_equal(csv, table, check_names=False)
    md = (run / "comparison.md").read_text()
    lines = md.strip().splitlines()
    assert lines[0] == "| metric | softmax | linear | semicrf | semicrf_uniform |"
    assert len(lines) == 2 + len(table.index)
    row = next(line for line in lines if line.startswith("| boundary_f1 |"))
    assert f"{table.loc['boundary_f1', 'semicrf']:.3f}" in row
    assert all(line.count("|") == 6 for line in lines)
    assert table.attrs["output_dir"] == str(run.resolve())


def test_compare_several_runs_default_and_explicit_output(tmp_path):
    a, _ = fake_run(tmp_path / "results" / "10k", seed=1)
    b, _ = fake_run(tmp_path / "results" / "50k", seed=2)
    table = report.compare([a, b])
    parent = tmp_path / "results"
    assert (parent / "comparison.csv").is_file()
    md = (parent / "comparison.md").read_text()
    assert "10k / semicrf" in md and "50k / softmax" in md and "Runs:" in md
    assert table.shape[1] == 8
    out = tmp_path / "elsewhere"
    report.compare([a, b], out_dir=out)
    assert (out / "comparison.csv").is_file() and (out / "comparison.md").is_file()
    with pytest.raises(ValueError):
        report.compare([])


def test_format_value():
    assert report.format_value("boundary_f1", 0.81234) == "0.812"
    assert report.format_value("duration_wasserstein_exon", 1234.56) == "1234.6"
    assert report.format_value("peak_memory_mb", 1234.56) == "1235"
    assert report.format_value("duration_kl_exon", float("nan")) == "-"
    assert report.format_value("duration_kl_exon", None) == "-"


# --------------------------------------------------------------------------------------
# CLI


def cli_main(argv: list[str]) -> int:
    """The real ``semicrf`` entry point (imported lazily: it pulls in every subcommand)."""
    from semicrf.cli import main

    return main(argv)


def test_cli_compare_prints_and_writes(tmp_path, capsys):
    run, _ = fake_run(tmp_path / "run")
    assert cli_main(["compare", "--results-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "boundary_f1" in out and "semicrf_uniform" in out and "duration_kl_exon" in out
    assert (run / "comparison.csv").is_file()


def test_cli_compare_several_dirs_with_output_and_all(tmp_path, capsys):
    a, _ = fake_run(tmp_path / "10k", seed=1)
    b, _ = fake_run(tmp_path / "20k", seed=2)
    out_dir = tmp_path / "cmp"
    code = cli_main(["compare", "--results-dir", str(a), str(b), "--output", str(out_dir), "--all"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "10k" in printed and "20k" in printed and "n_boundaries_true" in printed
    assert str(out_dir) in printed
    table = pd.read_csv(out_dir / "comparison.csv", index_col=0, header=[0, 1])
    assert table.shape[1] == 8


def test_cli_compare_missing_dir_is_an_error(tmp_path, capsys):
    assert cli_main(["compare", "--results-dir", str(tmp_path / "nope")]) == 2
    assert "metrics.json" in capsys.readouterr().err


# --------------------------------------------------------------------------------------
# plots


def _assert_png(path: Path, min_width: int) -> None:
    assert path.is_file() and path.stat().st_size > 10_000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = imread(path)
    assert img.shape[1] >= min_width
    assert img[..., :3].std() > 0.05  # not a blank canvas


def test_plots_from_a_run(tmp_path):
    rng = np.random.default_rng(0)
    true = _true_labels(rng)
    preds = {m: [np.roll(t, i) for t in true] for i, m in enumerate(MODELS)}
    preds["softmax"][0] = np.zeros_like(true[0])  # fine: still some segments elsewhere
    true_d = metrics.segment_lengths(true, 3)
    pred_d = {m: metrics.segment_lengths(p, 3) for m, p in preds.items()}
    pred_d["linear"]["exon"] = np.zeros(0, dtype=np.int64)  # a model with no exon at all
    kl = {m: metrics.evaluate(p, true, 3, K)["duration_kl"] for m, p in preds.items()}
    learned = {
        "semicrf": metrics.learned_duration_pmf(rng.normal(size=(K, 3))),
        "semicrf_uniform": metrics.learned_duration_pmf(np.zeros((K, 3))),
    }
    true_pmf = metrics.empirical_duration_pmf(true_d, 40, 3)
    money = plots.plot_duration_comparison(
        tmp_path / "out" / "duration_comparison.png", true_d, pred_d, kl, learned, true_pmf
    )
    assert money == tmp_path / "out" / "duration_comparison.png"
    _assert_png(money, min_width=1500)

    history = {m: e["history"] for m, e in fake_run(tmp_path / "run")[1]["models"].items()}
    curves = plots.plot_training_curves(tmp_path / "out" / "training_curves.png", history)
    _assert_png(curves, min_width=1000)


def test_plot_long_lengths_and_empty_history(tmp_path):
    true_d = {"intron": np.array([150, 800, 3000, 12000]), "exon": np.array([100, 150, 200])}
    pred_d = {"semicrf": {"intron": np.array([900, 2500]), "exon": np.array([140, 160])}}
    kl = {"semicrf": {"intron": 0.4, "exon": None}}
    path = plots.plot_duration_comparison(tmp_path / "d.png", true_d, pred_d, kl, max_duration=1000)
    _assert_png(path, min_width=500)
    with pytest.raises(ValueError):
        plots.plot_duration_comparison(tmp_path / "e.png", {}, pred_d, kl)
    empty = plots.plot_training_curves(tmp_path / "h.png", {})
    assert empty.is_file() and empty.stat().st_size > 1000
