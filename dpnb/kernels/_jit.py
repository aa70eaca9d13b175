"""One place that decides how kernels are compiled.

numba is a speed-up, not a requirement of correctness: when numba is missing (or
``DPNB_DISABLE_JIT=1``), ``njit`` returns the plain Python function and ``prange`` is
``range``. Every kernel is compiled with ``cache=True`` into a writable cache directory:
``NUMBA_CACHE_DIR`` if set, else ``~/.cache/dpnb/numba``, else a temporary directory
(with a warning saying so).
"""

from __future__ import annotations

import os
import tempfile
import warnings

__all__ = ["njit", "prange", "HAVE_NUMBA", "cache_dir"]


def _writable(path: str) -> bool:
    try:
        os.makedirs(path, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=path, delete=True)
        probe.close()
        return True
    except OSError:
        return False


def _choose_cache_dir() -> str:
    env = os.environ.get("NUMBA_CACHE_DIR")
    if env and _writable(env):
        return env
    default = os.path.join(os.path.expanduser("~"), ".cache", "dpnb", "numba")
    if _writable(default):
        if env:
            warnings.warn(f"NUMBA_CACHE_DIR={env!r} is not writable; caching compiled kernels in {default}", stacklevel=2)
        return default
    fallback = os.path.join(tempfile.gettempdir(), f"dpnb-numba-{os.getuid()}")
    warnings.warn(
        f"numba cache directory {(env or default)!r} is not writable; caching compiled kernels in {fallback}",
        stacklevel=2,
    )
    os.makedirs(fallback, exist_ok=True)
    return fallback


cache_dir = _choose_cache_dir()
os.environ["NUMBA_CACHE_DIR"] = cache_dir

HAVE_NUMBA = False
if os.environ.get("DPNB_DISABLE_JIT", "0") != "1":
    try:
        import numba as _numba

        HAVE_NUMBA = True
    except ImportError:  # pragma: no cover - exercised in the no-numba test
        HAVE_NUMBA = False

if HAVE_NUMBA:
    prange = _numba.prange

    def njit(*args, **kwargs):
        """``numba.njit`` with dpnb's defaults (cache, nogil, numpy error model)."""
        kwargs.setdefault("cache", True)
        kwargs.setdefault("nogil", True)
        kwargs.setdefault("error_model", "numpy")
        if args and callable(args[0]) and len(args) == 1:
            return _numba.njit(**kwargs)(args[0])
        return _numba.njit(*args, **kwargs)

else:
    prange = range

    def njit(*args, **kwargs):
        if args and callable(args[0]) and len(args) == 1:
            return args[0]
        return lambda f: f
