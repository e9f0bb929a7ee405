"""GFF3 writer and reader, `semicrf predict` (windows, stitching, strands), `gt gff3validator`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from genome_files import random_dna, toy_records, write_genbank

from semicrf.cli import main as cli_main
from semicrf.genomes import predict as predict_mod
from semicrf.genomes.annotation import (
    Transcript,
    labels_from_transcripts,
    reverse_complement,
    transcripts_from_labels,
)
from semicrf.genomes.importer import import_dataset
from semicrf.genomes.readers import read_gff3
from semicrf.genomes.writers import write_fasta, write_gff3
from semicrf.labels import EXON, INTERGENIC, INTRON, UTR3, UTR5

pytestmark = pytest.mark.fast

GT = shutil.which("gt")
needs_gt = pytest.mark.skipif(GT is None, reason="genometools `gt` is not installed "
                                                  "(.ci/run installs it: apt-get install genometools)")


def _validate(path: Path) -> None:
    proc = subprocess.run([GT, "gff3validator", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr + proc.stdout


def _genes() -> dict[str, list[Transcript]]:
    plus = Transcript("a1", "chr1", 1, cds=((120, 200), (260, 331)),
                      exons=((100, 200), (260, 400)), score=0.75,
                      exon_scores=(0.9, 0.8), cds_scores=(0.7, 0.6))
    minus = Transcript("a2", "chr1", -1, cds=((500, 551), (600, 640), (700, 760)),
                       exons=((500, 551), (600, 640), (700, 760)))
    other = Transcript("b;1=x", "chr 2", 1, cds=((0, 30),), exons=((0, 30),))
    return {"chr1": [plus, minus], "chr 2": [other]}


@needs_gt
def test_written_gff3_is_valid_and_reads_back(tmp_path: Path) -> None:
    genes = _genes()
    path = write_gff3(tmp_path / "x.gff3", genes, {"chr1": 1000, "chr 2": 50})
    _validate(path)
    back = read_gff3(path)
    assert {k: [(t.gene_id, t.strand, t.cds, t.exons) for t in v] for k, v in back.items()} == \
           {k: [(t.gene_id, t.strand, t.cds, t.exons) for t in v] for k, v in genes.items()}
    text = path.read_text()
    assert "\tCDS\t121\t200\t0.7\t+\t0\t" in text and "\tgene\t101\t400\t0.75\t+\t.\t" in text
    # minus strand phases count from the 5' end (the highest coordinates)
    assert genes["chr1"][1].cds_phases() == (2, 0, 0)  # 60 + 40 bases before the last part


def test_writer_rejects_bad_input(tmp_path: Path) -> None:
    genes = _genes()
    with pytest.raises(ValueError, match="no sequence length"):
        write_gff3(tmp_path / "x.gff3", genes, {"chr1": 1000})
    with pytest.raises(ValueError, match="beyond"):
        write_gff3(tmp_path / "x.gff3", genes, {"chr1": 700, "chr 2": 50})
    dup = {"chr1": genes["chr1"], "chr 2": [genes["chr1"][0]]}
    with pytest.raises(ValueError, match="duplicate gene ID"):
        write_gff3(tmp_path / "x.gff3", dup, {"chr1": 1000, "chr 2": 1000})


def test_stop_codons_can_be_excluded_when_reading(tmp_path: Path) -> None:
    path = tmp_path / "aug.gff3"
    path.write_text("##gff-version 3\n"
                    "s\tAUGUSTUS\tgene\t11\t100\t0.8\t-\t.\tID=g1\n"
                    "s\tAUGUSTUS\ttranscript\t11\t100\t0.8\t-\t.\tID=g1.t1;Parent=g1\n"
                    "s\tAUGUSTUS\tstop_codon\t11\t13\t.\t-\t0\tParent=g1.t1\n"
                    "s\tAUGUSTUS\tCDS\t11\t40\t1\t-\t0\tID=g1.t1.cds;Parent=g1.t1\n"
                    "s\tAUGUSTUS\tCDS\t61\t100\t1\t-\t0\tID=g1.t1.cds;Parent=g1.t1\n")
    assert read_gff3(path)["s"][0].cds == ((10, 40), (60, 100))
    assert read_gff3(path, exclude_stop_codon=True)["s"][0].cds == ((13, 40), (60, 100))


def test_labels_and_transcripts_are_inverse() -> None:
    t = Transcript("g", "s", 1, cds=((20, 50), (70, 90)), exons=((10, 50), (70, 100)))
    for c in (3, 5):
        labels = labels_from_transcripts(120, [t], c)
        back = transcripts_from_labels(labels, "s")
        assert len(back) == 1 and back[0].cds == t.cds
        assert back[0].exons == (t.exons if c == 5 else t.cds)
    lab5 = labels_from_transcripts(120, [t], 5)
    assert lab5[10] == UTR5 and lab5[95] == UTR3 and lab5[60] == INTRON and lab5[30] == EXON
    # stray introns at a gene's ends are dropped, coding-free stretches are not genes
    labels = np.array([0, 2, 2, 1, 1, 2, 1, 2, 0, 2, 2, 0])
    genes = transcripts_from_labels(labels, "s")
    assert [(g.cds, g.exons) for g in genes] == [(((3, 5), (6, 7)), ((3, 5), (6, 7)))]
    # minus strand: reverse complement twice is the identity
    m = t.reverse_complemented(120)
    assert m.strand == -1 and m.reverse_complemented(120) == t
    assert reverse_complement("AACGTN") == "NACGTT"


def test_window_bounds_cover_the_sequence() -> None:
    assert predict_mod.window_bounds(50, 100, 10) == [(0, 50)]
    bounds = predict_mod.window_bounds(1000, 300, 50)
    assert bounds[0][0] == 0 and bounds[-1][1] == 1000
    assert all(e - s == 300 for s, e in bounds)
    assert all(b[0] < a[1] for a, b in zip(bounds, bounds[1:]))
    with pytest.raises(ValueError, match="overlap"):
        predict_mod.window_bounds(1000, 100, 100)


def test_stitched_windows_equal_the_whole_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake decoder that knows the truth but is wrong near every window edge (as a model
    # without context there is): stitching must take each base from a window where it is
    # far from the edge, and so reproduce the truth exactly.
    rng = np.random.default_rng(0)
    truth = np.repeat(rng.integers(0, 3, size=300), rng.integers(5, 40, size=300))
    tokens = rng.integers(0, 4, size=truth.size).astype(np.uint8)
    edge = 15
    index = {tokens[i:i + 200].tobytes(): i for i in range(truth.size - 199)}

    def fake(pred, windows, scores=True):
        labels, post = [], []
        for w in windows:
            at = index[w.tobytes()] if w.size == 200 else 0
            lab = truth[at:at + w.size].copy()
            if at > 0:
                lab[:edge] = (lab[:edge] + 1) % 3
            if at + w.size < truth.size:
                lab[-edge:] = (lab[-edge:] + 1) % 3
            labels.append(lab)
            post.append(np.eye(3)[lab])
        return np.stack(labels), np.stack(post)

    monkeypatch.setattr(predict_mod, "_decode_batch", fake)
    pred = predict_mod.Predictor(model=None, features="onehot", num_labels=3, device=None)
    labels, post = predict_mod.decode_sequence(pred, tokens, window=200, overlap=60, batch_size=3)
    np.testing.assert_array_equal(labels, truth)
    np.testing.assert_array_equal(post.argmax(1), truth)


def test_both_strands_keep_the_better_of_overlapping_genes(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    seq = random_dna(300, np.random.default_rng(1))
    plus_labels = np.zeros(300, dtype=np.int64)
    plus_labels[50:100] = EXON
    minus_labels = np.zeros(300, dtype=np.int64)
    minus_labels[220:260] = EXON  # (40, 80) on the forward strand: overlaps the plus gene
    minus_labels[20:40] = EXON  # (260, 280) forward: no rival

    def fake_decode(pred, tokens, **kw):
        forward = np.array_equal(tokens, predict_mod.encode_bases(seq, "x"))
        labels = plus_labels if forward else minus_labels
        s = 0.6 if forward else 0.9
        post = np.eye(3)[labels] * s + (1 - s) / 3
        return labels, post

    monkeypatch.setattr(predict_mod, "decode_sequence", fake_decode)
    pred = predict_mod.Predictor(model=None, features="onehot", num_labels=3, device=None)
    one = predict_mod.predict_genes(pred, {"s": seq})["s"]
    assert [(g.strand, g.cds) for g in one] == [(1, ((50, 100),))]
    both = predict_mod.predict_genes(pred, {"s": seq}, both_strands=True)["s"]
    assert [(g.gene_id, g.strand, g.cds) for g in both] == [
        ("s.g1", -1, ((40, 80),)), ("s.g2", -1, ((260, 280),))]
    # rivals are found by bisection over each strand's sorted, disjoint genes
    genes = [predict_mod.Transcript(f"p{i}", "s", 1, ((s, s + 10),), ((s, s + 10),), score=0.5)
             for i, s in enumerate(range(0, 200, 20))]
    rivals = [predict_mod.Transcript(f"m{i}", "s", -1, ((s, s + 10),), ((s, s + 10),), score=sc)
              for i, (s, sc) in enumerate([(5, 0.9), (45, 0.1), (95, 0.9), (150, 0.5)])]
    kept = {g.gene_id for g in predict_mod._resolve_strands(genes, rivals)}
    assert kept == ({f"p{i}" for i in range(10)} - {"p0", "p5"}) | {"m0", "m2", "m3"}
    assert INTERGENIC == 0


@needs_gt
def test_predict_cli_end_to_end_with_a_trained_checkpoint(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from semicrf.pipeline import RunConfig, run_benchmark

    write_genbank(tmp_path / "t.gb", toy_records(np.random.default_rng(3), n=10))
    data = import_dataset(tmp_path / "data", genbank=tmp_path / "t.gb", seq_length=200, seed=0)
    # `semicrf run` trains on imported data unchanged
    run_benchmark(RunConfig(data_dir=str(data), output_dir=str(tmp_path / "run"),
                            encoder="bilstm", max_duration=16, hidden_dim=8, num_layers=1,
                            batch_size=4, lr=3e-3, epochs=1, device="cpu"))
    for name in ("softmax", "linear", "semicrf_uniform"):  # every head decodes and scores
        pred = predict_mod.load_predictor(tmp_path / "run" / "checkpoints" / f"{name}_best.pt")
        labels, post = predict_mod.decode_sequence(pred, np.arange(500, dtype=np.uint8) % 4,
                                                   window=200, overlap=40)
        assert labels.shape == (500,) and set(labels.tolist()) <= {0, 1, 2}
        np.testing.assert_allclose(post.sum(axis=1), 1.0, atol=1e-6)
        unscored, none = predict_mod.decode_sequence(pred, np.arange(500, dtype=np.uint8) % 4,
                                                     window=200, overlap=40, scores=False)
        assert none is None and np.array_equal(unscored, labels)
    ckpt = tmp_path / "run" / "checkpoints" / "semicrf_best.pt"
    # two sequences; the second longer than one window, so it is stitched
    fasta = write_fasta(tmp_path / "in.fa", {"short": random_dna(150, np.random.default_rng(0)),
                                             "long": random_dna(900, np.random.default_rng(1))})
    out = tmp_path / "pred.gff3"
    rc = cli_main(["predict", "--checkpoint", str(ckpt),
                   "--fasta", str(fasta), "--output", str(out), "--both-strands",
                   "--window", "300", "--overlap", "60"])
    assert rc == 0 and "genes on 2 sequences" in capsys.readouterr().out
    _validate(out)
    assert set(read_gff3(out)) <= {"short", "long"}
    rc = cli_main(["predict", "--checkpoint", str(tmp_path / "missing.pt"), "--fasta", str(fasta),
                   "--output", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "checkpoint" in err and "Traceback" not in err
    rc = cli_main(["predict", "--checkpoint", str(ckpt),
                   "--fasta", str(fasta), "--output", str(out), "--window", "10",
                   "--overlap", "10"])
    assert rc == 2 and "overlap" in capsys.readouterr().err
