"""``python -m semicrf`` runs the command line."""

import sys

from semicrf.cli import main

sys.exit(main())
