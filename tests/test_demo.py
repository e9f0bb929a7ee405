"""The demo's semicrf finds exon boundaries (``make demo`` must show models that differ)."""

from __future__ import annotations

import json

from semicrf.cli import main as cli_main
from semicrf.demo import GENERATE_ARGS, RUN_ARGS


def test_demo_semicrf_has_nonzero_boundary_f1(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    assert cli_main(["generate", "--output-dir", str(data), *GENERATE_ARGS, "--quiet"]) == 0
    run = ["run", "--data-dir", str(data), "--output-dir", str(out), *RUN_ARGS,
           "--models", "semicrf", "--quiet"]
    assert cli_main(run) == 0
    metrics = json.loads((out / "metrics.json").read_text())["models"]["semicrf"]["metrics"]
    assert metrics["boundary_f1"] > 0.0
