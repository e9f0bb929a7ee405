"""``python -m semicrf.validation sweep ...``: the signal sweep (:mod:`semicrf.validation.sweep`)."""

import sys

from semicrf.validation.sweep import main

args = sys.argv[1:]
raise SystemExit(main(args[1:] if args[:1] == ["sweep"] else args))
