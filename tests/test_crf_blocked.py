"""The blocked CPU sweeps (semicrf.crf.blocked) against the reference sweeps and brute force.

float64: log Z, alpha/gamma, u/out, the duration mass and every gradient equal the reference
to 1e-9 (relative to each tensor's largest entry), on random and adversarial inputs. Small
block / group / tile sizes make short inputs cross every code path (far window, near window,
triangular solve, log-space repair, tile levels).
"""

from __future__ import annotations

import brute_force as bf
import pytest
import torch
from crf_cases import Case, random_case

import semicrf
from semicrf.crf import blocked, streaming

pytestmark = pytest.mark.fast

TOL = 1e-9
SMALL = {"block": 2, "group": 4}  # engine sizes that put many groups into a short input


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    """max |got - want| <= TOL * max |want| (+ 1e-290); log-masses below NEG / 2
    ("impossible") in both count as equal."""
    impossible = (want < streaming.NEG / 2) & (got < streaming.NEG / 2)
    got, want = got[~impossible], want[~impossible]
    scale = float(want.abs().max()) if want.numel() else 0.0
    err = float((got - want).abs().max()) if want.numel() else 0.0
    # 1e-290: the reference floors exp() at exp(-700) = 1e-304 per term (streaming._EXP_FLOOR)
    assert err <= TOL * scale + 1e-290, f"{what}: max error {err:.3g}, scale {scale:.3g}"


def _sweeps(case: Case, sizes: dict, tile: int, runs: dict | None = None):
    m = streaming.prepare(case.scores, case.transition, case.duration, case.lengths, case.start,
                          **(runs or {}))
    fwd = blocked.forward_sweep(m, **sizes)
    bwd = blocked.backward_sweep(m, fwd, tile=tile, **sizes)
    return m, fwd, bwd


def _check(case: Case, sizes: dict | None = None, tile: int = 4, seed: int = 0,
           runs: dict | None = None) -> None:
    """Every output of the blocked sweeps equals the reference's (to TOL); ``runs`` holds
    the prepare() arguments of runs semantics (semantics, tail, censored)."""
    sizes = SMALL if sizes is None else sizes
    m, fwd, bwd = _sweeps(case, sizes, tile, runs)
    ref_f = streaming.forward_sweep(m)
    ref_b = streaming.backward_sweep(m, ref_f)
    batch, length, labels, max_len = m.shape
    _close(fwd.log_z, ref_f.log_z, "log Z")
    inside = torch.arange(length + 1) <= m.lengths.view(batch, 1)  # positions that matter
    mask = inside.unsqueeze(1).expand(batch, labels, length + 1)
    _close(fwd.alpha[mask], ref_f.alpha[mask], "alpha")
    starts = mask[:, :, :length] & (torch.arange(length) < m.lengths.view(batch, 1, 1))
    _close(fwd.gamma[:, :, max_len:][starts], ref_f.gamma[:, :, max_len:][starts], "gamma")
    _close(bwd.out[starts], ref_b.out[starts], "out")
    ends = mask & (torch.arange(length + 1) >= 1)
    _close(bwd.u[:, :, : length + 1][ends], ref_b.u[:, :, : length + 1][ends], "u")
    _close(bwd.duration_mass, ref_b.duration_mass, "duration mass")
    if ref_b.tail_mass is not None:
        _close(bwd.tail_mass, ref_b.tail_mass, "tail mass")
        _close(bwd.tail_excess, ref_b.tail_excess, "tail excess")
    weights = torch.randn(batch, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    got = streaming.gradients(m, fwd, bwd, weights, case.duration.shape[0])
    want = streaming.gradients(m, ref_f, ref_b, weights, case.duration.shape[0])
    for name in ("scores", "transition", "duration", "start", "tail"):
        if getattr(want, name) is not None:
            _close(getattr(got, name), getattr(want, name), f"grad {name}")


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize(
    "shape", [(3, 40, 7, 3), (2, 33, 50, 2), (4, 60, 13, 1), (2, 1, 5, 3), (3, 25, 25, 4)]
)
def test_random_inputs_equal_the_reference(shape, seed):
    batch, length, max_len, labels = shape
    _check(random_case(batch, length, max_len, labels, seed, with_start=seed % 2 == 0))


def _runs(case: Case, seed: int, cut: str) -> dict:
    """prepare() arguments of runs semantics: a random negative tail and censored flags."""
    batch, labels = case.scores.shape[0], case.scores.shape[2]
    gen = torch.Generator().manual_seed(seed)
    tail = -(0.05 + torch.rand(labels, generator=gen, dtype=torch.float64))
    censored = {"none": None, "all": torch.ones(batch, 2, dtype=torch.bool),
                "random": torch.rand(batch, 2, generator=gen) < 0.5}[cut]
    return {"semantics": "runs", "tail": tail, "censored": censored}


@pytest.mark.parametrize("cut", ["none", "random", "all"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(
    "shape", [(3, 40, 7, 3), (2, 33, 50, 2), (3, 60, 4, 2), (2, 1, 5, 3), (2, 20, 3, 1)]
)
def test_runs_semantics_equal_the_reference(shape, seed, cut):
    """Maximal runs: masked diagonal, geometric tail beyond K (K < T), censored edges."""
    batch, length, max_len, labels = shape
    case = random_case(batch, length, max_len, labels, seed, with_start=seed != 1)
    _check(case, runs=_runs(case, seed, cut))
    _check(case, {"block": 3, "group": 3}, runs=_runs(case, seed, cut))


@pytest.mark.parametrize("seed", range(3))
def test_runs_adversarial_equal_the_reference(seed):
    case = _adversarial(seed)
    _check(case, WIDE, runs=_runs(case, seed, "random"))


@pytest.mark.parametrize("sizes", [{"block": 1, "group": 1}, {"block": 3, "group": 9},
                                   {"block": 16, "group": 64}, {"block": 5, "group": 7}])
@pytest.mark.parametrize("tile", [1, 2, 8])
def test_block_group_and_tile_sizes_do_not_change_the_result(sizes, tile):
    _check(random_case(3, 70, 11, 3, seed=5, scale=2.0), sizes, tile)


def _adversarial(seed: int, length: int = 48, max_len: int = 9, labels: int = 3,
                 batch: int = 3, magnitude: float = 50.0) -> Case:
    """Emissions of ``magnitude`` that switch sharply between labels; durations near -1e4
    and +50 next to ordinary ones; ragged lengths."""
    gen = torch.Generator().manual_seed(seed)
    case = random_case(batch, length, max_len, labels, seed)
    sign = torch.randint(0, 2, (batch, length, labels), generator=gen) * 2 - 1
    favourite = torch.randint(0, labels, (batch, length // 6 + 1), generator=gen)
    favourite = favourite.repeat_interleave(6, dim=1)[:, :length]
    boost = torch.nn.functional.one_hot(favourite, labels).to(torch.float64)
    case.scores = magnitude * (sign * 0.5 + boost) + torch.randn(batch, length, labels, generator=gen)
    pick = torch.randint(0, 3, (max_len, labels), generator=gen)
    extreme = torch.where(pick == 0, -1.0e4, torch.where(pick == 1, 50.0, 0.0))
    case.duration = extreme + torch.randn(max_len, labels, generator=gen, dtype=torch.float64)
    case.duration[0, 0] = 0.0  # every label keeps one ordinary length
    case.duration[1, 1:] = 0.0
    return case


WIDE = {"block": 8, "group": 16}


def _count_calls(monkeypatch, name: str) -> dict:
    """Count the calls of ``blocked.<name>`` (``calls["n"]``) from now on."""
    calls = {"n": 0}
    exact = getattr(blocked, name)

    def counting(*args):
        calls["n"] += 1
        return exact(*args)

    monkeypatch.setattr(blocked, name, counting)
    return calls


@pytest.mark.parametrize("sizes", [SMALL, WIDE, {}], ids=["small", "wide", "default"])
@pytest.mark.parametrize("seed", range(5))
def test_adversarial_inputs_equal_the_reference(seed, sizes):
    _check(_adversarial(seed), sizes)


def test_adversarial_inputs_run_the_block_repair(monkeypatch):
    """Emissions of magnitude 300 push blocks out of the linear range: they are recomputed
    in log space, and the result is still exact."""
    case = _adversarial(2, magnitude=300.0)
    calls = _count_calls(monkeypatch, "_intra_log")
    _check(case, WIDE)
    assert calls["n"] > 0


def test_window_sum_repairs_an_underflowed_row(monkeypatch):
    """A row whose only segments start where w is 1000 below the window maximum underflows in
    the rescaled product; the check recomputes it exactly (without it the row is garbage)."""
    duration = torch.zeros(1, 4, dtype=torch.float64)  # K = 4, one label
    win = blocked._Window(duration, torch.ones(1, 1, dtype=torch.float64), block=2, group=2)
    width = win.width
    w = torch.zeros(1, 1, width, dtype=torch.float64)  # (C, B, slots)
    w[0, 0, 0] = 1000.0  # slot 0 is farther back than K from every row
    scale = w.view(1, 1, -1, 2).amax(3)  # chunk maxima (chunks of 2)
    wexp = (w - scale.repeat_interleave(2, dim=2)).exp()
    got = blocked._window_sum(wexp, scale, w, 0, width, win.far, win.log_far, win.dmax, 2,
                              torch.empty(width, dtype=torch.float64))
    want = torch.logsumexp(w[0, 0] + win.log_far[0, 1], 0)  # row 1, exactly
    assert abs(float(got[0, 0, 1]) - float(want)) <= 1e-12
    monkeypatch.setattr(blocked, "_PAST_TINY", 0.0)
    unchecked = blocked._window_sum(wexp, scale, w, 0, width, win.far, win.log_far, win.dmax, 2,
                                    torch.empty(width, dtype=torch.float64))
    assert abs(float(unchecked[0, 0, 1]) - float(want)) > 1.0  # underflow garbage


@pytest.mark.parametrize("slope", [0.0, 3.0, 300.0])
def test_duration_mass_equals_the_direct_sum(monkeypatch, slope):
    """The tiled correlation against sum_s exp(gamma[s] + D[k-1] + u[s+k] - log Z) summed
    directly. gamma falling and u rising by ``slope`` per position make the rectangles'
    scale factors huge (slope 300): those are summed exactly, and still agree."""
    gen = torch.Generator().manual_seed(int(slope))
    batch, labels, length, max_len = 2, 2, 45, 12
    pos = torch.arange(length + 1, dtype=torch.float64)
    gamma = torch.randn(batch, labels, length, generator=gen, dtype=torch.float64) - slope * pos[:-1]
    u = torch.randn(batch, labels, length + 1, generator=gen, dtype=torch.float64) + slope * pos
    u[1, :, 40:] = streaming.NEG  # a shorter sequence
    duration = 3.0 * torch.randn(labels, max_len, generator=gen, dtype=torch.float64)
    lag = torch.arange(1, max_len + 1)
    s = torch.arange(length).view(-1, 1)
    t = s + lag  # (T, K)
    ok = t <= length
    terms = gamma.unsqueeze(3) + duration.view(1, labels, 1, max_len) + u[:, :, t.clamp(max=length)]
    terms = torch.where(ok, terms, streaming.NEG)
    log_z = terms.flatten(1).logsumexp(1) + 2.0  # any normaliser; keeps the posteriors below 1
    want = (terms - log_z.view(batch, 1, 1, 1)).exp().sum(2)  # (B, C, K)
    calls = _count_calls(monkeypatch, "_exact_tiles")
    for tile in (1, 4, 8):
        _close(blocked._duration_mass(gamma, u, duration, log_z, tile), want, f"tile {tile}")
    assert (calls["n"] > 0) == (slope > 100)


@pytest.mark.parametrize("length,max_len", [(1, 1), (1, 6), (5, 30), (9, 1)])
def test_edge_shapes(length, max_len):
    """T = 1, K > T and K = 1 (a linear chain)."""
    _check(random_case(3, length, max_len, 2, seed=length + max_len))


@pytest.mark.parametrize("seed", range(4))
def test_brute_force(seed):
    case = random_case(2, 6, 4, 2, seed)
    m, fwd, bwd = _sweeps(case, {"block": 2, "group": 2}, 2)
    _close(fwd.log_z, bf.log_partition(*case.args), "log Z vs enumeration")
    weights = torch.ones(2, dtype=torch.float64)
    grads = streaming.gradients(m, fwd, bwd, weights, case.duration.shape[0])
    marg = bf.label_marginals(*case.args)
    _close(grads.scores, marg, "marginals vs enumeration")


def test_long_input_is_finite_and_consistent():
    """T = 100,000: finite; marginals sum to 1 and the expected segment lengths cover the
    sequence. The bound is 1e-7, not 1e-9: log Z is ~2e5 here and the rounding of log-space
    values of that size accumulates along the sweeps (the reference drifts the same way,
    by 4e-10 already at T = 20,000)."""
    case = random_case(1, 100_000, 6, 2, seed=1, full_length=True)
    m = streaming.prepare(case.scores, case.transition, case.duration, case.lengths, case.start)
    sizes = {"block": 32, "group": 64}
    fwd = blocked.forward_sweep(m, **sizes)
    bwd = blocked.backward_sweep(m, fwd, **sizes)
    grads = streaming.gradients(m, fwd, bwd, torch.ones(1, dtype=torch.float64), 6)
    for g in (grads.scores, grads.transition, grads.duration, grads.start):
        assert bool(torch.isfinite(g).all())
    assert float((grads.scores.sum(2) - 1).abs().max()) <= 1e-7
    covered = (bwd.duration_mass[0] * torch.arange(1.0, 7.0, dtype=torch.float64)).sum()
    assert abs(float(covered) / 100_000 - 1) <= 1e-7


def test_longer_input_equals_the_reference():
    _check(random_case(2, 3000, 40, 2, seed=4), {"block": 16, "group": 64}, tile=32)


def test_float32_inputs_within_bound():
    """float32 scores: the sweeps run in float64 on the float32 values; log Z and the
    gradients agree with the float64 result on the same values to 1e-5 relative."""
    case = random_case(3, 50, 8, 3, seed=2)
    low = Case(*(None if x is None else x.float() if x.is_floating_point() else x
                 for x in case.args[:4]), start=case.start.float())
    m32 = streaming.prepare(low.scores, low.transition, low.duration, low.lengths, low.start)
    m64 = streaming.prepare(low.scores.double(), low.transition.double(), low.duration.double(),
                            low.lengths, low.start.double())
    f32, f64 = blocked.forward_sweep(m32), blocked.forward_sweep(m64)
    rel = (f32.log_z.float().double() - f64.log_z).abs() / f64.log_z.abs()
    assert float(rel.max()) <= 1e-5


@pytest.mark.parametrize("sizes", [{"chunk": 2, "group": 4}, {"chunk": 4, "group": 8}, {}])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(3, 50, 7, 3), (2, 40, 60, 2), (3, 90, 20, 3), (2, 1, 5, 3)])
def test_viterbi_equals_the_reference(shape, seed, sizes):
    """Best scores exactly; with continuous random inputs there are no ties, so the
    segmentations are the reference's too."""
    batch, length, max_len, labels = shape
    case = random_case(batch, length, max_len, labels, seed, scale=1.0 + seed)
    m = streaming.prepare(case.scores, case.transition, case.duration, case.lengths, case.start)
    got, want = blocked.viterbi_sweep(m, **sizes), streaming.viterbi_sweep(m)
    _close(got.best, want.best, "best score")
    assert streaming.traceback(got, m.lengths) == streaming.traceback(want, m.lengths)


@pytest.mark.parametrize("seed", range(3))
def test_viterbi_adversarial_and_long_segments(seed):
    """Durations that favour the longest lengths make old chunks win the window bound."""
    case = _adversarial(seed, length=80, max_len=30)
    case.duration = case.duration + 40.0 * torch.linspace(0, 1, 30, dtype=torch.float64).view(-1, 1)
    m = streaming.prepare(case.scores, case.transition, case.duration, case.lengths, case.start)
    got = blocked.viterbi_sweep(m, chunk=4, group=8)
    want = streaming.viterbi_sweep(m)
    _close(got.best, want.best, "best score")
    paths = streaming.traceback(got, m.lengths)
    for b, path in enumerate(paths):  # ties are possible here: the path must reach the best
        rescored = semicrf.segmentation_score(case.scores[b : b + 1], case.transition,
                                              case.duration, [path], case.start)
        _close(rescored, want.best[b : b + 1], "rescored path")


@pytest.mark.parametrize("cut", ["none", "random", "all"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("shape", [(3, 40, 7, 3), (2, 33, 50, 2), (3, 60, 4, 2), (2, 1, 5, 3)])
def test_runs_viterbi_equals_the_reference(shape, seed, cut):
    """Runs semantics: tail runs (begin tracked across groups), censored first / last runs."""
    batch, length, max_len, labels = shape
    case = random_case(batch, length, max_len, labels, seed, scale=1.0 + seed)
    m = streaming.prepare(case.scores, case.transition, case.duration, case.lengths, case.start,
                          **_runs(case, seed, cut))
    want = streaming.viterbi_sweep(m)
    for sizes in ({"chunk": 2, "group": 4}, {}):
        got = blocked.viterbi_sweep(m, **sizes)
        _close(got.best, want.best, "best score")
        assert streaming.traceback(got, m.lengths) == streaming.traceback(want, m.lengths)


def _per_position(case: Case, seed: int, forbid: float = 0.3) -> Case:
    """The case with a per-position (B, T, C, C) transition: random rows, a (3, C, C) frame
    pattern of -inf entries by t mod 3 (a grammar's shape) and random -inf entries."""
    batch, length, labels = case.scores.shape
    gen = torch.Generator().manual_seed(seed)
    trans = 2.0 * torch.randn(batch, length, labels, labels, generator=gen, dtype=torch.float64)
    frame = torch.rand(3, labels, labels, generator=gen) < forbid
    by_position = frame[torch.arange(length) % 3].unsqueeze(0)
    scattered = torch.rand(batch, length, labels, labels, generator=gen) < forbid / 3
    case.transition = trans.masked_fill(by_position | scattered, float("-inf"))
    return case


@pytest.mark.parametrize("semantics", ["segments", "runs"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(3, 40, 7, 3), (2, 33, 50, 2), (3, 70, 4, 3), (2, 1, 5, 3)])
def test_per_position_transitions_equal_the_reference(shape, seed, semantics):
    """(B, T, C, C) transitions with -inf entries: every sweep output and gradient (the
    per-position transition's included), across groups, blocks and reversed lengths."""
    batch, length, max_len, labels = shape
    case = _per_position(random_case(batch, length, max_len, labels, seed), seed)
    runs = _runs(case, seed, "random") if semantics == "runs" else None
    for sizes in (SMALL, {"block": 3, "group": 9}, {}):
        _check(case, sizes, runs=runs, seed=seed)


@pytest.mark.parametrize("seed", range(3))
def test_per_position_adversarial_runs_the_block_repair(seed, monkeypatch):
    """Large emissions and per-position transitions: the log-space block repair reads the
    per-position rows too, and the result is still exact."""
    calls = _count_calls(monkeypatch, "_intra_log")
    case = _per_position(_adversarial(seed, magnitude=300.0), seed)
    _check(case, WIDE, runs=_runs(case, seed, "random"))
    assert calls["n"] > 0


@pytest.mark.parametrize("semantics", ["segments", "runs"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape", [(3, 50, 7, 3), (2, 90, 20, 3), (2, 1, 5, 3)])
def test_per_position_viterbi_equals_the_reference(shape, seed, semantics):
    batch, length, max_len, labels = shape
    case = _per_position(random_case(batch, length, max_len, labels, seed, scale=1.0 + seed), seed)
    runs = _runs(case, seed, "random") if semantics == "runs" else {}
    m = streaming.prepare(case.scores, case.transition, case.duration, case.lengths, case.start,
                          **runs)
    want = streaming.viterbi_sweep(m)
    for sizes in ({"chunk": 2, "group": 4}, {}):
        got = blocked.viterbi_sweep(m, **sizes)
        _close(got.best, want.best, "best score")
        assert streaming.traceback(got, m.lengths) == streaming.traceback(want, m.lengths)
