"""The skim selection language: parse, type-check, evaluate as vectorised kernel calls.

Grammar (precedence low to high)::

    expr    := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | compare
    compare := sum (('<' | '<=' | '>' | '>=' | '==' | '!=') sum)?
    sum     := prod (('+' | '-') prod)*
    prod    := unary (('*' | '/') unary)*
    unary   := '-' unary | atom
    atom    := NUMBER | NAME | NAME '(' args ')' | '(' expr ')'

Names are columns (:mod:`dpnb.skims.columns`). Functions: ``count(m)``, ``any(m)``,
``all(m)`` of a per-object condition, ``sum(x)``, ``max(x)``, ``min(x)`` of a per-object
value (max of no objects is -inf, min is +inf), ``abs(x)``, ``sqrt(x)``, and
``hlt('hlt_mumu_2trk')`` (a trigger bit of ``hlt_bits``). Per-object expressions are
evaluated with numpy over the flat values; reductions to events are numba kernels over
the offsets. An event-level value used in a per-object expression is broadcast.

Errors name the skim, the column (1-based) and show the expression with a caret.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..detector import HLT_BITS
from ..errors import ParameterError, nearest
from ..kernels import select as ks
from .columns import ColumnSet, source_branches

__all__ = ["SkimExpressionError", "Expression", "compile_expression", "tokenize"]


class SkimExpressionError(ParameterError):
    """A selection expression that cannot be parsed or names an unknown column."""


_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<str>'[^']*'|\"[^\"]*\")|(?P<op><=|>=|==|!=|&&|\|\||[<>+\-*/(),!]))"
)
_KEYWORDS = {"and", "or", "not"}
_ALIASES = {"&&": "and", "||": "or", "!": "not"}
_REDUCTIONS = {"count", "any", "all", "sum", "max", "min"}
_ELEMENTWISE = {"abs", "sqrt"}


@dataclass(frozen=True)
class Token:
    kind: str  # num, name, str, op, end
    text: str
    pos: int  # 0-based character offset


def _fail(text: str, pos: int, what: str, where: str) -> SkimExpressionError:
    caret = " " * pos + "^"
    msg = f"{where}, column {pos + 1}: {what}\n    {text}\n    {caret}"
    return SkimExpressionError(msg)


def tokenize(text: str, where: str = "selection") -> list[Token]:
    """Split ``text`` into tokens; an unexpected character raises with its position."""
    out = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            bad = len(text) - len(text[pos:].lstrip())
            raise _fail(text, bad, f"unexpected character {text[bad]!r}", where)
        kind = m.lastgroup
        tok = m.group(kind)
        start = m.start(kind)
        if kind == "op" and tok in _ALIASES:
            kind, tok = "name", _ALIASES[tok]
        out.append(Token(kind, tok, start))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


# --- AST -------------------------------------------------------------------------------------
# Each node knows its position, its *kind* ("event" or a collection name) and whether it is a
# condition ("bool") or a number ("num").


@dataclass
class Node:
    pos: int
    kind: str = "event"
    vtype: str = "num"


@dataclass
class Num(Node):
    value: float = 0.0


@dataclass
class Col(Node):
    name: str = ""


@dataclass
class Str(Node):
    value: str = ""


@dataclass
class Unary(Node):
    op: str = ""
    arg: Node | None = None


@dataclass
class Binary(Node):
    op: str = ""
    left: Node | None = None
    right: Node | None = None


@dataclass
class Call(Node):
    func: str = ""
    args: tuple = ()


class _Parser:
    def __init__(self, text: str, columns: ColumnSet, where: str):
        self.text = text
        self.columns = columns
        self.where = where
        self.toks = tokenize(text, where)
        self.i = 0

    # helpers
    @property
    def tok(self) -> Token:
        return self.toks[self.i]

    def err(self, pos: int, what: str) -> SkimExpressionError:
        return _fail(self.text, pos, what, self.where)

    def take(self) -> Token:
        t = self.toks[self.i]
        self.i += 1
        return t

    def is_kw(self, word: str) -> bool:
        return self.tok.kind == "name" and self.tok.text == word

    def expect(self, text: str) -> Token:
        if self.tok.text != text or self.tok.kind not in ("op",):
            got = "end of expression" if self.tok.kind == "end" else repr(self.tok.text)
            raise self.err(self.tok.pos, f"expected {text!r}, found {got}")
        return self.take()

    # grammar
    def parse(self) -> Node:
        if self.tok.kind == "end":
            raise self.err(0, "empty selection")
        node = self.or_()
        if self.tok.kind != "end":
            raise self.err(self.tok.pos, f"unexpected {self.tok.text!r} after a complete expression")
        return node

    def _logic(self, word: str, sub) -> Node:
        node = sub()
        while self.is_kw(word):
            t = self.take()
            right = sub()
            node = self.combine(Binary(t.pos, op=word, left=node, right=right))
        return node

    def or_(self) -> Node:
        return self._logic("or", self.and_)

    def and_(self) -> Node:
        return self._logic("and", self.not_)

    def not_(self) -> Node:
        if self.is_kw("not"):
            t = self.take()
            arg = self.not_()
            self.need_bool(arg, "'not'")
            return Unary(t.pos, kind=arg.kind, vtype="bool", op="not", arg=arg)
        return self.compare()

    def compare(self) -> Node:
        node = self.sum_()
        if self.tok.kind == "op" and self.tok.text in ("<", "<=", ">", ">=", "==", "!="):
            t = self.take()
            right = self.sum_()
            node = self.combine(Binary(t.pos, op=t.text, left=node, right=right))
            if self.tok.kind == "op" and self.tok.text in ("<", "<=", ">", ">=", "==", "!="):
                raise self.err(self.tok.pos, "chained comparison; write 'a < b and b < c'")
        return node

    def _arith(self, ops, sub) -> Node:
        node = sub()
        while self.tok.kind == "op" and self.tok.text in ops:
            t = self.take()
            right = sub()
            node = self.combine(Binary(t.pos, op=t.text, left=node, right=right))
        return node

    def sum_(self) -> Node:
        return self._arith(("+", "-"), self.prod)

    def prod(self) -> Node:
        return self._arith(("*", "/"), self.unary)

    def unary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text == "-":
            t = self.take()
            arg = self.unary()
            self.need_num(arg, "'-'")
            return Unary(t.pos, kind=arg.kind, vtype="num", op="-", arg=arg)
        return self.atom()

    def atom(self) -> Node:
        t = self.tok
        if t.kind == "num":
            self.take()
            return Num(t.pos, value=float(t.text))
        if t.kind == "str":
            self.take()
            return Str(t.pos, vtype="str", value=t.text[1:-1])
        if t.kind == "op" and t.text == "(":
            self.take()
            node = self.or_()
            self.expect(")")
            return node
        if t.kind == "name" and t.text not in _KEYWORDS:
            self.take()
            if self.tok.kind == "op" and self.tok.text == "(":
                return self.call(t)
            return self.column(t)
        got = "end of expression" if t.kind == "end" else repr(t.text)
        raise self.err(t.pos, f"expected a number, a column or '(', found {got}")

    def column(self, t: Token) -> Node:
        kind = self.columns.kind(t.text)
        if kind is None:
            names = self.columns.names
            near = nearest(t.text, names)
            raise self.err(
                t.pos,
                f"unknown column {t.text!r} (did you mean {', '.join(map(repr, near))}?); columns that exist: {names}",
            )
        vtype = "num"
        return Col(t.pos, kind=kind, vtype=vtype, name=t.text)

    def call(self, t: Token) -> Node:
        name = t.text
        known = sorted(_REDUCTIONS | _ELEMENTWISE | {"hlt"})
        if name not in known:
            raise self.err(t.pos, f"unknown function {name!r}; functions: {known}")
        self.expect("(")
        args = []
        if not (self.tok.kind == "op" and self.tok.text == ")"):
            args.append(self.or_())
            while self.tok.kind == "op" and self.tok.text == ",":
                self.take()
                args.append(self.or_())
        self.expect(")")
        if len(args) != 1:
            raise self.err(t.pos, f"{name}() takes exactly one argument, got {len(args)}")
        a = args[0]
        if name == "hlt":
            if not isinstance(a, Str) or a.value not in HLT_BITS:
                raise self.err(a.pos, f"hlt() takes a trigger name in quotes, one of {sorted(HLT_BITS)}")
            if self.columns.kind("hlt_bits") != "event":
                raise self.err(t.pos, f"hlt() needs the column 'hlt_bits'; columns that exist: {self.columns.names}")
            return Call(t.pos, kind="event", vtype="bool", func=name, args=(a,))
        if isinstance(a, Str):
            raise self.err(a.pos, f"{name}() does not take a string")
        if name in _ELEMENTWISE:
            self.need_num(a, f"{name}()")
            return Call(t.pos, kind=a.kind, vtype="num", func=name, args=(a,))
        if a.kind == "event":
            raise self.err(a.pos, f"{name}() reduces per-object values to one per event, but its argument is per event")
        if name in ("count", "any", "all"):
            self.need_bool(a, f"{name}()")
        else:
            self.need_num(a, f"{name}()")
        return Call(t.pos, kind="event", vtype="bool" if name in ("any", "all") else "num", func=name, args=(a,))

    # type rules
    def need_bool(self, node: Node, ctx: str) -> None:
        if node.vtype != "bool":
            raise self.err(node.pos, f"{ctx} needs a condition (a comparison), not a number")

    def need_num(self, node: Node, ctx: str) -> None:
        if node.vtype != "num":
            what = "a string" if node.vtype == "str" else "a condition"
            raise self.err(node.pos, f"{ctx} needs a number, not {what}")

    def combine(self, node: Binary) -> Binary:
        l, r = node.left, node.right
        for side in (l, r):
            if isinstance(side, Str):
                raise self.err(side.pos, "a string can only be an argument of hlt()")
        if l.kind != "event" and r.kind != "event" and l.kind != r.kind:
            raise self.err(
                node.pos, f"mixes per-object columns of collections {l.kind!r} and {r.kind!r}; reduce one of them first"
            )
        node.kind = l.kind if l.kind != "event" else r.kind
        if node.op in ("and", "or"):
            self.need_bool(l, f"'{node.op}'")
            self.need_bool(r, f"'{node.op}'")
            node.vtype = "bool"
        elif node.op in ("<", "<=", ">", ">=", "==", "!="):
            self.need_num(l, f"'{node.op}'")
            self.need_num(r, f"'{node.op}'")
            node.vtype = "bool"
        else:
            self.need_num(l, f"'{node.op}'")
            self.need_num(r, f"'{node.op}'")
            node.vtype = "num"
        return node


def _columns_used(node: Node, out: set) -> set:
    if isinstance(node, Col):
        out.add(node.name)
    elif isinstance(node, Unary):
        _columns_used(node.arg, out)
    elif isinstance(node, Binary):
        _columns_used(node.left, out)
        _columns_used(node.right, out)
    elif isinstance(node, Call):
        if node.func == "hlt":
            out.add("hlt_bits")
        for a in node.args:
            _columns_used(a, out)
    return out


_CMP = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal, "==": np.equal, "!=": np.not_equal}
_ARITH = {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide}


class Expression:
    """A compiled selection: ``evaluate(columns)`` returns one value per row (event)."""

    def __init__(self, text: str, root: Node):
        self.text = text
        self.root = root
        self.columns = sorted(_columns_used(root, set()))
        #: branches to read from the file (derived columns expanded to their sources)
        self.branches = sorted(source_branches(self.columns))
        self.kind = root.kind
        self._fused = None  # dpnb.skims.fused.FusedSelection, False when not fusable; made on first use

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"

    def evaluate(self, cols, fused: bool = True) -> np.ndarray:
        """Evaluate on a :class:`dpnb.skims.columns.ChunkColumns`: one value per row (or per
        object for a per-object expression). A per-event condition runs as one generated
        numba kernel (:mod:`dpnb.skims.fused`) unless ``fused=False``; the numbers are the same."""
        if fused:
            if self._fused is None:
                from .fused import fuse

                self._fused = fuse(self) or False
            if self._fused:
                return self._fused(cols)
        return self._eval(self.root, cols)

    def _broadcast(self, node: Node, value, kind: str, cols):
        if node.kind == "event" and kind != "event":
            off = cols.offsets(kind)
            value = np.asarray(value)
            if value.ndim == 0:
                return value
            return np.repeat(value, np.diff(off))
        return value

    def _eval(self, node: Node, cols):
        if isinstance(node, Num):
            return np.float64(node.value)
        if isinstance(node, Col):
            return cols[node.name]
        if isinstance(node, Unary):
            v = self._eval(node.arg, cols)
            return np.logical_not(v) if node.op == "not" else np.negative(v)
        if isinstance(node, Binary):
            left = self._broadcast(node.left, self._eval(node.left, cols), node.kind, cols)
            right = self._broadcast(node.right, self._eval(node.right, cols), node.kind, cols)
            if node.op == "and":
                return np.logical_and(left, right)
            if node.op == "or":
                return np.logical_or(left, right)
            if node.op in _CMP:
                return _CMP[node.op](left, right)
            with np.errstate(divide="ignore", invalid="ignore"):
                return _ARITH[node.op](np.asarray(left, dtype=np.float64), right)
        if isinstance(node, Call):
            return self._call(node, cols)
        msg = f"cannot evaluate {node!r}"
        raise TypeError(msg)

    def _call(self, node: Call, cols):
        f = node.func
        if f == "hlt":
            bit = HLT_BITS[node.args[0].value]
            return ((np.asarray(cols["hlt_bits"]).astype(np.int64) >> bit) & 1).astype(bool)
        a = node.args[0]
        v = self._eval(a, cols) if f != "count" else None
        if f == "abs":
            return np.abs(v)
        if f == "sqrt":
            with np.errstate(invalid="ignore"):
                return np.sqrt(np.asarray(v, dtype=np.float64))
        if f == "count":
            cuts = _good_track_cuts(a)
            if cuts is not None:
                # the standard good-track conjunction runs as one fused kernel (no temporaries)
                return ks.count_good_tracks(cols["trk_px"], cols["trk_py"], cols["trk_d0"], cols["trk_z0"],
                                            cols.offsets("trk"), *cuts, cols.n_threads)
            v = self._eval(a, cols)
        off = cols.offsets(a.kind)
        n = cols.n_threads
        v = np.broadcast_to(v, (int(off[-1]),)) if np.ndim(v) == 0 else v
        if f == "count":
            return ks.count_per_event(np.ascontiguousarray(v, dtype=np.bool_), off, n)
        if f == "any":
            return ks.count_per_event(np.ascontiguousarray(v, dtype=np.bool_), off, n) > 0
        if f == "all":
            return ks.count_per_event(np.ascontiguousarray(~np.asarray(v, dtype=np.bool_)), off, n) == 0
        if f == "sum":
            return ks.sum_per_event(np.ascontiguousarray(v), off, n)
        if f == "max":
            return ks.max_per_event(np.ascontiguousarray(v), off, -np.inf, n)
        if f == "min":
            return ks.min_per_event(np.ascontiguousarray(v), off, np.inf, n)
        msg = f"unknown function {f!r}"
        raise TypeError(msg)


def _conjuncts(node: Node) -> list:
    if isinstance(node, Binary) and node.op == "and":
        return _conjuncts(node.left) + _conjuncts(node.right)
    return [node]


def _good_track_cuts(node: Node):
    """(pt_min, d0_max, z0_max) if ``node`` is exactly ``trk_pt > a and abs(trk_d0) < b and
    abs(trk_z0) < c`` (any order, a >= 0), the cut of :func:`dpnb.kernels.select.count_good_tracks`."""
    parts = _conjuncts(node)
    if len(parts) != 3:
        return None
    cuts = {}
    for p in parts:
        if not (isinstance(p, Binary) and isinstance(p.right, Num)):
            return None
        left = p.left
        if p.op == ">" and isinstance(left, Col) and left.name == "trk_pt" and p.right.value >= 0:
            cuts["pt"] = p.right.value
        elif (p.op == "<" and isinstance(left, Call) and left.func == "abs" and isinstance(left.args[0], Col)
              and left.args[0].name in ("trk_d0", "trk_z0")):
            cuts[left.args[0].name] = p.right.value
        else:
            return None
    if set(cuts) != {"pt", "trk_d0", "trk_z0"}:
        return None
    return float(cuts["pt"]), float(cuts["trk_d0"]), float(cuts["trk_z0"])


def compile_expression(text: str, columns: ColumnSet, where: str = "selection", want: str = "condition") -> Expression:
    """Parse and type-check ``text`` against ``columns``.

    ``want="condition"``: the result must be a per-event condition (a skim selection);
    ``"value"``: any per-event or per-object number (a histogram variable).
    Raises :class:`SkimExpressionError` with the position of the problem.
    """
    if not isinstance(text, str):
        msg = f"{where}: expected an expression (a string), got {type(text).__name__} {text!r}"
        raise SkimExpressionError(msg)
    p = _Parser(text, columns, where)
    root = p.parse()
    if want == "condition":
        if root.vtype != "bool":
            raise _fail(text, root.pos, "the selection must be a condition (e.g. 'ntrk >= 3'), not a number", where)
        if root.kind != "event":
            raise _fail(
                text, root.pos,
                f"the selection is per object of {root.kind!r}; reduce it to one value per event with "
                "count(...), any(...) or all(...)", where,
            )
    elif root.vtype == "str":
        raise _fail(text, root.pos, "expected a number, not a string", where)
    return Expression(text, root)
