"""Blocked CPU sweeps vs the reference sweeps, side by side in one process (one thread).

Times forward+backward of log Z (all gradients; runs semantics with a tail by default), the
forward alone and Viterbi (segments semantics) at the issue's shapes, as medians over
``--reps`` runs (alternating between the backends), and prints one JSON object with the
medians (seconds) and the ratios reference / blocked::

    .venv/bin/python benchmarks/fast_vs_reference.py --reps 3 [--shapes B16-T20000 B4-T2000]
        [--semantics runs|segments]

Both backends are called through the backend protocol (``forward`` / ``backward`` /
``viterbi`` over one ``streaming.prepare``d model), so the difference is the sweeps alone.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from semicrf.crf import blocked, streaming

SHAPES = {"B16-T20000": (16, 20000, 1000, 3), "B4-T2000": (4, 2000, 1000, 3)}
BACKENDS = {"reference": streaming, "blocked": blocked}


def inputs(shape: tuple[int, int, int, int], dtype: torch.dtype):
    """Random scores, transition, duration and mixed lengths (as benchmarks/test_crf_speed)."""
    batch, length, max_len, labels = shape
    gen = torch.Generator().manual_seed(0)
    make = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)  # noqa: E731
    lengths = torch.full((batch,), length, dtype=torch.int64)
    lengths[1::2] = length - length // 10
    return make(batch, length, labels), make(labels, labels), make(max_len, labels), lengths


SEMANTICS = {"semantics": "runs"}  # set by --semantics; runs get a tail of -0.01 per label


def prepare(shape, dtype) -> streaming.Model64:
    scores, transition, duration, lengths = inputs(shape, dtype)
    runs = SEMANTICS["semantics"] == "runs"
    tail = torch.full((shape[3],), -0.01, dtype=dtype) if runs else None
    return streaming.prepare(scores, transition, duration, lengths, None,
                             semantics=SEMANTICS["semantics"], tail=tail)


def step(backend, shape, dtype) -> streaming.Gradients:
    """One training step of the CRF head: prepare, forward, backward (every gradient)."""
    model = prepare(shape, dtype)
    state = backend.forward(model)
    weights = torch.ones(shape[0], dtype=torch.float64)
    return backend.backward(model, state, weights, True, shape[2])


def forward_only(backend, shape, dtype) -> torch.Tensor:
    return backend.forward(prepare(shape, dtype)).log_z


def decode(backend, shape, dtype) -> streaming.ViterbiSweep:
    """Viterbi in segments semantics."""
    scores, transition, duration, lengths = inputs(shape, dtype)
    return backend.viterbi(streaming.prepare(scores, transition, duration, lengths, None))


def median_times(fns: dict, reps: int) -> dict:
    """Median seconds of each callable; the reps alternate between them, so that a machine
    shared with other work slows all of them alike."""
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--semantics", default="runs", choices=["runs", "segments"])
    parser.add_argument("--no-viterbi", action="store_true")
    args = parser.parse_args()
    SEMANTICS["semantics"] = args.semantics
    torch.set_num_threads(1)
    result = {"machine": platform.processor() or platform.machine(), "torch": torch.__version__,
              "threads": 1, "reps": args.reps, "semantics": args.semantics, "runs": []}
    tasks = [("forward+backward", step, dtype) for dtype in (torch.float32, torch.float64)]
    tasks.append(("forward", forward_only, torch.float64))
    if not args.no_viterbi:
        tasks.append(("viterbi", decode, torch.float32))
    for name in args.shapes:
        shape = SHAPES[name]
        for task, fn, dtype in tasks:
            row = {"shape": name, "task": task, "dtype": str(dtype).replace("torch.", "")}
            runs = {label: (lambda fn=fn, backend=backend, shape=shape, dtype=dtype:
                            fn(backend, shape, dtype))
                    for label, backend in BACKENDS.items()}
            row.update(median_times(runs, args.reps))
            row["ratio"] = row["reference"] / row["blocked"]
            result["runs"].append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
