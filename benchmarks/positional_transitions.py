"""Per-position transitions (B, T, C, C) against a (C, C) table, and runs semantics at K = 1,
side by side in one process on one thread (medians over ``--reps``, cases alternating).

    .venv/bin/python benchmarks/positional_transitions.py --reps 3 [--quick]

Prints one JSON object: per case the median seconds of forward+backward (log Z and every
gradient, through the public API on the CPU fast path) and of Viterbi, and the ratios the
README reports (per-position / table at the same C; runs / segments at K = 1). ``--quick``
shrinks every shape (a smoke run for the tests of this script's machinery).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

import semicrf
from semicrf.crf import blocked, streaming
from semicrf.crf.likelihood import gold_mask, label_nll, masked_log_partition


def _inputs(batch: int, length: int, max_len: int, labels: int, per_position: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    make = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    lengths = torch.full((batch,), length, dtype=torch.int64)
    lengths[1::2] = length - length // 10
    shape = (batch, length, labels, labels) if per_position else (labels, labels)
    return dict(scores=make(batch, length, labels), transition=make(*shape),
                duration=make(max_len, labels), lengths=lengths,
                tail=-0.01 - torch.rand(labels, generator=gen))


def _fwd_bwd(x: dict, semantics: str) -> None:
    leaves = {k: x[k].clone().requires_grad_() for k in ("scores", "transition", "duration")}
    tail = x["tail"] if semantics == "runs" else None
    log_z = semicrf.log_partition(leaves["scores"], leaves["transition"], leaves["duration"],
                                  x["lengths"], semantics=semantics, tail=tail)
    log_z.sum().backward()


def _viterbi(x: dict, semantics: str) -> None:
    tail = x["tail"] if semantics == "runs" else None
    semicrf.viterbi(x["scores"], x["transition"], x["duration"], x["lengths"],
                    semantics=semantics, tail=tail)


def _runs_k1_without_chain(x: dict, semantics: str) -> None:
    """The runs-semantics sweep at K = 1 as it ran before the chain map (blocked engine with
    the geometric tail), forward and backward, for the before / after row."""
    m = streaming.prepare(x["scores"], x["transition"], x["duration"], x["lengths"], None,
                          semantics="runs", tail=x["tail"])
    state = blocked.forward(m)
    blocked.backward(m, state, torch.ones(m.shape[0], dtype=torch.float64), True,
                     x["duration"].shape[0])


def _tags(x: dict) -> torch.Tensor:
    batch, length, labels = x["scores"].shape
    return torch.randint(0, labels, (batch, length), generator=torch.Generator().manual_seed(1))


def _linear_nll(x: dict, semantics: str) -> None:
    """The `linear` model's loss step (segments, K = 1): label_nll forward and backward."""
    leaves = {k: x[k].clone().requires_grad_() for k in ("scores", "transition", "duration")}
    label_nll(leaves["scores"], leaves["transition"], leaves["duration"], x["lengths"],
              _tags(x)).sum().backward()


def _linear_nll_masked_sweep(x: dict, semantics: str) -> None:
    """The same loss as it ran before: log Z and the masked gold sweep log Z(y) in one sweep
    over the doubled batch (the masked sweep runs on the reference backend)."""
    leaves = {k: x[k].clone().requires_grad_() for k in ("scores", "transition", "duration")}
    allowed = gold_mask(_tags(x), x["lengths"], x["scores"].shape[2])
    both = masked_log_partition(
        torch.cat([leaves["scores"]] * 2), leaves["transition"], leaves["duration"],
        torch.cat([x["lengths"]] * 2), None, torch.cat([torch.ones_like(allowed), allowed]))
    log_z, gold = both.split(x["scores"].shape[0])
    (log_z - gold).sum().backward()


def _cases(quick: bool) -> dict:
    big = (2, 600, 50) if quick else (16, 20000, 1000)
    chain = (2, 500) if quick else (4, 10000)
    cases = {}
    for labels, per_position in ((3, False), (3, True), (7, True)):
        name = f"B{big[0]}-T{big[1]}-K{big[2]}-C{labels}-{'BTCC' if per_position else 'CC'}"
        x = _inputs(*big, labels, per_position)
        cases[f"{name} fwd+bwd runs"] = (_fwd_bwd, x, "runs")
        cases[f"{name} viterbi runs"] = (_viterbi, x, "runs")
    for labels, per_position in ((3, False), (7, True)):
        name = f"K1-B{chain[0]}-T{chain[1]}-C{labels}-{'BTCC' if per_position else 'CC'}"
        x = _inputs(chain[0], chain[1], 1, labels, per_position)
        cases[f"{name} fwd+bwd runs"] = (_fwd_bwd, x, "runs")
        cases[f"{name} fwd+bwd segments"] = (_fwd_bwd, x, "segments")
        cases[f"{name} fwd+bwd runs (tail sweep, before)"] = (_runs_k1_without_chain, x, "runs")
    x = _inputs(chain[0], chain[1], 1, 3, False)
    cases[f"K1-B{chain[0]}-T{chain[1]}-C3-CC linear label_nll"] = (_linear_nll, x, "segments")
    cases[f"K1-B{chain[0]}-T{chain[1]}-C3-CC linear label_nll (masked sweep, before)"] = (
        _linear_nll_masked_sweep, x, "segments")
    return cases


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cases = _cases(args.quick)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, (fn, x, semantics) in cases.items():
            begin = time.perf_counter()
            fn(x, semantics)
            times[name].append(time.perf_counter() - begin)
    medians = {name: statistics.median(t) for name, t in times.items()}

    def ratio(a: str, b: str) -> float:
        return medians[a] / medians[b]

    big = "B2-T600-K50" if args.quick else "B16-T20000-K1000"
    k1 = "K1-B2-T500" if args.quick else "K1-B4-T10000"
    ratios = {}
    for kind in ("fwd+bwd", "viterbi"):
        base = f"{big}-C3-CC {kind} runs"
        ratios[f"{kind}: C3 per-position / C3 table"] = ratio(f"{big}-C3-BTCC {kind} runs", base)
        ratios[f"{kind}: C7 per-position / C3 table"] = ratio(f"{big}-C7-BTCC {kind} runs", base)
    for suffix in ("C3-CC", "C7-BTCC"):
        ratios[f"K=1 {suffix}: runs / segments"] = ratio(f"{k1}-{suffix} fwd+bwd runs",
                                                        f"{k1}-{suffix} fwd+bwd segments")
        ratios[f"K=1 {suffix}: tail sweep (before) / runs"] = ratio(
            f"{k1}-{suffix} fwd+bwd runs (tail sweep, before)", f"{k1}-{suffix} fwd+bwd runs")
    ratios["linear label_nll K=1: masked sweep (before) / closed-form gold"] = ratio(
        f"{k1}-C3-CC linear label_nll (masked sweep, before)", f"{k1}-C3-CC linear label_nll")
    result = {"machine": platform.processor() or platform.machine(), "threads": 1,
              "reps": args.reps, "median_seconds": medians, "ratios": ratios}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
