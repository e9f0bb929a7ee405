"""pytest-benchmark timing of ``evaluate`` at the spec's test-set size (200 x 20 kb)."""

from __future__ import annotations

import numpy as np
import pytest

from semicrf.metrics import evaluate


@pytest.mark.benchmark(group="metrics")
def test_evaluate_200_sequences_of_20kb(benchmark):
    rng = np.random.default_rng(0)
    true, pred = [], []
    for _ in range(200):
        lab = rng.integers(0, 3, 400)
        y = np.repeat(lab, rng.integers(1, 100, 400))[:20_000]
        y = np.pad(y, (0, 20_000 - y.size), mode="edge")
        true.append(y)
        pred.append(np.where(rng.random(y.size) < 0.02, rng.integers(0, 3, y.size), y))
    m = benchmark.pedantic(lambda: evaluate(pred, true, 3, 1000), rounds=3, warmup_rounds=0)
    assert m["n_positions"] == 4_000_000
