"""Encoders: the chunked selective scan against the sequential recurrence, the Mamba block's
wiring and parameter layout, padding and direction behaviour of every CPU encoder, the
factory and the mamba-ssm wrapper's failure and success paths."""

from __future__ import annotations

import importlib
import math
import sys
import types

import pytest
import torch
import torch.nn.functional as F

from semicrf.encoders import (
    ENCODER_NAMES,
    BiLSTMEncoder,
    CNNBiLSTMEncoder,
    CNNEncoder,
    LinearConvEncoder,
    MambaEncoder,
    MambaMixer,
    MambaStubEncoder,
    MambaUnavailableError,
    build_encoder,
    selective_scan,
    selective_scan_reference,
)
from semicrf.encoders.common import reversal_index, reverse_within_lengths

CPU_ENCODERS = ("bilstm", "mamba_stub", "cnn", "cnn_bilstm", "conv")
# at T = 30 every output depends on every input (conv sees only t - 16 .. t + 16)
GLOBAL_ENCODERS = ("bilstm", "mamba_stub", "cnn", "cnn_bilstm")
scan_module = importlib.import_module("semicrf.encoders.selective_scan")


def scan_inputs(batch, length, channels, state, dtype=torch.float64, seed=0, delta_scale=1.0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, channels, dtype=dtype, generator=g)
    delta = F.softplus(torch.randn(batch, length, channels, dtype=dtype, generator=g))
    delta = delta * delta_scale
    A = -torch.rand(channels, state, dtype=dtype, generator=g) * 3 - 0.1
    B = torch.randn(batch, length, state, dtype=dtype, generator=g)
    C = torch.randn(batch, length, state, dtype=dtype, generator=g)
    D = torch.randn(channels, dtype=dtype, generator=g)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D)]


# ----------------------------------------------------------------------------- scan


@pytest.mark.parametrize("chunk", [1, 3, 4, 13, 64])
@pytest.mark.parametrize("buffer", [None, 1])
def test_chunked_scan_matches_sequential_recurrence(chunk, buffer, monkeypatch):
    # buffer=1 forces the backward to process one chunk per group (many groups)
    if buffer is not None:
        monkeypatch.setattr(scan_module, "_BACKWARD_BUFFER_ELEMENTS", buffer)
    inputs = scan_inputs(batch=2, length=13, channels=3, state=4)
    ref = selective_scan_reference(*inputs)
    out = selective_scan(*inputs, chunk_size=chunk)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grad_out = torch.randn_like(ref)
    grads_ref = torch.autograd.grad(ref, inputs, grad_out)
    grads = torch.autograd.grad(out, inputs, grad_out)
    for name, g, g_ref in zip("u delta A B C D".split(), grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-11, atol=1e-11, msg=name)


def test_chunked_scan_hand_computed_single_channel():
    # one channel, one state: h_t = exp(d_t a) h_{t-1} + d_t u_t b_t, y_t = c_t h_t
    u = torch.tensor([[[1.0], [2.0], [-1.0]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5], [1.0], [2.0]]], dtype=torch.float64)
    A = torch.tensor([[-1.0]], dtype=torch.float64)
    B = torch.tensor([[[2.0], [1.0], [3.0]]], dtype=torch.float64)
    C = torch.tensor([[[1.0], [-1.0], [0.5]]], dtype=torch.float64)
    h1 = 0.5 * 1 * 2
    h2 = math.exp(-1.0) * h1 + 1.0 * 2 * 1
    h3 = math.exp(-2.0) * h2 + 2.0 * -1 * 3
    expected = torch.tensor([[[h1], [-h2], [0.5 * h3]]], dtype=torch.float64)
    for chunk in (1, 2, 3):
        torch.testing.assert_close(selective_scan(u, delta, A, B, C, chunk_size=chunk), expected)


def test_scan_gradcheck():
    inputs = [t.detach().requires_grad_() for t in scan_inputs(2, 7, 2, 3, seed=1)]
    assert torch.autograd.gradcheck(
        lambda *a: selective_scan(*a, chunk_size=3), inputs[:5], eps=1e-6, atol=1e-7
    )


def test_scan_float32_long_sequence_matches_float64():
    inputs = scan_inputs(batch=2, length=1500, channels=4, state=3, seed=2, delta_scale=0.05)
    ref = selective_scan_reference(*[t.detach() for t in inputs])
    out = selective_scan(*[t.detach().float() for t in inputs], chunk_size=64)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)


def test_scan_strong_decays_stay_finite_and_exact():
    # per-step decays down to exp(-600): a cumulative-product formulation would overflow
    inputs = scan_inputs(batch=1, length=150, channels=3, state=4, seed=3, delta_scale=40.0)
    with torch.no_grad():
        inputs[2].mul_(5.0)
    ref = selective_scan_reference(*inputs)
    out = selective_scan(*inputs, chunk_size=64)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(out.sum(), inputs)
    grads_ref = torch.autograd.grad(ref.sum(), inputs)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-10)


def test_scan_rejects_bad_shapes():
    u, delta, A, B, C, _ = scan_inputs(1, 5, 2, 3)
    with pytest.raises(ValueError, match="delta"):
        selective_scan(u, delta[:, :4], A, B, C)
    with pytest.raises(ValueError, match="A must be"):
        selective_scan(u, delta, A.T, B, C)
    with pytest.raises(ValueError, match="C must be"):
        selective_scan(u, delta, A, B, C[..., :2])
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(u, delta, A, B, C, chunk_size=0)


# ----------------------------------------------------------------------------- Mamba block


def test_mixer_has_mamba_ssm_parameter_layout_and_init():
    torch.manual_seed(0)
    mixer = MambaMixer(32)  # d_inner 64, dt_rank ceil(32/16) = 2, d_state 16, d_conv 4
    shapes = {name: tuple(p.shape) for name, p in mixer.named_parameters()}
    assert shapes == {
        "A_log": (64, 16),
        "D": (64,),
        "in_proj.weight": (128, 32),
        "conv1d.weight": (64, 1, 4),
        "conv1d.bias": (64,),
        "x_proj.weight": (2 + 2 * 16, 64),
        "dt_proj.weight": (64, 2),
        "dt_proj.bias": (64,),
        "out_proj.weight": (32, 64),
    }
    expected_a = torch.log(torch.arange(1, 17, dtype=torch.float32)).expand(64, 16)
    torch.testing.assert_close(mixer.A_log.detach(), expected_a)
    torch.testing.assert_close(mixer.D.detach(), torch.ones(64))
    dt = F.softplus(mixer.dt_proj.bias.detach())
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 1e-1 * (1 + 1e-4)
    assert dt.max() / dt.min() > 5  # spread log-uniformly, not one constant


def test_mixer_wiring_matches_explicit_composition():
    torch.manual_seed(1)
    mixer = MambaMixer(8, d_state=3, chunk_size=4).double()
    x_in = torch.randn(2, 11, 8, dtype=torch.float64)
    # the Mamba-1 block written out step by step, with the sequential scan
    xz = x_in @ mixer.in_proj.weight.T
    x, z = xz[..., :16], xz[..., 16:]
    w = mixer.conv1d.weight  # (16, 1, 4): causal depthwise conv, kernel over t-3..t
    x_pad = F.pad(x.transpose(1, 2), (3, 0))
    conv = F.conv1d(x_pad, w, mixer.conv1d.bias, groups=16).transpose(1, 2)
    x = conv * torch.sigmoid(conv)
    proj = x @ mixer.x_proj.weight.T
    dt, B, C = proj[..., :1], proj[..., 1:4], proj[..., 4:7]
    delta = F.softplus(dt @ mixer.dt_proj.weight.T + mixer.dt_proj.bias)
    y = selective_scan_reference(x, delta, -torch.exp(mixer.A_log), B, C, mixer.D)
    expected = (y * z * torch.sigmoid(z)) @ mixer.out_proj.weight.T
    torch.testing.assert_close(mixer(x_in), expected, rtol=1e-10, atol=1e-12)


def test_mixer_is_causal():
    torch.manual_seed(2)
    mixer = MambaMixer(8, chunk_size=4).double()
    x = torch.randn(1, 20, 8, dtype=torch.float64)
    changed = x.clone()
    changed[:, 9] += 1.0
    a, b = mixer(x), mixer(changed)
    torch.testing.assert_close(a[:, :9], b[:, :9], rtol=0, atol=0)
    assert (a[:, 9:] - b[:, 9:]).abs().amax(dim=-1).min() > 0  # every later position moves


# ----------------------------------------------------------------------------- encoders


def make(name, input_dim=5, hidden_dim=8, num_layers=2, seed=0):
    torch.manual_seed(seed)
    return build_encoder(name, input_dim, hidden_dim, num_layers).double()


def batch_inputs(lengths, length, input_dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(len(lengths), length, input_dim, dtype=torch.float64, generator=g)
    return features, torch.tensor(lengths)


def test_reversal_index_reverses_within_length_only():
    index = reversal_index(torch.tensor([3, 5]), 5)
    assert index.tolist() == [[2, 1, 0, 3, 4], [4, 3, 2, 1, 0]]
    x = torch.arange(10.0).reshape(2, 5, 1)
    torch.testing.assert_close(reverse_within_lengths(reverse_within_lengths(x, index), index), x)


@pytest.mark.parametrize("name", CPU_ENCODERS)
def test_shape_and_zeros_past_length(name):
    encoder = make(name)
    features, lengths = batch_inputs([17, 9, 1], 17)
    out = encoder(features, lengths)
    assert out.shape == (3, 17, 8)
    assert out.dtype == torch.float64
    assert (out[1, 9:] == 0).all() and (out[2, 1:] == 0).all()
    assert (out[0].abs().sum(-1) > 0).all() and (out[1, :9].abs().sum(-1) > 0).all()


@pytest.mark.parametrize("name", CPU_ENCODERS)
def test_padding_content_does_not_leak(name):
    encoder = make(name)
    features, lengths = batch_inputs([23, 14, 5], 23)
    noisy = features.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy[b, n:] = 100.0 * torch.randn(23 - n, 5, dtype=torch.float64)
    out, out_noisy = encoder(features, lengths), encoder(noisy, lengths)
    torch.testing.assert_close(out_noisy, out, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CPU_ENCODERS)
def test_padded_batch_equals_each_sequence_alone(name):
    encoder = make(name)
    features, lengths = batch_inputs([23, 14, 5], 23)
    out = encoder(features, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = encoder(features[b : b + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(out[b : b + 1, :n], alone, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", GLOBAL_ENCODERS)
def test_both_directions_reach_every_position(name):
    encoder = make(name, num_layers=1)
    features, lengths = batch_inputs([30], 30)
    out = encoder(features, lengths)
    for t in (0, 15, 29):  # perturb one position; outputs before and after it must move
        changed = features.clone()
        changed[0, t] += 1.0
        delta = (encoder(changed, lengths) - out).abs().sum(-1)[0]
        assert (delta > 0).all(), (t, delta)


@pytest.mark.parametrize("name", CPU_ENCODERS)
def test_gradients_are_finite_and_reach_every_parameter(name):
    encoder = make(name).float()
    features, lengths = batch_inputs([40, 25], 40)
    features = features.float().requires_grad_()
    out = encoder(features, lengths)
    out.pow(2).sum().backward()
    assert torch.isfinite(features.grad).all()
    assert (features.grad[1, 25:] == 0).all()  # padding feeds nothing
    for pname, p in encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_bilstm_odd_hidden_dim():
    encoder = BiLSTMEncoder(5, 7, 1)
    out = encoder(torch.randn(2, 6, 5), torch.tensor([6, 3]))
    assert out.shape == (2, 6, 7) and (out[1, 3:] == 0).all()


@pytest.mark.parametrize("name", CPU_ENCODERS)
def test_encoder_input_errors(name):
    encoder = build_encoder(name, 5, 8, 1)
    x = torch.randn(2, 6, 5)
    with pytest.raises(ValueError, match="features"):
        encoder(torch.randn(2, 6, 4), torch.tensor([6, 6]))
    with pytest.raises(ValueError, match="features"):
        encoder(torch.randn(6, 5), torch.tensor([6]))
    with pytest.raises(ValueError, match="lengths"):
        encoder(x, torch.tensor([6, 0]))
    with pytest.raises(ValueError, match="lengths"):
        encoder(x, torch.tensor([7, 6]))
    with pytest.raises(ValueError, match="lengths"):
        encoder(x, torch.tensor([6]))
    with pytest.raises(ValueError, match="lengths"):
        encoder(x, torch.tensor([6.0, 6.0]))


# ----------------------------------------------------------------------------- factory


def test_build_encoder_types_and_unknown_name():
    assert set(ENCODER_NAMES) == {"bilstm", "mamba", "mamba_stub", "cnn", "cnn_bilstm", "conv"}
    assert isinstance(build_encoder("bilstm", 5, 8, 1), BiLSTMEncoder)
    assert isinstance(build_encoder("mamba_stub", 5, 8, 1), MambaStubEncoder)
    assert isinstance(build_encoder("cnn", 5, 8, 1), CNNEncoder)
    assert isinstance(build_encoder("cnn_bilstm", 5, 8, 1), CNNBiLSTMEncoder)
    assert isinstance(build_encoder("conv", 5, 8, 1), LinearConvEncoder)
    with pytest.raises(ValueError) as info:
        build_encoder("transformer", 5, 8, 1)
    for valid in ENCODER_NAMES:
        assert valid in str(info.value)
    for name in CPU_ENCODERS:
        with pytest.raises(ValueError, match="num_layers"):
            build_encoder(name, 5, 8, 0)
        with pytest.raises(ValueError, match="hidden_dim"):
            build_encoder(name, 5, 0, 1)


def test_mamba_without_cuda_names_the_alternatives(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(MambaUnavailableError) as info:
        build_encoder("mamba", 5, 8, 1)
    assert isinstance(info.value, ImportError)
    assert "mamba_stub" in str(info.value) and "semicrf[gpu]" in str(info.value)


def test_mamba_without_mamba_ssm_names_the_alternatives(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # import mamba_ssm -> ImportError
    with pytest.raises(MambaUnavailableError) as info:
        build_encoder("mamba", 5, 8, 1)
    assert "mamba-ssm" in str(info.value)
    assert "mamba_stub" in str(info.value) and "semicrf[gpu]" in str(info.value)


def test_mamba_wrapper_builds_on_mamba_ssm_and_shares_the_stub_state_dict(monkeypatch):
    calls = []

    def fake_mamba(*, d_model, d_state, d_conv, expand):
        calls.append((d_model, d_state, d_conv, expand))
        return MambaMixer(d_model, d_state=d_state, d_conv=d_conv, expand=expand)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setitem(sys.modules, "mamba_ssm", types.SimpleNamespace(Mamba=fake_mamba))
    encoder = build_encoder("mamba", 5, 8, 2)
    assert isinstance(encoder, MambaEncoder)
    assert calls == [(8, 16, 4, 2)] * 4  # two directions x two layers, mamba-ssm defaults
    stub = make("mamba_stub", seed=3).float()
    encoder.load_state_dict(stub.state_dict(), strict=True)
    features, lengths = batch_inputs([12, 7], 12)
    features = features.float()
    torch.testing.assert_close(encoder(features, lengths), stub(features, lengths))


# ----------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_stub_on_cuda_matches_cpu():
    encoder = make("mamba_stub", seed=4).float()
    features, lengths = batch_inputs([50, 31], 50)
    features = features.float()
    expected = encoder(features, lengths)
    out = encoder.cuda()(features.cuda(), lengths.cuda())
    torch.testing.assert_close(out.cpu(), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_real_mamba_encoder_runs_on_cuda():
    pytest.importorskip("mamba_ssm")
    encoder = build_encoder("mamba", 5, 16, 1).cuda()
    features, lengths = batch_inputs([64, 20], 64)
    out = encoder(features.float().cuda(), lengths.cuda())
    assert out.shape == (2, 64, 16) and torch.isfinite(out).all()
    assert (out[1, 20:] == 0).all()
