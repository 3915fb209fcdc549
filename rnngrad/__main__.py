"""``python -m rnngrad diagnose MODEL.keras``: the same as the ``rnngrad`` command."""

from rnngrad.cli import main

raise SystemExit(main())
