"""GeneHead against brute force over internal labellings: log Z, the label NLL (closed-form
gold where the frames follow from the labels, the restricted partition where they are
latent), Viterbi; grammar-violating windows are skipped; decoded structures obey the grammar."""

from __future__ import annotations

import itertools

import brute_force_runs as bf
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from semicrf.crf.gene_head import GeneHead
from semicrf.gene_grammar import GeneGrammar
from semicrf.labels import label_runs, labels_from_segments

FORBIDDEN = -1e4  # as in test_crf_positional: a -inf entry in the enumeration


def _head(num_classes: int, seed: int, start_anywhere: bool = False, max_duration: int = 3,
          duration: str = "learned") -> GeneHead:
    torch.manual_seed(seed)
    head = GeneHead(4, GeneGrammar(num_classes), max_duration, duration,
                    start_anywhere=start_anywhere).double()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn_like(p))
    return head


def _enumerate(head: GeneHead, hidden: torch.Tensor, length: int, b: int, censored):
    """Scores of every internal labelling (S^length) of sequence b and the labellings."""
    scores = head.scores(hidden)[b].detach()
    trans = head.state_transition(hidden)[b].detach().clamp(min=FORBIDDEN)
    durations = head.grammar.expand_by_label(head.duration_scores()).detach().clamp(min=FORBIDDEN)
    tail = head.grammar.expand_by_label(head.tail()).detach()
    start = head.state_start().detach().clamp(min=FORBIDDEN)
    ys = list(itertools.product(range(head.grammar.num_states), repeat=length))
    total = torch.stack([bf.labelling_score(scores[:length], trans, durations, start, tail, y,
                                            censored) for y in ys])
    return total, ys


@pytest.mark.parametrize("num_classes,length", [(3, 5), (5, 4)])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("start_anywhere", [False, True])
def test_nll_and_viterbi_equal_enumeration(num_classes, length, seed, start_anywhere):
    head = _head(num_classes, seed, start_anywhere)
    grammar = head.grammar
    hidden = torch.randn(2, length, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    lengths = torch.tensor([length, length - 1])
    scored = [_enumerate(head, hidden, int(lengths[b]), b, (False, True)) for b in range(2)]
    # labels: the output labels of the best admissible labelling of each sequence
    labels = torch.full((2, length), -100)
    for b, (total, ys) in enumerate(scored):
        best = ys[int(total.argmax())]
        labels[b, : len(best)] = grammar.state_label[list(best)]
    nll = head.nll(hidden, lengths, labels).detach()
    runs = head.decode_states(hidden, lengths)
    for b, (total, ys) in enumerate(scored):
        n = int(lengths[b])
        mapped = [y for y in ys if grammar.state_label[list(y)].tolist() == labels[b, :n].tolist()]
        gold = torch.logsumexp(torch.stack([total[ys.index(y)] for y in mapped]), 0)
        want = torch.logsumexp(total, 0) - gold
        assert abs(float(nll[b]) - float(want)) <= 1e-9 * max(1.0, abs(float(want)))
        assert [tuple(r) for r in runs[b]] == bf.runs_of(ys[int(total.argmax())])
        assert grammar.admits(runs[b], anywhere=start_anywhere)
    assert head.skipped_windows == 0


def test_the_restricted_partition_equals_the_closed_form_gold_where_frames_are_known(monkeypatch):
    head = _head(3, seed=7)
    gen = torch.Generator().manual_seed(7)
    hidden = torch.randn(2, 30, 4, dtype=torch.float64, generator=gen)
    lengths = torch.tensor([30, 24])
    labels = torch.tensor([[0] * 6 + [1] * 7 + [2] * 9 + [1] * 5 + [0] * 3,
                           [0] * 4 + [1] * 10 + [2] * 5 + [1] * 5 + [0] * 6])
    closed = head.nll(hidden, lengths, labels)
    monkeypatch.setattr(head.grammar, "internal_labels", lambda *args: None)
    latent = head.nll(hidden, lengths, labels)
    torch.testing.assert_close(latent, closed, atol=1e-9, rtol=1e-9)


def test_a_window_the_grammar_cannot_produce_is_skipped_and_counted():
    head = _head(3, seed=1, start_anywhere=True)
    hidden = torch.randn(2, 12, 4, dtype=torch.float64)
    lengths = torch.tensor([12, 12])
    labels = torch.tensor([[0] * 4 + [2] * 4 + [1] * 4,  # intergenic -> intron: impossible
                           [0] * 4 + [1] * 4 + [0] * 4])
    nll = head.nll(hidden, lengths, labels).detach()
    assert head.skipped_windows == 1 and float(nll[0]) == 0.0 and float(nll[1]) > 0.0
    loss = head.loss(hidden, lengths, labels)
    assert bool(torch.isfinite(loss)) and abs(float(loss.detach()) - float(nll[1]) / 12) <= 1e-12
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in head.parameters() if p.grad is not None)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 1000), st.sampled_from([3, 5]), st.integers(20, 120), st.booleans())
def test_decoded_structures_obey_the_grammar(seed, num_classes, length, anywhere):
    head = _head(num_classes, seed, anywhere, max_duration=8)
    hidden = 3 * torch.randn(2, length, 4, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(seed))
    lengths = torch.tensor([length, max(1, length // 2)])
    labels, segments = head.decode(hidden, lengths)
    for b, runs in enumerate(head.decode_states(hidden, lengths)):
        assert head.grammar.admits(runs, anywhere=anywhere)
        assert head.grammar.output_runs(runs) == [tuple(s) for s in segments[b]]
        assert label_runs(labels[b, : int(lengths[b])]) == [tuple(s) for s in segments[b]]


@pytest.mark.parametrize("duration,max_duration", [("learned", 6), ("uniform", 6), ("learned", 1)])
def test_marginals_and_posterior_durations_are_per_output_label(duration, max_duration):
    head = _head(3, seed=3, max_duration=max_duration, duration=duration)
    hidden = torch.randn(2, 40, 4, dtype=torch.float64)
    lengths = torch.tensor([40, 31])
    marg = head.marginals(hidden, lengths)
    assert marg.shape == (2, 40, 3)
    torch.testing.assert_close(marg[0].sum(1), torch.ones(40, dtype=torch.float64))
    counts = head.posterior_durations(hidden, lengths)
    assert counts.shape == (2, max_duration, 3) and bool((counts >= 0).all())


def test_windows_cut_inside_a_genbank_gene_get_their_frames_from_the_latent_chain(tmp_path):
    """A GenBank gene (whole codons) cut into windows that start inside it: the frame of the
    first run is latent, the whole-codon rule at the gene end pins it, and the best internal
    labelling the latent chain admits has the true frames (codon position of base g:
    coding bases before g, mod 3)."""
    from genome_files import GeneSpec, random_dna, write_genbank

    from semicrf.genomes.annotation import labels_from_transcripts
    from semicrf.genomes.importer import window_segments
    from semicrf.genomes.readers import read_genbank

    cds = [(100, 160), (300, 390), (500, 563)]  # 60 + 90 + 63 = 213 bases = 71 codons
    sequence = random_dna(900, np.random.default_rng(0))
    path = write_genbank(tmp_path / "one.gb", [("chr1", sequence, [GeneSpec("g1", 1, cds)])])
    (record,) = read_genbank(path)
    labels = labels_from_transcripts(len(record), record.transcripts, 3)
    coding = np.concatenate([np.arange(s, e) for s, e in cds])
    codon_position = dict(zip(coding.tolist(), (np.arange(coding.size) % 3).tolist()))
    head = GeneHead(4, GeneGrammar(3, whole_codons=True), 8, start_anywhere=True).double()
    unpinned = window_segments(labels, 130, 300)[0]  # inside exon 1, before the gene end
    admissible = [GeneGrammar(3, whole_codons=True).internal_runs(unpinned, first_state=f + 1)
                  for f in range(3)]
    assert all(runs is not None for runs in admissible)  # every frame fits: truly latent
    checked = 0
    for start in (330, 520):  # inside exon 2 and exon 3, the gene end in the window
        segments, _, _, _ = window_segments(labels, start, 300)
        fits = [GeneGrammar(3, whole_codons=True).internal_runs(segments, first_state=f + 1)
                for f in range(3)]
        assert sum(runs is not None for runs in fits) == 1  # the gene end pins the frame
        window = torch.tensor(labels_from_segments(segments, 300)).view(1, -1)
        hidden = torch.randn(1, 300, 4, dtype=torch.float64)
        (runs,) = head.observed_states(hidden, torch.tensor([300]), window)
        assert runs is not None and head.grammar.admits(runs, anywhere=True)
        for s, e, state in runs:
            if state in (1, 2, 3):  # an exon of frame f: base t is codon position (t - f) mod 3
                f = state - 1
                for t in range(s, e):
                    assert codon_position[start + t] == (t - f) % 3
                    checked += 1
        nll = head.nll(hidden, torch.tensor([300]), window)
        assert head.skipped_windows == 0 and bool(torch.isfinite(nll).all())
    assert checked > 100


def test_training_counts_and_logs_the_windows_the_grammar_cannot_produce(tmp_path, caplog):
    """Real-gene settings (whole codons, windows starting anywhere): one window whose gene
    codes 22 bases is left out of the loss, counted in the history and logged; the loss and
    the weights stay finite."""
    from semicrf.data.storage import SequenceRecord
    from semicrf.pipeline import RunConfig
    from semicrf.train import predict, train_model

    def record(segments, index):
        labels = labels_from_segments(segments, 60)
        tokens = np.random.default_rng(index).integers(0, 4, 60).astype(np.uint8)
        return SequenceRecord(tokens, labels, segments, True, index, True)

    good = [(0, 9, 0), (9, 30, 1), (30, 40, 2), (40, 52, 1), (52, 60, 0)]  # 33 coding bases
    bad = [(0, 9, 0), (9, 31, 1), (31, 60, 0)]  # 22 coding bases
    cfg = RunConfig(data_dir="unused", output_dir="unused", encoder="bilstm", features="onehot",
                    hidden_dim=4, num_layers=1, max_duration=8, epochs=1, batch_size=2,
                    structure="gene", lr=0.01, device="cpu")
    tcfg = cfg.train_config("semicrf", 3, real_genes=True)
    assert tcfg.whole_codons and tcfg.start_anywhere
    train = [record(good, 0), record(bad, 1), record(good, 2)]
    with caplog.at_level("WARNING"):
        result = train_model(tcfg, train, train[:2], tmp_path)
        _, loss = predict(result.model, train[:2], tcfg, torch.device("cpu"))
    assert result.history[0]["skipped_windows"] == 1
    assert np.isfinite(loss) and np.isfinite(result.history[0]["train_loss"])
    assert "1 training windows left out" in caplog.text
    assert "1 of 2 windows left out" in caplog.text
    assert all(bool(torch.isfinite(p).all()) for p in result.model.parameters())


def test_a_gene_run_on_imported_genes_uses_whole_codons_and_latent_frames(tmp_path):
    """`semicrf run --structure gene` on `semicrf import` output (no generator in meta.json)
    builds the real-gene grammar: genes end after whole codons, windows start anywhere."""
    from genome_files import toy_records, write_genbank

    from semicrf.cli import main as cli_main
    from semicrf.genomes.importer import import_dataset

    write_genbank(tmp_path / "toy.gb", toy_records(np.random.default_rng(0), n=12))
    data = import_dataset(tmp_path / "data", genbank=tmp_path / "toy.gb", seq_length=300, seed=3)
    out = tmp_path / "run"
    flags = ["--encoder", "bilstm", "--features", "onehot", "--hidden-dim", "4", "--num-layers",
             "1", "--max-duration", "8", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
             "--threads", "1", "--quiet", "--structure", "gene", "--models", "linear"]
    assert cli_main(["run", "--data-dir", str(data), "--output-dir", str(out), *flags]) == 0
    config = torch.load(out / "checkpoints" / "linear_best.pt", weights_only=False)["config"]
    assert config["whole_codons"] and config["start_anywhere"]


def test_without_durations_keeps_everything_but_the_length_model():
    """The causal ablation of a gene head: same emissions, sensors, transitions and start,
    durations and tail zero (a uniform GeneHead)."""
    head = _head(3, seed=4, max_duration=6).float()
    ablated = head.without_durations()
    assert isinstance(ablated, GeneHead) and not ablated.learned
    hidden = torch.randn(2, 30, 4)
    torch.testing.assert_close(ablated.scores(hidden), head.scores(hidden))
    torch.testing.assert_close(ablated.state_transition(hidden), head.state_transition(hidden))
    torch.testing.assert_close(ablated.state_start(), head.state_start())
    assert bool((ablated.duration_scores() == 0).all()) and bool((ablated.tail() == 0).all())
    assert "start_allowed" not in head.state_dict()  # derived from the grammar, not saved
