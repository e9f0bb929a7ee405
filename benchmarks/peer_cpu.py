"""Side-by-side CPU timing: semicrf's reference path vs flash-semicrf 0.2.0's PyTorch path.

flash-semicrf is PolyForm Noncommercial: never a dependency. Install it into a throw-away
venv and run this file from there with this repo on the path::

    python -m venv /tmp/peer && /tmp/peer/bin/pip install torch==2.13.0 flash-semicrf==0.2.0
    PYTHONPATH=. /tmp/peer/bin/python benchmarks/peer_cpu.py --out peer_cpu.json

Both compute log Z and its gradients w.r.t. scores, transition and duration at
B=4, T=2000, K=1000, C=3 in float64 on the same inputs; the log Z values and gradients are
compared too. Convention map (found by comparing the two on small inputs): flash-semicrf
scores the first segment with a transition from every label, which is our model with
``start[c] = logsumexp_c'(transition[c', c])``; its ``duration_bias`` row k-1 and
``transition[src, dst]`` are ours.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import semicrf


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--length", type=int, default=2000)
    parser.add_argument("--max-duration", type=int, default=1000)
    parser.add_argument("--labels", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peer-repeats", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    from flash_semicrf.streaming import semi_crf_streaming_forward

    b, t, k, c = args.batch, args.length, args.max_duration, args.labels
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(b, t, c, generator=gen, dtype=torch.float64)
    transition = torch.randn(c, c, generator=gen, dtype=torch.float64)
    duration = torch.randn(k, c, generator=gen, dtype=torch.float64)
    lengths = torch.full((b,), t, dtype=torch.int64)

    def ours():
        leaves = [x.clone().requires_grad_() for x in (scores, transition, duration)]
        start = torch.logsumexp(leaves[1], dim=0)  # flash-semicrf's first-segment convention
        log_z = semicrf.log_partition(*leaves[:3], lengths, start, backend="reference")
        return log_z.detach(), torch.autograd.grad(log_z.sum(), leaves)

    def peer():
        leaves = [x.clone().requires_grad_() for x in (scores, transition, duration)]
        cum = torch.cat([torch.zeros(b, 1, c, dtype=torch.float64), leaves[0].cumsum(1)], dim=1)
        log_z = semi_crf_streaming_forward(cum, leaves[1], leaves[2], lengths, k, use_triton=False)
        return log_z.detach(), torch.autograd.grad(log_z.sum(), leaves)

    ours_median, ours_times, (ours_z, ours_grads) = _time(ours, args.repeats)
    peer_median, peer_times, (peer_z, peer_grads) = _time(peer, args.peer_repeats)
    result = {
        "shape": {"B": b, "T": t, "K": k, "C": c, "dtype": "float64"},
        "machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
        "semicrf_fwd_bwd_median_s": ours_median, "semicrf_times_s": ours_times,
        "flash_semicrf_fwd_bwd_median_s": peer_median, "flash_semicrf_times_s": peer_times,
        "speedup": peer_median / ours_median,
        "max_abs_log_z_diff": float((ours_z - peer_z).abs().max()),
        "max_abs_grad_diff": [float((a - p).abs().max()) for a, p in zip(ours_grads, peer_grads)],
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
