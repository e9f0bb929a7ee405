"""The Triton backend against brute force and the reference (float64 to 1e-9).

Without CUDA the kernels run in the Triton interpreter on CPU tensors: this module sets
TRITON_INTERPRET=1 before anything imports the kernels (the backend imports them lazily,
and `auto` never picks Triton for CPU tensors, so other tests are unaffected). The
interpreter costs ~2 ms per loop step per program, hence the tiny shapes. With CUDA the
same tests run compiled kernels on the GPU. Skipped when triton is not installed.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"
triton = pytest.importorskip("triton")

import brute_force as bf  # noqa: E402
from crf_cases import random_case  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import semicrf  # noqa: E402
from semicrf.crf import api, triton_backend, triton_kernels  # noqa: E402
from semicrf.crf.likelihood import gold_mask, label_nll, masked_log_partition  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = 1e-9
# The interpreter computes with numpy: a log(0) or overflow in any lane (padded ones
# included) would be a NaN/inf hazard on the GPU, so numpy's warnings fail the test.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

if DEVICE == "cpu":
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(triton_kernels._forward_kernel, InterpretedFunction):
        pytest.skip("semicrf.crf.triton_kernels was imported before TRITON_INTERPRET=1 was set",
                    allow_module_level=True)


def masked_log_partition_ref(scores, transition, duration, lengths, start=None, allowed=None):
    return masked_log_partition(scores, transition, duration, lengths, start, allowed, "reference")


def reference_viterbi(*args):
    return semicrf.viterbi(*args, backend="reference")


def _on_device(case):
    move = lambda x: None if x is None else x.to(DEVICE)
    return type(case)(*(move(x) for x in case.args))


def _case(batch, length, max_len, labels, seed, **kw):
    return _on_device(random_case(batch, length, max_len, labels, seed, **kw))


def _grads(fn, case, weights, allowed=None):
    """log Z and its weighted gradients w.r.t. scores, transition, duration (and start)."""
    inputs = [x for x in (case.scores, case.transition, case.duration, case.start) if x is not None]
    leaves = [x.clone().requires_grad_() for x in inputs]
    start = leaves[3] if case.start is not None else None
    args = (leaves[0], leaves[1], leaves[2], case.lengths, start)
    log_z = fn(*args) if allowed is None else fn(*args, allowed)
    return log_z.detach(), torch.autograd.grad((log_z * weights).sum(), leaves)


def _weights(batch, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, generator=gen, dtype=torch.float64).to(DEVICE)


def _triton(block_k=None):
    return lambda *a: triton_backend.log_partition(*a, block_k=block_k)


def _close(got, want, tol=TOL):
    torch.testing.assert_close(got, want, atol=tol, rtol=0)


# (B, T, K, C, seed, with_start, block_k): K = 1, 2, 3, K > T, T = 1, C = 1 and C not a
# power of two, chunked windows (block_k < K), variable lengths (random_case draws them).
EDGE_CASES = [
    (3, 6, 1, 3, 0, True, None),
    (2, 6, 2, 2, 1, False, None),
    (3, 7, 3, 3, 2, True, None),
    (2, 5, 9, 3, 3, True, None),
    (2, 1, 3, 2, 4, True, None),
    (3, 6, 4, 1, 5, True, None),
    (2, 5, 3, 5, 6, False, None),
    (3, 7, 5, 3, 7, True, 2),
    (2, 6, 7, 2, 8, True, 4),
]


@pytest.mark.parametrize("shape", EDGE_CASES, ids=lambda s: "B{}-T{}-K{}-C{}-s{}-start{}-bk{}".format(*s))
def test_edge_cases_equal_enumeration(shape):
    batch, length, max_len, labels, seed, with_start, block_k = shape
    case = _case(batch, length, max_len, labels, seed, with_start=with_start)
    cpu = random_case(batch, length, max_len, labels, seed, with_start=with_start)
    weights = _weights(batch, seed)
    log_z, grads = _grads(_triton(block_k), case, weights)
    want_z, want_grads = _grads(bf.log_partition, cpu, weights.cpu())
    _close(log_z.cpu(), want_z)
    assert len(grads) == len(want_grads)
    for got, want in zip(grads, want_grads):
        _close(got.cpu(), want)
    best, paths = triton_backend.viterbi(*case.args, block_k=block_k)
    want_best, _ = bf.viterbi(*cpu.args)
    _close(best.cpu(), want_best)
    rescored = semicrf.segmentation_score(*cpu.args[:3], paths, cpu.start)
    _close(rescored, want_best)


shapes = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 6),  # T
    st.integers(1, 7),  # K (may exceed T)
    st.integers(1, 3),  # C
    st.integers(0, 10_000),  # seed
    st.booleans(),  # with start
    st.sampled_from([None, 2]),  # window chunk
)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_log_partition_and_gradients_equal_enumeration(shape):
    batch, length, max_len, labels, seed, with_start, block_k = shape
    cpu = random_case(batch, length, max_len, labels, seed, with_start=with_start)
    weights = _weights(batch, seed + 1)
    log_z, grads = _grads(_triton(block_k), _on_device(cpu), weights)
    want_z, want_grads = _grads(bf.log_partition, cpu, weights.cpu())
    _close(log_z.cpu(), want_z)
    for got, want in zip(grads, want_grads):
        _close(got.cpu(), want)


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_viterbi_equals_enumeration(shape):
    batch, length, max_len, labels, seed, with_start, block_k = shape
    cpu = random_case(batch, length, max_len, labels, seed, with_start=with_start)
    best, paths = triton_backend.viterbi(*_on_device(cpu).args, block_k=block_k)
    want_best, want_paths = bf.viterbi(*cpu.args)
    _close(best.cpu(), want_best)
    for b, path in enumerate(paths):
        assert path[-1][1] == int(cpu.lengths[b])
        _close(semicrf.segmentation_score(cpu.scores[b : b + 1], *cpu.args[1:3], [path], cpu.start)[0],
               want_best[b])
        scores = bf.all_scores(cpu.scores[b], cpu.transition, cpu.duration, int(cpu.lengths[b]), cpu.start)
        top = torch.topk(scores, min(2, scores.numel())).values
        if top.numel() == 1 or top[0] - top[1] > 1e-6:
            assert path == want_paths[b]


def test_larger_input_matches_reference_with_chunked_window():
    """T = 40, K = 13 in chunks of 4 (4 chunks, the last partial), C = 4, mixed lengths."""
    case = _case(3, 40, 13, 4, seed=21)
    weights = _weights(3, 2)
    log_z, grads = _grads(_triton(block_k=4), case, weights)
    want_z, want_grads = _grads(masked_log_partition_ref, case, weights)
    _close(log_z, want_z)
    for got, want in zip(grads, want_grads):
        _close(got, want)
    best, paths = triton_backend.viterbi(*case.args, block_k=4)
    want_best, want_paths = reference_viterbi(*case.args)
    _close(best, want_best)
    assert paths == want_paths


def _consistent(path, labels):
    return all(all(labels[i] == c for i in range(s, e)) for s, e, c in path)


@pytest.mark.parametrize("shape", [(3, 6, 3, 3, 0, None), (2, 6, 4, 2, 1, 2), (2, 5, 7, 3, 2, None)])
def test_gold_partition_equals_enumeration_and_reference(shape):
    batch, length, max_len, labels, seed, block_k = shape
    cpu = random_case(batch, length, max_len, labels, seed)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, labels, (batch, length), generator=gen)
    y[:, 1:4] = 1 % labels  # a run longer than some K
    allowed = gold_mask(y, cpu.lengths, labels)
    weights = _weights(batch, seed)
    log_z, grads = _grads(_triton(block_k), _on_device(cpu), weights, allowed.to(DEVICE))
    want_z, want_grads = _grads(masked_log_partition_ref, cpu, weights.cpu(), allowed)
    _close(log_z.cpu(), want_z)
    for got, want in zip(grads, want_grads):
        _close(got.cpu(), want)
    for b in range(batch):
        n = int(cpu.lengths[b])
        sc = bf.all_scores(cpu.scores[b], cpu.transition, cpu.duration, n, cpu.start)
        keep = torch.tensor([_consistent(p, y[b].tolist()) for p in bf.segmentations(n, max_len, labels)])
        _close(log_z[b].cpu(), torch.logsumexp(sc[keep], 0))


def test_probabilities_of_all_labellings_sum_to_one():
    case = _case(1, 4, 2, 2, seed=3, full_length=True)
    labellings = torch.tensor(list(itertools.product(range(2), repeat=4)), device=DEVICE)
    total = 0.0
    for y in labellings:
        nll = label_nll(*case.args[:4], y.view(1, -1), case.start, backend="triton")
        assert float(nll) >= -1e-12
        total += float(torch.exp(-nll))
    assert abs(total - 1.0) < 1e-9


def test_marginals_through_the_api_equal_enumeration():
    cpu = random_case(2, 6, 3, 3, seed=12)
    got = semicrf.marginals(*_on_device(cpu).args, backend="triton")
    _close(got.cpu(), bf.label_marginals(*cpu.args))
    assert torch.all(got[1, int(cpu.lengths[1]):] == 0)


def test_float32_inputs_close_to_reference():
    case = _case(2, 40, 12, 3, seed=9, dtype=torch.float32)
    weights = _weights(2, 0).float()
    log_z, grads = _grads(_triton(), case, weights)
    want_z, want_grads = _grads(masked_log_partition_ref, case, weights)
    assert log_z.dtype == torch.float32 and all(g.dtype == torch.float32 for g in grads)
    torch.testing.assert_close(log_z, want_z, atol=1e-4, rtol=1e-6)
    for got, want in zip(grads, want_grads):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    best, paths = triton_backend.viterbi(*case.args)
    want_best, want_paths = reference_viterbi(*case.args)
    torch.testing.assert_close(best, want_best, atol=1e-4, rtol=1e-6)
    assert paths == want_paths


def test_gradients_are_bitwise_deterministic():
    case = _case(3, 20, 6, 3, seed=3)
    weights = _weights(3, 1)
    first = _grads(_triton(block_k=4), case, weights)
    second = _grads(_triton(block_k=4), case, weights)
    assert torch.equal(first[0], second[0])
    for a, b in zip(first[1], second[1]):
        assert torch.equal(a, b)


def test_viterbi_traceback_covers_many_segments():
    case = _case(1, 120, 1, 2, seed=1, full_length=True)
    best, paths = semicrf.viterbi(*case.args, backend="triton")
    assert len(paths[0]) == 120
    _close(semicrf.segmentation_score(*case.args[:3], paths, case.start), best)


def test_auto_dispatch():
    case = _case(1, 3, 2, 2, seed=0)
    chosen = api.select_backend("auto", case.scores)
    # auto never picks Triton for CPU tensors (the interpreter is for tests only)
    assert (chosen is triton_backend.BACKEND) == (DEVICE == "cuda")
    assert api.select_backend("triton", case.scores) is triton_backend.BACKEND


@pytest.mark.skipif(DEVICE == "cuda", reason="CPU tensors are only refused outside the interpreter")
def test_cpu_tensors_without_interpreter_are_refused(monkeypatch):
    case = _case(1, 3, 2, 2, seed=0)
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="CUDA"):
        triton_backend.log_partition(*case.args)


def test_bad_allowed_mask_is_refused():
    case = _case(2, 4, 2, 2, seed=0)
    with pytest.raises(ValueError, match="allowed"):
        triton_backend.log_partition(*case.args, torch.ones(2, 4, 3, dtype=torch.bool, device=DEVICE))
    with pytest.raises(ValueError, match="allowed"):
        triton_backend.log_partition(*case.args, torch.ones(2, 4, 2, device=DEVICE))


def test_allowed_limits():
    allowed = torch.tensor([[[True], [False], [True], [True], [False], [True]]])  # (1, 6, 1)
    lo, hi = triton_kernels.allowed_limits(allowed)
    # a segment ending at e must start at or after lo[e - 1]; one starting at s ends by hi[s]
    assert lo[0, 0].tolist() == [0, 2, 2, 2, 5, 5]
    assert hi[0, 0].tolist() == [1, 1, 4, 4, 4, 6]


@pytest.mark.gpu
def test_no_recompile_for_new_lengths():
    """Compiled variants do not grow with T or with the lengths (runtime loop bounds)."""
    caches = getattr(triton_kernels._forward_kernel, "device_caches", None)

    def compiled():
        try:  # JITFunction.device_caches: device -> (kernel cache dict, ...) in triton 3.x
            return sum(len(entry[0]) for entry in caches.values())
        except (AttributeError, TypeError, IndexError, KeyError):
            pytest.skip("this triton version keeps its kernel cache elsewhere")

    runs = dict(semantics="runs", tail=torch.full((3,), -0.5, dtype=torch.float64, device=DEVICE),
                censored=torch.tensor([[False, True], [True, False]], device=DEVICE))
    triton_backend.log_partition(*_case(2, 37, 5, 3, seed=0).args)
    triton_backend.log_partition(*_case(2, 37, 5, 3, seed=0).args, **runs)
    before = compiled()
    for length in (41, 64, 100, 129):
        triton_backend.log_partition(*_case(2, length, 5, 3, seed=length).args)
        triton_backend.log_partition(*_case(2, length, 5, 3, seed=length).args, **runs)
    assert compiled() == before


@pytest.mark.gpu
def test_batch_offsets_beyond_int32():
    """B * C * (T + 1) > 2^31 elements per buffer: the last sequences of a huge batch still
    match the reference (forward and Viterbi sweeps; prefix sums built directly, ~56 GiB)."""
    labels, length, max_len = 2, 16, 3
    batch = 2**31 // (labels * (length + 1)) + 3
    need = batch * labels * ((length + 1) * 16 + (max_len + length + 1) * 8) * 1.1
    if torch.cuda.mem_get_info()[0] < need:
        pytest.skip(f"needs ~{need / 2**30:.0f} GiB of free GPU memory")
    gen = torch.Generator(device="cuda").manual_seed(0)
    prefix = torch.zeros(batch, labels, length + 1, dtype=torch.float64, device="cuda")
    for b0 in range(0, batch, 1 << 22):
        part = prefix[b0 : b0 + (1 << 22)]
        steps = torch.randn(part.shape[0], labels, length, generator=gen, device="cuda", dtype=torch.float64)
        torch.cumsum(steps, dim=2, out=part[:, :, 1:])
    transition = torch.randn(labels, labels, generator=gen, device="cuda", dtype=torch.float64)
    duration = torch.randn(max_len, labels, generator=gen, device="cuda", dtype=torch.float64)
    lengths = torch.full((batch,), length, dtype=torch.int64, device="cuda")
    problem = triton_kernels.Problem(
        prefix=prefix, transition=transition, duration=duration.T.contiguous(),
        start=torch.zeros(labels, dtype=torch.float64, device="cuda"), lengths=lengths,
        lo=None, hi=None, f32_exp=False)
    tail = slice(batch - 3, batch)
    scores = prefix[tail].diff(dim=2).transpose(1, 2).contiguous()
    want = masked_log_partition_ref(scores, transition, duration, lengths[tail])
    want_best, _ = reference_viterbi(scores, transition, duration, lengths[tail])
    got = triton_kernels.forward(problem).log_z[tail]
    _close(got, want)
    _close(triton_kernels.viterbi(problem).best[tail], want_best)


# The interpreter runs kernels as plain Python, so it accepts code the compiler rejects
# (a non-constexpr global, an unsupported op or dtype). This compiles every kernel, as the
# launchers configure it, for sm_90 (PTX, then cubin with triton's bundled ptxas) on the CPU.
_COMPILE_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ.pop("TRITON_INTERPRET", None)
    import torch, triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from semicrf.crf import triton_kernels as k

    INT32_PTRS = {"lo_ptr", "hi_ptr", "last_ptr", "back_len_ptr", "back_label_ptr"}

    def compile_one(fn, constexprs, **options):
        sig = {}
        for name in fn.arg_names:
            if name in constexprs:
                sig[name] = "constexpr"
            elif name == "lengths_ptr":
                sig[name] = "*i64"
            elif name in INT32_PTRS:
                sig[name] = "*i32"
            elif name.endswith("_ptr"):
                sig[name] = "*fp64"
            else:
                sig[name] = "i32"
        src = ASTSource(fn=fn, signature=sig, constexprs=constexprs)
        kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
        assert kernel.asm["cubin"], fn.__name__

    count = 0
    # runs semantics: every shape and dtype with tail and both edges; the partial variants
    # (tail only, edges only) at the first shape. Per-position transitions (B, T, C, C): the
    # sweeps of both semantics at the one-chunk and the chunked shape, both dtypes
    RUNS_ALL = [dict(HAS_TAIL=True, HAS_FIRST=True, HAS_LAST=True)]
    RUNS_PARTIAL = [dict(HAS_TAIL=True, HAS_FIRST=False, HAS_LAST=False),
                    dict(HAS_TAIL=False, HAS_FIRST=True, HAS_LAST=True)]
    FORWARD = ("HAS_TAIL", "HAS_FIRST")
    BACKWARD = ("HAS_TAIL", "HAS_LAST")
    pick = lambda flags, names: {n: flags[n] for n in names}
    for labels, max_len in ((3, 1000), (1, 1), (5, 7), (40, 3000)):
        meta = dict(device="meta", dtype=torch.float64)
        ones = {n: 1 for n, v in (("C", labels), ("Kc", max_len)) if v == 1}  # triton specialises 1
        for f32 in (False, True):
            p = k.Problem(prefix=torch.empty(2, labels, 5001, **meta), transition=None,
                          duration=torch.empty(labels, max_len, **meta), start=None, lengths=None,
                          lo=None, hi=None, f32_exp=f32)
            block_c, block_k, warps = k._blocks(p)
            assert (block_k >= max_len) == (max_len < 3000), (labels, max_len, block_k)
            sweep = dict(BLOCK_C=block_c, BLOCK_K=block_k, ONE_CHUNK=block_k >= max_len,
                         PER_POSITION=False, **ones)
            none = dict(HAS_TAIL=False, HAS_FIRST=False, HAS_LAST=False)
            for allowed in (False, True):
                flags = dict(HAS_ALLOWED=allowed, F32_EXP=f32)
                compile_one(k._forward_kernel, {**flags, **pick(none, FORWARD), **sweep},
                            num_warps=warps, num_stages=1)
                compile_one(k._backward_kernel, {**flags, **pick(none, BACKWARD), **sweep},
                            num_warps=warps, num_stages=1)
                compile_one(k._duration_kernel, {**flags, "BLOCK_T": 32, "BLOCK_K": 128, **ones},
                            num_warps=4)
                count += 3
            compile_one(k._viterbi_kernel, {**pick(none, FORWARD), **sweep}, num_warps=warps,
                        num_stages=1)
            count += 1
            flags = dict(HAS_ALLOWED=False, F32_EXP=f32)
            for runs in RUNS_ALL + (RUNS_PARTIAL if (labels, max_len) == (3, 1000) else []):
                compile_one(k._forward_kernel, {**flags, **pick(runs, FORWARD), **sweep},
                            num_warps=warps, num_stages=1)
                compile_one(k._backward_kernel, {**flags, **pick(runs, BACKWARD), **sweep},
                            num_warps=warps, num_stages=1)
                compile_one(k._viterbi_kernel, {**pick(runs, FORWARD), **sweep}, num_warps=warps,
                            num_stages=1)
                count += 3
            if (labels, max_len) not in ((3, 1000), (40, 3000)):
                continue
            rows = {**sweep, "PER_POSITION": True}
            for runs, allowed in ((none, True), (RUNS_ALL[0], False)):
                flags = dict(HAS_ALLOWED=allowed, F32_EXP=f32)
                compile_one(k._forward_kernel, {**flags, **pick(runs, FORWARD), **rows},
                            num_warps=warps, num_stages=1)
                compile_one(k._backward_kernel, {**flags, **pick(runs, BACKWARD), **rows},
                            num_warps=warps, num_stages=1)
                compile_one(k._viterbi_kernel, {**pick(runs, FORWARD), **rows}, num_warps=warps,
                            num_stages=1)
                count += 3
    print("compiled", count)
""")


def test_kernels_compile_for_sm90():
    try:
        from triton.backends.nvidia import compiler  # noqa: F401
    except ImportError:
        pytest.skip("triton has no NVIDIA backend")
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "TRITON_CACHE_DIR": str(root / ".pytest_cache" / "triton")}
    env.pop("TRITON_INTERPRET", None)
    proc = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "compiled 116" in proc.stdout
