"""Imported once by the runner's forkserver: every worker forks with papermill, nbclient and
the compiled report template already loaded, so starting a notebook costs a fork."""

from __future__ import annotations

import papermill  # noqa: F401
from jupyter_client.manager import AsyncKernelManager  # noqa: F401

from ..reports.html import warm

warm()
