"""The convolutional encoders (cnn, cnn_bilstm, conv): padding invariance over random
lengths, the linear convolution against an explicit window sum, the CNN's receptive field,
parameter counts, the float32 fast path, determinism and a tiny end-to-end run."""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semicrf.cli import main as cli_main
from semicrf.data import generate_dataset
from semicrf.encoders import CNNEncoder, build_encoder
from semicrf.encoders.cnn import DILATIONS, KERNEL_SIZE
from semicrf.encoders.conv import KERNEL_SIZE as CONV_KERNEL

CONV_ENCODERS = ("cnn", "cnn_bilstm", "conv")
INPUT_DIM, HIDDEN = 5, 6
SMALL = {"durations": {  # short genes, so a 1200-base window holds a few
    "intergenic": {"median": 300.0, "sigma": 0.5, "min": 60, "max": 900},
    "exon": {"median": 40.0, "sigma": 0.4, "min": 10, "max": 90},
    "intron": {"median": 150.0, "sigma": 0.6, "min": 30, "max": 500},
}}


def make(name, input_dim=INPUT_DIM, hidden_dim=HIDDEN, num_layers=1, seed=0):
    torch.manual_seed(seed)
    return build_encoder(name, input_dim, hidden_dim, num_layers).double()


@functools.cache
def shared(name):
    """One encoder per name for all hypothesis examples (built on first use)."""
    return make(name)


@settings(max_examples=20, deadline=None)
@given(name=st.sampled_from(CONV_ENCODERS),
       lengths=st.lists(st.integers(1, 40), min_size=1, max_size=3),
       extra=st.integers(0, 100), seed=st.integers(0, 2**16))
def test_padding_never_reaches_a_valid_position(name, lengths, extra, seed):
    """Padding the batch to max(L) + extra with noise changes no valid output, outputs past
    each length are exactly zero, and each sequence alone gives the same outputs."""
    encoder = shared(name)
    g = torch.Generator().manual_seed(seed)
    length = max(lengths) + extra
    features = torch.randn(len(lengths), length, INPUT_DIM, dtype=torch.float64, generator=g)
    lens = torch.tensor(lengths)
    with torch.no_grad():
        out = encoder(features, lens)
        tight = encoder(features[:, : max(lengths)], lens)
        for b, n in enumerate(lengths):
            assert (out[b, n:] == 0).all()
            torch.testing.assert_close(out[b, :n], tight[b, :n], rtol=0, atol=1e-12)
            alone = encoder(features[b : b + 1, :n], torch.tensor([n]))
            torch.testing.assert_close(out[b : b + 1, :n], alone, rtol=0, atol=1e-12)


def test_linear_conv_is_the_explicit_window_sum():
    encoder = make("conv", seed=1)
    features = torch.randn(2, 40, INPUT_DIM, dtype=torch.float64)
    lengths = torch.tensor([40, 23])
    weight = encoder.conv.weight[:, :, 0, :].detach()  # (H, D_in, 33), tap j at offset j - 16
    half = CONV_KERNEL // 2
    expected = torch.zeros(2, 40, HIDDEN, dtype=torch.float64)
    for b, n in enumerate(lengths.tolist()):
        for t in range(n):
            total = encoder.conv.bias.detach().clone()
            for j in range(CONV_KERNEL):
                s = t + j - half
                if 0 <= s < n:
                    total += weight[:, :, j] @ features[b, s]
            expected[b, t] = total
    torch.testing.assert_close(encoder(features, lengths), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_cnn_receptive_field_is_exact(num_layers):
    """Changing input t moves outputs at |s - t| <= R // 2 (the two extremes included) and
    no other, R = 1 + num_layers * (kernel - 1) * sum(dilations)."""
    encoder = make("cnn", num_layers=num_layers, seed=2)
    half = num_layers * (KERNEL_SIZE - 1) * sum(DILATIONS) // 2
    assert encoder.receptive_field == 2 * half + 1
    length, t = 2 * half + 41, half + 20
    features = torch.randn(1, length, INPUT_DIM, dtype=torch.float64)
    changed = features.clone()
    changed[0, t] += 1.0
    lengths = torch.tensor([length])
    with torch.no_grad():
        moved = (encoder(changed, lengths) - encoder(features, lengths)).abs().sum(-1)[0]
    assert (moved[: t - half] == 0).all() and (moved[t + half + 1 :] == 0).all()
    assert moved[t - half] > 0 and moved[t + half] > 0


@pytest.mark.parametrize("input_dim", [5, 261])
def test_parameter_counts_follow_the_documented_formulas(input_dim):
    h = 32
    cnn = input_dim * h + h + len(DILATIONS) * (KERNEL_SIZE * h * h + h)
    bilstm_on_h = 2 * (4 * (h // 2) * (h + h // 2) + 2 * 4 * (h // 2))
    expected = {"cnn": cnn, "cnn_bilstm": cnn + bilstm_on_h,
                "conv": CONV_KERNEL * input_dim * h + h}
    for name, count in expected.items():
        encoder = build_encoder(name, input_dim, h, 1)
        assert sum(p.numel() for p in encoder.parameters()) == count, name


@pytest.mark.parametrize("name", CONV_ENCODERS)
def test_float32_fast_path_matches_float64(name):
    encoder = make(name, seed=3)
    features = torch.randn(3, 300, INPUT_DIM, dtype=torch.float64)
    lengths = torch.tensor([300, 211, 17])
    with torch.no_grad():
        expected = encoder(features, lengths)
        out = encoder.float()(features.float(), lengths)
    assert out.dtype == torch.float32 and out.shape == (3, 300, HIDDEN)
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CONV_ENCODERS)
def test_float32_gradients_finite_and_padding_feeds_nothing(name):
    encoder = make(name, hidden_dim=16, seed=4).float()
    features = torch.randn(2, 500, INPUT_DIM).requires_grad_()
    lengths = torch.tensor([500, 333])
    encoder(features, lengths).pow(2).mean().backward()
    assert torch.isfinite(features.grad).all() and (features.grad[1, 333:] == 0).all()
    assert all(torch.isfinite(p.grad).all() for p in encoder.parameters())


@pytest.mark.parametrize("name", CONV_ENCODERS)
def test_deterministic_given_the_seed(name):
    features = torch.randn(2, 50, INPUT_DIM, dtype=torch.float64)
    lengths = torch.tensor([50, 31])
    a, b, c = make(name, seed=7), make(name, seed=7), make(name, seed=8)
    torch.testing.assert_close(a(features, lengths), b(features, lengths), rtol=0, atol=0)
    assert not torch.equal(a(features, lengths), c(features, lengths))


def test_cnn_output_comes_back_in_the_batch_first_layout_without_a_copy():
    encoder = CNNEncoder(INPUT_DIM, 8, 1)
    out = encoder(torch.randn(2, 64, INPUT_DIM), torch.tensor([64, 40]))
    assert out.shape == (2, 64, 8) and out.is_contiguous()


def test_tiny_run_with_the_cnn_encoder_end_to_end(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    generate_dataset(data, num_train=8, num_val=4, num_test=4, seq_length=1200, seed=5,
                     config=SMALL)
    argv = ["run", "--data-dir", str(data), "--output-dir", str(out), "--encoder", "cnn",
            "--max-duration", "16", "--hidden-dim", "4", "--num-layers", "1", "--batch-size", "4",
            "--epochs", "1", "--models", "softmax", "semicrf", "--device", "cpu", "--threads",
            "1", "--quiet"]
    assert cli_main(argv) == 0
    assert json.loads((out / "config.json").read_text())["encoder"] == "cnn"
    models = json.loads((out / "metrics.json").read_text())["models"]
    assert sorted(models) == ["semicrf", "softmax"]
    for entry in models.values():
        losses = [h["train_loss"] for h in entry["history"]] + [entry["test_loss"]]
        assert all(math.isfinite(v) for v in losses)


@pytest.mark.gpu
@pytest.mark.parametrize("name", CONV_ENCODERS)
def test_on_cuda_matches_cpu(name, monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 convolutions
    encoder = make(name, seed=5).float()
    features = torch.randn(2, 700, INPUT_DIM)
    lengths = torch.tensor([700, 333])
    with torch.no_grad():
        expected = encoder(features, lengths)
        out = encoder.cuda()(features.cuda(), lengths.cuda())
    assert (out[1, 333:] == 0).all()
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-3, atol=1e-4)
