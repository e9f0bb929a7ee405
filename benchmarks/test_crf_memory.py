"""Peak memory of a training step (forward + backward) at B=16, T=20000, K=1000, C=3.

Measured in a fresh process as the growth of peak RSS beyond the inputs; the target is
under 2 GB (the sweeps keep O(T C) + O(K C) state, nothing of size T * K).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

_SCRIPT = r"""
import json, resource, torch, semicrf
B, T, K, C = 16, 20000, 1000, 3
g = torch.Generator().manual_seed(0)
scores = torch.randn(B, T, C, generator=g, requires_grad=True)
transition = torch.randn(C, C, generator=g, requires_grad=True)
duration = torch.randn(K, C, generator=g, requires_grad=True)
lengths = torch.full((B,), T)
semicrf.log_partition(scores[:1, :50], transition, duration[:10], lengths[:1] * 0 + 50).sum().backward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
log_z = semicrf.log_partition(scores, transition, duration, lengths, backend="reference")
log_z.sum().backward()
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
finite = bool(torch.isfinite(scores.grad).all())
print(json.dumps({"peak_growth_mb": (after - before) / 1024, "finite": finite}))
"""


@pytest.mark.benchmark(group="crf-memory")
def test_training_step_memory_b16_t20000_k1000(benchmark):
    """The growth is stored as ``extra_info["peak_growth_mb"]`` in the benchmark JSON."""
    run = lambda: subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True,
                                 text=True, check=True, timeout=600)
    out = benchmark.pedantic(run, rounds=1, warmup_rounds=0)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    benchmark.extra_info["peak_growth_mb"] = result["peak_growth_mb"]
    assert result["finite"]
    assert result["peak_growth_mb"] < 2048, result
