"""The validation behind ``pytest -m validation``: the spec's claims as statistics.

- :mod:`~semicrf.validation.experiment`: scales, ground truths, the cached, resumable
  training of one experiment;
- :mod:`~semicrf.validation.claims`: thresholds, claims and verdicts;
- :mod:`~semicrf.validation.report`: ``validation_report.{json,md}``;
- :mod:`~semicrf.validation.sweep`: the signal sweep (the "money curve").

The names used by the tests and the pytest fixture are re-exported here.
"""

from semicrf.validation.claims import *  # noqa: F403
from semicrf.validation.experiment import *  # noqa: F403
from semicrf.validation.report import *  # noqa: F403
from semicrf.validation.sweep import *  # noqa: F403
