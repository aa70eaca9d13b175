"""Tiny throwaway projects for the runner tests: a few small notebooks and a DAG in a tmp dir."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Mapping

import nbformat
import yaml

REPO = Path(__file__).resolve().parent.parent

PARAMS_CELL = """label = "t"
runs = None
data = None
conditions = None
notebooks = None
output_dir = None
upstream = None
"""


def make_notebook(path: Path, name: str, body: str = "", with_parameters: bool = True, save: bool = True) -> Path:
    """A notebook following the house convention: parameters cell, context cell, ``body``, save."""
    nb = nbformat.v4.new_notebook()
    cells = []
    p = nbformat.v4.new_code_cell(PARAMS_CELL)
    if with_parameters:
        p.metadata["tags"] = ["parameters"]
    cells.append(p)
    cells.append(nbformat.v4.new_code_cell(f'import dpnb\nctx = dpnb.notebook_context("{name}", globals())'))
    if body:
        cells.append(nbformat.v4.new_code_cell(body))
    if save:
        cells.append(nbformat.v4.new_code_cell("ctx.save()"))
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def make_project(root: Path, notebooks: Mapping[str, str], dag: Mapping[str, Mapping],
                 bucket: Mapping | None = None) -> Path:
    """Write a project: ``notebooks`` (name -> body code), ``dag`` (pipeline.yaml entries), bucket ``t``.

    Returns the bucket file path. Data lives in ``root/data`` (a ``raw`` file is created).
    """
    root = Path(root)
    (root / "parameters" / "buckets").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "parameters" / "defaults.yaml", root / "parameters" / "defaults.yaml")
    for name, body in notebooks.items():
        make_notebook(root / "notebooks" / f"{name}.ipynb", name, body)
    entries = {n: {"path": f"notebooks/{n}.ipynb", **dict(e)} for n, e in dag.items()}
    (root / "parameters" / "pipeline.yaml").write_text(yaml.safe_dump({"notebooks": entries}, sort_keys=False))
    (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (root / "data" / "raw" / "r1.txt").write_text("raw data 1\n")
    b = {"label": "t", "runs": ["1:1-10"], "data": {"root": "data"}, **dict(bucket or {})}
    bfile = root / "parameters" / "buckets" / "t.yaml"
    bfile.write_text(yaml.safe_dump(b, sort_keys=False))
    return bfile


def set_dag(root: Path, dag: Mapping[str, Mapping]) -> None:
    """Rewrite pipeline.yaml."""
    entries = {n: {"path": f"notebooks/{n}.ipynb", **dict(e)} for n, e in dag.items()}
    (Path(root) / "parameters" / "pipeline.yaml").write_text(yaml.safe_dump({"notebooks": entries}, sort_keys=False))
