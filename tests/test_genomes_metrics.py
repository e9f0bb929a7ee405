"""Gene-level Burset–Guigó metrics, on our GFF3 and on AUGUSTUS's GFF3 alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semicrf.genomes.annotation import Transcript, labels_from_transcripts, transcripts_from_labels
from semicrf.genomes.gene_metrics import COUNT_FIELDS, compare_annotations, gene_level_counts
from semicrf.genomes.readers import read_gff3
from semicrf.genomes.writers import write_gff3
from semicrf.metrics import evaluate

pytestmark = pytest.mark.fast


def _t(gid: str, cds: list[tuple[int, int]], strand: int = 1, seqid: str = "s") -> Transcript:
    return Transcript(gid, seqid, strand, tuple(cds), tuple(cds))


def test_counts_by_hand() -> None:
    ref = {"s": [_t("r1", [(10, 20), (30, 40), (50, 60)]), _t("r2", [(100, 130)])],
           "u": [_t("r3", [(5, 15)], seqid="u")]}
    pred = {"s": [_t("p1", [(10, 20), (30, 41), (50, 60)]),  # one exon end wrong
                  _t("p2", [(100, 130)]),  # exact
                  _t("p3", [(200, 210)])],  # wrong exon, wrong gene
            "u": [_t("p4", [(5, 15)], strand=-1, seqid="u")]}  # wrong strand
    m = compare_annotations(ref, pred)
    assert (m["exon_sn"], m["exon_sp"]) == (3 / 5, 3 / 6)
    assert (m["intron_sn"], m["intron_sp"]) == (1 / 2, 1 / 2)  # (40, 50) became (41, 50)
    assert (m["gene_sn"], m["gene_sp"]) == (1 / 3, 1 / 4)
    assert m["missing_exons"] == 1 / 5  # r3's exon: nothing on its strand overlaps it
    assert m["wrong_exons"] == 2 / 6  # (200, 210) and the minus-strand exon
    counts = gene_level_counts(ref, pred)
    assert counts.shape == (2, len(COUNT_FIELDS))
    empty = compare_annotations({"s": []}, {"s": []})
    assert empty["exon_sn"] == empty["gene_sp"] == 1.0


def test_exon_metrics_agree_with_the_label_level_implementation() -> None:
    # two independent implementations: transcripts (here) vs label runs (semicrf.metrics)
    rng = np.random.default_rng(0)
    ref_labels, pred_labels, ref, pred = [], [], {}, {}
    for i in range(20):
        truth = np.repeat(rng.choice([0, 1, 2], size=40), rng.integers(3, 30, size=40))
        noisy = truth.copy()
        flip = rng.random(truth.size) < 0.01
        noisy[flip] = rng.integers(0, 3, size=int(flip.sum()))
        seqid = f"s{i}"
        ref[seqid] = transcripts_from_labels(truth, seqid)
        pred[seqid] = transcripts_from_labels(noisy, seqid)
        # the labels the transcripts stand for (stray introns and coding-free stretches gone)
        ref_labels.append(labels_from_transcripts(truth.size, ref[seqid], 3))
        pred_labels.append(labels_from_transcripts(noisy.size, pred[seqid], 3))
    ours = compare_annotations(ref, pred)
    theirs = evaluate(pred_labels, ref_labels, 3, 50)
    assert ours["exon_sn"] == pytest.approx(theirs["exon_sensitivity"])
    assert ours["exon_sp"] == pytest.approx(theirs["exon_specificity"])
    assert 0 < ours["exon_sn"] < 1


AUGUSTUS_GFF3 = """##gff-version 3
# a gene prediction on strand + (AUGUSTUS 3.5.0 --gff3=on output, shortened)
loc1\tAUGUSTUS\tgene\t1001\t1902\t0.81\t+\t.\tID=g1
loc1\tAUGUSTUS\ttranscript\t1001\t1902\t0.81\t+\t.\tID=g1.t1;Parent=g1
loc1\tAUGUSTUS\tstart_codon\t1001\t1003\t.\t+\t0\tParent=g1.t1
loc1\tAUGUSTUS\tintron\t1388\t1562\t1\t+\t.\tParent=g1.t1
loc1\tAUGUSTUS\tintron\t1840\t1891\t0.81\t+\t.\tParent=g1.t1
loc1\tAUGUSTUS\tCDS\t1001\t1387\t1\t+\t0\tID=g1.t1.cds;Parent=g1.t1
loc1\tAUGUSTUS\tCDS\t1563\t1839\t1\t+\t0\tID=g1.t1.cds;Parent=g1.t1
loc1\tAUGUSTUS\tCDS\t1892\t1902\t0.81\t+\t2\tID=g1.t1.cds;Parent=g1.t1
loc1\tAUGUSTUS\tstop_codon\t1900\t1902\t.\t+\t0\tParent=g1.t1
"""


def test_augustus_output_and_ours_are_read_alike(tmp_path: Path) -> None:
    aug = tmp_path / "aug.gff3"
    aug.write_text(AUGUSTUS_GFF3)
    # the reference as a GenBank training file has it: CDS without the stop codon
    ref = {"loc1": [_t("38", [(1000, 1387), (1562, 1839), (1891, 1899)], seqid="loc1")]}
    ours = write_gff3(tmp_path / "ours.gff3", ref, {"loc1": 3000})
    assert compare_annotations(ref, read_gff3(ours))["gene_sn"] == 1.0
    got = read_gff3(aug, exclude_stop_codon=True)
    m = compare_annotations(ref, got)
    assert (m["exon_sn"], m["intron_sn"], m["gene_sn"], m["gene_sp"]) == (1.0, 1.0, 1.0, 1.0)
    m = compare_annotations(ref, read_gff3(aug))  # stop codon kept: the last exon is 3 bp longer
    assert (m["exon_sn"], m["gene_sn"]) == (2 / 3, 0.0)
