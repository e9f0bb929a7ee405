"""pytest-benchmark: the blocked CPU sweeps side by side with the reference in one run.

``make bench`` runs it with the other benchmarks (``pytest benchmarks -m benchmark
--benchmark-only``); compare the groups' ``blocked`` and ``reference`` rows. The same
timings as medians and ratios in one JSON: ``benchmarks/fast_vs_reference.py``.
"""

from __future__ import annotations

import pytest
import torch
from fast_vs_reference import BACKENDS, SHAPES, decode, step

pytestmark = pytest.mark.benchmark
DTYPES = {"f32": torch.float32, "f64": torch.float64}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _rounds(shape):
    return 3 if shape[1] <= 2000 else 1


@pytest.mark.benchmark(group="crf-fast-forward-backward")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward(benchmark, shape, dtype, backend):
    run = lambda: step(BACKENDS[backend], SHAPES[shape], DTYPES[dtype])
    grads = benchmark.pedantic(run, rounds=_rounds(SHAPES[shape]), warmup_rounds=0)
    assert all(torch.isfinite(g).all() for g in (grads.scores, grads.transition, grads.duration))


@pytest.mark.benchmark(group="crf-fast-viterbi")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_viterbi(benchmark, shape, backend):
    run = lambda: decode(BACKENDS[backend], SHAPES[shape], torch.float32)
    sweep = benchmark.pedantic(run, rounds=_rounds(SHAPES[shape]), warmup_rounds=0)
    assert torch.isfinite(sweep.best).all()
