"""`semicrf run` as a user runs it: the flags, safe output directories, kill -9 and --resume."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from semicrf.cli import main as cli_main
from semicrf.cli.run import add_arguments, config_from_args
from semicrf.crf.head import DECODERS, DURATION_FORMS
from semicrf.data import FEATURE_KINDS, generate_dataset
from semicrf.encoders import ENCODER_NAMES
from semicrf.models import MODEL_NAMES, STRUCTURES
from semicrf.pipeline import CRF_BACKENDS, RunConfig

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"durations": {
    "intergenic": {"median": 300.0, "sigma": 0.5, "min": 60, "max": 900},
    "exon": {"median": 40.0, "sigma": 0.4, "min": 10, "max": 90},
    "intron": {"median": 150.0, "sigma": 0.6, "min": 30, "max": 500},
}}
FLAGS = ["--encoder", "bilstm", "--max-duration", "16", "--hidden-dim", "4", "--num-layers", "1",
         "--batch-size", "4", "--lr", "3e-3", "--device", "cpu", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    generate_dataset(path, num_train=8, num_val=4, num_test=4, seq_length=1200, seed=5, config=SMALL)
    return path


def _parse(argv: list[str]) -> RunConfig:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def _run(data: Path, out: Path, *extra: str) -> int:
    return cli_main(["run", "--data-dir", str(data), "--output-dir", str(out), *FLAGS, *extra])


def _digest(directory: Path) -> dict[str, str]:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_the_documented_flags_parse_into_the_run_config():
    cfg = _parse(["--data-dir", "d", "--output-dir", "o", "--encoder", "mamba_stub", "--features",
                  "kmer", "--max-duration", "500", "--hidden-dim", "64", "--num-layers", "2",
                  "--batch-size", "8", "--lr", "1e-3", "--epochs", "20", "--device", "cpu",
                  "--log-every", "5", "--backend", "streaming", "--no-triton", "--models",
                  "semicrf", "linear", "--resume", "--threads", "2"])
    assert (cfg.encoder, cfg.features, cfg.max_duration, cfg.hidden_dim, cfg.num_layers) == (
        "mamba_stub", "kmer", 500, 64, 2)
    assert (cfg.batch_size, cfg.lr, cfg.epochs, cfg.device, cfg.log_every) == (8, 1e-3, 20, "cpu", 5)
    assert cfg.models == ("semicrf", "linear") and cfg.resume and cfg.num_threads() == 2
    assert cfg.crf_backend() == "reference"  # --no-triton
    # defaults come from the dataclass, once
    default = _parse(["--data-dir", "d", "--output-dir", "o"])
    assert default == RunConfig(data_dir="d", output_dir="o")
    assert (default.encoder, default.max_duration, default.models) == ("mamba", 1000, MODEL_NAMES)
    assert default.crf_backend() == "auto" and default.num_threads() == 1


def test_choices_come_from_the_constants():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    choices = {a.dest: tuple(a.choices) for a in parser._actions if a.choices}
    assert choices == {"encoder": ENCODER_NAMES, "features": FEATURE_KINDS, "device": ("cuda", "cpu"),
                       "backend": CRF_BACKENDS, "models": MODEL_NAMES, "decoder": DECODERS,
                       "duration_form": DURATION_FORMS, "structure": STRUCTURES}
    assert {f.name for f in dataclasses.fields(RunConfig)} <= {a.dest for a in parser._actions}


@pytest.mark.parametrize("argv,needle", [
    (["--threads", "0"], "--threads"), (["--resume", "--overwrite"], "exclude"),
    (["--epochs", "0"], "--epochs"), (["--batch-size", "0"], "--batch-size"),
])
def test_bad_flags_exit_2_with_one_line(data, tmp_path, capsys, argv, needle):
    assert _run(data, tmp_path / "out", *argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_malformed_data_dir_exits_2_naming_the_file(data, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in data.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    meta = json.loads((broken / "meta.json").read_text())
    meta["splits"]["val"]["segments"].pop()
    (broken / "meta.json").write_text(json.dumps(meta))
    assert _run(broken, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert "meta.json" in err and "splits.val.segments" in err and "\n" not in err


def test_non_empty_output_dir_is_refused_and_left_untouched(data, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "metrics.json").write_text('{"models": {"a": 1}}')
    (out / "notes.txt").write_text("mine")
    before = _digest(out)
    assert _run(data, out, "--models", "softmax") == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--resume" in err and "--overwrite" in err
    assert _digest(out) == before


def test_overwrite_replaces_stale_results_and_resume_keeps_other_models(data, tmp_path):
    out = tmp_path / "out"
    assert _run(data, out, "--epochs", "1", "--models", "softmax", "linear") == 0
    (out / "notes.txt").write_text("mine")
    assert _run(data, out, "--epochs", "1", "--models", "softmax", "--overwrite") == 0
    assert set(json.loads((out / "metrics.json").read_text())["models"]) == {"softmax"}
    assert not (out / "checkpoints" / "linear_last.pt").exists()
    assert not (out / "predictions" / "linear.npz").exists()
    assert (out / "notes.txt").read_text() == "mine"  # not ours: kept
    # --resume with another model adds it; the earlier model's result stays
    assert _run(data, out, "--epochs", "1", "--models", "semicrf_uniform", "--resume") == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert list(saved["models"]) == ["softmax", "semicrf_uniform"]
    # --resume with settings that change the results is refused
    assert _run(data, out, "--epochs", "1", "--models", "softmax", "--resume", "--lr", "1e-2") == 2


def _results(out: Path) -> dict[str, dict]:
    models = json.loads((out / "metrics.json").read_text())["models"]
    return {m: {"metrics": e["metrics"], "test_loss": e["test_loss"], "best_epoch": e["best_epoch"],
                "losses": [(h["train_loss"], h["val_loss"]) for h in e["history"]]}
            for m, e in models.items()}


KILL_RUN = ["--epochs", "2", "--models", "softmax", "semicrf"]


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    assert _run(data, out, *KILL_RUN) == 0
    return _results(out)


@pytest.mark.parametrize("kill_when", ["checkpoints/softmax_last.pt", "checkpoints/semicrf_last.pt"])
def test_resume_after_kill_9_ends_with_the_uninterrupted_metrics(data, tmp_path, uninterrupted,
                                                                 kill_when):
    """Killed (SIGKILL) during the first model's training or during the second model's."""
    argv = [sys.executable, "-m", "semicrf", "run", "--data-dir", str(data), "--output-dir",
            str(tmp_path), *FLAGS, *KILL_RUN]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (tmp_path / kill_when).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "metrics.json").exists() or "semicrf" not in _results(tmp_path)
    done = subprocess.run([*argv, "--resume"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _results(tmp_path) == uninterrupted
    assert not list(tmp_path.rglob("*.tmp"))


def test_progress_bars_only_on_a_terminal_and_never_when_quiet(monkeypatch):
    from semicrf.train import progress_bars

    class Terminal:
        def isatty(self) -> bool:
            return True

        def write(self, _text: str) -> None:
            pass

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not progress_bars(False)(range(2)).disable
    assert progress_bars(True)(range(2)).disable
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # noqa: SIM115
    assert progress_bars(False)(range(2)).disable


def test_every_flag_is_documented():
    text = (ROOT / "docs" / "benchmark.md").read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(RunConfig)
               if f"--{f.name.replace('_', '-')}" not in text]
    assert not missing


def test_resume_check_reads_older_config_files(tmp_path):
    from semicrf.pipeline import check_output_dir

    cfg = RunConfig(data_dir="d", output_dir=str(tmp_path), resume=True, models=("linear",))
    saved = dataclasses.asdict(cfg)
    del saved["weight_decay"]  # a config.json written before the flag existed: its default
    (tmp_path / "config.json").write_text(json.dumps(saved, default=list))
    (tmp_path / "metrics.json").write_text(json.dumps({"models": {"softmax": {"x": 1}, "linear": {}}}))
    assert check_output_dir(cfg) == {"softmax": {"x": 1}}
    with pytest.raises(ValueError, match="--lr: 0.001 -> 0.01"):
        check_output_dir(dataclasses.replace(cfg, lr=1e-2))


def test_gene_structure_trains_and_decodes_end_to_end(data, tmp_path):
    """`--structure gene`: linear (K = 1), semicrf and semicrf_uniform on the gene grammar."""
    out = tmp_path / "gene"
    models = ["linear", "semicrf", "semicrf_uniform"]
    assert _run(data, out, "--structure", "gene", "--epochs", "1", "--models", *models) == 0
    results = _results(out)
    assert sorted(results) == sorted(models)
    config = json.loads((out / "config.json").read_text())
    assert config["structure"] == "gene"
