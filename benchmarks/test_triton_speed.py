"""pytest-benchmark timings of the Triton Semi-CRF kernels on a CUDA GPU (skipped without one).

Save a baseline and compare later runs against it (see docs/triton.md)::

    pytest benchmarks/test_triton_speed.py -m benchmark --benchmark-only --benchmark-autosave
    pytest benchmarks/test_triton_speed.py -m benchmark --benchmark-only \\
        --benchmark-compare --benchmark-compare-fail=median:10%

A run fails the comparison when a test's median is more than 10% slower than the saved
one (same machine and card only). Each measured call ends with ``torch.cuda.synchronize``.
"""

from __future__ import annotations

import pytest
import torch

SHAPES = {
    "B4-T2000-K1000-C3": (4, 2000, 1000, 3),
    "B16-T20000-K1000-C3": (16, 20000, 1000, 3),
    "B16-T4000-K100-C12": (16, 4000, 100, 12),
}
DTYPES = {"f32": torch.float32, "f64": torch.float64}

pytestmark = [pytest.mark.gpu]


def _inputs(shape, dtype, requires_grad):
    batch, length, max_len, labels = shape
    gen = torch.Generator().manual_seed(0)
    make = lambda *s: torch.randn(*s, generator=gen, dtype=dtype).cuda().requires_grad_(requires_grad)
    lengths = torch.full((batch,), length, dtype=torch.int64)
    lengths[1::2] = length - length // 10  # mixed lengths, as in a real batch
    return make(batch, length, labels), make(labels, labels), make(max_len, labels), lengths.cuda()


def _synced(fn):
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out

    return run


def _backend():
    from semicrf.crf import triton_backend

    return triton_backend


@pytest.mark.benchmark(group="triton-forward")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward(benchmark, shape, dtype):
    backend = _backend()
    scores, transition, duration, lengths = _inputs(SHAPES[shape], DTYPES[dtype], False)
    run = _synced(lambda: backend.log_partition(scores, transition, duration, lengths))
    run()  # compile outside the measurement
    log_z = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert torch.isfinite(log_z).all()


@pytest.mark.benchmark(group="triton-forward-backward")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward(benchmark, shape, dtype):
    backend = _backend()
    scores, transition, duration, lengths = _inputs(SHAPES[shape], DTYPES[dtype], True)

    def step():
        log_z = backend.log_partition(scores, transition, duration, lengths)
        return torch.autograd.grad(log_z.sum(), (scores, transition, duration))

    run = _synced(step)
    run()
    grads = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.benchmark(group="triton-viterbi")
@pytest.mark.parametrize("shape", SHAPES)
def test_viterbi(benchmark, shape):
    backend = _backend()
    scores, transition, duration, lengths = _inputs(SHAPES[shape], torch.float32, False)
    run = _synced(lambda: backend.viterbi(scores, transition, duration, lengths))
    run()
    best, paths = benchmark.pedantic(run, rounds=5, warmup_rounds=1)
    assert [p[-1][1] for p in paths] == lengths.tolist()
