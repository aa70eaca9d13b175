"""Small CSV tables (run registry, sample inventory, per-run luminosity): one column check."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..errors import InputError, SchemaError

__all__ = ["require_columns", "read_table"]


def require_columns(df: pd.DataFrame, columns: Iterable[str], where: str) -> pd.DataFrame:
    """Raise :class:`SchemaError` naming ``where``, the missing columns and those present."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        msg = f"{where}: lacks columns {missing}; columns present: {list(df.columns)}"
        raise SchemaError(msg)
    return df


def read_table(path: str | os.PathLike, columns: Iterable[str], missing_hint: str) -> pd.DataFrame:
    """Read a CSV file that must hold ``columns``; a missing file raises with ``missing_hint``."""
    path = Path(path)
    if not path.is_file():
        msg = f"{path}: {missing_hint}"
        raise InputError(msg)
    return require_columns(pd.read_csv(path), columns, str(path))
