"""Luminosity file formats: LHC "Massi" files (per-fill lumi, summary, version files).

Massi per-fill layout (LPC specification)::

    <fill>/<fill>_lumi_<EXPT>.txt       time stab l dl sl dsl   (UNIX s, [0,1], Hz/µb ...)
    <fill>/<fill>_summary_<EXPT>.txt    timestart timestop plu lui  (Hz/µb, µb^-1)
    <fill>/version.txt                  e.g. 1.0 or 1.2._1
    <fill>/version_annotation.txt       lines "n : text", "n u : text", "_k : text"

Writers format floats with ``repr`` so that reading gives back exactly the same numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["write_massi_lumi", "write_massi_summary", "write_version_files", "massi_paths"]


def massi_paths(directory: str | os.PathLike, fill: int, expt: str) -> dict[str, Path]:
    d = Path(directory) / str(int(fill))
    return {
        "dir": d,
        "lumi": d / f"{int(fill)}_lumi_{expt}.txt",
        "summary": d / f"{int(fill)}_summary_{expt}.txt",
        "version": d / "version.txt",
        "annotation": d / "version_annotation.txt",
    }


def _fmt(x) -> str:
    x = float(x)
    if x.is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(x)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_massi_lumi(path, time_s, stab, lumi_hz_per_ub, dlumi, speclumi, dspeclumi, header: str | None = None) -> None:
    """Write a per-fill lumi file ``time stab l dl sl dsl`` (one line per time bin)."""
    cols = [np.asarray(c) for c in (time_s, stab, lumi_hz_per_ub, dlumi, speclumi, dspeclumi)]
    n = len(cols[0])
    if any(len(c) != n for c in cols):
        msg = "write_massi_lumi: all columns must have the same length"
        raise ValueError(msg)
    lines = [f"# {header}"] if header else []
    lines += [" ".join(_fmt(c[i]) for c in cols) for i in range(n)]
    _atomic_write(Path(path), "\n".join(lines) + "\n")


def write_massi_summary(path, segments, header: str | None = None) -> None:
    """Write a summary file; ``segments`` is an iterable of (timestart, timestop, peak Hz/µb, integrated µb^-1)."""
    lines = [f"# {header}"] if header else []
    for seg in segments:
        if len(seg) != 4:
            msg = f"write_massi_summary: a segment has 4 fields (timestart timestop plu lui), got {seg!r}"
            raise ValueError(msg)
        lines.append(" ".join(_fmt(v) for v in seg))
    _atomic_write(Path(path), "\n".join(lines) + "\n")


def write_version_files(directory, version: str, annotations: dict[str, str]) -> None:
    """Write ``version.txt`` and ``version_annotation.txt`` (keys like ``"1"``, ``"1 1"``, ``"_1"``)."""
    d = Path(directory)
    _atomic_write(d / "version.txt", f"{version}\n")
    _atomic_write(d / "version_annotation.txt", "".join(f"{k} : {v}\n" for k, v in annotations.items()))
