"""The gene grammar (semicrf.gene_grammar): its rules from their definition, the internal
states of generated genes against the generator's phases, the per-position transition and
emission maps, and the restriction to the labellings of given output labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from semicrf.data.config import GeneratorConfig
from semicrf.data.structure import sample_structure
from semicrf.gene_grammar import (
    BOUNDARY_KINDS,
    EXON_STATES,
    INTERGENIC_STATE,
    INTRON_STATES,
    UTR3_STATE,
    UTR5_STATE,
    GeneGrammar,
)
from semicrf.labels import EXON, INTRON


def _expected(grammar: GeneGrammar, r: int, prev: int, nxt: int) -> bool:
    """The rule of a boundary at a position t with t mod 3 = r, written out per case."""
    five = grammar.num_classes == 5
    before = UTR5_STATE if five else INTERGENIC_STATE
    after = UTR3_STATE if five else INTERGENIC_STATE
    if prev == before and nxt in EXON_STATES:
        return EXON_STATES.index(nxt) == r
    if prev in EXON_STATES and nxt == after:
        return not grammar.whole_codons or (r - EXON_STATES.index(prev)) % 3 == 0
    if prev in EXON_STATES and nxt in INTRON_STATES:
        return INTRON_STATES.index(nxt) == (r - EXON_STATES.index(prev)) % 3
    if prev in INTRON_STATES and nxt in EXON_STATES:
        return INTRON_STATES.index(prev) == (r - EXON_STATES.index(nxt)) % 3
    if five:
        return (prev, nxt) in ((INTERGENIC_STATE, UTR5_STATE), (UTR3_STATE, INTERGENIC_STATE))
    return False


@pytest.mark.parametrize("num_classes", [3, 5])
@pytest.mark.parametrize("whole_codons", [False, True])
def test_rules_follow_their_definition(num_classes, whole_codons):
    grammar = GeneGrammar(num_classes, whole_codons)
    size = grammar.num_states
    for r in range(3):
        for prev in range(size):
            for nxt in range(size):
                assert bool(grammar.allowed[r, prev, nxt]) == _expected(grammar, r, prev, nxt)
    allowed_any = grammar.allowed.any(0)
    assert bool(((grammar.boundary_kind > 0) == allowed_any).all())
    labels = grammar.state_label
    assert not bool(allowed_any[labels.view(-1, 1) == labels.view(1, -1)].any())  # runs = runs


@pytest.mark.parametrize("num_classes", [3, 5])
@pytest.mark.parametrize("seed", range(20))
def test_internal_states_of_generated_genes_agree_with_the_generator_phases(num_classes, seed):
    """Frames derived from the labels alone equal the generator's: f = (s - phase) mod 3."""
    config = GeneratorConfig()
    structure = sample_structure(config, num_classes, 20_000, np.random.default_rng(seed))
    grammar = GeneGrammar(num_classes)
    runs = grammar.internal_runs(structure.segments())
    assert runs is not None and grammar.admits(runs)
    exons = 0
    for (s, e, state), label, phase in zip(runs, structure.label.tolist(),
                                           structure.phase.tolist(), strict=True):
        assert int(grammar.state_label[state]) == label
        if label == EXON:
            exons += 1
            assert state == EXON_STATES[grammar.frame_of_exon(s, phase)]
        if label == INTRON:  # p = codon position of the next coding base
            prev_s, _, prev_state = runs[runs.index((s, e, state)) - 1]
            f = prev_state - EXON_STATES[0]
            assert state - INTRON_STATES[0] == (s - f) % 3
    assert exons > 0


def test_a_window_starting_in_a_gene_has_a_latent_frame():
    grammar = GeneGrammar(3)
    assert grammar.internal_runs([(0, 40, EXON), (40, 200, INTRON), (200, 260, EXON)]) is None
    runs = grammar.internal_runs([(0, 40, EXON), (40, 200, INTRON), (200, 260, EXON)],
                                 first_state=EXON_STATES[2])
    phase = (40 - 2) % 3  # codon position of the base after the frame-2 exon ending at 40
    assert runs == [(0, 40, EXON_STATES[2]), (40, 200, INTRON_STATES[phase]),
                    (200, 260, EXON_STATES[(200 - phase) % 3])]


def test_a_cds_that_is_not_whole_codons_breaks_the_real_gene_grammar():
    runs = [(0, 9, 0), (9, 30, EXON), (30, 50, 0)]  # a 21-base gene: 7 codons
    assert GeneGrammar(3, whole_codons=True).internal_runs(runs) is not None
    bad = [(0, 9, 0), (9, 31, EXON), (31, 50, 0)]  # 22 bases
    assert GeneGrammar(3, whole_codons=True).internal_runs(bad) is None
    assert GeneGrammar(3, whole_codons=False).internal_runs(bad) is not None


@pytest.mark.parametrize("num_classes", [3, 5])
def test_per_position_transition_adds_sensors_by_kind_and_forbids_the_rest(num_classes):
    grammar = GeneGrammar(num_classes)
    size, length = grammar.num_states, 7
    gen = torch.Generator().manual_seed(0)
    table = torch.randn(size, size, generator=gen)
    sensors = torch.randn(2, length, grammar.num_boundary_kinds - 1, generator=gen)
    trans = grammar.per_position_transition(table, sensors, length)
    assert trans.shape == (2, length, size, size)
    for t in range(length):
        for prev in range(size):
            for nxt in range(size):
                if not grammar.allowed[t % 3, prev, nxt]:
                    assert bool((trans[:, t, prev, nxt] == float("-inf")).all())
                else:
                    kind = int(grammar.boundary_kind[prev, nxt])
                    want = table[prev, nxt] + sensors[:, t, kind - 1]
                    torch.testing.assert_close(trans[:, t, prev, nxt], want)
    assert BOUNDARY_KINDS[0] == "none"


def test_emission_index_reads_the_codon_column_of_each_frame():
    grammar = GeneGrammar(5)
    index = grammar.emission_index(9)
    for t in range(9):
        assert int(index[t, INTERGENIC_STATE]) == 0
        for f, state in enumerate(EXON_STATES):
            assert int(index[t, state]) == 2 + (t - f) % 3
        assert all(int(index[t, s]) == 1 for s in INTRON_STATES)
        assert (int(index[t, UTR5_STATE]), int(index[t, UTR3_STATE])) == (5, 6)


def test_expand_and_collapse_by_label():
    grammar = GeneGrammar(3)
    x = torch.tensor([[1.0, 2.0, 3.0]])
    assert grammar.expand_by_label(x).tolist() == [[1.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0]]
    assert grammar.collapse_by_label(grammar.expand_by_label(x)).tolist() == [[1.0, 6.0, 9.0]]


def test_errors():
    with pytest.raises(ValueError, match="num_classes 3 or 5"):
        GeneGrammar(4)


def test_fits_tries_every_frame_of_a_first_run_cut_inside_a_gene():
    grammar = GeneGrammar(3, whole_codons=True)
    cut = [(0, 40, EXON), (40, 60, 0)]  # a gene's last 40 coding bases: frame latent
    frames = [grammar.internal_runs(cut, first_state=s) is not None for s in EXON_STATES]
    assert frames == [(40 - f) % 3 == 0 for f in range(3)]  # the gene end pins the frame
    assert grammar.fits(cut, anywhere=True) and not grammar.fits(cut, anywhere=False)
    assert not grammar.fits([(0, 40, INTRON), (40, 60, 0)], anywhere=True)  # intron -> intergenic
    assert not grammar.fits([(0, 9, 0), (9, 31, EXON), (31, 50, 0)], anywhere=True)
    assert grammar.fits([(0, 9, 0), (9, 30, EXON), (30, 50, 0)], anywhere=False)


def _complete_genes_are_whole_codons(segments) -> bool:
    """Every gene wholly inside the window (intergenic on both sides) codes a multiple of 3
    bases: the only way a window of annotated CDS labels can break the real gene grammar."""
    labels = [c for _, _, c in segments]
    for i, (_, _, c) in enumerate(segments):
        if c != 0 or i == 0:
            continue
        j = max((k for k in range(i) if labels[k] == 0), default=None)
        if j is not None and j < i - 1:
            coding = sum(e - s for s, e, c2 in segments[j + 1:i] if c2 == EXON)
            if coding % 3:
                return False
    return True


def test_the_importer_lists_the_windows_the_gene_grammar_cannot_produce(tmp_path):
    from genome_files import GeneSpec, random_dna, write_genbank

    from semicrf.data.storage import read_meta
    from semicrf.genomes.importer import import_dataset

    rng = np.random.default_rng(5)
    records = []
    for k in range(6):  # three genes of whole codons, three frame-shifted (one base too many)
        extra = k % 2
        cds = [(150, 210), (300, 390 + extra), (480, 543)]
        records.append((f"chr{k}", random_dna(700, rng), [GeneSpec(f"g{k}", 1, cds)]))
    write_genbank(tmp_path / "mixed.gb", records)
    out = import_dataset(tmp_path / "d", genbank=tmp_path / "mixed.gb", seq_length=500, seed=1,
                         split=(0.5, 0.25, 0.25))
    meta = read_meta(out)
    flagged = 0
    for info in meta["splits"].values():
        expected = [i for i, segs in enumerate(info["segments"])
                    if not _complete_genes_are_whole_codons(segs)]
        assert info["gene_grammar_misfits"] == expected
        flagged += len(expected)
    assert flagged > 0
