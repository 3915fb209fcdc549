"""The book's chapter instruments: experiments that serve one chapter's argument.

Modules here measure one phenomenon for the text (a classic result reproduced, a
remedy compared with another); they change with the chapters, not with the API a
practitioner relies on. The practitioner's tools (the probe, ``diagnose``, the monitor,
tasks and models) stay flat at ``rnngrad.*``.

Submodules load on first use, as in :mod:`rnngrad`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any


def __getattr__(name: str) -> Any:
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
