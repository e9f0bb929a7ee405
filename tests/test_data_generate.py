"""The generator: gene grammar, tiling, durations in context, motifs and composition."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from semicrf.data import GeneratorConfig, generate_sequence, sequence_rng
from semicrf.data.composition import ProfileTable
from semicrf.data.durations import duration_cdf
from semicrf.data.structure import FIRST_EXON, LAST_EXON, Structure
from semicrf.labels import EXON, INTERGENIC, INTRON, UTR3, UTR5, labels_from_segments

A, C, G, T = 0, 1, 2, 3

# Every length parameter divided by 10: many segments per sequence, so statistics are cheap.
SCALED = {
    "durations": {
        "intergenic": {"median": 500.0, "min": 50, "max": 2000},
        "exon": {"median": 15.0, "min": 3, "max": 50},
        "intron": {"median": 300.0, "min": 10, "max": 1000},
        "utr5": {"median": 20.0, "min": 2, "max": 100},
        "utr3": {"median": 80.0, "min": 5, "max": 500},
    }
}


def make(n: int, seq_length: int, num_classes: int = 3, overrides: dict | None = None,
         seed: int = 0) -> tuple[GeneratorConfig, list[np.ndarray], list[Structure]]:
    cfg = GeneratorConfig.from_overrides(overrides)
    table = ProfileTable(cfg)
    toks, structs = [], []
    for i in range(n):
        tok, st = generate_sequence(cfg, num_classes, seq_length, sequence_rng(seed, 0, i), table)
        toks.append(tok)
        structs.append(st)
    return cfg, toks, structs


def gene_grammar_ok(labels: list[int], num_classes: int, n_min: int, n_max: int) -> None:
    """Assert that a (possibly cut) label sequence of segments follows the gene grammar."""
    assert labels[0] == INTERGENIC
    i = 1
    while i < len(labels):
        # one gene, then intergenic (the sequence may end anywhere)
        gene = []
        while i < len(labels) and labels[i] != INTERGENIC:
            gene.append(labels[i])
            i += 1
        complete = i < len(labels)
        if num_classes == 5:
            assert gene[0] == UTR5
            core = gene[1:-1] if complete else [x for x in gene[1:] if x != UTR3]
            if complete:
                assert gene[-1] == UTR3
        else:
            core = gene
        assert all(x in (EXON, INTRON) for x in core)
        assert core[::2] == [EXON] * len(core[::2]) and core[1::2] == [INTRON] * len(core[1::2])
        n_exons = len(core[::2])
        if complete:
            assert n_min <= n_exons <= n_max and core[-1] == EXON
        else:
            assert n_exons <= n_max
        i += 1  # the intergenic region


@pytest.mark.parametrize("num_classes", [3, 5])
def test_segments_tile_the_sequence_and_follow_the_gene_grammar(num_classes: int) -> None:
    cfg, toks, structs = make(40, 6000, num_classes, SCALED)
    seen = set()
    for tok, st in zip(toks, structs, strict=True):
        assert tok.shape == (6000,) and tok.dtype == np.uint8 and tok.max() <= T
        segs = st.segments()
        labels = labels_from_segments(segs, 6000)  # raises unless they tile [0, 6000)
        # segments are maximal runs: neighbours always differ
        seg_labels = [c for _, _, c in segs]
        assert all(a != b for a, b in zip(seg_labels, seg_labels[1:], strict=False))
        starts = np.flatnonzero(np.diff(labels)) + 1
        assert starts.tolist() == [s for s, _, _ in segs[1:]]
        gene_grammar_ok(seg_labels, num_classes, cfg.exons_per_gene.min, cfg.exons_per_gene.max)
        # only the last segment can be cut, and it is flagged so
        drawn = (st.end - st.start).tolist()
        observed = [e - s for s, e, _ in segs]
        assert drawn[:-1] == observed[:-1]
        assert st.last_censored == (drawn[-1] > observed[-1])
        seen.update(seg_labels)
    assert seen == set(range(num_classes))


def test_c5_generates_utr_segments_with_their_own_lengths() -> None:
    cfg, _, structs = make(30, 20000, 5, seed=3)
    lengths = {UTR5: [], UTR3: []}
    for st in structs:
        for s, e, c in zip(st.start.tolist(), st.end.tolist(), st.label.tolist(), strict=True):
            if c in lengths and e <= 20000:
                lengths[c].append(e - s)
    for c, name in ((UTR5, "utr5"), (UTR3, "utr3")):
        spec = cfg.durations[name]
        x = np.array(lengths[c])
        assert x.size >= 20
        assert x.min() >= spec.min and x.max() <= spec.max
    # 5'UTRs (median 200) are clearly shorter than 3'UTRs (median 800)
    assert np.median(lengths[UTR3]) > 2 * np.median(lengths[UTR5])


@pytest.mark.parametrize("num_classes", [3, 5])
def test_durations_in_generated_sequences_follow_the_truth(num_classes: int) -> None:
    """All drawn segment lengths (the cut last one at its drawn length) per class, KS-tested.

    Whether a segment is included depends only on earlier segments, never on its own length,
    so the pooled drawn lengths are an unbiased sample of each class's distribution. The same
    sample must reject a 10% shift of the median.
    """
    cfg, _, structs = make(150 if num_classes == 3 else 400, 20000, num_classes, SCALED, seed=11)
    names = ["intergenic", "exon", "intron", "utr5", "utr3"][:num_classes]
    for c, name in enumerate(names):
        x = np.concatenate([(st.end - st.start)[st.label == c] for st in structs])
        spec = cfg.durations[name]
        support = np.arange(spec.min, spec.max + 1)
        counts = np.bincount(x - spec.min, minlength=support.size)
        ecdf = np.cumsum(counts) / x.size

        def ks(median_factor: float, spec=spec, support=support, ecdf=ecdf, n=x.size) -> float:
            alt = type(spec)(spec.median * median_factor, spec.sigma, spec.min, spec.max)
            d = np.max(np.abs(ecdf - duration_cdf(alt, cfg.bound_mode, support)))
            return float(stats.kstwo.sf(d, n))

        assert ks(1.0) > 1e-3, f"{name}: n={x.size}"
        assert ks(1.1) < 1e-3 and ks(1 / 1.1) < 1e-3, f"{name}: n={x.size} too small"


def test_exons_per_gene_are_uniform_on_the_configured_range() -> None:
    cfg, _, structs = make(60, 20000, 3, {**SCALED, "exons_per_gene": {"min": 1, "max": 3}})
    counts = []
    for st in structs:
        lab, fl = st.label.tolist(), st.flags.tolist()
        n = 0
        for c, f in zip(lab, fl, strict=True):
            if c == EXON:
                n += 1
                if f & LAST_EXON:
                    counts.append(n)
            elif c == INTERGENIC:
                n = 0
    counts = np.array(counts)
    assert set(counts.tolist()) == {1, 2, 3}
    assert stats.chisquare(np.bincount(counts)[1:]).pvalue > 1e-3


def introns(st: Structure) -> list[tuple[int, int]]:
    return [(s, e) for s, e, c in st.segments() if c == INTRON]


@pytest.mark.parametrize("signal", [0.0, 0.5, 1.0])
def test_splice_motifs_sit_at_every_intron_end(signal: float) -> None:
    _, toks, structs = make(30, 20000, 3, {**SCALED, "signal": signal})
    n_checked = 0
    for tok, st in zip(toks, structs, strict=True):
        for s, e in introns(st):
            if e - s >= 2:
                assert tok[s] == G and tok[s + 1] == T
            if e < 20000 or not st.last_censored:  # complete intron
                assert tok[e - 2] == A and tok[e - 1] == G
                n_checked += 1
    assert n_checked > 500


def test_splice_motifs_can_be_switched_off() -> None:
    _, toks, structs = make(30, 20000, 3, {**SCALED, "signal": 0.0, "splice_motifs": False})
    gt = [tok[s] == G and tok[s + 1] == T for tok, st in zip(toks, structs, strict=True)
          for s, e in introns(st) if e - s >= 2]
    assert len(gt) > 500
    assert np.mean(gt) < 0.15  # ~1/16 by chance


def test_start_stop_codons_and_polya_at_signal_one() -> None:
    _, toks, structs = make(30, 20000, 5, {**SCALED, "signal": 1.0}, seed=2)
    checked = {"start": 0, "stop": 0, "polya": 0}
    stops = {(T, A, A), (T, A, G), (T, G, A), (T, G, G)}  # the PWM is per position
    for tok, st in zip(toks, structs, strict=True):
        for s, e, c, f in zip(st.start.tolist(), st.end.tolist(), st.label.tolist(),
                              st.flags.tolist(), strict=True):
            if e > 20000 or e - s < 6:
                continue
            if c == EXON and f & FIRST_EXON:
                assert tuple(tok[s : s + 3]) == (A, T, G)
                checked["start"] += 1
            if c == EXON and f & LAST_EXON:
                assert tuple(tok[e - 3 : e]) in stops
                checked["stop"] += 1
            if c == UTR3 and e - s >= 26:
                assert tuple(tok[e - 26 : e - 20]) == (A, A, T, A, A, A)
                checked["polya"] += 1
    assert min(checked.values()) > 50


def test_reading_frame_is_carried_across_introns() -> None:
    cfg, _, structs = make(20, 20000, 3, SCALED)
    table = ProfileTable(cfg)
    codon = table.ids["exon_codon"].tolist()
    n = 0
    for st in structs:
        rows = table.assign(st)
        coding = 0
        for s, e, c, ph in zip(st.start.tolist(), st.end.tolist(), st.label.tolist(),
                               st.phase.tolist(), strict=True):
            if c == INTERGENIC:
                coding = 0
            if c != EXON:
                continue
            assert ph == coding % 3
            inner = range(s + 3, e - 3)  # away from the start/stop/splice site rows
            assert [rows[t] for t in inner] == [codon[(ph + t - s) % 3] for t in inner]
            coding += e - s
            n += 1
    assert n > 500


def class_base_counts(toks: list[np.ndarray], structs: list[Structure], num_classes: int,
                      skip_motifs: bool) -> np.ndarray:
    """(num_classes, 4) base counts per class; optionally without the GT/AG positions."""
    counts = np.zeros((num_classes, 4), dtype=np.int64)
    for tok, st in zip(toks, structs, strict=True):
        lab = labels_from_segments(st.segments(), tok.size)
        keep = np.ones(tok.size, dtype=bool)
        if skip_motifs:
            for s, e in introns(st):
                keep[s : s + 2] = False
                keep[max(s, e - 2) : e] = False
        np.add.at(counts, (lab[keep], tok[keep]), 1)
    return counts


def test_composition_is_identical_across_classes_at_signal_zero() -> None:
    _, toks, structs = make(40, 20000, 5, {"signal": 0.0}, seed=4)
    counts = class_base_counts(toks, structs, 5, skip_motifs=True)
    assert counts.sum(axis=1).min() > 10_000
    for c in range(5):  # each class: uniform bases
        assert stats.chisquare(counts[c]).pvalue > 1e-4, c
    assert stats.chi2_contingency(counts).pvalue > 1e-4  # and no difference between classes


def test_composition_differs_per_class_at_positive_signal() -> None:
    cfg, toks, structs = make(40, 20000, 5, {"signal": 0.5}, seed=4)
    counts = class_base_counts(toks, structs, 5, skip_motifs=True)
    assert stats.chi2_contingency(counts).pvalue < 1e-12
    gc = (counts[:, C] + counts[:, G]) / counts.sum(axis=1)
    # documented targets at the default signal: exon ~0.53, intron ~0.39, 5'UTR ~0.60
    assert gc[EXON] == pytest.approx(0.53, abs=0.02)
    assert gc[INTRON] == pytest.approx(0.39, abs=0.01)
    assert gc[INTERGENIC] == pytest.approx(0.41, abs=0.01)
    assert gc[UTR5] == pytest.approx(0.60, abs=0.02)
    assert gc[EXON] > gc[INTRON] + 0.1 and gc[INTRON] < gc[INTERGENIC]


def test_bases_are_drawn_from_the_assigned_profiles() -> None:
    """Observed counts per profile row against the row's probabilities (chi-square)."""
    cfg, toks, structs = make(60, 20000, 5, {**SCALED, "signal": 0.7}, seed=9)
    table = ProfileTable(cfg)
    R = table.probs.shape[0]
    counts = np.zeros((R, 4), dtype=np.int64)
    for tok, st in zip(toks, structs, strict=True):
        rows = table.assign(st)[: tok.size]
        np.add.at(counts, (rows, tok), 1)
    tested = 0
    for r in range(R):
        n = counts[r].sum()
        p = table.probs[r]
        if n < 200:
            continue
        support = p > 0
        assert np.all(counts[r][~support] == 0), table.names[r]
        if support.sum() > 1:
            assert stats.chisquare(counts[r][support], n * p[support]).pvalue > 1e-4, \
                table.names[r]
        tested += 1
    assert tested == R  # every row was used often enough


def test_signal_mixes_profiles_with_uniform() -> None:
    cfg = GeneratorConfig.from_overrides({"signal": 0.25})
    table = ProfileTable(cfg)
    exon1 = table.probs[table.ids["exon_codon"][0]]
    np.testing.assert_allclose(exon1, 0.75 * 0.25 + 0.25 * np.array(cfg.composition["exon_codon1"]))
    np.testing.assert_array_equal(table.probs[table.ids["gt"]], [[0, 0, 1, 0], [0, 0, 0, 1]])
    zero = ProfileTable(GeneratorConfig.from_overrides({"signal": 0}))
    np.testing.assert_array_equal(zero.probs[: -4], 0.25)
