"""Luminosity file formats: LHC "Massi" files (per-fill lumi, summary, version files).

Massi per-fill layout (LPC specification)::

    <fill>/<fill>_lumi_<EXPT>.txt       time stab l dl sl dsl   (UNIX s, [0,1], Hz/µb ...)
    <fill>/<fill>_summary_<EXPT>.txt    timestart timestop plu lui  (Hz/µb, µb^-1)
    <fill>/version.txt                  e.g. 1.0 or 1.2._1
    <fill>/version_annotation.txt       lines "n : text", "n u : text", "_k : text"

Also: archives (one ``<fill>.tgz``/``.zip`` per fill expanding into ``<fill>/``), version
parsing and the LPC annotation rules, CMS brilcalc CSV, certification JSON masks and the
run-level table ``run_lumi.csv`` (exp,run,run_type,lumi_pb,stat_pb,sys_pb).

Writers format floats with ``repr`` so that reading gives back exactly the same numbers.
Readers keep the data as written (order, duplicates) and name file:line for bad lines;
cleaning messy data is :mod:`dpnb.lumi`'s job.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import tarfile
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..errors import InputError, ParameterError, SchemaError
from ..units import integrated_to_pb

__all__ = [
    "write_massi_lumi", "write_massi_summary", "write_version_files", "massi_paths",
    "BadLine", "MassiLumi", "MassiSummary", "MassiVersion", "read_massi_lumi", "read_massi_summary",
    "parse_version", "parse_annotations", "read_version_files", "check_version_annotated",
    "check_annotations_add_only", "list_fills", "extract_fill_archive", "write_fill_archive",
    "read_brilcalc_csv", "read_certification_json", "certified_mask", "RUN_LUMI_COLUMNS",
    "read_run_lumi", "write_run_lumi", "write_csv_table",
]


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


# --- shared helpers ------------------------------------------------------------------
BAD_LINE_POLICIES = ("fail", "skip")


@dataclass(frozen=True)
class BadLine:
    """A line that could not be used: file, 1-based line number and the reason."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


def _check_policy(on_bad_line: str) -> None:
    if on_bad_line not in BAD_LINE_POLICIES:
        msg = f"on_bad_line={on_bad_line!r}: expected one of {list(BAD_LINE_POLICIES)}"
        raise ParameterError(msg)


def _fields_per_line(data: bytes) -> np.ndarray:
    """Number of whitespace-separated fields on each physical line (``#`` starts a comment
    that runs to the end of the line), computed with numpy over the raw bytes."""
    b = np.frombuffer(data, dtype=np.uint8)
    nl = np.flatnonzero(b == 10)
    n_lines = nl.size + (1 if b.size and (not nl.size or nl[-1] != b.size - 1) else 0)
    sep = (b == 32) | (b == 9) | (b == 13) | (b == 10) | (b == 11) | (b == 12)
    if 35 in b:  # blank out comments: from each line's first '#' to its end
        hashes = np.flatnonzero(b == 35)
        line_of_hash = np.searchsorted(nl, hashes)
        first = hashes[np.concatenate(([True], line_of_hash[1:] != line_of_hash[:-1]))]
        line_end = np.append(nl, b.size)[np.unique(line_of_hash)]
        for a, z in zip(first, line_end):
            sep[a:z] = True
    tok_start = ~sep
    tok_start[1:] &= sep[:-1]
    line_id = np.cumsum(b == 10, dtype=np.int32)  # line index (0-based) of every byte
    return np.bincount(line_id[tok_start], minlength=n_lines)


def _parse_numeric_columns(path: Path, names: tuple[str, ...], on_bad_line: str):
    """Whitespace-separated numeric table with ``#`` comments anywhere (rest of the line).

    Returns (columns dict of float64 arrays, 1-based line numbers int64, list of BadLine).
    A line with the wrong number of fields or a non-finite / non-numeric value is a bad
    line: ``fail`` raises :class:`InputError` naming file:line, ``skip`` drops and lists it.
    Fields are counted per line with numpy over the bytes; the numbers are converted by
    pandas' C parser (exact for the ``repr`` floats our writers produce); a non-numeric value
    sends the file through a slow line-by-line pass that names the line.
    """
    import pandas as pd

    _check_policy(on_bad_line)
    ncol = len(names)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        msg = f"{path}: file not found"
        raise InputError(msg) from None
    fast = _parse_clean_file(data, ncol)
    if fast is not None:
        table, line_numbers = fast
        return {n: np.ascontiguousarray(table[:, k]) for k, n in enumerate(names)}, line_numbers, []
    counts = _fields_per_line(data)
    wrong = np.flatnonzero((counts != 0) & (counts != ncol))
    bad: list[BadLine] = []
    if wrong.size:
        for i in wrong:
            n = int(counts[i])
            reason = f"{'missing' if n < ncol else 'extra'} columns: {n} fields, expected {ncol} ({' '.join(names)})"
            if on_bad_line == "fail":
                raise InputError(f"{path}:{i + 1}: {reason}")
            bad.append(BadLine(str(path), int(i) + 1, reason))
    line_numbers = np.flatnonzero(counts == ncol) + 1
    simple = not (b"#" in data or b"\t" in data or b"\r" in data or b"  " in data or b" \n" in data
                  or b"\n " in data or data.startswith(b" ") or b"\n\n" in data)
    table = None
    if line_numbers.size:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df = pd.read_csv(io.BytesIO(data), sep=" " if simple and not wrong.size else r"\s+", header=None,
                                 comment="#", skiprows=[int(i) for i in wrong], dtype=np.float64,
                                 names=list(range(ncol)), skip_blank_lines=True, na_filter=False, engine="c")
            table = df.to_numpy(dtype=np.float64)
            if table.shape[0] != line_numbers.size or not np.isfinite(table).all():
                table = None
        except (ValueError, pd.errors.ParserError):
            table = None
    else:
        table = np.empty((0, ncol))
    if table is None:  # slow path: find the lines that are not numbers
        table, line_numbers, more = _parse_slow(path, data, line_numbers, ncol, names, on_bad_line)
        bad = sorted(bad + more, key=lambda x: x.line)
    cols = {n: np.ascontiguousarray(table[:, k]) for k, n in enumerate(names)}
    return cols, np.asarray(line_numbers, dtype=np.int64), bad


def _parse_clean_file(data: bytes, ncol: int):
    """Fast path for the common case: an optional block of ``#`` header lines, then lines of
    exactly ``ncol`` numbers separated by single spaces. Returns (table, 1-based line numbers)
    or None when the file is not of that shape (then the general path finds out why)."""
    import pandas as pd

    offset, n_header = 0, 0
    while data.startswith(b"#", offset):
        nxt = data.find(b"\n", offset)
        if nxt < 0:
            return None
        offset, n_header = nxt + 1, n_header + 1
    raw = data[offset:] if offset else data
    # anything unusual (comments, tabs, double or trailing spaces, blank lines, missing or
    # extra fields) makes pandas fail or changes the row count / finiteness checked below
    if not raw or b"#" in raw:
        return None
    n_lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = pd.read_csv(io.BytesIO(raw), sep=" ", header=None, names=list(range(ncol)), index_col=False,
                             dtype=np.float64, na_filter=False, engine="c")
    except (ValueError, pd.errors.ParserError):
        return None
    table = df.to_numpy(dtype=np.float64)
    if table.shape != (n_lines, ncol) or not np.isfinite(table).all():
        return None
    return table, np.arange(n_header + 1, n_header + n_lines + 1, dtype=np.int64)


def _parse_slow(path, data, line_numbers, ncol, names, on_bad_line):
    lines = data.decode(errors="replace").split("\n")
    rows, keep, bad = [], [], []
    for ln in line_numbers:
        raw = lines[ln - 1]
        if "#" in raw:
            raw = raw[: raw.index("#")]
        fields = raw.split()
        try:
            vals = [float(v) for v in fields]
            ok = all(math.isfinite(v) for v in vals)
        except ValueError:
            ok = False
        if not ok:
            reason = f"not a finite number in {' '.join(fields)!r}; expected {ncol} numbers ({' '.join(names)})"
            if on_bad_line == "fail":
                raise InputError(f"{path}:{ln}: {reason}")
            bad.append(BadLine(str(path), int(ln), reason))
            continue
        rows.append(vals)
        keep.append(ln)
    table = np.array(rows, dtype=np.float64).reshape(-1, ncol)
    return table, np.asarray(keep, dtype=np.int64), bad


# --- Massi lumi and summary files -----------------------------------------------------
MASSI_LUMI_COLUMNS = ("time", "stab", "l", "dl", "sl", "dsl")
MASSI_SUMMARY_COLUMNS = ("timestart", "timestop", "plu", "lui")


@dataclass
class MassiLumi:
    """A per-fill lumi file as read: one entry per time bin, in file order.

    ``time_s`` UNIX s; ``stab`` stable-beam fraction; ``lumi``/``dlumi`` Hz/µb;
    ``speclumi``/``dspeclumi`` specific luminosity as written; ``line`` 1-based line numbers.
    """

    path: str
    fill: int
    time_s: np.ndarray
    stab: np.ndarray
    lumi: np.ndarray
    dlumi: np.ndarray
    speclumi: np.ndarray
    dspeclumi: np.ndarray
    line: np.ndarray
    bad_lines: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.time_s.size)


def _fill_from_name(path: Path) -> int:
    m = re.match(r"^(\d+)_", path.name)
    if not m:
        msg = f"{path}: cannot tell the fill number; expected a name like <fill>_lumi_<EXPT>.txt"
        raise InputError(msg)
    return int(m.group(1))


def read_massi_lumi(path, on_bad_line: str = "fail") -> MassiLumi:
    """Read a per-fill lumi file ``time stab l dl sl dsl`` (see :class:`MassiLumi`).

    Lines with missing or extra columns or non-numeric values raise :class:`InputError`
    naming file:line (``on_bad_line="fail"``) or are skipped and listed in ``bad_lines``
    (``"skip"``). Order and duplicates are kept as in the file: cleaning is :mod:`dpnb.lumi`'s job.
    """
    path = Path(path)
    cols, lines, bad = _parse_numeric_columns(path, MASSI_LUMI_COLUMNS, on_bad_line)
    return MassiLumi(str(path), _fill_from_name(path), cols["time"], cols["stab"], cols["l"], cols["dl"],
                     cols["sl"], cols["dsl"], lines, bad)


@dataclass
class MassiSummary:
    """A summary file: one stable-beam segment per entry. Times UNIX s, ``peak_hz_per_ub``
    Hz/µb, ``integrated_ub`` µb^-1."""

    path: str
    timestart_s: np.ndarray
    timestop_s: np.ndarray
    peak_hz_per_ub: np.ndarray
    integrated_ub: np.ndarray
    line: np.ndarray
    bad_lines: list = field(default_factory=list)

    def segments(self) -> list[tuple[float, float, float, float]]:
        return [tuple(float(v) for v in row) for row in zip(self.timestart_s, self.timestop_s,
                                                             self.peak_hz_per_ub, self.integrated_ub)]


def read_massi_summary(path, on_bad_line: str = "fail") -> MassiSummary:
    """Read a summary file ``timestart timestop plu lui`` (see :class:`MassiSummary`)."""
    path = Path(path)
    cols, lines, bad = _parse_numeric_columns(path, MASSI_SUMMARY_COLUMNS, on_bad_line)
    for k, ln in enumerate(lines):
        if cols["timestop"][k] < cols["timestart"][k]:
            msg = f"{path}:{ln}: timestop {cols['timestop'][k]!r} is before timestart {cols['timestart'][k]!r}"
            raise InputError(msg)
    return MassiSummary(str(path), cols["timestart"], cols["timestop"], cols["plu"], cols["lui"], lines, bad)


# --- versions -------------------------------------------------------------------------
_VERSION_FIELD = re.compile(r"^(_?)(\d+)$")


@dataclass(frozen=True)
class MassiVersion:
    """A parsed ``version.txt``: plain fields (strings, kept as written) and underscore numbers.

    Grammar (our reading of the LPC rule ``a[.b[.c…]][._u[.v…]]``)::

        version    := plain ('.' plain)* ('.' underscore)*
        plain      := digits          -- field n (1-based) of the version, e.g. luminometer, level
        underscore := '_' digits      -- a special correction applied to this fill

    * at least one plain field; plain fields come first, no plain field after an underscore;
    * each underscore number appears at most once (compared as integers, so ``_1._01``
      repeats ``1``); order is free. Hence ``1.2._1._2`` is valid, ``1.2._1._1`` is not;
    * no empty fields, signs, spaces or other characters.
    """

    text: str
    plain: tuple[str, ...]
    underscore: tuple[int, ...]

    def __str__(self) -> str:
        return self.text


def parse_version(text: str, where: str = "version") -> MassiVersion:
    """Parse and validate a Massi version string (see :class:`MassiVersion` for the rule)."""
    s = str(text).strip()
    if not s:
        msg = f"{where}: empty version; expected a[.b[.c…]][._u[._v…]] such as '1.2' or '1.2._1'"
        raise InputError(msg)
    plain: list[str] = []
    under: list[int] = []
    for k, f in enumerate(s.split("."), 1):
        m = _VERSION_FIELD.match(f)
        if not m:
            msg = (f"{where}: invalid version {s!r}: field {k} {f!r} is not a number or _number; "
                   "expected a[.b[.c…]][._u[._v…]] such as '1.2._1'")
            raise InputError(msg)
        if m.group(1):
            n = int(m.group(2))
            if n in under:
                msg = f"{where}: invalid version {s!r}: underscore number _{n} appears more than once"
                raise InputError(msg)
            under.append(n)
        else:
            if under:
                msg = (f"{where}: invalid version {s!r}: plain field {f!r} after an underscore field; "
                       "plain numbers come first")
                raise InputError(msg)
            plain.append(f)
    if not plain:
        msg = f"{where}: invalid version {s!r}: needs at least one plain number before underscore fields"
        raise InputError(msg)
    return MassiVersion(s, tuple(plain), tuple(under))


_ANNOTATION_LINE = re.compile(r"^\s*(_\d+|\d+(?:[ \t]+\d+)?)\s*:(.*)$")


def parse_annotations(text: str, where: str = "version_annotation.txt") -> dict[str, str]:
    """Parse ``version_annotation.txt``: lines ``n : text`` (meaning of plain field n),
    ``n u : text`` (value u of field n) and ``_k : text`` (underscore number k). Keys are
    returned normalised (``"1"``, ``"1 2"``, ``"_3"``) in file order; blank and ``#`` lines
    are ignored. A malformed line or a repeated key raises :class:`InputError` (file:line)."""
    out: dict[str, str] = {}
    for i, raw in enumerate(str(text).split("\n"), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        m = _ANNOTATION_LINE.match(raw)
        if not m:
            msg = f"{where}:{i}: {raw.strip()!r} is not an annotation; expected 'n : text', 'n u : text' or '_k : text'"
            raise InputError(msg)
        key = " ".join(m.group(1).split())
        if key in out:
            msg = f"{where}:{i}: annotation {key!r} given twice"
            raise InputError(msg)
        out[key] = m.group(2).strip()
    return out


def read_version_files(directory) -> tuple[MassiVersion, dict[str, str]]:
    """Read and validate ``version.txt`` and ``version_annotation.txt`` of a fill directory."""
    d = Path(directory)
    vpath, apath = d / "version.txt", d / "version_annotation.txt"
    for p in (vpath, apath):
        if not p.is_file():
            msg = f"{p}: file not found (a fill directory holds version.txt and version_annotation.txt)"
            raise InputError(msg)
    lines = [ln for ln in vpath.read_text().split("\n") if ln.strip()]
    if len(lines) != 1:
        msg = f"{vpath}: expected exactly one version line, found {len(lines)}"
        raise InputError(msg)
    version = parse_version(lines[0], f"{vpath}:1")
    return version, parse_annotations(apath.read_text(), str(apath))


def check_version_annotated(version: MassiVersion, annotations: dict[str, str], where: str = "") -> list[str]:
    """Problems (strings) where ``version`` uses something its annotations do not explain:
    a plain field n needs ``n : …`` or ``n u : …`` (u its value); an underscore number k
    needs ``_k : …``. Extra annotations are fine (they describe other versions)."""
    problems = []
    for n, value in enumerate(version.plain, 1):
        if f"{n}" not in annotations and f"{n} {int(value)}" not in annotations:
            problems.append(
                f"{where}: version {version} field {n} = {value}: no annotation '{n}' or '{n} {int(value)}'")
    for u in version.underscore:
        if f"_{u}" not in annotations:
            problems.append(f"{where}: version {version} uses _{u}: no annotation '_{u}'")
    return problems


def check_annotations_add_only(sequence) -> list[str]:
    """Check the LPC rule over the fills of one year: annotations of plain numbers
    (keys ``n`` and ``n u``) are only ever added to, never changed or removed.

    ``sequence`` is an iterable of (fill, annotations dict) in fill order. Underscore
    annotations (``_k``) describe one fill's special corrections and may differ. Each fill
    is compared with the previous one, so a violation is reported once, at the fill where it
    happens. Returns one problem string per violation (empty list = valid)."""
    problems: list[str] = []
    prev_fill, prev = None, {}
    for fill, ann in sequence:
        for key, text in prev.items():
            if key not in ann:
                problems.append(f"fill {fill}: annotation {key!r} ({text!r} in fill {prev_fill}) was removed")
            elif ann[key] != text:
                problems.append(
                    f"fill {fill}: annotation {key!r} changed from {text!r} (fill {prev_fill}) to {ann[key]!r}")
        prev_fill, prev = fill, {k: v for k, v in ann.items() if not k.startswith("_")}
    return problems


# --- one archive or directory per fill ------------------------------------------------
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".zip")


def _archive_fill(path: Path) -> int | None:
    name = path.name
    for suf in ARCHIVE_SUFFIXES:
        if name.endswith(suf) and name[: -len(suf)].isdigit():
            return int(name[: -len(suf)])
    return None


def list_fills(lumi_dir) -> dict[int, Path]:
    """Fill number -> directory ``<fill>/`` or archive ``<fill>.tgz|.zip`` found in ``lumi_dir``
    (a directory wins over an archive of the same fill)."""
    d = Path(lumi_dir)
    if not d.is_dir():
        msg = f"{d}: lumi directory not found"
        raise InputError(msg)
    out: dict[int, Path] = {}
    for p in sorted(d.iterdir()):
        if p.is_dir() and p.name.isdigit():
            out[int(p.name)] = p
    for p in sorted(d.iterdir()):
        f = _archive_fill(p) if p.is_file() else None
        if f is not None and f not in out:
            out[f] = p
    return dict(sorted(out.items()))


def _check_member(archive: Path, fill: int, name: str) -> None:
    parts = Path(name).parts
    if name.startswith("/") or ".." in parts or not parts or parts[0] != str(fill):
        msg = (f"{archive}: member {name!r} is not inside directory '{fill}/'; "
               f"an archive of fill {fill} must expand into one directory named {fill}")
        raise InputError(msg)


def extract_fill_archive(archive, dest_dir) -> Path:
    """Expand ``<fill>.tgz`` or ``<fill>.zip`` into ``dest_dir`` and return ``dest_dir/<fill>``.

    Every member must lie inside a directory named by the fill number (LPC rule); otherwise
    :class:`InputError` names the archive and the first offending member, and nothing is
    extracted."""
    archive = Path(archive)
    fill = _archive_fill(archive)
    if fill is None:
        msg = f"{archive}: not a fill archive; expected <fill>.tgz or <fill>.zip"
        raise InputError(msg)
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                names = zf.namelist()
                for n in names:
                    _check_member(archive, fill, n)
                zf.extractall(dest)
        else:
            with tarfile.open(archive, "r:gz") as tf:
                for m in tf.getmembers():
                    _check_member(archive, fill, m.name)
                tf.extractall(dest, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        msg = f"{archive}: cannot read archive ({exc})"
        raise InputError(msg) from None
    out = dest / str(fill)
    if not out.is_dir():
        msg = f"{archive}: expanded without a directory '{fill}/'"
        raise InputError(msg)
    return out


def write_fill_archive(fill_dir, archive) -> Path:
    """Pack a fill directory into ``<fill>.tgz`` or ``<fill>.zip`` (atomic)."""
    fill_dir, archive = Path(fill_dir), Path(archive)
    tmp = archive.with_name(f".{archive.name}.tmp-{os.getpid()}")
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for p in sorted(fill_dir.rglob("*")):
                zf.write(p, Path(fill_dir.name) / p.relative_to(fill_dir))
    else:
        with tarfile.open(tmp, "w:gz") as tf:
            tf.add(fill_dir, arcname=fill_dir.name)
    os.replace(tmp, archive)
    return archive


# --- CMS brilcalc CSV and certification JSON ------------------------------------------
_BRIL_HEADER = re.compile(r"^#\s*run:fill\s*,")
_UNIT_COL = re.compile(r"^(delivered|recorded)\((.+)\)$")


def read_brilcalc_csv(path, on_bad_line: str = "fail"):
    """Read brilcalc per-lumi-section output into a DataFrame with columns
    run, fill, ls, time_s (UNIX s, UTC), beamstatus, energy_gev, delivered_pb, recorded_pb,
    avgpu, source, line. Units come from the header (``delivered(/pb)``, ``(/ub)`` …) and are
    converted to pb^-1 by :mod:`dpnb.units`; an unknown unit raises :class:`InputError`."""
    import pandas as pd

    _check_policy(on_bad_line)
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        msg = f"{path}: file not found"
        raise InputError(msg) from None
    header = None
    rows: list[list[str]] = []
    lines: list[int] = []
    bad: list[BadLine] = []
    factors: dict[str, float] = {}
    for i, fields in enumerate(csv.reader(io.StringIO(text)), 1):
        if not fields or not "".join(fields).strip():
            continue
        if fields[0].startswith("#"):
            if header is None and _BRIL_HEADER.match(",".join(fields)):
                header = [f.strip().lstrip("#").strip() for f in fields]
                for col in header:
                    m = _UNIT_COL.match(col)
                    if m:
                        try:
                            factors[m.group(1)] = integrated_to_pb(1.0, m.group(2))
                        except InputError as exc:
                            raise InputError(f"{path}:{i}: column {col!r}: {exc}") from None
            continue
        if header is None:
            msg = f"{path}:{i}: data before the header; expected a line '#run:fill,ls,time,beamstatus,…'"
            raise InputError(msg)
        if len(fields) != len(header):
            reason = f"{len(fields)} fields, expected {len(header)} ({','.join(header)})"
            if on_bad_line == "fail":
                raise InputError(f"{path}:{i}: {reason}")
            bad.append(BadLine(str(path), i, reason))
            continue
        rows.append(fields)
        lines.append(i)
    if header is None:
        msg = (f"{path}: no brilcalc header; expected "
               "'#run:fill,ls,time,beamstatus,E(GeV),delivered(/pb),recorded(/pb),…'")
        raise InputError(msg)
    need = ("delivered", "recorded")
    missing = [n for n in need if n not in factors]
    if missing or "run:fill" not in header or "ls" not in header:
        msg = f"{path}: header {header} lacks {missing or ['run:fill', 'ls']}"
        raise SchemaError(msg)
    idx = {h: k for k, h in enumerate(header)}
    dcol = next(h for h in header if h.startswith("delivered("))
    rcol = next(h for h in header if h.startswith("recorded("))
    out = {k: [] for k in ("run", "fill", "ls", "time_s", "beamstatus", "energy_gev", "delivered_pb", "recorded_pb",
                           "avgpu", "source", "line")}
    for fields, ln in zip(rows, lines):
        try:
            run, fill = (int(v) for v in fields[idx["run:fill"]].split(":"))
            ls = int(fields[idx["ls"]].split(":")[0])
            t = fields[idx["time"]].strip() if "time" in idx else ""
            ts = (datetime.strptime(t, "%m/%d/%y %H:%M:%S").replace(tzinfo=timezone.utc).timestamp() if t else np.nan)
            dl = float(fields[idx[dcol]]) * factors["delivered"]
            rc = float(fields[idx[rcol]]) * factors["recorded"]
            en = float(fields[idx["E(GeV)"]]) if "E(GeV)" in idx else np.nan
            pu = float(fields[idx["avgpu"]]) if "avgpu" in idx else np.nan
        except ValueError as exc:
            reason = f"cannot parse ({exc})"
            if on_bad_line == "fail":
                raise InputError(f"{path}:{ln}: {reason}") from None
            bad.append(BadLine(str(path), ln, reason))
            continue
        for k, v in (("run", run), ("fill", fill), ("ls", ls), ("time_s", ts),
                     ("beamstatus", fields[idx["beamstatus"]] if "beamstatus" in idx else ""),
                     ("energy_gev", en), ("delivered_pb", dl), ("recorded_pb", rc), ("avgpu", pu),
                     ("source", fields[idx["source"]] if "source" in idx else ""), ("line", ln)):
            out[k].append(v)
    df = pd.DataFrame(out)
    df.attrs["bad_lines"] = bad
    df.attrs["path"] = str(path)
    return df


def read_certification_json(path) -> dict[int, list[tuple[int, int]]]:
    """Read a certification JSON ``{"run": [[ls_first, ls_last], …]}`` (inclusive ranges).

    Anything else (not an object, a key that is not a run number, a value that is not a list
    of [first, last] integer pairs with first <= last) raises :class:`InputError` naming the
    file and the key."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        msg = f"{path}: file not found"
        raise InputError(msg) from None
    except json.JSONDecodeError as exc:
        msg = f"{path}:{exc.lineno}: invalid JSON ({exc.msg})"
        raise InputError(msg) from None
    if not isinstance(raw, dict):
        msg = f"{path}: expected an object {{\"run\": [[ls_first, ls_last], …]}}, got {type(raw).__name__}"
        raise InputError(msg)
    out: dict[int, list[tuple[int, int]]] = {}
    for key, ranges in raw.items():
        if not str(key).strip().isdigit():
            msg = f"{path}: key {key!r} is not a run number"
            raise InputError(msg)
        if not isinstance(ranges, list):
            msg = f"{path}: run {key}: expected a list of [ls_first, ls_last] pairs, got {ranges!r}"
            raise InputError(msg)
        pairs = []
        for j, pr in enumerate(ranges):
            ok = (isinstance(pr, list) and len(pr) == 2
                  and all(isinstance(v, int) and not isinstance(v, bool) for v in pr) and 0 < pr[0] <= pr[1])
            if not ok:
                msg = (f"{path}: run {key}[{j}]: {pr!r} is not a [ls_first, ls_last] pair of positive integers "
                       "with first <= last")
                raise InputError(msg)
            pairs.append((pr[0], pr[1]))
        out[int(key)] = sorted(pairs)
    return out


def certified_mask(run, ls, certification: dict[int, list[tuple[int, int]]]) -> np.ndarray:
    """Boolean mask: lumi section ``ls`` of ``run`` lies in a certified range."""
    run = np.asarray(run, dtype=np.int64)
    ls = np.asarray(ls, dtype=np.int64)
    mask = np.zeros(run.shape, dtype=bool)
    for r, pairs in certification.items():
        sel = run == r
        if not sel.any():
            continue
        for a, b in pairs:
            mask |= sel & (ls >= a) & (ls <= b)
    return mask


# --- run-level tables (Belle II style) ------------------------------------------------
RUN_LUMI_COLUMNS = ("exp", "run", "run_type", "lumi_pb", "stat_pb", "sys_pb")


def read_run_lumi(path):
    """Read ``run_lumi.csv`` (exp,run,run_type,lumi_pb,stat_pb,sys_pb; pb^-1) into a DataFrame.

    Missing columns raise :class:`SchemaError` listing the columns present; a value that is
    not a number, negative, or a repeated (exp, run) raises :class:`InputError` with file:line."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        msg = f"{path}: file not found"
        raise InputError(msg)
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            msg = f"{path}: empty file; expected header {','.join(RUN_LUMI_COLUMNS)}"
            raise SchemaError(msg)
        header = [h.strip() for h in header]
        missing = [c for c in RUN_LUMI_COLUMNS if c not in header]
        if missing:
            msg = f"{path}:1: missing columns {missing}; found {header}; expected {','.join(RUN_LUMI_COLUMNS)}"
            raise SchemaError(msg)
        idx = [header.index(c) for c in RUN_LUMI_COLUMNS]
        rows, seen = [], {}
        for i, fields in enumerate(reader, 2):
            if not fields or not "".join(fields).strip():
                continue
            if len(fields) != len(header):
                msg = f"{path}:{i}: {len(fields)} fields, expected {len(header)} ({','.join(header)})"
                raise InputError(msg)
            try:
                exp, run = int(fields[idx[0]]), int(fields[idx[1]])
                vals = [float(fields[k]) for k in idx[3:]]
            except ValueError as exc:
                msg = f"{path}:{i}: {exc}; expected integers exp,run and numbers lumi_pb,stat_pb,sys_pb"
                raise InputError(msg) from None
            if any(not np.isfinite(v) or v < 0 for v in vals):
                msg = f"{path}:{i}: lumi_pb, stat_pb, sys_pb must be finite and >= 0, got {vals}"
                raise InputError(msg)
            if (exp, run) in seen:
                msg = f"{path}:{i}: run {exp}:{run} already given on line {seen[(exp, run)]}"
                raise InputError(msg)
            seen[(exp, run)] = i
            rows.append((exp, run, fields[idx[2]].strip(), *vals))
    df = pd.DataFrame(rows, columns=list(RUN_LUMI_COLUMNS))
    return df.astype({"exp": "int64", "run": "int64", "lumi_pb": "float64", "stat_pb": "float64", "sys_pb": "float64"})


def write_csv_table(path, df, columns) -> None:
    """Write ``df[columns]`` as CSV atomically; floats with ``repr`` so reading gives them back exactly."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    for row in df[list(columns)].itertuples(index=False):
        w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else v for v in row])
    _atomic_write(Path(path), out.getvalue())


def write_run_lumi(path, df) -> None:
    """Write a run-level table (columns :data:`RUN_LUMI_COLUMNS`, pb^-1) atomically."""
    write_csv_table(path, df, RUN_LUMI_COLUMNS)
