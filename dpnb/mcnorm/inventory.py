"""The MC sample inventory, read from the MC files themselves.

For each sample the generated count and the sums of weights and of squared weights of the
*full generated sample* (negative weights included) come from the file's run tree (one
entry per job; entries are summed). Files without a run tree (``runs_tree: ""``) get
them from the events: N = entries, Σw and Σw² from the per-event weight (1 when
``weight: ""``). The effective sample size is N_eff = (Σw)² / Σw².

A schema maps dpnb's names to those in a file::

    {"events_tree": "events", "runs_tree": "runs", "n_generated": "n_generated",
     "sum_w": "sum_w", "sum_w2": "sum_w2", "weight": "weight"}

e.g. CMS NanoAOD: ``runs_tree: Runs``, ``genEventCount_``, ``genEventSumw_``,
``genEventSumw2_``, ``weight: genWeight`` with ``events_tree: Events``.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ..errors import InputError
from ..io.events import check_branches, iterate_chunks, open_tree
from ..io.tables import read_table

__all__ = [
    "DEFAULT_SCHEMA",
    "SAMPLES_COLUMNS",
    "Sample",
    "read_sample",
    "read_samples_csv",
    "read_inventory",
    "inventory_frame",
]

DEFAULT_SCHEMA = {
    "events_tree": "events",
    "runs_tree": "runs",
    "n_generated": "n_generated",
    "sum_w": "sum_w",
    "sum_w2": "sum_w2",
    "weight": "weight",
}
SAMPLES_COLUMNS = ("sample", "process", "exp", "run_first", "run_last", "n_generated")


@dataclass(frozen=True)
class Sample:
    """One MC sample: its process, run range and generated sums (weights dimensionless)."""

    sample: str
    process: str
    path: str
    n_generated: int
    sum_w: float
    sum_w2: float
    n_negative: int | None = None  # events with w < 0 among the stored events (None: not counted)
    n_stored: int | None = None  # entries of the events tree
    exp: int = -1
    run_first: int = -1
    run_last: int = -1

    @property
    def n_eff(self) -> float:
        """Effective sample size (Σw)² / Σw²."""
        return self.sum_w**2 / self.sum_w2

    @property
    def weighted(self) -> bool:
        """True unless every generated event has weight 1 (Σw = Σw² = N)."""
        return not (math.isclose(self.sum_w, self.n_generated) and math.isclose(self.sum_w2, self.n_generated))

    @property
    def negative_fraction(self) -> float | None:
        if self.n_negative is None or not self.n_stored:
            return None
        return self.n_negative / self.n_stored

    def to_dict(self) -> dict:
        d = asdict(self)
        d["n_eff"] = self.n_eff
        d["weighted"] = self.weighted
        d["negative_fraction"] = self.negative_fraction
        return d


def _schema(schema: Mapping[str, str] | None) -> dict:
    out = dict(DEFAULT_SCHEMA)
    for k, v in (schema or {}).items():
        if k not in DEFAULT_SCHEMA:
            msg = f"MC schema: unknown key {k!r}; expected some of {sorted(DEFAULT_SCHEMA)}"
            raise InputError(msg)
        out[k] = v or ""
    return out


def _check_sums(path: str, where: str, n_gen: int, sum_w: float, sum_w2: float) -> None:
    if n_gen <= 0:
        msg = f"{path}: {where}: {n_gen} generated events; expected a positive count"
        raise InputError(msg)
    if not math.isfinite(sum_w) or sum_w <= 0:
        msg = f"{path}: {where}: sum of weights = {sum_w!r}; expected > 0 (a sample cannot be normalised by it)"
        raise InputError(msg)
    if not math.isfinite(sum_w2) or sum_w2 <= 0:
        msg = f"{path}: {where}: sum of squared weights = {sum_w2!r}; expected > 0"
        raise InputError(msg)


def read_sample(
    path: str | os.PathLike,
    process: str,
    *,
    sample: str | None = None,
    schema: Mapping[str, str] | None = None,
    count_negative: bool = True,
    exp: int = -1,
    run_first: int = -1,
    run_last: int = -1,
    step_size: int = 200_000,
) -> Sample:
    """Read one sample's generated sums from its file (see the module docstring)."""
    s = _schema(schema)
    path = str(path)
    name = sample or Path(path).stem
    wbranch = s["weight"]
    n_neg = None
    n_stored = None
    if count_negative or not s["runs_tree"]:
        n_stored = 0
        n_neg = 0 if wbranch else None
        ev_sum_w = 0.0
        ev_sum_w2 = 0.0
        branches = ["weight"] if wbranch else []
        if wbranch:
            chunks = iterate_chunks([path], branches, tree=s["events_tree"], schema={"weight": wbranch},
                                    step_size=step_size)
            for chunk in chunks:
                w = np.asarray(chunk["weight"], dtype=np.float64)
                n_stored += chunk.n_events
                n_neg += int(np.count_nonzero(w < 0))
                ev_sum_w += float(w.sum())
                ev_sum_w2 += float(np.dot(w, w))
        else:
            tree = open_tree(path, s["events_tree"])
            n_stored = int(tree.num_entries)
            tree.file.close()
            ev_sum_w = ev_sum_w2 = float(n_stored)
    if s["runs_tree"]:
        tree = open_tree(path, s["runs_tree"])
        fields = {k: s[k] for k in ("n_generated", "sum_w", "sum_w2")}
        check_branches(tree, fields.values(), path, s["runs_tree"])
        arrays = tree.arrays(list(fields.values()), library="np")
        tree.file.close()
        n_gen_arr = np.asarray(arrays[fields["n_generated"]])
        if n_gen_arr.size == 0:
            msg = f"{path}: tree {s['runs_tree']!r} has no entries; expected one per generated job"
            raise InputError(msg)
        n_gen = int(n_gen_arr.astype(np.int64).sum())
        sum_w = float(np.asarray(arrays[fields["sum_w"]], dtype=np.float64).sum())
        sum_w2 = float(np.asarray(arrays[fields["sum_w2"]], dtype=np.float64).sum())
        where = f"tree {s['runs_tree']!r} (branches {fields['n_generated']}, {fields['sum_w']}, {fields['sum_w2']})"
    else:
        n_gen, sum_w, sum_w2 = n_stored, ev_sum_w, ev_sum_w2
        where = f"tree {s['events_tree']!r}" + (f" branch {wbranch!r}" if wbranch else "")
    _check_sums(path, where, n_gen, sum_w, sum_w2)
    return Sample(name, str(process), path, n_gen, sum_w, sum_w2, n_neg, n_stored, int(exp), int(run_first),
                  int(run_last))


def read_samples_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``mc/samples.csv`` (sample,process,exp,run_first,run_last,n_generated)."""
    path = Path(path)
    df = read_table(path, SAMPLES_COLUMNS, "MC sample inventory not found (expected mc/samples.csv written by `dpnb simulate`)")
    dup = df["sample"][df["sample"].duplicated()].tolist()
    if dup:
        msg = f"{path}: sample names appear more than once: {dup}"
        raise InputError(msg)
    for i, row in enumerate(df.itertuples(index=False), start=2):
        if not int(row.run_first) <= int(row.run_last):
            msg = f"{path}, line {i}: sample {row.sample!r}: run_first {row.run_first} > run_last {row.run_last}"
            raise InputError(msg)
    return df


def read_inventory(mc_dir: str | os.PathLike, schema: Mapping[str, str] | None = None,
                   samples_csv: str | os.PathLike | None = None, count_negative: bool = True) -> list[Sample]:
    """Every sample listed in ``samples.csv``, read from ``<mc_dir>/<sample>.root``.

    The file's own generated count must equal the CSV's ``n_generated`` (a mismatch means
    an incomplete or mixed-up file and raises :class:`InputError` naming both).
    """
    mc_dir = Path(mc_dir)
    csv_path = Path(samples_csv) if samples_csv else mc_dir / "samples.csv"
    table = read_samples_csv(csv_path)
    out = []
    for row in table.itertuples(index=False):
        path = mc_dir / f"{row.sample}.root"
        if not path.is_file():
            msg = f"{csv_path}: sample {row.sample!r} (process {row.process!r}) has no file {path}"
            raise InputError(msg)
        s = read_sample(path, str(row.process), sample=str(row.sample), schema=schema, count_negative=count_negative,
                        exp=int(row.exp), run_first=int(row.run_first), run_last=int(row.run_last))
        if s.n_generated != int(row.n_generated):
            msg = (
                f"{path}: {s.n_generated} generated events in the file's run tree, but {csv_path} says "
                f"n_generated = {int(row.n_generated)} for sample {row.sample!r}; expected them equal"
            )
            raise InputError(msg)
        out.append(s)
    return out


def inventory_frame(samples: list[Sample]) -> pd.DataFrame:
    """One row per sample (N_gen, Σw, Σw², N_eff, negative-weight fraction)."""
    cols = ["sample", "process", "exp", "run_first", "run_last", "n_generated", "sum_w", "sum_w2", "n_eff",
            "weighted", "n_stored", "negative_fraction", "path"]
    return pd.DataFrame([s.to_dict() for s in samples], columns=cols)
