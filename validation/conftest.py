"""The validation suite's session fixture: one experiment per pytest run, cached on disk.

Options (registered by the package's pytest plugin, :mod:`semicrf.pytest_plugin`):
``--validation-scale cpu|smoke|full``, ``--validation-workers N``, ``--validation-rebuild``,
``--generator-config FILE``.
The experiment, the claims and the report are defined in :mod:`semicrf.validation`; the
tests here only assert verdicts.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from semicrf import validation as v
from semicrf.data import read_overrides_file

ROOT = Path(__file__).resolve().parent.parent
#: Where experiments are cached (``<scale>-<hash>/``) and ``latest_<scale>.md`` is written.
RESULTS_ROOT = Path(os.environ.get("SEMICRF_VALIDATION_RESULTS", ROOT / "validation_results"))

log = logging.getLogger(__name__)


@dataclass
class ValidationOutcome:
    """The trained experiment, its decided claims (by id) and the report files."""

    result: v.ExperimentResult
    claims: dict[str, v.Claim]
    report: dict[str, Path]


@pytest.fixture(scope="session")
def validation_outcome(request: pytest.FixtureRequest) -> ValidationOutcome:
    """Generate, train, evaluate (or load the cache), decide the claims, write the report."""
    started = time.perf_counter()
    config = request.config
    scale = v.SCALES[config.getoption("--validation-scale")]
    if scale.run.device is None and not torch.cuda.is_available():
        pytest.skip(f"--validation-scale {scale.name} trains the spec's models on a GPU; "
                    "no CUDA device here (use --validation-scale cpu)")
    overrides = read_overrides_file(config.getoption("--generator-config"))
    experiment = v.build_experiment(scale, overrides)
    log.info("validation experiment %s", experiment.directory(RESULTS_ROOT))
    workers = int(config.getoption("--validation-workers"))
    if workers < 1:
        raise pytest.UsageError(f"--validation-workers must be >= 1, got {workers}")
    result = v.run_experiment(experiment, RESULTS_ROOT, workers=workers,
                              rebuild=bool(config.getoption("--validation-rebuild")))
    claims = v.decide_claims(result)
    command = " ".join(["pytest", *config.invocation_params.args])
    report = v.write_report(result, claims, command=command,
                            session_wall_s=time.perf_counter() - started,
                            results_root=RESULTS_ROOT)
    for claim in claims:
        log.info("%s", claim.message())
    return ValidationOutcome(result, {c.id: c for c in claims}, report)
