"""dpnb: notebook-first, reproducible data-production reports for run buckets."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dpnb")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from .errors import DpnbError
from .notebook import notebook_context
from .runs import IOV, RunId

__all__ = ["__version__", "DpnbError", "notebook_context", "RunId", "IOV"]
