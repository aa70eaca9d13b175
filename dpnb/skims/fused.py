"""Fused selections: one numba kernel per selection expression, generated from its syntax tree.

:meth:`dpnb.skims.expr.Expression.evaluate` computes a selection as a sequence of numpy
operations over whole columns (one temporary array per node) and numba reductions over the
offsets. For a per-event condition, this module writes instead the source of one kernel
that loops over events and, inside, over the objects of each reduction, computing every
node for one event or object at a time: no temporaries, one pass over the data.

The generated module is written to ``<numba cache dir>/dpnb_fused/sel_<sha>.py`` (named by
the hash of its source, written once, atomically) and imported from there, so numba's
``cache=True`` keeps the compiled kernel between processes like any other dpnb kernel. The
numbers are those of the numpy evaluation (same operations in the same order, float64
arithmetic, max/min of no objects -inf/+inf, sums in object order); a test compares the
two on random events for every construct of the language.

Not fused (the numpy evaluation is used): per-object results (histogram variables of
objects), numeric results, and everything when numba is absent or disabled.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..detector import HLT_BITS

__all__ = ["FusedSelection", "fuse", "kernel_source"]

#: per-object derived columns computed inside the kernel from their source branches
_INLINE_OBJECT = {"trk_pt", "trk_p", "trk_costheta"}
#: per-event derived columns that are object counts
_INLINE_COUNT = {"ntrk": "trk", "nclus": "clus"}


class _Gen:
    """Source generation for one expression (see :func:`kernel_source`)."""

    def __init__(self):
        self.arrays: list[str] = []  # column arrays passed to the kernel, in order
        self.collections: list[str] = []  # collections whose offsets are passed
        self.stmts: list[str] = []  # statements of the event loop body
        self.n_tmp = 0

    def array(self, name: str) -> str:
        if name not in self.arrays:
            self.arrays.append(name)
        return f"a_{name}"

    def offsets(self, coll: str) -> str:
        if coll not in self.collections:
            self.collections.append(coll)
        return f"o_{coll}"

    def tmp(self, prefix: str) -> str:
        self.n_tmp += 1
        return f"{prefix}{self.n_tmp}"

    # --- nodes -----------------------------------------------------------------------------
    def emit(self, node, idx: str) -> str:
        """A Python expression of ``node`` for event ``e`` (``idx`` is the current object
        index of a per-object node: the loop variable of the enclosing reduction)."""
        from .expr import Binary, Call, Col, Num, Unary

        if isinstance(node, Num):
            return repr(float(node.value))
        if isinstance(node, Col):
            return self.column(node, idx)
        if isinstance(node, Unary):
            arg = self.emit(node.arg, idx)
            return f"(not {arg})" if node.op == "not" else f"(-{arg})"
        if isinstance(node, Binary):
            left, right = self.emit(node.left, idx), self.emit(node.right, idx)
            if node.op in ("and", "or"):
                return f"({left} {node.op} {right})"
            if node.op in ("<", "<=", ">", ">=", "==", "!="):
                return f"({left} {node.op} {right})"
            return f"(np.float64({left}) {node.op} {right})"
        if isinstance(node, Call):
            return self.call(node, idx)
        msg = f"cannot fuse {node!r}"
        raise TypeError(msg)

    def column(self, node, idx: str) -> str:
        name = node.name
        if name in _INLINE_COUNT:
            o = self.offsets(_INLINE_COUNT[name])
            return f"({o}[e + 1] - {o}[e])"
        if name in _INLINE_OBJECT:
            px, py = self.array("trk_px"), self.array("trk_py")
            x, y = f"np.float64({px}[{idx}])", f"np.float64({py}[{idx}])"
            pt = f"np.sqrt({x} * {x} + {y} * {y})"
            if name == "trk_pt":
                return pt
            pz = self.array("trk_pz")
            p = f"np.sqrt({pt} * {pt} + np.float64({pz}[{idx}]) * np.float64({pz}[{idx}]))"
            if name == "trk_p":
                return p
            return f"_costheta(np.float64({pz}[{idx}]), {p})"
        a = self.array(name)
        return f"{a}[e]" if node.kind == "event" else f"{a}[{idx}]"

    def call(self, node, idx: str) -> str:
        f = node.func
        if f == "hlt":
            bit = int(HLT_BITS[node.args[0].value])
            return f"(((np.int64({self.array('hlt_bits')}[e]) >> {bit}) & 1) != 0)"
        arg = node.args[0]
        if f == "abs":
            return f"abs({self.emit(arg, idx)})"
        if f == "sqrt":
            return f"np.sqrt(np.float64({self.emit(arg, idx)}))"
        # a reduction over the objects of the argument's collection, for event e: its loop
        # goes before the statement that uses it (inner reductions first)
        o = self.offsets(arg.kind)
        j = self.tmp("j")
        r = self.tmp("r")
        value = self.emit(arg, j)  # reductions inside the argument are event-level: emitted first
        loop = f"for {j} in range({o}[e], {o}[e + 1]):"
        if f == "count":
            self.stmts += [f"{r} = 0", loop, f"    if {value}:", f"        {r} += 1"]
        elif f == "any":
            self.stmts += [f"{r} = False", loop, f"    if {value}:", f"        {r} = True", "        break"]
        elif f == "all":
            self.stmts += [f"{r} = True", loop, f"    if not {value}:", f"        {r} = False", "        break"]
        elif f == "sum":
            self.stmts += [f"{r} = 0.0", loop, f"    {r} += {value}"]
        elif f in ("max", "min"):
            first, v = self.tmp("first"), self.tmp("v")
            start, cmp = ("-np.inf", ">") if f == "max" else ("np.inf", "<")
            self.stmts += [f"{r} = {start}", f"{first} = True", loop, f"    {v} = {value}",
                           f"    if {first} or {v} {cmp} {r}:", f"        {r} = {v}", f"        {first} = False"]
        else:
            msg = f"cannot fuse function {f!r}"
            raise TypeError(msg)
        return r


_TEMPLATE = '''"""Generated by dpnb.skims.fused for the selection:

    {text}
"""

import numpy as np

from dpnb.kernels._jit import njit, prange


@njit
def _costheta(pz, p):
    return pz / p if p > 0 else 0.0


@njit
def select_range(e0, e1, out{args}):
    for e in range(e0, e1):
{body}
        out[e] = {result}


@njit(parallel=True)
def select_parallel(nthreads, out{args}):
    n = out.shape[0]
    step = (n + nthreads - 1) // nthreads
    for t in prange(nthreads):
        select_range(min(n, t * step), min(n, t * step + step), out{args})
'''


def kernel_source(expr) -> tuple[str, list[str], list[str]]:
    """(module source, column arrays, collections) of the fused kernel of ``expr`` (a
    per-event condition). Kernel arguments: ``out``, the collections' offsets, the arrays."""
    g = _Gen()
    result = g.emit(expr.root, "e")
    body = "\n".join("        " + s for s in g.stmts) or "        pass"
    args = "".join(f", o_{c}" for c in g.collections) + "".join(f", a_{a}" for a in g.arrays)
    text = expr.text.replace('"""', "'''").replace("\\", "\\\\")
    src = _TEMPLATE.format(text=text, args=args, body=body, result=result)
    return src, list(g.arrays), list(g.collections)


def _module_dir() -> Path:
    from ..kernels import _jit

    d = Path(_jit.cache_dir) / "dpnb_fused"
    d.mkdir(parents=True, exist_ok=True)
    return d


_LOADED: dict[str, object] = {}


def _load(src: str):
    digest = hashlib.sha256(src.encode()).hexdigest()[:24]
    if digest in _LOADED:
        return _LOADED[digest]
    path = _module_dir() / f"sel_{digest}.py"
    if not path.exists() or path.read_text() != src:
        # written once, atomically: the file's time stamp stays what numba's cache index saw
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".sel_{digest}-", suffix=".py")
        with os.fdopen(fd, "w") as fh:
            fh.write(src)
        os.replace(tmp, path)
    name = f"dpnb_fused_sel_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    _LOADED[digest] = module
    return module


class FusedSelection:
    """The fused kernel of one per-event condition; call it on a
    :class:`~dpnb.skims.columns.ChunkColumns` for a bool per event."""

    def __init__(self, expr):
        self.text = expr.text
        self.source, self.arrays, self.collections = kernel_source(expr)
        self._module = None

    def __call__(self, cols) -> np.ndarray:
        from ..kernels.hist import effective_threads

        if self._module is None:
            self._module = _load(self.source)
        n = int(cols.n_events)
        out = np.empty(n, dtype=np.bool_)
        args = [np.ascontiguousarray(cols.offsets(c)) for c in self.collections]
        args += [np.ascontiguousarray(cols[a]) for a in self.arrays]
        if n == 0:
            return out
        nthreads = effective_threads(cols.n_threads, n)
        if nthreads == 1:
            self._module.select_range(0, n, out, *args)
        else:
            self._module.select_parallel(nthreads, out, *args)
        return out


def fuse(expr) -> FusedSelection | None:
    """The fused kernel of ``expr``, or None when it is not a per-event condition or numba is
    not in use (``DPNB_DISABLE_JIT=1``, or ``DPNB_FUSE_SELECTIONS=0`` to compare)."""
    from ..kernels._jit import HAVE_NUMBA

    if not HAVE_NUMBA or os.environ.get("DPNB_FUSE_SELECTIONS", "1") == "0":
        return None
    if expr.root.kind != "event" or expr.root.vtype != "bool":
        return None
    return FusedSelection(expr)
