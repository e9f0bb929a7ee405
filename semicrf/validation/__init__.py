"""The validation behind ``pytest -m validation``: the spec's claims as statistics.

- :mod:`~semicrf.validation.experiment`: scales, ground truths, the cached, resumable
  training of one experiment and the probes of the trained semicrf;
- :mod:`~semicrf.validation.claims`: thresholds, claims and verdicts;
- :mod:`~semicrf.validation.report`: ``validation_report.{json,md}``;
- :mod:`~semicrf.validation.sweep`: the signal sweep (the "money curve").

The names used by the tests and the pytest fixture are re-exported here (not the sweep's:
``python -m semicrf.validation.sweep`` must find its module unimported, also in the worker
processes it spawns).
"""

from semicrf.models import MODEL_NAMES
from semicrf.validation.claims import (
    ALPHA,
    BASELINES,
    BOOT_SEED,
    CLAIM_DECODER,
    COMPETENCE_FRACTION,
    COMPETENCE_MODELS,
    DURATION_CLASSES,
    KL_INTERVAL,
    KL_THRESHOLDS,
    LEARNED_KL_GEOMETRIC_FRACTION,
    LEARNED_KL_THRESHOLD,
    MEDIAN_REL_TOLERANCE,
    N_BOOT,
    SPEC_EXPECTED_KL,
    Claim,
    ablation_claim,
    absolute_kl_claim,
    boundary_claim,
    claim_ids,
    competence_claim,
    decide_claims,
    decoded_claim_ids,
    decoded_claims,
    discrete_median,
    duration_comparison_claim,
    learned_table_claim,
    limit_gain_claim,
    posterior_median_claim,
    stability_claim,
    triton_claim,
)
from semicrf.validation.experiment import (
    ABLATED_MODEL,
    ORACLE_UNITS,
    SCALES,
    SHIFTED_MODEL,
    Experiment,
    ExperimentResult,
    Scale,
    ablate_durations,
    build_experiment,
    load_experiment,
    probe_semicrf,
    run_experiment,
    run_experiments,
    scale_run,
    with_overrides,
)
from semicrf.validation.report import write_report

__all__ = [
    "ABLATED_MODEL", "ALPHA", "BASELINES", "BOOT_SEED", "CLAIM_DECODER", "COMPETENCE_FRACTION",
    "COMPETENCE_MODELS", "ORACLE_UNITS", "competence_claim", "limit_gain_claim",
    "DURATION_CLASSES", "KL_INTERVAL", "KL_THRESHOLDS", "LEARNED_KL_GEOMETRIC_FRACTION",
    "LEARNED_KL_THRESHOLD",
    "MEDIAN_REL_TOLERANCE", "MODEL_NAMES", "N_BOOT", "SCALES", "SHIFTED_MODEL",
    "SPEC_EXPECTED_KL", "Claim", "Experiment", "ExperimentResult", "Scale",
    "ablate_durations", "ablation_claim", "absolute_kl_claim", "boundary_claim", "build_experiment",
    "claim_ids", "decide_claims", "decoded_claim_ids", "decoded_claims", "discrete_median",
    "duration_comparison_claim", "learned_table_claim", "load_experiment",
    "posterior_median_claim", "probe_semicrf", "run_experiment", "run_experiments",
    "scale_run", "stability_claim", "triton_claim", "with_overrides",
    "write_report",
]
