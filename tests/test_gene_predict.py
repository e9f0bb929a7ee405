"""`semicrf predict` with a gene model: internal states stitched across windows in the
sequence's frames, CDS phases from the decoded frames (also for a CDS cut at the sequence
start), and genes that break the grammar at a stitch left out."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import numpy as np
import pytest

from semicrf.crf.gene_head import GeneHead
from semicrf.data.config import GeneratorConfig
from semicrf.data.structure import sample_structure
from semicrf.gene_grammar import EXON_STATES, GeneGrammar
from semicrf.genomes import predict as predict_mod
from semicrf.labels import EXON

pytestmark = pytest.mark.fast


def _true_states(num_classes: int, length: int, seed: int) -> np.ndarray:
    """Internal states (length,) of a generated sequence (frames from the generator)."""
    structure = sample_structure(GeneratorConfig(), num_classes, length,
                                 np.random.default_rng(seed))
    runs = GeneGrammar(num_classes).internal_runs(structure.segments())
    assert runs is not None
    return np.repeat([st for _, _, st in runs], [e - s for s, e, _ in runs])


def _gene_predictor(num_classes: int = 3) -> predict_mod.Predictor:
    head = GeneHead(4, GeneGrammar(num_classes), 4)
    return predict_mod.Predictor(model=SimpleNamespace(head=head), features="onehot",
                                 num_labels=num_classes, device=None)


def _codon_position(states: np.ndarray, t: int) -> int:
    return (t - (int(states[t]) - EXON_STATES[0])) % 3


def _fake_windows(states: np.ndarray, tokens: np.ndarray, window: int, edge: int, wrong=None):
    """A `_decode_batch` that returns the true states in each window's own frames, wrong near
    the window edges (or, for windows starting at ``wrong``, with every exon's frame off by
    one)."""
    index = {tokens[i:i + window].tobytes(): i for i in range(states.size - window + 1)}
    grammar = GeneGrammar(3)

    def fake(pred, windows, scores=True):
        out = []
        for w in windows:
            at = index[w.tobytes()] if w.size == window else 0
            local = grammar.shift_frames(states[at:at + w.size], -at)
            if at == wrong:
                local = grammar.shift_frames(local, 1)
            if at > 0:
                local[:edge] = 0
            if at + w.size < states.size:
                local[-edge:] = 0
            out.append(local)
        labels = np.stack(out)
        return labels, np.eye(3)[grammar.state_label.numpy()[labels]]

    return fake


def test_shifted_frames_keep_every_codon_position():
    grammar = GeneGrammar(3)
    states = _true_states(3, 40_000, seed=2)
    for offset in (0, 1, 2, 1000, 1234):
        local = grammar.shift_frames(states[offset:], -offset)
        np.testing.assert_array_equal(grammar.shift_frames(local, offset), states[offset:])
        exon = np.flatnonzero(grammar.state_label.numpy()[local] == EXON)
        assert exon.size > 100
        for t in exon[::37].tolist():
            assert _codon_position(local, t) == _codon_position(states, t + offset)


@pytest.mark.parametrize("seed", range(3))
def test_stitched_states_equal_the_truth_and_phases_follow_the_frames(seed, monkeypatch):
    states = _true_states(3, 40_000, seed)
    cut = int(np.flatnonzero(GeneGrammar(3).state_label.numpy()[states] == EXON)[4 + seed])
    states = GeneGrammar(3).shift_frames(states[cut:], -cut)  # the sequence starts mid-exon
    tokens = np.random.default_rng(seed).integers(0, 4, states.size).astype(np.uint8)
    monkeypatch.setattr(predict_mod, "_decode_batch", _fake_windows(states, tokens, 5000, 40))
    pred = _gene_predictor()
    stitched, _ = predict_mod.decode_states(pred, tokens, window=5000, overlap=1000)
    np.testing.assert_array_equal(stitched, states)
    labels, _ = predict_mod.decode_sequence(pred, tokens, window=5000, overlap=1000)
    np.testing.assert_array_equal(labels, GeneGrammar(3).state_label.numpy()[states])
    seq = "".join("ACGT"[b] for b in tokens)
    genes = predict_mod.predict_genes(pred, {"s": seq}, window=5000, overlap=1000)["s"]
    assert len(genes) > 1 and genes[0].cds_start == 0
    for gene in genes:
        for (s, _), phase in zip(gene.cds, gene.cds_phases(), strict=True):
            assert phase == (3 - _codon_position(states, s)) % 3  # bases to the next codon
    assert sum(g.cds_start_phase for g in genes[1:]) == 0  # whole genes start with a codon


def test_a_gene_broken_at_a_stitch_is_left_out(monkeypatch, caplog):
    states = np.zeros(300, dtype=np.int64)
    states[50:260] = EXON_STATES[50 % 3]  # one exon over the whole overlap [100, 200)
    tokens = np.random.default_rng(0).integers(0, 4, 300).astype(np.uint8)
    seq = "".join("ACGT"[b] for b in tokens)
    pred = _gene_predictor()
    monkeypatch.setattr(predict_mod, "_decode_batch", _fake_windows(states, tokens, 200, 10))
    kept = predict_mod.predict_genes(pred, {"s": seq}, window=200, overlap=100)["s"]
    assert [g.cds for g in kept] == [((50, 260),)]
    monkeypatch.setattr(predict_mod, "_decode_batch",
                        _fake_windows(states, tokens, 200, 10, wrong=100))
    with caplog.at_level(logging.WARNING):
        broken = predict_mod.predict_genes(pred, {"s": seq}, window=200, overlap=100)["s"]
    assert broken == [] and "1 decoded genes break the gene grammar" in caplog.text
    stitched, _ = predict_mod.decode_states(pred, tokens, window=200, overlap=100)
    assert GeneGrammar(3).broken_boundaries(stitched).tolist() == [150]


def test_decode_states_needs_a_gene_model():
    plain = predict_mod.Predictor(model=None, features="onehot", num_labels=3, device=None)
    with pytest.raises(ValueError, match="gene model"):
        predict_mod.decode_states(plain, np.zeros(10, dtype=np.uint8))


def test_a_cds_start_phase_carries_to_every_part_on_both_strands():
    from semicrf.genomes.annotation import Transcript

    plus = Transcript("g", "s", 1, cds=((10, 20), (30, 41)), exons=((10, 20), (30, 41)),
                      cds_start_phase=2)  # 2 bases, then 8 = 2 codons + 2: 1 base to skip
    assert plus.cds_phases() == (2, 1)
    minus = plus.reverse_complemented(50)  # the 5' part is now the high one
    assert minus.cds_start_phase == 2 and minus.cds_phases() == (1, 2)
    with pytest.raises(ValueError, match="cds_start_phase"):
        Transcript("g", "s", 1, cds=((0, 3),), exons=((0, 3),), cds_start_phase=3)


def test_a_loaded_gene_model_lets_windows_start_inside_genes(tmp_path):
    from dataclasses import asdict

    import torch

    from semicrf.pipeline import RunConfig

    cfg = RunConfig(data_dir="unused", output_dir="unused", encoder="bilstm", features="onehot",
                    hidden_dim=4, num_layers=1, max_duration=8, structure="gene", device="cpu")
    tcfg = cfg.train_config("semicrf", 3)  # generated data: training windows start intergenic
    model = tcfg.build()
    assert model.head.start_allowed.tolist() == [True] + [False] * 6
    torch.save({"model": model.state_dict(), "config": asdict(tcfg)}, tmp_path / "m.pt")
    pred = predict_mod.load_predictor(tmp_path / "m.pt")
    assert bool(pred.model.head.start_allowed.all()) and predict_mod.gene_grammar(pred) is not None
