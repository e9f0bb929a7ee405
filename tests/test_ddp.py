"""Data-parallel `semicrf run` under torchrun: 2 CPU processes (gloo) with batch 2 take the
same steps as one process with batch 4, rank 0 writes, and a torchrun run resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from semicrf.cli import main as cli_main
from semicrf.data import generate_dataset
from semicrf.distributed import SINGLE, Group
from semicrf.pipeline import RunConfig
from semicrf.train import epoch_batches, make_loader

ROOT = Path(__file__).resolve().parent.parent
SHORT = {"durations": {
    "intergenic": {"median": 150.0, "sigma": 0.5, "min": 30, "max": 400},
    "exon": {"median": 30.0, "sigma": 0.4, "min": 10, "max": 60},
    "intron": {"median": 80.0, "sigma": 0.5, "min": 20, "max": 200},
}}
FLAGS = ["--encoder", "bilstm", "--hidden-dim", "4", "--num-layers", "1", "--max-duration", "8",
         "--epochs", "1", "--device", "cpu", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """5 training sequences: with batch 2 on 2 processes the last global batch has one
    sequence, so rank 1's slice of it is empty."""
    path = tmp_path_factory.mktemp("data")
    generate_dataset(path, num_train=5, num_val=2, num_test=2, seq_length=600, seed=3, config=SHORT)
    return path


def test_processes_slice_the_global_batches_of_one_process():
    cfg = RunConfig(data_dir="", output_dir="", batch_size=2, seed=4).train_config("softmax", 3)
    records = [None] * 7
    one = [b.tolist() for b in epoch_batches(7, cfg, epoch=1, world_size=2)]
    assert [len(b) for b in one] == [4, 3] and sorted(sum(one, [])) == list(range(7))
    wide = RunConfig(data_dir="", output_dir="", batch_size=4, seed=4).train_config("softmax", 3)
    assert [b.tolist() for b in epoch_batches(7, wide, epoch=1)] == one
    slices = [make_loader(records, cfg, shuffle_epoch=1, group=Group(r, 2)).batch_sampler
              for r in (0, 1)]
    assert [a + b for a, b in zip(*slices)] == one
    assert make_loader(records, wide, shuffle_epoch=1, group=SINGLE).batch_sampler == one


def _torchrun(data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "semicrf", "run", "--data-dir", str(data), "--output-dir", str(out), *FLAGS,
         "--batch-size", "2", *extra], env=env, capture_output=True, text=True, timeout=600)


def _params(out: Path, model: str) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoints" / f"{model}_last.pt", weights_only=False)["model"]


def test_two_gloo_processes_equal_one_process_with_the_global_batch(data, tmp_path):
    single = tmp_path / "single"
    assert cli_main(["run", "--data-dir", str(data), "--output-dir", str(single), *FLAGS,
                     "--batch-size", "4", "--models", "softmax", "semicrf"]) == 0
    two = tmp_path / "two"
    first = _torchrun(data, two, "--models", "softmax")
    assert first.returncode == 0, first.stderr[-3000:]
    # resumed under torchrun: softmax is finished (kept, not retrained), semicrf is trained
    resumed = _torchrun(data, two, "--models", "softmax", "semicrf", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count('"boundary_f1"') == 2  # only rank 0 prints the summary
    for model in ("softmax", "semicrf"):
        a, b = _params(single, model), _params(two, model)
        assert a.keys() == b.keys()
        worst = max(float((a[k] - b[k]).abs().max()) for k in a)
        assert worst <= 1e-6, (model, worst)
    saved = json.loads((two / "metrics.json").read_text())
    assert saved["world_size"] == 2 and list(saved["models"]) == ["softmax", "semicrf"]
    expected = json.loads((single / "metrics.json").read_text())["models"]
    for model, entry in saved["models"].items():
        assert entry["history"][0]["train_loss"] == pytest.approx(
            expected[model]["history"][0]["train_loss"], rel=1e-6)
    assert not list(two.rglob("*.tmp"))
