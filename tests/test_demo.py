"""The demo's semicrf finds exon boundaries exactly (``make demo`` must show models that
differ). The threshold was fixed from one pilot run of the demo's settings (2026-12-04: exact
boundary F1 0.761 for semicrf, 0.783 linear, 0.12 semicrf_uniform, 0.02 softmax) before this
test was written."""

from __future__ import annotations

import json

from semicrf.cli import main as cli_main
from semicrf.demo import GENERATE_ARGS, RUN_ARGS

DEMO_SEMICRF_MIN_BOUNDARY_F1 = 0.5


def test_demo_semicrf_places_exon_edges_exactly(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    assert cli_main(["generate", "--output-dir", str(data), *GENERATE_ARGS, "--quiet"]) == 0
    run = ["run", "--data-dir", str(data), "--output-dir", str(out), *RUN_ARGS,
           "--models", "semicrf", "--quiet"]
    assert cli_main(run) == 0
    metrics = json.loads((out / "metrics.json").read_text())["models"]["semicrf"]["metrics"]
    assert metrics["boundary_f1"] > DEMO_SEMICRF_MIN_BOUNDARY_F1
