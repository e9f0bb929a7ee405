"""pytest-benchmark timings of the reference (PyTorch) Semi-CRF path on CPU.

Run with ``make bench`` (``pytest benchmarks -m benchmark --benchmark-only
--benchmark-autosave``); compare against a saved run with
``--benchmark-compare --benchmark-compare-fail=median:25%``.
"""

from __future__ import annotations

import pytest
import torch

import semicrf

SHAPES = {
    "B4-T2000-K1000-C3": (4, 2000, 1000, 3),
    "B16-T20000-K1000-C3": (16, 20000, 1000, 3),
}
DTYPES = {"f32": torch.float32, "f64": torch.float64}


def _inputs(shape, dtype, requires_grad):
    batch, length, max_len, labels = shape
    gen = torch.Generator().manual_seed(0)
    make = lambda *s: torch.randn(*s, generator=gen, dtype=dtype).requires_grad_(requires_grad)
    lengths = torch.full((batch,), length, dtype=torch.int64)
    lengths[1::2] = length - length // 10  # mixed lengths, as in a real batch
    return make(batch, length, labels), make(labels, labels), make(max_len, labels), lengths


def _rounds(shape):
    return 5 if shape[1] <= 2000 else 1


@pytest.mark.benchmark(group="crf-forward")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward(benchmark, shape, dtype):
    scores, transition, duration, lengths = _inputs(SHAPES[shape], DTYPES[dtype], False)
    run = lambda: semicrf.log_partition(scores, transition, duration, lengths, backend="reference")
    log_z = benchmark.pedantic(run, rounds=_rounds(SHAPES[shape]), warmup_rounds=0)
    assert torch.isfinite(log_z).all()


@pytest.mark.benchmark(group="crf-forward-backward")
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_forward_backward(benchmark, shape, dtype):
    scores, transition, duration, lengths = _inputs(SHAPES[shape], DTYPES[dtype], True)

    def run():
        log_z = semicrf.log_partition(scores, transition, duration, lengths, backend="reference")
        return torch.autograd.grad(log_z.sum(), (scores, transition, duration))

    grads = benchmark.pedantic(run, rounds=_rounds(SHAPES[shape]), warmup_rounds=0)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.benchmark(group="crf-viterbi")
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_viterbi(benchmark, shape):
    scores, transition, duration, lengths = _inputs(SHAPES[shape], torch.float32, False)
    run = lambda: semicrf.viterbi(scores, transition, duration, lengths, backend="reference")
    best, paths = benchmark.pedantic(run, rounds=_rounds(SHAPES[shape]), warmup_rounds=0)
    assert len(paths) == scores.shape[0]
