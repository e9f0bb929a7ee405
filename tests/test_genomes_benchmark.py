"""The real-genes benchmark's evaluation and claims (without training), and the AUGUSTUS runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from genome_files import random_dna

from semicrf.genomes import benchmark as bm
from semicrf.genomes.annotation import Transcript, transcripts_from_labels
from semicrf.genomes.readers import read_gff3
from semicrf.genomes.writers import write_fasta

pytestmark = pytest.mark.fast


def _locus(rng: np.random.Generator, intron: tuple[int, int]) -> np.ndarray:
    """Labels of one locus: flank, 3-5 exons with introns of length in ``intron``, flank."""
    parts = [np.zeros(int(rng.integers(100, 300)), dtype=np.int64)]
    n = int(rng.integers(3, 6))
    for i in range(n):
        parts.append(np.ones(int(rng.integers(80, 200)), dtype=np.int64))
        if i < n - 1:
            parts.append(np.full(int(rng.integers(*intron)), 2, dtype=np.int64))
    parts.append(np.zeros(int(rng.integers(100, 300)), dtype=np.int64))
    return np.concatenate(parts)


def _annotations(rng: np.random.Generator, n: int) -> tuple[dict, dict, dict]:
    """(reference, the reference with every exon moved 1 bp, lengths) of ``n`` random loci."""
    labels = {f"l{i}": _locus(rng, (50, 400)) for i in range(n)}
    reference = {k: transcripts_from_labels(v, k) for k, v in labels.items()}
    shifted = {k: [Transcript(t.gene_id, k, 1, tuple((s + 1, e + 1) for s, e in t.cds),
                              tuple((s + 1, e + 1) for s, e in t.exons)) for t in v]
               for k, v in reference.items()}
    return reference, shifted, {k: v.size for k, v in labels.items()}


def test_claims_pass_for_a_better_model_and_fail_otherwise() -> None:
    rng = np.random.default_rng(0)
    truth = [_locus(rng, (55, 75)) for _ in range(40)]
    # a model that finds the genes but gets intron lengths wrong: every intron end 150 bp late
    worse = []
    for x in truth:
        y = x.copy()
        runs = np.flatnonzero(np.diff(x) != 0) + 1
        for s, e in zip(runs[:-1], runs[1:]):
            if x[s] == 2:
                y[e:e + 150] = 2
        worse.append(y)
    good = bm.decide_claims(truth, {"semicrf": truth, "semicrf_uniform": worse}, n_boot=200)
    assert all(c["passed"] for c in good.values()), good
    assert good["real_intron_peak"]["true_mode"] == good["real_intron_peak"]["semicrf_mode"]
    bad = bm.decide_claims(truth, {"semicrf": worse, "semicrf_uniform": truth}, n_boot=200)
    assert not any(c["passed"] for c in bad.values()), bad


def test_evaluate_methods_and_the_report_table() -> None:
    reference, shifted, lengths = _annotations(np.random.default_rng(1), 6)
    ev = bm.evaluate_methods(reference, {"semicrf": reference, "semicrf_uniform": shifted,
                                         "augustus": {}}, lengths, max_duration=100)
    perfect, off, none = (ev["methods"][m] for m in ("semicrf", "semicrf_uniform", "augustus"))
    assert perfect["boundary_f1"] == 1.0 and perfect["gene_level"]["gene_sn"] == 1.0
    assert off["gene_level"]["exon_sn"] == 0.0 and off["gene_level"]["gene_sp"] == 0.0
    assert none["gene_level"]["gene_sn"] == 0.0 and none["gene_level"]["n_gene_pred"] == 0
    assert ev["claims"]["real_boundary_f1_vs_uniform"]["passed"]
    report = {"num_test_loci": 6, "scale": {"name": "smoke"}, "methods": ev["methods"],
              "claims": ev["claims"], "command": "x", "wall_s": 60.0}
    text = bm.report_markdown(report)
    assert "| semicrf | 1.000 |" in text and "real_intron_peak" in text and "| augustus |" in text


def test_exon_f1_claim_compares_semicrf_with_linear() -> None:
    reference, shifted, lengths = _annotations(np.random.default_rng(2), 8)
    for semicrf, linear, passed in ((reference, shifted, True), (shifted, reference, False)):
        ev = bm.evaluate_methods(reference, {"semicrf": semicrf, "semicrf_uniform": shifted,
                                             "linear": linear}, lengths, max_duration=100)
        claim = ev["claims"]["real_exon_f1_vs_linear"]
        assert claim["passed"] is passed
        assert claim["estimate"] == pytest.approx(ev["methods"]["semicrf"]["exon_f1"]
                                                  - ev["methods"]["linear"]["exon_f1"])
    assert ev["methods"]["linear"]["exon_f1"] == 1.0 and ev["methods"]["semicrf"]["exon_f1"] == 0.0


@pytest.mark.skipif(shutil.which("augustus") is None,
                    reason="augustus is not installed (apt-get install augustus augustus-data)")
def test_augustus_runs_and_its_output_is_read(tmp_path: Path) -> None:
    from semicrf.genomes.augustus import augustus_version, run_augustus

    fasta = write_fasta(tmp_path / "x.fa", {"r1": random_dna(3000, np.random.default_rng(0)).lower()})
    out = run_augustus(fasta, tmp_path / "aug.gff3")
    genes = read_gff3(out, exclude_stop_codon=True)
    assert all(t.strand == 1 for ts in genes.values() for t in ts)  # --strand=forward
    assert augustus_version() != "unknown"
    with pytest.raises(RuntimeError, match="augustus exited with status"):
        run_augustus(fasta, tmp_path / "bad.gff3", species="no_such_species")
    assert not (tmp_path / "bad.gff3").exists()
