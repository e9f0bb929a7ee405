"""``python -m semicrf.validation sweep ...``: the signal sweep (see :mod:`.sweep`)."""

from semicrf.validation.sweep import main

raise SystemExit(main())
