"""The pytest plugin of the semicrf package: the validation suite's command-line options.

Registered through the ``pytest11`` entry point (pyproject.toml), so the options exist
before pytest looks at any path: ``pytest -m validation --generator-config /abs/truth.json``
works wherever the file is (an option known only to a conftest is parsed too late, and
pytest takes its value for a test path). The validation fixture (``validation/conftest.py``)
reads them.
"""

from __future__ import annotations

import pytest

#: The scales of :data:`semicrf.validation.experiment.SCALES` (kept light: no torch import at
#: pytest start-up; a test checks that they agree).
SCALE_NAMES: tuple[str, ...] = ("cpu", "smoke", "full")
#: :data:`semicrf.validation.experiment.DEFAULT_WORKERS` (the same test checks it).
DEFAULT_WORKERS = 2


def add_options(parser: pytest.Parser) -> None:
    """Add ``--validation-scale``, ``--validation-workers``, ``--validation-rebuild`` and
    ``--generator-config``."""
    group = parser.getgroup("semicrf validation")
    group.addoption(
        "--validation-scale", choices=SCALE_NAMES, default="cpu",
        help="cpu: the spec's lengths, claims decided in under an hour on 2 cores; smoke: "
             "lengths / 10 (T = 2000, K = 100); full: the spec's defaults (GPU).",
    )
    group.addoption("--validation-workers", type=int, default=DEFAULT_WORKERS, metavar="N",
                    help="Processes training the models side by side on CPU (default 2: one "
                         "torch thread each on these 2-core machines; 1 on a GPU).")
    group.addoption("--validation-rebuild", action="store_true",
                    help="Ignore cached validation experiments and train again.")
    group.addoption("--generator-config", default=None, metavar="FILE",
                    help="JSON generator config (as `semicrf generate --config`) for the "
                         "validation data.")


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)
