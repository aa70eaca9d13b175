"""Replay one report version: re-execute exactly it and say whether its numbers come out again.

``replay(manifest_path)`` works from what the version directory holds:

* **parameters** - the cell papermill injected into the version's ``notebook.ipynb``
  (tagged ``injected-parameters``; literal assignments, read with :func:`ast.literal_eval`,
  never executed). Their content-key part (:func:`dpnb.pipeline.cache.key_parameters`)
  must equal the manifest's ``parameters``; only ``output_dir`` is replaced.
* **notebook source** - ``notebook.ipynb`` with the injected cell (and a ``dpnb-error``
  cell) removed and every output cleared; its hash must equal the manifest's
  ``key_parts.source``. The current file in ``notebooks/`` is not used, so a later edit
  does not change what is replayed.
* **inputs** - every file of the manifest's ``inputs`` must still have its sha256 (a file
  listed as missing must still be missing), and every upstream report version the run
  used must still hold the ``results.json`` it had (same sha256). Otherwise the replay is
  refused with a :class:`ReplayRefused` naming the files; nothing is executed.

The notebook runs (papermill, as in ``dpnb run``) into a temporary directory outside the
reports - never a new version. The conditions database is copied into that directory
first (a replayed calibration step writes its payloads into the copy, not the real
global tag), and the per-run partial cache (``cache_dir``) points into it too, so per-run
work is recomputed rather than read back (``reuse_cache=True`` keeps the recorded one;
caches a notebook keeps elsewhere, e.g. under ``reports_dir``, are still read). The
replayed ``results.json`` is compared byte for byte with the recorded one; on a
difference, :func:`dpnb.versiondiff.diff_results` lists the numbers and gate verdicts
that changed. A change of the dpnb code or package versions since the recording
is reported (it is the usual reason for a difference) but does not stop the replay.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError

__all__ = ["ReplayRefused", "ReplayPlan", "ReplayResult", "plan_replay", "replay", "injected_parameters",
           "source_notebook"]


#: injected by ``dpnb run`` but not part of the content key (checked separately or replaced)
_RUN_ONLY = ("dpnb_resolved", "output_dir", "upstream")


class ReplayRefused(InputError):
    """The version cannot be replayed as recorded (inputs changed, source or parameters do not match)."""


@dataclass
class ReplayPlan:
    manifest_path: Path
    version_dir: Path
    manifest: dict
    parameters: dict
    notebook: object  # nbformat node without outputs and injected cell
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReplayResult:
    identical: bool
    out_dir: Path
    recorded: Path
    replayed: Path
    error: str | None = None
    changes: list = field(default_factory=list)  # versiondiff.ValueChange that changed
    gates: list = field(default_factory=list)
    other: list[str] = field(default_factory=list)  # top-level keys / tables that differ besides values
    warnings: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_manifest(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    if not path.is_file():
        msg = f"{path}: no manifest there; expected reports/<bucket>/<notebook>/v<N>/manifest.json"
        raise InputError(msg)
    try:
        man = json.loads(path.read_text())
    except ValueError as exc:
        msg = f"{path}: not valid JSON ({exc}); expected a report version's manifest.json"
        raise InputError(msg) from None
    missing = [k for k in ("notebook", "bucket", "parameters", "inputs", "key_parts") if k not in man]
    if missing:
        msg = f"{path}: manifest lacks {missing}; expected a manifest written by `dpnb run`"
        raise InputError(msg)
    return man


def injected_parameters(nb, where: str = "notebook.ipynb") -> dict:
    """The parameters papermill injected (cell tagged ``injected-parameters``), as Python values."""
    cells = [c for c in nb.cells if "injected-parameters" in (c.get("metadata", {}).get("tags") or [])]
    if len(cells) != 1:
        msg = f"{where}: expected one cell tagged 'injected-parameters' (written by dpnb run), found {len(cells)}"
        raise ReplayRefused(msg)
    out = {}
    tree = ast.parse(cells[0].source)
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            msg = f"{where}: injected-parameters cell line {node.lineno}: expected `name = literal`"
            raise ReplayRefused(msg)
        try:
            out[node.targets[0].id] = ast.literal_eval(node.value)
        except ValueError:
            msg = (f"{where}: injected-parameters cell line {node.lineno}: value of {node.targets[0].id!r} "
                   "is not a literal")
            raise ReplayRefused(msg) from None
    return out


def source_notebook(nb):
    """The notebook as it was before execution: no injected cell, no error cell, no outputs."""
    import copy

    nb = copy.deepcopy(nb)
    drop = ("injected-parameters", "dpnb-error")
    nb.cells = [c for c in nb.cells if not set(c.get("metadata", {}).get("tags") or []) & set(drop)]
    for c in nb.cells:
        c.metadata.pop("papermill", None)
        c.metadata.pop("execution", None)
        if c.cell_type == "code":
            c.outputs = []
            c.execution_count = None
    nb.metadata.pop("papermill", None)
    return nb


def _changed_inputs(man: dict, reports_dir: Path) -> list[str]:
    problems = []
    for entry in man.get("inputs") or []:
        p = Path(entry["path"])
        if entry.get("missing"):
            if p.exists():
                problems.append(f"{p} (was missing, now exists)")
            continue
        if not p.is_file():
            problems.append(f"{p} (missing)")
        elif p.stat().st_size != entry.get("size", p.stat().st_size) or _sha256(p) != entry.get("sha256"):
            problems.append(f"{p} (sha256 changed)")
    for name, up in sorted((man.get("upstream") or {}).items()):
        res = reports_dir / man["bucket"] / name / f"v{up.get('version')}" / "results.json"
        if not res.is_file():
            problems.append(f"{res} (upstream {name} v{up.get('version')} missing)")
        elif up.get("results_sha256") and _sha256(res) != up["results_sha256"]:
            problems.append(f"{res} (upstream results sha256 changed)")
    return problems


def plan_replay(manifest_path) -> ReplayPlan:
    """Everything checked before executing; raises ReplayRefused / InputError naming what is wrong."""
    import nbformat

    from .pipeline.cache import canonical_json, code_version, key_parameters, notebook_source_hash
    from .reports.manifest import package_versions

    man = _read_manifest(Path(manifest_path))
    mpath = Path(manifest_path)
    vdir = (mpath if mpath.is_dir() else mpath.parent).resolve()
    reports_dir = vdir.parent.parent.parent
    executed = vdir / "notebook.ipynb"
    if not executed.is_file():
        msg = f"{executed}: the executed notebook of this version is missing; it holds the source and parameters"
        raise ReplayRefused(msg)
    nb = nbformat.read(str(executed), as_version=4)
    params = injected_parameters(nb, str(executed))
    src = source_notebook(nb)
    recorded_source = (man.get("key_parts") or {}).get("source")
    if notebook_source_hash(src) != recorded_source:
        msg = (f"{executed}: notebook source (outputs and injected cell removed) hashes to "
               f"{notebook_source_hash(src)[:12]}, the manifest records {str(recorded_source)[:12]}; "
               "expected the notebook this version ran")
        raise ReplayRefused(msg)
    run_keys = {k: v for k, v in params.items() if k not in _RUN_ONLY}
    if canonical_json(key_parameters(run_keys, man["notebook"])) != canonical_json(man["parameters"]):
        from .reports.manifest import flatten

        a, b = flatten(key_parameters(run_keys, man["notebook"])), flatten(man["parameters"])
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        msg = (f"{executed}: injected parameters differ from {vdir / 'manifest.json'} at {', '.join(keys[:8])}; "
               "expected the parameters this version ran with")
        raise ReplayRefused(msg)
    ups = {k: Path(v).name for k, v in (params.get("upstream") or {}).items()}
    want = {k: f"v{u.get('version')}" for k, u in (man.get("upstream") or {}).items()}
    if ups != want:
        msg = f"{executed}: injected upstream versions {ups} differ from the manifest's {want}"
        raise ReplayRefused(msg)
    changed = _changed_inputs(man, reports_dir)
    if changed:
        msg = (f"refusing to replay {man['bucket']}/{man['notebook']}/{vdir.name}: {len(changed)} input(s) changed "
               "since it ran:\n  " + "\n  ".join(changed))
        raise ReplayRefused(msg)
    plan = ReplayPlan(mpath, vdir, man, params, src)
    rec_code = (man.get("code") or {}).get("source_sha256")
    if rec_code and rec_code != code_version()["source_sha256"]:
        plan.warnings.append(f"dpnb code differs from the recorded version (source {rec_code[:12]} -> "
                             f"{code_version()['source_sha256'][:12]}): numbers may differ for that reason")
    now = package_versions()
    for k, v in sorted((man.get("packages") or {}).items()):
        if now.get(k) != v:
            plan.warnings.append(f"package {k}: recorded {v}, installed {now.get(k)}")
    return plan


def _copy_db(src: Path, dst: Path) -> None:
    """Consistent copy of an SQLite database (WAL included) through the backup API."""
    a = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    b = sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def replay(manifest_path, out_dir=None, timeout: float | None = None, reuse_cache: bool = False) -> ReplayResult:
    """Re-execute the version of ``manifest_path`` into ``out_dir`` (default: a new temporary
    directory) and compare ``results.json`` byte for byte; raises ReplayRefused before running."""
    import nbformat

    from .versiondiff import diff_results

    plan = plan_replay(manifest_path)
    man = plan.manifest
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix=f"dpnb-replay-{man['notebook']}-"))
    out.mkdir(parents=True, exist_ok=True)
    bucket_dir = plan.version_dir.parent.parent
    if out.resolve() == bucket_dir or bucket_dir in out.resolve().parents:
        msg = f"{out}: a replay must not write into the bucket's reports ({bucket_dir}); choose another --out"
        raise InputError(msg)
    nb_path = out / "source.ipynb"
    nbformat.write(plan.notebook, str(nb_path))
    params = dict(plan.parameters, output_dir=str(out / "output"))
    if not reuse_cache:  # recompute per-run partials instead of reading the ones of earlier runs
        params["cache_dir"] = str(out / "cache")
    db = (params.get("conditions") or {}).get("db")
    if db and Path(db).is_file():
        copy = out / "conditions.sqlite"
        _copy_db(Path(db), copy)
        params["conditions"] = dict(params["conditions"], db=str(copy))
    orig_nb = Path(man.get("notebook_path") or "")
    cwd = orig_nb.parent if orig_nb.parent.is_dir() else out
    error = _execute(nb_path, out / "notebook.ipynb", params, cwd, float(timeout or man.get("timeout_s") or 600.0))
    recorded = plan.version_dir / "results.json"
    replayed = out / "output" / "results.json"
    res = ReplayResult(False, out, recorded, replayed, error=error, warnings=list(plan.warnings))
    if error or not replayed.is_file():
        res.error = error or "the replayed notebook wrote no results.json"
        return res
    a, b = recorded.read_bytes(), replayed.read_bytes()
    res.identical = a == b
    if not res.identical:
        old, new = json.loads(a), json.loads(b)
        changes, gates = diff_results(old, new)
        res.changes = [c for c in changes if c.changed]
        res.gates = gates
        for key in sorted(set(old) | set(new)):
            if key in ("values", "gates"):
                continue
            if key == "tables":
                to, tn = old.get("tables") or {}, new.get("tables") or {}
                res.other += [f"table {t}" for t in sorted(set(to) | set(tn)) if to.get(t) != tn.get(t)]
            elif old.get(key) != new.get(key):
                res.other.append(key)
    return res


def _execute(nb_path: Path, out_nb: Path, params: dict, cwd: Path, timeout: float) -> str | None:
    """Run the notebook as ``dpnb run`` does (same kernel settings and environment), in the working
    directory of the original notebook; None on success, else a one-line error."""
    import logging

    import papermill as pm

    from .pipeline import execute as ex

    logging.getLogger("papermill").setLevel(logging.ERROR)
    try:
        with ex._environ(ex.KERNEL_ENV):
            pm.execute_notebook(str(nb_path), str(out_nb), parameters=params, kernel_name="python3", cwd=str(cwd),
                                progress_bar=False, log_output=False, start_timeout=60, execution_timeout=timeout,
                                kernel_manager_class=ex._kernel_manager_class(), extra_arguments=ex.KERNEL_ARGS)
    except pm.PapermillExecutionError as exc:
        return f"{exc.ename}: {exc.evalue} (cell {exc.exec_count})"
    except Exception as exc:  # noqa: BLE001 - kernel death or timeout: reported, not raised
        return f"{type(exc).__name__}: {exc}"
    return None


def keep_or_clean(res: ReplayResult, keep: bool) -> None:
    """Remove the temporary directory of an identical replay unless ``keep``."""
    if res.identical and not keep:
        shutil.rmtree(res.out_dir, ignore_errors=True)

