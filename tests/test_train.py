"""Training and `semicrf run` on tiny data: end to end, checkpoints, resume, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from semicrf.data import generate_dataset, load_split
from semicrf.models import MODEL_NAMES, SegmentationModel
from semicrf.pipeline import RunConfig, run_benchmark
from semicrf.train import NonFiniteLossError, TrainConfig, load_checkpoint, predict, train_model

SMALL = {"durations": {
    "intergenic": {"median": 300.0, "sigma": 0.5, "min": 60, "max": 900},
    "exon": {"median": 40.0, "sigma": 0.4, "min": 10, "max": 90},
    "intron": {"median": 150.0, "sigma": 0.6, "min": 30, "max": 500},
}}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data")
    generate_dataset(path, num_train=8, num_val=4, num_test=4, seq_length=1500, seed=3,
                     config=SMALL)
    return path


def _run_config(data, out, **kw):
    base = dict(data_dir=str(data), output_dir=str(out), encoder="bilstm", max_duration=24,
                hidden_dim=8, num_layers=1, batch_size=4, lr=3e-3, epochs=1, device="cpu",
                log_every=1, threads="1")
    base.update(kw)
    return RunConfig(**base)


def _train_config(model, **kw):
    """One model's TrainConfig on the tiny data: 5 one-hot features, 3 labels."""
    return _run_config("", "", features="onehot", **kw).train_config(model, 3)


def test_all_four_models_end_to_end_and_checkpoints_reload(tiny_data, tmp_path):
    payload = run_benchmark(_run_config(tiny_data, tmp_path, encoder="mamba_stub"))
    assert set(payload["models"]) == set(MODEL_NAMES)
    for name in ("metrics.json", "duration_comparison.png", "training_curves.png", "config.json"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    test = load_split(tiny_data, "test")
    for name in MODEL_NAMES:
        entry = saved["models"][name]
        assert 0.0 <= entry["metrics"]["boundary_f1"] <= 1.0
        assert len(entry["history"]) == 1 and np.isfinite(entry["history"][0]["train_loss"])
        model = load_checkpoint(tmp_path / "checkpoints" / f"{name}_best.pt")
        cfg = TrainConfig(**torch.load(tmp_path / "checkpoints" / f"{name}_best.pt")["config"])
        again, _ = predict(model, test, cfg, torch.device("cpu"))
        reloaded = load_checkpoint(tmp_path / "checkpoints" / f"{name}_best.pt")
        twice, _ = predict(reloaded, test, cfg, torch.device("cpu"))
        assert all(np.array_equal(a, b) for a, b in zip(again, twice))
    assert "learned_duration" in saved["models"]["semicrf"]
    assert "learned_duration" in saved["models"]["semicrf_uniform"]


class _Interrupt(Exception):
    pass


def _interrupting_progress(after_batches):
    count = {"n": 0}

    def progress(iterable, **_):
        for item in iterable:
            count["n"] += 1
            if count["n"] > after_batches:
                raise _Interrupt
            yield item

    return progress


@pytest.mark.parametrize("model", ["semicrf", "softmax"])
def test_resume_reproduces_the_uninterrupted_run(tiny_data, tmp_path, model):
    train, val = load_split(tiny_data, "train"), load_split(tiny_data, "val")
    cfg = _train_config(model, max_duration=16, lr=3e-3, epochs=3, seed=1)
    full = train_model(cfg, train, val, tmp_path / "full")
    with pytest.raises(_Interrupt):  # killed in the middle of epoch 2 (2 batches per epoch)
        train_model(cfg, train, val, tmp_path / "cut", progress=_interrupting_progress(3))
    resumed = train_model(cfg, train, val, tmp_path / "cut", resume=True)
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in full.history]
    last_full = torch.load(tmp_path / "full" / f"{model}_last.pt", weights_only=False)["model"]
    last_cut = torch.load(tmp_path / "cut" / f"{model}_last.pt", weights_only=False)["model"]
    for key in last_full:
        assert torch.equal(last_full[key], last_cut[key]), key


@pytest.mark.parametrize("model", MODEL_NAMES)
def test_loss_decreases_on_a_learnable_problem(tiny_data, model):
    """Features that reveal the label (its one-hot code, plus noise): every model learns it."""
    records = load_split(tiny_data, "train")[:4]
    labels = torch.from_numpy(np.stack([r.labels for r in records]))
    gen = torch.Generator().manual_seed(0)
    features = torch.nn.functional.one_hot(labels, 5).float()
    features += 0.5 * torch.randn(features.shape, generator=gen)
    lengths = torch.full((4,), labels.shape[1])
    cfg = _train_config(model, max_duration=16, lr=3e-2, epochs=1, seed=0)
    net: SegmentationModel = cfg.build()
    opt = torch.optim.Adam(net.parameters(), lr=3e-2)
    losses = []
    for _ in range(20):
        loss = net.loss(features, lengths, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_non_finite_loss_stops_with_model_epoch_and_batch(tiny_data, tmp_path, monkeypatch):
    train, val = load_split(tiny_data, "train"), load_split(tiny_data, "val")
    cfg = _train_config("semicrf", max_duration=8, hidden_dim=4, lr=1e-3, epochs=2)
    calls = {"n": 0}
    original = SegmentationModel.loss

    def flaky(self, *args):
        calls["n"] += 1
        loss = original(self, *args)
        return loss * float("nan") if calls["n"] == 2 else loss

    monkeypatch.setattr(SegmentationModel, "loss", flaky)
    with pytest.raises(NonFiniteLossError, match="semicrf.*epoch 1, batch 2"):
        train_model(cfg, train, val, tmp_path)


def test_resume_with_other_features_is_refused(tiny_data, tmp_path):
    run_benchmark(_run_config(tiny_data, tmp_path, models=("softmax",)))
    with pytest.raises(ValueError, match="settings differ.*--features: 'onehot' -> 'kmer'"):
        run_benchmark(_run_config(tiny_data, tmp_path, models=("softmax",), features="kmer",
                                  resume=True))


@pytest.mark.parametrize("override,needle", [
    (dict(max_duration=0), "max-duration"),
    (dict(models=("crf",)), "models"),
    (dict(backend="magic"), "backend"),
    (dict(lr=0.0), "lr"),
])
def test_bad_run_settings(tiny_data, tmp_path, override, needle):
    with pytest.raises(ValueError, match=needle):
        run_benchmark(_run_config(tiny_data, tmp_path, **override))


def test_missing_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        run_benchmark(_run_config(tmp_path / "nope", tmp_path / "out"))


def test_selection_is_the_lowest_validation_loss(tiny_data, tmp_path, monkeypatch):
    import semicrf.train as train_module

    # a validation F1 that rises every epoch must not move the selection off the lowest loss
    scores = iter([0.1, 0.2, 0.3, 0.4])
    monkeypatch.setattr(train_module, "evaluate", lambda *a, **k: {"boundary_f1": next(scores)})
    train, val = load_split(tiny_data, "train"), load_split(tiny_data, "val")
    cfg = _train_config("softmax", max_duration=8, hidden_dim=4, lr=3e-2, epochs=4)
    result = train_model(cfg, train, val, tmp_path)
    losses = [row["val_loss"] for row in result.history]
    assert result.best_epoch == int(np.argmin(losses)) + 1
    assert torch.load(tmp_path / "softmax_best.pt")["epoch"] == result.best_epoch
