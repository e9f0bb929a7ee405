"""Training-loss forward+backward, runs vs segments semantics, side by side in one run.

The label NLL at B=16, T=20000, K=1000, C=3 (float32 scores, one torch thread, the CPU
backend chosen by ``backend="auto"``): runs semantics = one sweep plus the closed-form gold
score; segments semantics = the free sweep plus the masked gold sweep. The two are timed in
alternation, medians reported with their ratio, as JSON on stdout.

    python benchmarks/runs_vs_segments.py [--batch 16 --length 20000 --max-len 1000 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from semicrf.crf.likelihood import label_nll


def _inputs(batch: int, length: int, max_len: int, labels: int):
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(batch, length, labels, generator=gen).requires_grad_()
    transition = torch.randn(labels, labels, generator=gen).requires_grad_()
    duration = torch.randn(max_len, labels, generator=gen).requires_grad_()
    tail = torch.full((labels,), -1e-3).requires_grad_()
    lengths = torch.full((batch,), length, dtype=torch.int64)
    lengths[1::2] = length - length // 10
    # labels: runs of random lengths 50..2000 with a random label each
    tags = torch.empty(batch, length, dtype=torch.int64)
    for b in range(batch):
        t = 0
        while t < length:
            run = int(torch.randint(50, 2000, (1,), generator=gen))
            tags[b, t : t + run] = int(torch.randint(0, labels, (1,), generator=gen))
            t += run
    return scores, transition, duration, tail, lengths, tags


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=20000)
    parser.add_argument("--max-len", type=int, default=1000)
    parser.add_argument("--labels", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    scores, transition, duration, tail, lengths, tags = _inputs(
        args.batch, args.length, args.max_len, args.labels)
    censored = torch.zeros(args.batch, 2, dtype=torch.bool)
    censored[:, 1] = True

    def runs():
        nll = label_nll(scores, transition, duration, lengths, tags, semantics="runs", tail=tail,
                        censored=censored)
        return torch.autograd.grad(nll.sum(), (scores, transition, duration, tail))

    def segments():
        nll = label_nll(scores, transition, duration, lengths, tags)
        return torch.autograd.grad(nll.sum(), (scores, transition, duration))

    times: dict[str, list[float]] = {"runs": [], "segments": []}
    for _ in range(args.repeats):
        for name, fn in (("runs", runs), ("segments", segments)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "shape": dict(B=args.batch, T=args.length, K=args.max_len, C=args.labels),
        "threads": 1, "machine": platform.platform(), "processor": platform.processor(),
        "times_s": times, "median_s": med, "segments_over_runs": med["segments"] / med["runs"],
    }, indent=1))


if __name__ == "__main__":
    main()
