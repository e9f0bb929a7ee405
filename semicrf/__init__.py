"""semicrf: an exact streaming Semi-Markov CRF for PyTorch.

Public functional API (see README, "Model"):

- :func:`log_partition`, :func:`viterbi`, :func:`segmentation_score`, :func:`marginals`,
  :func:`posterior_durations` (semantics "segments" or "runs", see docs/model.md)
- :class:`SemiCRFHead`, the ``nn.Module`` used on top of an encoder.
"""

from semicrf.crf.api import (
    log_partition,
    marginals,
    posterior_durations,
    segmentation_score,
    viterbi,
)
from semicrf.crf.head import SemiCRFHead

__version__ = "0.1.0"

__all__ = [
    "SemiCRFHead",
    "__version__",
    "log_partition",
    "marginals",
    "posterior_durations",
    "segmentation_score",
    "viterbi",
]
