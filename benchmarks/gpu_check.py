"""One-command GPU check of the Triton backend: correctness and timings, written to one JSON.

Run through ``make gpu-check`` (``bash benchmarks/gpu_check.sh``), which sets PYTHONPATH and
installs flash-semicrf 0.2.0 into a throw-away folder when it can. Phases, each recorded
in the JSON as soon as it ends (so a run cut short still leaves its results):

1. ``correctness`` (float64, the full shape, segments semantics): triton vs reference
   log Z, gradients w.r.t. scores, transition, duration and start (random weights on
   log Z), Viterbi scores and paths (a differing path must rescore to the optimum);
   float32 triton vs float64.
2. ``runs_correctness``: the same in runs semantics (maximal runs, geometric tail, K < T so
   runs longer than K occur; the batch mixes uncensored, first-, last- and both-censored
   sequences), plus the tail gradient and a bitwise rerun.
3. ``determinism``: a second triton forward+backward gives bitwise-equal gradients.
4. ``timings``: forward, forward+backward and Viterbi, median of ``--repeats`` after a
   warm-up, triton float32 and float64; the reference (float64) timed once in phase 1.
5. ``flash``: flash-semicrf's streaming Triton kernel on the same inputs (subprocess with
   ``--flash-only`` under ``--flash-path``), forward, forward+backward, max-semiring.
6. ``runs_timings``: phase 4 in runs semantics (reference timed once in phase 2).
7. ``positional_correctness``: per-position transitions (B, T, C, C) with -inf entries at
   T = min(T, ``--positional-length``), both semantics (in segments semantics sequence 0
   has no admissible labelling): triton vs reference float64 log Z, every gradient (the
   per-position transition's included), Viterbi; and at the full shape a (C, C) table vs its
   expansion (bitwise log Z, Viterbi scores and the other gradients; the expansion's
   transition gradient summed).
8. ``positional_timings``: phase 4 with a (B, T, C, C) transition, both semantics.
9. ``recompile``: new T and new lengths add no compiled kernel variant (both semantics).
10. ``large_offsets``: a forward and a Viterbi sweep with B * T * C > 2^31 (CUDA, if memory allows).
11. ``tuning``: forward-sweep times for other warp counts and window chunks, and the runs
    float64 backward sweep for 4 / 8 warps and chunks (budget allowing).

The exit status is 1 when a correctness check fails. Rehearse on CPU with small shapes:

    TRITON_INTERPRET=1 python benchmarks/gpu_check.py --device cpu --batch 2 --length 40 \\
        --max-len 8 --repeats 1 --out /tmp/gpu_check.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

START = time.perf_counter()
NAMES = ("scores", "transition", "duration", "lengths", "start")  # positional API order


class _Reference:
    """The reference backend with the calls of ``triton_backend``."""

    @staticmethod
    def log_partition(scores, transition, duration, lengths, start=None, allowed=None, **runs):
        import semicrf
        from semicrf.crf.likelihood import masked_log_partition

        if runs:
            return semicrf.log_partition(scores, transition, duration, lengths, start, **runs,
                                         backend="reference")
        return masked_log_partition(scores, transition, duration, lengths, start, allowed,
                                    "reference")

    @staticmethod
    def viterbi(*args, **runs):
        import semicrf

        return semicrf.viterbi(*args, **runs, backend="reference")


reference = _Reference()


def parse_args(argv=None) -> argparse.Namespace:
    default_out = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else Path(
        "gpu_check.json")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--length", type=int, default=20000, help="T")
    p.add_argument("--max-len", type=int, default=1000, help="K")
    p.add_argument("--labels", type=int, default=3, help="C")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=default_out)
    p.add_argument("--budget-s", type=float, default=330.0,
                   help="skip the remaining phases once this much wall time has passed")
    p.add_argument("--flash-path", default=None,
                   help="folder holding flash_semicrf (a throw-away pip --target install)")
    p.add_argument("--flash-skip-reason", default=None)
    p.add_argument("--flash-timeout-s", type=float, default=200.0)
    p.add_argument("--flash-repeats", type=int, default=2)
    p.add_argument("--large-offsets", choices=("auto", "on", "off"), default="auto",
                   help="auto: run when on CUDA with enough free memory")
    p.add_argument("--positional-length", type=int, default=5000,
                   help="T of the per-position correctness phase (the reference is slow)")
    p.add_argument("--flash-only", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def elapsed() -> float:
    return time.perf_counter() - START


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeats: int, warmup: bool = True) -> dict:
    """Median wall time of fn() (device synchronised); the warm-up run is reported apart."""
    out = {}
    if warmup:
        t0 = time.perf_counter()
        fn()
        sync(device)
        out["first_call_s"] = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        runs.append(time.perf_counter() - t0)
    out.update(median_s=statistics.median(runs), min_s=min(runs), runs_s=runs)
    return out


def make_inputs(args, dtype=torch.float64, semantics: str = "segments",
                positional: bool = False) -> dict:
    """Random model on the device; lengths mixed (odd sequences 10% shorter). Runs
    semantics adds ``tail`` (C,) in [-1.2, -0.2] and ``censored`` (B, 2): sequence b has a
    censored first run iff b is odd and a censored last run iff b % 3 != 0 (all four
    patterns from B = 4 on; both edges occur from B = 2 on). ``positional``: a (B, T, C, C)
    transition with 10% of its entries -inf."""
    gen = torch.Generator().manual_seed(args.seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).to(args.device, dtype)
    lengths = torch.full((args.batch,), args.length, dtype=torch.int64)
    lengths[1::2] = args.length - args.length // 10
    inp = dict(
        scores=rnd(args.batch, args.length, args.labels),
        transition=rnd(args.labels, args.labels),
        duration=rnd(args.max_len, args.labels),
        start=rnd(args.labels),
        lengths=lengths.to(args.device),
    )
    if positional:
        shape = (args.batch, args.length, args.labels, args.labels)
        forbidden = (torch.rand(shape, generator=gen) < 0.1).to(args.device)
        inp["transition"] = rnd(*shape).masked_fill(forbidden, float("-inf"))
    if semantics == "runs":
        tail = -(0.2 + torch.rand(args.labels, generator=gen, dtype=torch.float64))
        b = torch.arange(args.batch)
        inp["tail"] = tail.to(args.device, dtype)
        inp["censored"] = torch.stack([b % 2 == 1, b % 3 != 0], dim=1).to(args.device)
    return inp


def runs_kwargs(inp: dict, tail: torch.Tensor | None = None) -> dict:
    """The semantics keywords of ``inp`` (none for segments); ``tail`` overrides its tail."""
    if "tail" not in inp:
        return {}
    return dict(semantics="runs", tail=inp["tail"] if tail is None else tail,
                censored=inp["censored"])


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).abs().max())


def grad_names(inp: dict) -> tuple[str, ...]:
    return ("scores", "transition", "duration", "start") + (("tail",) if "tail" in inp else ())


def log_z_and_grads(module, inp: dict, weights: torch.Tensor):
    """log Z and the gradients of sum_b weights[b] log Z_b (sequences with log Z = -inf
    left out)."""
    names = grad_names(inp)
    leaves = {k: inp[k].clone().requires_grad_() for k in names}
    log_z = module.log_partition(leaves["scores"], leaves["transition"], leaves["duration"],
                                 inp["lengths"], leaves["start"],
                                 **runs_kwargs(inp, leaves.get("tail")))
    possible = log_z.masked_fill(torch.isinf(log_z), 0.0)
    grads = torch.autograd.grad((possible * weights).sum(), [leaves[k] for k in names])
    return log_z.detach(), dict(zip(names, grads))


def finite_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| where both are finite; inf where only one of them is."""
    a, b = a.double(), b.double()
    if not torch.equal(torch.isfinite(a), torch.isfinite(b)):
        return float("inf")
    both = torch.isfinite(a)
    return float((a[both] - b[both]).abs().max()) if bool(both.any()) else 0.0


class Report:
    """The JSON document, rewritten after every phase."""

    def __init__(self, path: Path, args) -> None:
        self.path = path
        self.data = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                     "phases": {}, "ok": None}

    def put(self, phase: str, value) -> None:
        self.data["phases"][phase] = value
        self.data["elapsed_s"] = elapsed()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, default=str))
        tmp.replace(self.path)
        state = "done" if not isinstance(value, dict) else (
            "skipped" if "skipped" in value else f"done (ok={value.get('ok', '-')})")
        print(f"gpu-check [{elapsed():6.1f} s] {phase} {state}", file=sys.stderr, flush=True)


def environment(args) -> dict:
    import triton

    env = dict(python=platform.python_version(), torch=torch.__version__, triton=triton.__version__,
               device=args.device, interpret=os.environ.get("TRITON_INTERPRET", "0"),
               host=platform.node())
    if args.device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name()
        env["gpu_memory_gib"] = torch.cuda.get_device_properties(0).total_memory / 2**30
    return env


def correctness(args, semantics: str = "segments") -> dict:
    from semicrf.crf import triton_backend
    from semicrf.crf.api import segmentation_score

    inp = make_inputs(args, semantics=semantics)
    runs = runs_kwargs(inp)
    weights = torch.randn(args.batch, generator=torch.Generator().manual_seed(1),
                          dtype=torch.float64).to(args.device)
    res: dict = {}
    t0 = time.perf_counter()
    tri_z, tri_g = log_z_and_grads(triton_backend, inp, weights)
    sync(args.device)
    res["triton_first_forward_backward_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tri_best, tri_paths = triton_backend.viterbi(*(inp[k] for k in NAMES), **runs)
    res["triton_first_viterbi_s"] = time.perf_counter() - t0
    # the reference, timed once on the way (it is slow: T Python steps)
    ref_timing = {}
    t0 = time.perf_counter()
    ref_z, ref_g = log_z_and_grads(reference, inp, weights)
    sync(args.device)
    ref_timing["forward_backward_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with torch.no_grad():
        reference.log_partition(inp["scores"], inp["transition"], inp["duration"], inp["lengths"],
                                inp["start"], **runs)
    sync(args.device)
    ref_timing["forward_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_best, ref_paths = reference.viterbi(*(inp[k] for k in NAMES), **runs)
    ref_timing["viterbi_s"] = time.perf_counter() - t0

    scale = float(ref_z.abs().max())
    checks = {}
    checks["log_z"] = dict(max_abs_diff=max_abs(tri_z, ref_z), max_abs=scale,
                           tol=1e-11 * max(1.0, scale))
    for name in grad_names(inp):
        size = float(ref_g[name].abs().max())
        checks[f"grad_{name}"] = dict(max_abs_diff=max_abs(tri_g[name], ref_g[name]), max_abs=size,
                                      tol=1e-9 * max(1.0, size))
    best_scale = float(ref_best.abs().max())
    checks["viterbi_best"] = dict(max_abs_diff=max_abs(tri_best, ref_best), max_abs=best_scale,
                                  tol=1e-11 * max(1.0, best_scale))
    same = [a == b for a, b in zip(tri_paths, ref_paths)]
    rescored = segmentation_score(inp["scores"], inp["transition"], inp["duration"], tri_paths,
                                  inp["start"], **runs)
    checks["viterbi_paths"] = dict(identical=sum(same), of=len(same),
                                   max_abs_diff=max_abs(rescored, ref_best),
                                   tol=checks["viterbi_best"]["tol"],
                                   segments=[len(p) for p in tri_paths])
    if runs:
        longest = max(e - s for path in tri_paths for s, e, _ in path)
        checks["viterbi_paths"]["longest_run"] = longest  # > K: the tail was decoded
        again_z, again_g = log_z_and_grads(triton_backend, inp, weights)
        equal = bool(torch.equal(again_z, tri_z)) and all(
            torch.equal(again_g[k], tri_g[k]) for k in tri_g)
        checks["bitwise_rerun"] = dict(max_abs_diff=0.0 if equal else float("inf"), tol=0.0)
    for c in checks.values():
        c["ok"] = c["max_abs_diff"] <= c["tol"]
    # float32 inputs: the float32 path against the float64 reference
    inp32 = {k: (v.float() if v.is_floating_point() else v) for k, v in inp.items()}
    z32, g32 = log_z_and_grads(triton_backend, inp32, weights.float())
    checks["float32_log_z"] = dict(max_abs_diff=max_abs(z32, ref_z), tol=2e-6 * max(1.0, scale))
    checks["float32_grad_scores"] = dict(max_abs_diff=max_abs(g32["scores"], ref_g["scores"]),
                                         tol=1e-3 * max(1.0, checks["grad_scores"]["max_abs"]))
    for name in ("float32_log_z", "float32_grad_scores"):
        checks[name]["ok"] = checks[name]["max_abs_diff"] <= checks[name]["tol"]
    res["checks"] = checks
    res["reference_timing"] = ref_timing
    res["ok"] = all(c["ok"] for c in checks.values())
    return res


def positional_correctness(args) -> dict:
    """Per-position transitions against the reference (T capped at --positional-length)
    and a (C, C) table against its expansion at the full shape."""
    from semicrf.crf import triton_backend
    from semicrf.crf.api import segmentation_score

    short = argparse.Namespace(**{**vars(args), "length": min(args.length, args.positional_length)})
    weights = torch.randn(args.batch, generator=torch.Generator().manual_seed(2),
                          dtype=torch.float64).to(args.device)
    checks = {}
    for semantics in ("segments", "runs"):
        inp = make_inputs(short, semantics=semantics, positional=True)
        if semantics == "segments" and short.length > short.max_len:  # no admissible labelling
            inp["transition"][0] = float("-inf")
        runs = runs_kwargs(inp)
        tri_z, tri_g = log_z_and_grads(triton_backend, inp, weights)
        ref_z, ref_g = log_z_and_grads(reference, inp, weights)
        scale = float(ref_z[torch.isfinite(ref_z)].abs().max())
        checks[f"{semantics}_log_z"] = dict(max_abs_diff=finite_diff(tri_z, ref_z),
                                            impossible=int(torch.isinf(ref_z).sum()),
                                            tol=1e-11 * max(1.0, scale))
        for name in grad_names(inp):
            size = float(ref_g[name].abs().max())
            checks[f"{semantics}_grad_{name}"] = dict(
                max_abs_diff=max_abs(tri_g[name], ref_g[name]), tol=1e-9 * max(1.0, size))
        tri_best, tri_paths = triton_backend.viterbi(*(inp[k] for k in NAMES), **runs)
        ref_best, ref_paths = reference.viterbi(*(inp[k] for k in NAMES), **runs)
        checks[f"{semantics}_viterbi_best"] = dict(max_abs_diff=finite_diff(tri_best, ref_best),
                                                   tol=1e-11 * max(1.0, scale))
        # a differing path must rescore to the optimum (impossible sequences: no path)
        kept = torch.isfinite(ref_best).nonzero().flatten()
        pick = dict(runs, censored=runs["censored"][kept]) if runs else {}
        rescored = segmentation_score(inp["scores"][kept], inp["transition"][kept],
                                      inp["duration"], [tri_paths[i] for i in kept.tolist()],
                                      inp["start"], **pick)
        checks[f"{semantics}_viterbi_paths"] = dict(
            identical=sum(a == b for a, b in zip(tri_paths, ref_paths)), of=len(ref_paths),
            max_abs_diff=max_abs(rescored, ref_best[kept]), tol=1e-11 * max(1.0, scale))
    for semantics in ("segments", "runs"):  # (C, C) vs its expansion, triton only
        inp = make_inputs(args, semantics=semantics)
        wide = dict(inp, transition=inp["transition"].expand(
            args.batch, args.length, args.labels, args.labels))
        table_z, table_g = log_z_and_grads(triton_backend, inp, weights)
        wide_z, wide_g = log_z_and_grads(triton_backend, wide, weights)
        same = torch.equal(table_z, wide_z) and all(
            torch.equal(table_g[k], wide_g[k]) for k in table_g if k != "transition")
        best = [triton_backend.viterbi(*(x[k] for k in NAMES), **runs_kwargs(x))[0]
                for x in (inp, wide)]
        size = float(table_g["transition"].abs().max())
        checks[f"{semantics}_expansion_bitwise"] = dict(
            max_abs_diff=0.0 if same and torch.equal(*best) else float("inf"), tol=0.0)
        checks[f"{semantics}_expansion_grad_transition"] = dict(
            max_abs_diff=max_abs(wide_g["transition"].sum((0, 1)), table_g["transition"]),
            tol=1e-9 * max(1.0, size))
    for c in checks.values():
        c["ok"] = c["max_abs_diff"] <= c["tol"]
    return dict(length=short.length, checks=checks, ok=all(c["ok"] for c in checks.values()))


def determinism(args) -> dict:
    from semicrf.crf import triton_backend

    inp = make_inputs(args)
    weights = torch.ones(args.batch, dtype=torch.float64, device=args.device)
    first = log_z_and_grads(triton_backend, inp, weights)
    second = log_z_and_grads(triton_backend, inp, weights)
    equal = {name: bool(torch.equal(first[1][name], second[1][name])) for name in first[1]}
    equal["log_z"] = bool(torch.equal(first[0], second[0]))
    return dict(bitwise_equal=equal, ok=all(equal.values()))


def _time_triton(args, dtype, semantics: str, positional: bool = False) -> dict:
    from semicrf.crf import streaming, triton_backend, triton_kernels

    inp = make_inputs(args, dtype, semantics, positional)
    runs = runs_kwargs(inp)
    plain = [inp[k] for k in NAMES]
    names = grad_names(inp)
    leaves = {k: inp[k].clone().requires_grad_() for k in names}

    def forward():
        with torch.no_grad():
            return triton_backend.log_partition(*plain, **runs)

    def forward_backward():
        z = triton_backend.log_partition(leaves["scores"], leaves["transition"], leaves["duration"],
                                         inp["lengths"], leaves["start"],
                                         **runs_kwargs(inp, leaves.get("tail")))
        return torch.autograd.grad(z.sum(), [leaves[k] for k in names])

    problem, _ = triton_backend._problem(streaming.prepare(*plain, **runs), None)
    return dict(
        forward=timed(forward, args.device, args.repeats),
        forward_backward=timed(forward_backward, args.device, args.repeats),
        viterbi=timed(lambda: triton_backend.viterbi(*plain, **runs), args.device, args.repeats),
        viterbi_sweep_only=timed(lambda: triton_kernels.viterbi(problem), args.device, args.repeats),
    )


def triton_timings(args, semantics: str = "segments", positional: bool = False) -> dict:
    return {label: _time_triton(args, dtype, semantics, positional)
            for label, dtype in (("f32", torch.float32), ("f64", torch.float64))}


def positional_timings(args) -> dict:
    return {semantics: triton_timings(args, semantics, positional=True)
            for semantics in ("segments", "runs")}


def compiled_variants() -> dict | None:
    from semicrf.crf import triton_kernels

    counts = {}
    for name in ("_forward_kernel", "_backward_kernel", "_duration_kernel", "_viterbi_kernel"):
        caches = getattr(getattr(triton_kernels, name), "device_caches", None)
        try:  # JITFunction.device_caches: device -> (kernel cache dict, ...) in triton 3.x
            counts[name] = sum(len(entry[0]) for entry in caches.values())
        except (AttributeError, TypeError, IndexError, KeyError):
            return None
    return counts


def recompile(args) -> dict:
    from semicrf.crf import triton_backend

    before = compiled_variants()
    if before is None:
        return dict(ok=None, note="no device_caches (interpreter or another triton version)")
    for length in (max(2, args.length // 3), max(3, args.length // 3 + 7)):
        small = argparse.Namespace(**{**vars(args), "batch": 2, "length": length})
        for semantics in ("segments", "runs"):  # runs: K < length, both edges censored somewhere
            inp = make_inputs(small, semantics=semantics)
            for dtype in (torch.float32, torch.float64):
                cast = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inp.items()}
                log_z_and_grads(triton_backend, cast, torch.ones(2, dtype=dtype, device=args.device))
                triton_backend.viterbi(*(cast[k] for k in NAMES), **runs_kwargs(cast))
    after = compiled_variants()
    return dict(before=before, after=after, ok=before == after)


def flash_only(args) -> dict:
    """Runs inside the throw-away flash-semicrf environment (subprocess); rewrites --out
    after every measurement so that a run cut short by the timeout still reports."""
    import flash_semicrf
    from flash_semicrf.streaming import semi_crf_streaming_forward

    from semicrf.crf import triton_backend

    inp = make_inputs(args)
    scores = inp["scores"]
    # uncentred prefix sums (float64), so that both compute the same model: flash-semicrf
    # scores the first segment with a transition from every label, i.e. our model with
    # start = logsumexp_c'(transition[c', c]); duration row k-1 and transition[src, dst] agree
    cum = torch.cat([torch.zeros_like(scores[:, :1]), torch.cumsum(scores, dim=1)], dim=1)
    transition, duration, lengths, k = inp["transition"], inp["duration"], inp["lengths"], args.max_len
    out = dict(version=getattr(flash_semicrf, "__version__", "?"), repeats=args.repeats)
    for label, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        c, tr, du = cum.to(dtype), transition.to(dtype), duration.to(dtype)

        def forward(c=c, tr=tr, du=du):
            with torch.no_grad():
                return semi_crf_streaming_forward(c, tr, du, lengths, k, semiring="log", use_triton=True)

        leaves = [x.clone().requires_grad_() for x in (c, tr, du)]

        def forward_backward(leaves=leaves):
            z = semi_crf_streaming_forward(leaves[0], leaves[1], leaves[2], lengths, k, semiring="log",
                                           use_triton=True)
            return torch.autograd.grad(z.sum(), leaves)

        def max_semiring(c=c, tr=tr, du=du):
            with torch.no_grad():
                return semi_crf_streaming_forward(c, tr, du, lengths, k, semiring="max", use_triton=True)

        out[label] = {}
        try:
            with torch.no_grad():
                theirs = forward().double()
                ours = triton_backend.log_partition(scores.to(dtype), tr, du, lengths,
                                                    torch.logsumexp(tr, dim=0)).double()
            out[label]["log_z_max_abs_diff_vs_semicrf_triton"] = max_abs(theirs, ours)
            out[label]["log_z_max_abs"] = float(ours.abs().max())
        except Exception as exc:
            out[label]["log_z_comparison_error"] = repr(exc)[:500]
        for name, fn in (("forward_backward", forward_backward), ("forward", forward),
                         ("viterbi_max_only", max_semiring)):
            try:
                out[label][name] = timed(fn, args.device, args.repeats)
            except Exception as exc:  # record and go on: this is a peer, not our code
                out[label][name] = dict(error=repr(exc)[:500])
            args.out.write_text(json.dumps(out, indent=2, default=str))
    return out


def run_flash(args, budget_left: float) -> dict:
    if args.flash_skip_reason:
        return dict(skipped=args.flash_skip_reason)
    if not args.flash_path:
        return dict(skipped="no --flash-path (flash-semicrf not installed)")
    tmp = args.out.with_name(args.out.stem + "_flash.json")
    cmd = [sys.executable, __file__, "--flash-only", "--out", str(tmp), "--repeats", str(args.flash_repeats)]
    for name in ("batch", "length", "max_len", "labels", "seed", "device"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (args.flash_path, root, env.get("PYTHONPATH")) if p)
    timeout = max(10.0, min(args.flash_timeout_s, budget_left))
    note = {}
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            note = dict(failed=f"exit status {proc.returncode}", stderr=proc.stderr[-3000:])
    except subprocess.TimeoutExpired:
        note = dict(timed_out=f"stopped after {timeout:.0f} s; results so far kept")
    data = json.loads(tmp.read_text()) if tmp.exists() else dict(skipped="no flash results")
    if tmp.exists():
        tmp.unlink()
    return {**data, **note}


def large_offsets(args) -> dict:
    """Forward and Viterbi sweeps with B * C * (T + 1) > 2^31 elements per buffer, checked on
    the last sequences against the reference. Builds the prefix sums directly (no scores
    tensor) to stay within ~60 GiB."""
    from semicrf.crf import triton_kernels as k

    labels, length, max_len = 2, 16, 3
    batch = 2**31 // (labels * (length + 1)) + 3
    need = batch * labels * ((length + 1) * 8 * 2 + (max_len + length + 1) * 8) + (1 << 30)
    free = torch.cuda.mem_get_info()[0] if args.device.startswith("cuda") else 0
    if args.large_offsets == "auto" and free < need * 1.1:
        return dict(skipped=f"needs ~{need / 2**30:.0f} GiB free, have {free / 2**30:.0f} GiB")
    dev = args.device
    gen = torch.Generator(device=dev).manual_seed(0)
    prefix = torch.empty(batch, labels, length + 1, dtype=torch.float64, device=dev)
    step = 1 << 22
    for b0 in range(0, batch, step):
        chunk = torch.randn(min(step, batch - b0), length, labels, generator=gen, device=dev,
                            dtype=torch.float64)
        prefix[b0 : b0 + chunk.shape[0], :, 0] = 0
        torch.cumsum(chunk.transpose(1, 2), dim=2, out=prefix[b0 : b0 + chunk.shape[0], :, 1:])
    transition = torch.randn(labels, labels, generator=gen, device=dev, dtype=torch.float64)
    duration = torch.randn(max_len, labels, generator=gen, device=dev, dtype=torch.float64)
    lengths = torch.full((batch,), length, dtype=torch.int64, device=dev)
    problem = k.Problem(prefix=prefix, transition=transition, duration=duration.T.contiguous(),
                        start=torch.zeros(labels, dtype=torch.float64, device=dev), lengths=lengths,
                        lo=None, hi=None, f32_exp=False)
    tail = slice(batch - 3, batch)
    tail_scores = prefix[tail].diff(dim=2).transpose(1, 2).contiguous()
    want = reference.log_partition(tail_scores, transition, duration, lengths[tail])
    want_best, _ = reference.viterbi(tail_scores, transition, duration, lengths[tail])
    t0 = time.perf_counter()
    fwd = k.forward(problem)
    sync(dev)
    forward_s = time.perf_counter() - t0
    got = fwd.log_z[tail].clone()
    del fwd
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
    best = k.viterbi(problem).best[tail]
    diff = max(max_abs(got, want), max_abs(best, want_best))
    return dict(batch=batch, elements_per_buffer=batch * labels * (length + 1), forward_s=forward_s,
                max_abs_diff=diff, ok=diff <= 1e-9)


def tuning(args) -> dict:
    """Forward-sweep time for other warp counts / window chunks (data for tuning _blocks)."""
    import dataclasses

    from semicrf.crf import streaming, triton_backend, triton_kernels

    out = {}
    for label, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        inp = make_inputs(args, dtype)
        base, _ = triton_backend._problem(streaming.prepare(*(inp[k] for k in NAMES)), None)
        for num_warps in (4, 8, 16):
            for block_k in (None, 256):
                if elapsed() > args.budget_s:
                    return out
                p = dataclasses.replace(base, num_warps=num_warps, block_k=block_k)
                name = f"{label}_warps{num_warps}_bk{block_k or 'auto'}"
                out[name] = timed(lambda p=p: triton_kernels.forward(p), args.device, 2)["median_s"]
    # runs semantics, float64 backward sweep: the variant with the most live registers
    # (sm_90 compile at K = 1000, C = 3: 255 registers and 80 bytes of spills at 4 warps)
    inp = make_inputs(args, torch.float64, "runs")
    state = triton_backend.BACKEND.forward(streaming.prepare(*(inp[k] for k in NAMES),
                                                             **runs_kwargs(inp)))
    for num_warps in (4, 8):
        for block_k in (None, 256):
            if elapsed() > args.budget_s:
                return out
            p = dataclasses.replace(state.problem, num_warps=num_warps, block_k=block_k)
            name = f"runs_f64_backward_warps{num_warps}_bk{block_k or 'auto'}"
            out[name] = timed(lambda p=p: triton_kernels.backward(p, state.fwd), args.device,
                              2)["median_s"]
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.flash_only:
        args.out.write_text(json.dumps(flash_only(args), indent=2, default=str))
        return 0
    report = Report(args.out, args)
    report.put("environment", environment(args))
    ok = True

    def phase(name, fn, *a):
        nonlocal ok
        if elapsed() > args.budget_s:
            report.put(name, dict(skipped=f"budget of {args.budget_s:.0f} s spent"))
            return None
        print(f"gpu-check [{elapsed():6.1f} s] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            value = fn(*a)
        except Exception as exc:  # record the failure, keep the other phases
            value = dict(error=repr(exc)[:2000], ok=False)
        value["elapsed_s"] = time.perf_counter() - t0
        if value.get("ok") is False:
            ok = False
        report.put(name, value)
        return value

    check = phase("correctness", correctness, args)
    runs_check = phase("runs_correctness", correctness, args, "runs")
    phase("determinism", determinism, args)
    tri = phase("timings", triton_timings, args)
    flash = phase("flash", lambda: run_flash(args, args.budget_s - elapsed()))
    runs_tri = phase("runs_timings", triton_timings, args, "runs")
    phase("positional_correctness", positional_correctness, args)
    positional = phase("positional_timings", positional_timings, args)
    phase("recompile", recompile, args)
    if args.large_offsets != "off" and args.device.startswith("cuda"):
        phase("large_offsets", large_offsets, args)
    phase("tuning", tuning, args)

    summary = {"gpu_timings": args.device.startswith("cuda") and os.environ.get("TRITON_INTERPRET") != "1"}
    if tri and "f64" in tri:
        summary["triton_f64_forward_backward_s"] = tri["f64"]["forward_backward"]["median_s"]
        summary["triton_f32_forward_backward_s"] = tri["f32"]["forward_backward"]["median_s"]
        if check and "reference_timing" in check:
            ref = check["reference_timing"]["forward_backward_s"]
            ours = summary["triton_f64_forward_backward_s"]
            summary["speedup_vs_reference_f64_forward_backward"] = ref / ours
        for label in ("f64", "f32"):
            peer = (flash or {}).get(label, {}).get("forward_backward", {})
            if "median_s" in peer:
                ours = tri[label]["forward_backward"]["median_s"]
                summary[f"speedup_vs_flash_{label}_forward_backward"] = peer["median_s"] / ours
                summary[f"target_2x_vs_flash_{label}_met"] = peer["median_s"] / ours >= 2.0
    if runs_tri and "f64" in runs_tri:
        for label in ("f64", "f32"):
            ours = runs_tri[label]["forward_backward"]["median_s"]
            summary[f"runs_triton_{label}_forward_backward_s"] = ours
            if tri and label in tri:  # runs vs segments, same kernels and shape
                segments = tri[label]["forward_backward"]["median_s"]
                summary[f"runs_over_segments_{label}_forward_backward"] = ours / segments
        if runs_check and "reference_timing" in runs_check:
            ref = runs_check["reference_timing"]["forward_backward_s"]
            summary["runs_speedup_vs_reference_f64_forward_backward"] = (
                ref / summary["runs_triton_f64_forward_backward_s"])
    for semantics, table in (("segments", tri), ("runs", runs_tri)):
        per_position = (positional or {}).get(semantics, {})
        for label in ("f64", "f32"):
            if label in per_position and table and label in table:
                ours = per_position[label]["forward_backward"]["median_s"]
                summary[f"positional_{semantics}_{label}_forward_backward_s"] = ours
                summary[f"positional_over_table_{semantics}_{label}_forward_backward"] = (
                    ours / table[label]["forward_backward"]["median_s"])
    report.data["ok"] = ok
    report.put("summary", summary)
    print(json.dumps({"ok": ok, "summary": summary, "out": str(args.out)}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
