"""`semicrf import`: strand handling, labels, split by locus, windows, censoring, errors."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from genome_files import GeneSpec, random_dna, toy_records, write_fasta_gff3, write_genbank
from scipy.stats import chisquare

from semicrf.cli import main as cli_main
from semicrf.data import load_split, read_meta
from semicrf.genomes.annotation import Transcript, labels_from_transcripts, reverse_complement
from semicrf.genomes.importer import import_dataset, window_segments, window_starts
from semicrf.genomes.readers import encode_bases, read_fasta, read_gff3
from semicrf.labels import EXON, INTERGENIC, INTRON, UTR3, UTR5, label_runs

pytestmark = pytest.mark.fast


def _stream(out: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Tokens and labels of a split's loci laid end to end, from the loci files."""
    meta = read_meta(out)
    seqs = read_fasta(out / f"{split}.loci.fa")
    genes = read_gff3(out / f"{split}.loci.gff3")
    names = [x["name"] for x in meta["splits"][split]["loci"]]
    tokens = np.concatenate([encode_bases(seqs[n], n) for n in names])
    labels = np.concatenate([labels_from_transcripts(len(seqs[n]), genes[n], meta["num_classes"])
                             for n in names])
    return tokens, labels


def test_genbank_import_orients_labels_and_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    records = toy_records(rng, n=12)
    write_genbank(tmp_path / "toy.gb", records)
    out = import_dataset(tmp_path / "data", genbank=tmp_path / "toy.gb", seq_length=300, seed=3)
    meta = read_meta(out)
    by_name = {rid: (seq, genes[0]) for rid, seq, genes in records}
    seen = []
    for split in ("train", "val", "test"):
        info = meta["splits"][split]
        seqs = read_fasta(out / f"{split}.loci.fa")
        for locus in info["loci"]:
            seq, gene = by_name[locus["name"]]
            seen.append(locus["name"])
            assert locus["strand"] == ("+" if gene.strand == 1 else "-")
            # minus-strand loci are reverse-complemented; the gene then reads forward
            assert seqs[locus["name"]] == (seq if gene.strand == 1 else reverse_complement(seq))
        # every window is the stream's slice, with its labels and censoring flags
        tokens, labels = _stream(out, split)
        recs = load_split(out, split)
        assert len(recs) == info["num_sequences"] >= 1
        for rec, start in zip(recs, info["window_starts"]):
            np.testing.assert_array_equal(rec.tokens, tokens[start:start + 300])
            np.testing.assert_array_equal(rec.labels, labels[start:start + 300])
            cut_first = start == 0 or labels[start - 1] == labels[start]
            end = start + 300
            cut_last = end == labels.size or labels[end] == labels[end - 1]
            assert info["first_segment_censored"][rec.index] == cut_first
            assert rec.last_segment_censored == cut_last
    assert sorted(seen) == sorted(by_name)  # each locus in exactly one split


def test_exon_and_intron_labels_of_a_minus_strand_gene(tmp_path: Path) -> None:
    seq = random_dna(400, np.random.default_rng(1))
    gene = GeneSpec("m", -1, [(100, 150), (200, 260)])
    write_genbank(tmp_path / "m.gb", [("a", seq, [gene]), ("b", seq, [GeneSpec("p", 1, [(10, 50)])]),
                                      ("c", seq, [GeneSpec("q", 1, [(10, 50)])])])
    out = import_dataset(tmp_path / "d", genbank=tmp_path / "m.gb", seq_length=100,
                         split=(0.34, 0.33, 0.33), seed=0)
    split = next(s for s, v in read_meta(out)["splits"].items() if v["loci"][0]["name"] == "a")
    genes = read_gff3(out / f"{split}.loci.gff3")["a"]
    labels = labels_from_transcripts(400, genes, 3)
    expected = np.zeros(400, dtype=np.int64)
    expected[140:200] = EXON  # (200, 260) on the minus strand is (140, 200) oriented
    expected[200:250] = INTRON
    expected[250:300] = EXON
    np.testing.assert_array_equal(labels, expected)
    assert [g.gene_id for g in genes] == ["a.m"]  # locus name + the file's gene ID


def test_gene_ids_repeated_across_records_stay_unique(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    records = [(f"r{i}", random_dna(300, rng), [GeneSpec("same", 1, [(50, 120), (180, 240)])])
               for i in range(6)]
    write_genbank(tmp_path / "s.gb", records)
    out = import_dataset(tmp_path / "d", genbank=tmp_path / "s.gb", seq_length=200, seed=0)
    ids = [t.gene_id for split in ("train", "val", "test")
           for ts in read_gff3(out / f"{split}.loci.gff3").values() for t in ts]
    assert sorted(ids) == [f"r{i}.same" for i in range(6)]


def test_five_classes_label_utrs(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    records = toy_records(rng, n=6, utr=True)
    write_fasta_gff3(tmp_path / "g.fa", tmp_path / "g.gff3", records)
    out = import_dataset(tmp_path / "d", fasta=tmp_path / "g.fa", gff3=tmp_path / "g.gff3",
                         num_classes=5, seq_length=200, split=(0.5, 0.17, 0.33), seed=1)
    for split in ("train", "val", "test"):
        _, labels = _stream(out, split)
        runs = [c for i, c in enumerate(labels) if i == 0 or labels[i - 1] != c]
        # every gene reads utr5, exon, (intron, exon)*, utr3 between intergenic runs
        text = "".join(str(c) for c in runs)
        genes = [g for g in text.split(str(INTERGENIC)) if g]
        assert genes and all(g.startswith(f"{UTR5}{EXON}") and g.endswith(f"{EXON}{UTR3}")
                             for g in genes)
    with pytest.raises(ValueError, match="needs UTRs"):
        write_genbank(tmp_path / "n.gb", toy_records(rng, n=4))
        import_dataset(tmp_path / "e", genbank=tmp_path / "n.gb", num_classes=5, seq_length=100)


def test_import_is_deterministic_and_the_cli_matches_the_library(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture
                                                                 ) -> None:
    write_genbank(tmp_path / "t.gb", toy_records(np.random.default_rng(4), n=10))

    def digest(d: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}

    a = import_dataset(tmp_path / "a", genbank=tmp_path / "t.gb", seq_length=250, seed=5)
    rc = cli_main(["import", "--genbank", str(tmp_path / "t.gb"), "--output-dir",
                   str(tmp_path / "b"), "--seq-length", "250", "--seed", "5"])
    assert rc == 0 and "imported 10 loci" in capsys.readouterr().out
    meta_a, meta_b = (json.loads((d / "meta.json").read_text()) for d in (a, tmp_path / "b"))
    for m in (meta_a, meta_b):
        for f in m["source"]["files"]:
            f.pop("path")
    assert meta_a == meta_b
    assert {k: v for k, v in digest(a).items() if k != "meta.json"} == \
           {k: v for k, v in digest(tmp_path / "b").items() if k != "meta.json"}
    c = import_dataset(tmp_path / "c", genbank=tmp_path / "t.gb", seq_length=250, seed=6)
    assert read_meta(c)["splits"]["test"]["loci"] != meta_a["splits"]["test"]["loci"]


def test_window_segments_flags_cut_runs() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2, 2, 0, 0, 0])
    assert window_segments(labels, 0, 4) == ([[0, 2, 0], [2, 4, 1]], True, True, 3)
    assert window_segments(labels, 2, 5) == ([[0, 3, 1], [3, 5, 2]], False, False, 2)
    assert window_segments(labels, 6, 4) == ([[0, 1, 2], [1, 4, 0]], True, True, 3)


def test_window_starts_stay_inside_and_do_not_overlap() -> None:
    rng = np.random.default_rng(0)
    for length in (100, 101, 250, 1000, 5003):
        starts = window_starts(length, 100, rng)
        assert starts.size >= 1 and starts[0] >= 0 and starts[-1] + 100 <= length
        gaps = np.diff(starts) - 100
        assert (gaps >= 0).all() and (gaps <= 100 // 8).all()


def _boundary_position_counts(segments_per_window: list[list[list[int]]], length: int) -> np.ndarray:
    counts = np.zeros(length, dtype=np.int64)
    for segs in segments_per_window:
        for s, _, _ in segs[1:]:
            counts[s] += 1
    return counts


def _max_bin_share(counts: np.ndarray, width: int = 10) -> float:
    """The busiest bin of ``width`` positions over the mean bin (about 1.5 when uniform)."""
    bins = counts[: counts.size // width * width].reshape(-1, width).sum(axis=1)
    return float(bins.max() / bins.mean())


def test_no_boundary_position_is_over_represented(tmp_path: Path) -> None:
    # The prototype's leak: every locus starts a fixed 200 bases before its gene. Windows
    # cut at locus starts put a boundary at position 200 of every window; ours must not.
    rng = np.random.default_rng(7)
    records = []
    for i in range(300):
        parts, at = [], 200
        for _ in range(int(rng.integers(2, 5))):
            n = int(rng.integers(40, 200))
            parts.append((at, at + n))
            at += n + int(rng.integers(40, 300))
        total = parts[-1][1] + int(rng.integers(100, 600))
        records.append((f"r{i:03d}", random_dna(total, rng), [GeneSpec(f"g{i}", 1, parts)]))
    write_genbank(tmp_path / "fixed.gb", records)
    length = 600
    out = import_dataset(tmp_path / "d", genbank=tmp_path / "fixed.gb", seq_length=length,
                         split=(0.8, 0.1, 0.1), seed=0)
    info = read_meta(out)["splits"]["train"]
    ours = _boundary_position_counts(info["segments"], length)
    assert ours.sum() > 1000
    # the control: windows that start at each locus start (the prototype's construction)
    control = []
    for rid, seq, genes in records:
        t = Transcript(genes[0].name, rid, 1, tuple(genes[0].cds), tuple(genes[0].cds))
        control.append(label_runs(labels_from_transcripts(len(seq), [t], 3)[:length]))
    fixed = _boundary_position_counts(control, length)
    assert fixed[200] == len(records)
    assert _max_bin_share(fixed) > 5  # the statistic detects the leak...
    assert _max_bin_share(ours) < 2  # ...and ours has none
    # boundary positions are uniform over the window: chi-square over 12 bins
    edges = np.linspace(1, length, 13).astype(int)
    observed = np.add.reduceat(ours, edges[:-1])
    expected = observed.sum() * np.diff(edges) / (length - 1)
    assert chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.parametrize("case, message", [
    ("malformed_genbank", "not a valid GenBank file|no GenBank record"),
    ("protein", "unknown alphabet: letter 'E'"),
    ("overlap_genbank", "overlapping genes 'g1'"),
    ("outside_genbank", "lies outside the sequence"),
    ("outside_gff3", "lies outside the sequence"),
    ("overlap_gff3", "overlapping genes"),
    ("bad_gff3_columns", "line 2: a GFF3 feature line needs 9 tab-separated columns"),
    ("bad_gff3_coordinates", "line 2: start and end must be integers"),
    ("unknown_seqid", "seqid 'chrX' is not a record"),
    ("not_fasta", "not a FASTA file"),
])
def test_import_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, case: str,
                                    message: str) -> None:
    rng = np.random.default_rng(0)
    seq = random_dna(500, rng)
    gb, fa, gff = tmp_path / "x.gb", tmp_path / "x.fa", tmp_path / "x.gff3"
    fa.write_text(f">chr1\n{seq}\n")
    gene_line = "chr1\tt\tgene\t101\t400\t.\t+\t.\tID=g1\n"
    kind = "genbank"
    if case == "malformed_genbank":
        gb.write_text("LOCUS       broken\nFEATURES   nonsense\n//\n")
    elif case == "protein":
        write_genbank(gb, [("p", "MEEKLV" * 20, [GeneSpec("g1", 1, [(0, 30)])])])
    elif case == "overlap_genbank":
        write_genbank(gb, [("o", seq, [GeneSpec("g1", 1, [(10, 200)]),
                                       GeneSpec("g2", -1, [(150, 300)])])])
    elif case == "outside_genbank":
        write_genbank(gb, [("o", seq, [GeneSpec("g1", 1, [(10, 200)])])])
        text = gb.read_text().replace("11..200", "11..900")
        gb.write_text(text)
    else:
        kind = "gff3"
        body = {
            "outside_gff3": gene_line + "chr1\tt\tCDS\t101\t700\t.\t+\t0\tParent=g1\n",
            "overlap_gff3": gene_line + "chr1\tt\tCDS\t101\t400\t.\t+\t0\tParent=g1\n"
                            "chr1\tt\tgene\t301\t450\t.\t-\t.\tID=g2\n"
                            "chr1\tt\tCDS\t301\t450\t.\t-\t0\tParent=g2\n",
            "bad_gff3_columns": "chr1\tt\tgene\t101\n",
            "bad_gff3_coordinates": "chr1\tt\tgene\tabc\t400\t.\t+\t.\tID=g1\n",
            "unknown_seqid": "chrX\tt\tgene\t1\t40\t.\t+\t.\tID=g1\n"
                             "chrX\tt\tCDS\t1\t40\t.\t+\t0\tParent=g1\n",
            "not_fasta": gene_line,
        }[case]
        gff.write_text("##gff-version 3\n" + body)
        if case == "not_fasta":
            fa.write_text("ACGT\n")
    argv = (["--genbank", str(gb)] if kind == "genbank" else ["--fasta", str(fa), "--gff3", str(gff)])
    rc = cli_main(["import", *argv, "--output-dir", str(tmp_path / "out"), "--seq-length", "100"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("semicrf import: error: ")
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "meta.json").exists()


def test_import_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either --genbank"):
        import_dataset(tmp_path, seq_length=10)
    with pytest.raises(ValueError, match="go together"):
        import_dataset(tmp_path, fasta="x.fa", seq_length=10)
    write_genbank(tmp_path / "t.gb", toy_records(np.random.default_rng(0), n=10))
    with pytest.raises(ValueError, match="fewer than one window"):
        import_dataset(tmp_path / "o", genbank=tmp_path / "t.gb", seq_length=100000)
    with pytest.raises(ValueError, match="fractions summing to 1"):
        import_dataset(tmp_path / "o", genbank=tmp_path / "t.gb", split=(0.5, 0.5))
    with pytest.raises(ValueError, match="leaves a split empty"):
        import_dataset(tmp_path / "o", genbank=tmp_path / "t.gb", split=(1.0, 0.0, 0.0))
