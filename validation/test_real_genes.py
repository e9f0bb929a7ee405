"""Pre-registered claims of the real-genes benchmark (``make real-genes``), as assertions.

Fixed before the first run (constants and rules in :mod:`semicrf.genomes.benchmark`,
:data:`~semicrf.genomes.benchmark.CLAIMS`): on the Drosophila test loci,

1. ``real_intron_kl_vs_uniform``: semicrf's intron length distribution is closer to the truth
   than semicrf_uniform's: KL over log-spaced length bins (no clamping), difference
   uniform - semicrf, 95% paired-bootstrap CI over test loci (2000 resamples) above 0;
2. ``real_boundary_f1_vs_uniform``: boundary F1 (exact) semicrf - semicrf_uniform, same
   bootstrap, CI above 0;
3. ``real_intron_peak``: semicrf recovers the short-intron peak: the mode of its predicted
   intron lengths (5 bp bins up to 500 bp) lies within 10 bp of the true mode;
4. ``real_exon_f1_vs_linear`` (added before run 2, the gene model): exon F1 (Burset-Guigo,
   exact coordinates) semicrf - linear, same bootstrap, CI above 0.

The tests read ``report.json`` of a finished run (``$SEMICRF_REAL_GENES_RESULTS``, default
``results/real_genes``) and are skipped when there is none: the run takes about an hour.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from semicrf.genomes.benchmark import CLAIMS

pytestmark = pytest.mark.validation

RESULTS = Path(os.environ.get("SEMICRF_REAL_GENES_RESULTS",
                              Path(__file__).resolve().parent.parent / "results" / "real_genes"))


@pytest.fixture(scope="module")
def claims() -> dict:
    report = RESULTS / "report.json"
    if not report.is_file():
        pytest.skip(f"no real-genes report at {report}: run `make real-genes` first (about an hour)")
    data = json.loads(report.read_text())
    if data["scale"]["name"] != "full":
        pytest.skip(f"{report} is a {data['scale']['name']!r} run; the claims are about the full scale")
    return data["claims"]


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_real_genes_claim(claims: dict, claim_id: str) -> None:
    claim = claims[claim_id]
    assert claim["passed"], f"{claim_id}: {CLAIMS[claim_id]}; got {claim}"
