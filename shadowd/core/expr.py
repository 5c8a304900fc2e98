"""The trigger expression language: tokenizer, parser, type checker and evaluators.

Trigger conditions arrive as text inside fleet configs, so this file is the only thing standing
between a pushed string and the vehicle. Its rules:

1. Never ``eval``, ``compile`` or ``ast``: a hand-written tokenizer and a recursive-descent parser
   build a typed tree of frozen nodes. Limits on source length, nesting depth, node count and
   window length are checked while parsing, so a hostile string costs bounded work.
2. Every error is a ``ConfigError`` naming the trigger and the column, with the source and a
   caret line under the offending span (see ``_fail``). Nothing else escapes the parser.
3. Pure: stdlib and numpy only. Time arrives as ``t_ns`` from the caller; no clock, no I/O.
4. Two evaluators share one state representation: ``Evaluator.scalar`` (one tick, Python
   floats, for the vehicle; each node compiled once into a closure) and ``Evaluator.batch``
   (a chunk of ticks, numpy, for replay).
   Both do the same IEEE operations in the same order, so their results are bit-identical
   whatever the chunking, and the two may be interleaved on one evaluator. A Hypothesis test
   (tests/triggers/test_batch_equivalence.py) holds this; keep the two halves of every node
   class in sync. The C evaluator (native/src/trig.c, fed by ``program``) is a third twin
   of every node, which TriggerEngine uses where it is built; keep it in sync too
   (tests/triggers/test_native_equivalence.py).

Values are floats. Unknown (a missing signal, NaN, no sample in a window) is NaN and
propagates; booleans are 1.0 / 0.0 / NaN with Kleene logic (``false and unknown`` is false,
``true and unknown`` is unknown). A comparison with an unknown operand is unknown, and an
unknown condition never fires a trigger. docs/triggers.md is the user-facing reference; keep it
in sync with the grammar and the function table here.
"""

from __future__ import annotations

import difflib
import math
import operator
from collections import deque
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from ..errors import ConfigError
from .signals import SIGNALS

MAX_SOURCE_CHARS = 2000
"""Longest accepted expression text."""
MAX_DEPTH = 32
"""Deepest accepted nesting of operators, calls and parentheses."""
MAX_NODES = 256
"""Most nodes (operands, operators, calls) one expression may compile to."""
MAX_WINDOW_S = 60.0
"""Longest window of max_over/min_over/mean_over/last/delta/held (bounds per-node memory)."""
MAX_PERIOD_S = 86_400.0
"""Longest period of periodic()."""
MIN_PERIOD_S = 1.0
"""Shortest period of periodic()."""
MEAN_LIMIT = 1e12
"""mean_over treats values beyond +-MEAN_LIMIT as unknown (keeps its running sum finite)."""

NUM = "number"
BOOL = "condition"

_NAN = math.nan
_INT64_MIN = np.iinfo(np.int64).min
_NS_PER_S = 1_000_000_000

FLAG_SIGNALS = frozenset(name for name, (_, sig) in SIGNALS.items() if sig.dtype == "u1")
"""Canonical signals that are conditions (true while non-zero), e.g. ``brake_pressed``."""

KEYWORDS = frozenset({"and", "or", "not", "true", "false"})

# name -> (argument kinds, result rule). Kinds: "x" any value, "n" number, "b" condition,
# "d" window duration, "p" period duration. Result: a type, or "same" (the first argument's).
FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "abs": (("n",), NUM),
    "min": (("n", "n"), NUM),
    "max": (("n", "n"), NUM),
    "max_over": (("x", "d"), "same"),
    "min_over": (("x", "d"), "same"),
    "mean_over": (("x", "d"), NUM),
    "last": (("x", "d"), "same"),
    "delta": (("n", "d"), NUM),
    "held": (("b", "d"), BOOL),
    "rising": (("b",), BOOL),
    "falling": (("b",), BOOL),
    "periodic": (("p",), BOOL),
}


# --------------------------------------------------------------------------- tokens

@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "num", "dur", "name", "op", "end"
    text: str
    start: int
    end: int
    value: float = 0.0  # numbers: the value; durations: nanoseconds


_TWO_CHAR_OPS = ("<=", ">=", "==", "!=")
_ONE_CHAR_OPS = "<>+-*/(),"
_BAD_OPS = {"&&": "and", "||": "or", "&": "and", "|": "or", "!": "not", "=": "=="}


def _is_name_char(c: str) -> bool:
    return c.isascii() and (c.isalnum() or c == "_")


def _tokenize(src: str, fail) -> list[_Token]:
    toks: list[_Token] = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if c in " \t\r\n":
            i += 1
            continue
        start = i
        if c.isascii() and (c.isdigit() or (c == "." and i + 1 < n and src[i + 1].isdigit())):
            while i < n and src[i].isascii() and src[i].isdigit():
                i += 1
            if i < n and src[i] == ".":
                i += 1
                while i < n and src[i].isascii() and src[i].isdigit():
                    i += 1
            if i < n and src[i] in "eE":
                j = i + 1
                if j < n and src[j] in "+-":
                    j += 1
                if j < n and src[j].isascii() and src[j].isdigit():
                    i = j
                    while i < n and src[i].isascii() and src[i].isdigit():
                        i += 1
            number = src[start:i]
            value = float(number)
            if not math.isfinite(value):
                fail(start, i, f"number {number} is out of range")
            j = i
            while j < n and _is_name_char(src[j]):
                j += 1
            suffix = src[i:j]
            if suffix in ("s", "ms"):
                ns = value * (_NS_PER_S if suffix == "s" else 1_000_000)
                if not ns < 2.0**62:
                    fail(start, j, f"duration {src[start:j]} is out of range")
                toks.append(_Token("dur", src[start:j], start, j, round(ns)))
                i = j
            elif suffix:
                fail(i, j, f'unexpected "{suffix}" after the number {number}; '
                           'durations are written like 2s or 500ms, other numbers stand alone')
            else:
                toks.append(_Token("num", number, start, i, value))
            continue
        if c.isascii() and (c.isalpha() or c == "_"):
            while i < n and _is_name_char(src[i]):
                i += 1
            toks.append(_Token("name", src[start:i], start, i))
            continue
        two = src[i:i + 2]
        if two in _TWO_CHAR_OPS:
            toks.append(_Token("op", two, start, i + 2))
            i += 2
            continue
        if two in _BAD_OPS:
            fail(start, i + 2, f'"{two}" is not an operator here; write "{_BAD_OPS[two]}"')
        if c in _BAD_OPS:
            fail(start, i + 1, f'"{c}" is not an operator here; write "{_BAD_OPS[c]}"')
        if c in _ONE_CHAR_OPS:
            toks.append(_Token("op", c, start, i + 1))
            i += 1
            continue
        fail(start, i + 1, f"unexpected character {c!r}; expressions use names, numbers, "
                           "durations (2s, 500ms), + - * / < <= > >= == != and or not ( ) ,")
    toks.append(_Token("end", "", n, n))
    return toks


# --------------------------------------------------------------------------- syntax tree

@dataclass(frozen=True, slots=True)
class Node:
    """One node of a compiled expression.

    ``op`` is ``"num"``, ``"bool"``, ``"name"``, ``"neg"``, ``"not"``, a binary operator
    (``+ - * / < <= > >= == != and or``) or a function name; ``args`` its operands; ``value``
    the literal, the referenced name, or (for windowed functions) the window in ns. ``type`` is
    NUM or BOOL. ``start``/``end`` are the 0-based source span, used by error messages.
    """

    op: str
    type: str
    args: tuple["Node", ...] = ()
    value: object = None
    start: int = 0
    end: int = 0


class _Parser:
    def __init__(self, src: str, trigger: str, metrics: frozenset[str]):
        self.src = src
        self.trigger = trigger
        self.metrics = metrics
        self.toks = _tokenize(src, self.fail)
        self.pos = 0
        self.depth = 0
        self.nodes = 0

    # errors ---------------------------------------------------------------
    def fail(self, start: int, end: int, what: str):
        raise _fail(self.trigger, self.src, start, end, what)

    # helpers --------------------------------------------------------------
    def peek(self) -> _Token:
        return self.toks[self.pos]

    def take(self) -> _Token:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def at(self, kind: str, text: str | None = None) -> bool:
        tok = self.toks[self.pos]
        return tok.kind == kind and (text is None or tok.text == text)

    def node(self, op, type_, args=(), value=None, start=0, end=0) -> Node:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.fail(start, end, f"expression is too large (more than {MAX_NODES} nodes); "
                                  "split it into several triggers")
        return Node(op, type_, tuple(args), value, start, end)

    def enter(self, tok: _Token):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(tok.start, tok.end, f"expression is nested too deeply (more than {MAX_DEPTH} "
                                          "levels); simplify it")

    def expect_type(self, node: Node, type_: str, context: str):
        if node.type == type_:
            return
        if type_ == BOOL:
            hint = "compare it, e.g. (x > 3)" if node.op != "name" else f"compare it, e.g. {node.value} > 3"
            self.fail(node.start, node.end, f"{context} needs a condition (true/false) but "
                                            f'"{self.src[node.start:node.end]}" is a number; {hint}')
        hint = ""
        if node.op == "name" and node.value in FLAG_SIGNALS:
            hint = f"; {node.value} is a flag: use it as a condition ({node.value}, not {node.value})"
        self.fail(node.start, node.end, f"{context} needs a number but "
                                        f'"{self.src[node.start:node.end]}" is a condition{hint}')

    # grammar --------------------------------------------------------------
    def parse(self) -> Node:
        if not self.src.strip():
            self.fail(0, 0, "expression is empty; write a condition such as speed_mps > 3")
        node = self.or_expr()
        tok = self.peek()
        if tok.kind != "end":
            self.fail(tok.start, tok.end, f'unexpected "{tok.text}" after a complete expression; '
                                          "join conditions with and / or")
        return node

    def binary_chain(self, ops: tuple[str, ...], sub, type_in: str, type_out: str, keyword: bool):
        left = sub()
        while (self.at("name") if keyword else self.at("op")) and self.peek().text in ops:
            tok = self.take()
            self.enter(tok)
            right = sub()
            self.depth -= 1
            self.expect_type(left, type_in, f'the left side of "{tok.text}"')
            self.expect_type(right, type_in, f'the right side of "{tok.text}"')
            left = self.node(tok.text, type_out, (left, right), None, left.start, right.end)
        return left

    def or_expr(self) -> Node:
        return self.binary_chain(("or",), self.and_expr, BOOL, BOOL, True)

    def and_expr(self) -> Node:
        return self.binary_chain(("and",), self.not_expr, BOOL, BOOL, True)

    def not_expr(self) -> Node:
        if self.at("name", "not"):
            tok = self.take()
            self.enter(tok)
            operand = self.not_expr()
            self.depth -= 1
            self.expect_type(operand, BOOL, '"not"')
            return self.node("not", BOOL, (operand,), None, tok.start, operand.end)
        return self.comparison()

    def comparison(self) -> Node:
        left = self.sum()
        if not (self.at("op") and self.peek().text in ("<", "<=", ">", ">=", "==", "!=")):
            return left
        tok = self.take()
        right = self.sum()
        if left.type != right.type or (left.type == BOOL and tok.text not in ("==", "!=")):
            if tok.text in ("==", "!="):
                flag = next((x for x in (left, right) if x.op == "name" and x.value in FLAG_SIGNALS), None)
                hint = (f"; {flag.value} is a flag: write {flag.value} or not {flag.value}" if flag
                        else "; compare numbers with numbers and conditions with conditions")
                self.fail(left.start, right.end, f'"{tok.text}" compares a {left.type} with a {right.type}{hint}')
            self.expect_type(left, NUM, f'the left side of "{tok.text}"')
            self.expect_type(right, NUM, f'the right side of "{tok.text}"')
        if self.at("op") and self.peek().text in ("<", "<=", ">", ">=", "==", "!="):
            nxt = self.peek()
            self.fail(nxt.start, nxt.end, "chained comparisons are not supported; "
                                          "write (a < b and b < c)")
        return self.node(tok.text, BOOL, (left, right), None, left.start, right.end)

    def sum(self) -> Node:
        return self.binary_chain(("+", "-"), self.product, NUM, NUM, False)

    def product(self) -> Node:
        return self.binary_chain(("*", "/"), self.unary, NUM, NUM, False)

    def unary(self) -> Node:
        if self.at("op", "-"):
            tok = self.take()
            self.enter(tok)
            operand = self.unary()
            self.depth -= 1
            self.expect_type(operand, NUM, 'unary "-"')
            if operand.op == "num":  # fold -4 into a literal: thresholds are mostly negative numbers
                return Node("num", NUM, (), -operand.value, tok.start, operand.end)
            return self.node("neg", NUM, (operand,), None, tok.start, operand.end)
        return self.primary()

    def primary(self) -> Node:
        tok = self.peek()
        if tok.kind == "num":
            self.take()
            return self.node("num", NUM, (), tok.value, tok.start, tok.end)
        if tok.kind == "dur":
            self.fail(tok.start, tok.end, f"a duration ({tok.text}) is only allowed as the window of "
                                          "max_over, min_over, mean_over, last, delta, held or periodic")
        if tok.kind == "op" and tok.text == "(":
            self.take()
            self.enter(tok)
            inner = self.or_expr()
            self.depth -= 1
            close = self.peek()
            if not self.at("op", ")"):
                self.fail(close.start, close.end or close.start + 1,
                          f'expected ")" to close the "(" at column {tok.start + 1}, '
                          f'found {_describe(close)}')
            self.take()
            return Node(inner.op, inner.type, inner.args, inner.value, tok.start, close.end)
        if tok.kind == "name":
            self.take()
            if tok.text in ("true", "false"):
                return self.node("bool", BOOL, (), 1.0 if tok.text == "true" else 0.0, tok.start, tok.end)
            if tok.text in KEYWORDS:
                self.fail(tok.start, tok.end, f'"{tok.text}" needs an operand before it')
            if self.at("op", "("):
                return self.call(tok)
            if tok.text in FUNCTIONS:
                self.fail(tok.start, tok.end, f'{tok.text} is a function; call it like {_usage(tok.text)}')
            if tok.text in SIGNALS:
                type_ = BOOL if tok.text in FLAG_SIGNALS else NUM
                return self.node("name", type_, (), tok.text, tok.start, tok.end)
            if tok.text in self.metrics:
                return self.node("name", NUM, (), tok.text, tok.start, tok.end)
            known = list(SIGNALS) + sorted(self.metrics) + sorted(KEYWORDS)
            self.fail(tok.start, tok.end, f'unknown name "{tok.text}"{_did_you_mean(tok.text, known)}; '
                                          "names are canonical signals (shadowd.core.signals) or "
                                          "divergence metrics")
        self.fail(tok.start, tok.end or tok.start + 1, f"expected a value, found {_describe(tok)}")

    def call(self, name_tok: _Token) -> Node:
        fname = name_tok.text
        if fname not in FUNCTIONS:
            self.fail(name_tok.start, name_tok.end,
                      f'unknown function "{fname}"{_did_you_mean(fname, list(FUNCTIONS))}; '
                      f"functions are {', '.join(FUNCTIONS)}")
        kinds, result = FUNCTIONS[fname]
        open_tok = self.take()
        self.enter(name_tok)
        args: list[Node] = []
        while True:
            if len(args) == len(kinds):
                tok = self.peek()
                self.fail(tok.start, tok.end, f"{fname} takes {len(kinds)} argument(s): {_usage(fname)}")
            kind = kinds[len(args)]
            tok = self.peek()
            if kind in "dp":
                args.append(self.duration(fname, kind))
            else:
                arg = self.or_expr()
                if kind == "n":
                    self.expect_type(arg, NUM, f"{fname}()")
                elif kind == "b":
                    self.expect_type(arg, BOOL, f"{fname}()")
                args.append(arg)
            if self.at("op", ","):
                self.take()
                continue
            break
        close = self.peek()
        if not self.at("op", ")"):
            self.fail(close.start, close.end or close.start + 1,
                      f'expected "," or ")" in {fname}( at column {open_tok.start + 1}, found {_describe(close)}')
        if len(args) != len(kinds):
            self.fail(name_tok.start, close.end, f"{fname} takes {len(kinds)} argument(s): {_usage(fname)}")
        self.take()
        self.depth -= 1
        type_ = args[0].type if result == "same" else result
        values = [a for a in args if a.op != "dur"]
        window = next((a.value for a in args if a.op == "dur"), None)
        return self.node(fname, type_, values, window, name_tok.start, close.end)

    def duration(self, fname: str, kind: str) -> Node:
        tok = self.peek()
        if tok.kind != "dur":
            if tok.kind == "num":
                self.fail(tok.start, tok.end, f"{fname}() needs a duration with its unit here: "
                                              f"write {tok.text}s or {tok.text}ms")
            self.fail(tok.start, tok.end or tok.start + 1,
                      f"{fname}() needs a duration here (like 2s or 500ms), found {_describe(tok)}")
        self.take()
        ns = int(tok.value)
        lo_ns, hi_ns = ((1_000_000, round(MAX_WINDOW_S * _NS_PER_S)) if kind == "d"
                        else (round(MIN_PERIOD_S * _NS_PER_S), round(MAX_PERIOD_S * _NS_PER_S)))
        if not lo_ns <= ns <= hi_ns:
            what = "window" if kind == "d" else "period"
            self.fail(tok.start, tok.end, f"{fname}() {what} {tok.text} is out of range; use "
                                          f"{_fmt_s(lo_ns)} to {_fmt_s(hi_ns)}")
        return Node("dur", "duration", (), ns, tok.start, tok.end)


def _fmt_s(ns: int) -> str:
    return f"{ns / _NS_PER_S:g}s" if ns >= 1_000_000 else f"{ns}ns"


def _describe(tok: _Token) -> str:
    return "the end of the expression" if tok.kind == "end" else f'"{tok.text}"'


def _usage(fname: str) -> str:
    kinds, _ = FUNCTIONS[fname]
    names = {"x": "x", "n": "x", "b": "condition", "d": "2s", "p": "600s"}
    if fname in ("min", "max"):
        return f"{fname}(a, b)"
    return f"{fname}({', '.join(names[k] for k in kinds)})"


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _fail(trigger: str, src: str, start: int, end: int, what: str) -> ConfigError:
    """Build the error for ``src[start:end]``: message, source excerpt and caret line.

    The error carries ``trigger``, ``column`` (1-based) and ``reason`` (the bare message) as
    attributes so config tooling can point at the spot without parsing text.
    """
    shown = src.replace("\t", " ").replace("\r", " ").replace("\n", " ")
    lo = max(0, start - 40)
    hi = min(len(shown), max(end, start + 1) + 40)
    excerpt = ("..." if lo else "") + shown[lo:hi] + ("..." if hi < len(shown) else "")
    caret = " " * (start - lo + (3 if lo else 0)) + "^" * max(1, min(end, hi) - start)
    err = ConfigError(f'trigger "{trigger}": expression error at column {start + 1}: {what}\n'
                      f"    {excerpt}\n    {caret}")
    err.trigger = trigger
    err.column = start + 1
    err.reason = what
    return err


# --------------------------------------------------------------------------- compiled expression

@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed, type-checked expression. Immutable and cheap to instantiate evaluators from.

    Attributes:
        source: the text it was compiled from.
        root: the typed syntax tree.
        type: NUM or BOOL.
        names: every signal or metric it reads, in first-use order.
        signals: the canonical signals among ``names``.
        metrics: the divergence metrics among ``names``.
        history_s: the longest window it keeps (0 when it keeps none).
        node_count: size of the tree.
    """

    source: str
    root: Node
    type: str
    names: tuple[str, ...]
    signals: frozenset[str]
    metrics: frozenset[str]
    history_s: float
    node_count: int

    def evaluator(self) -> "Evaluator":
        """A fresh evaluator with empty state (no history, no previous tick)."""
        return Evaluator(self)


def compile_expression(source: str, *, metric_names: Iterable[str] = (), trigger: str = "<expression>") -> Expression:
    """Parse and type-check ``source``.

    Args:
        source: the expression text (at most MAX_SOURCE_CHARS characters).
        metric_names: names besides the canonical signals that may be read (divergence
            metrics); they must not shadow a signal, function or keyword.
        trigger: the trigger name quoted in error messages.

    Raises:
        ConfigError: for any syntax, name, type or limit error, with the column and a caret
            line under the offending span.
    """
    if not isinstance(source, str):
        raise ConfigError(f'trigger "{trigger}": expression must be a string, got {source!r:.80}; '
                          'write it as text, e.g. "speed_mps > 3"')
    if len(source) > MAX_SOURCE_CHARS:
        raise _fail(trigger, source, MAX_SOURCE_CHARS, len(source),
                    f"expression is {len(source)} characters long, the limit is {MAX_SOURCE_CHARS}; "
                    "split it into several triggers")
    metrics = frozenset(metric_names)
    parser = _Parser(source, trigger, metrics)
    root = parser.parse()
    names: list[str] = []
    history = [0]

    def walk(node: Node):
        if node.op == "name" and node.value not in names:
            names.append(node.value)
        if node.op in ("max_over", "min_over", "mean_over", "last", "delta", "held"):
            history[0] = max(history[0], node.value)
        for a in node.args:
            walk(a)

    walk(root)
    return Expression(
        source=source, root=root, type=root.type, names=tuple(names),
        signals=frozenset(n for n in names if n in SIGNALS),
        metrics=frozenset(n for n in names if n not in SIGNALS),
        history_s=history[0] / _NS_PER_S, node_count=parser.nodes,
    )


# --------------------------------------------------------------------------- evaluation
#
# Every node class below holds its state and two halves that must stay in sync:
# ``scalar_fn()`` compiles the node (once, when the evaluator is built) into a Python closure
# ``f(t_ns, inputs) -> float`` for one tick, and ``batch(chunk)`` evaluates a chunk with numpy.
# The closures call their operands' closures directly, and a comparison or abs() of a name
# or a literal reads it in place, so a tick costs about one Python call per operator: the
# vehicle service runs it 50 times a second from a cold cache, where every extra function,
# object and allocation a tick touches costs microseconds. Closures are built from fixed
# code, never from generated source.


def _as_float(x) -> float:
    """The slow path of reading a value that is not a plain float: NaN if float() refuses it."""
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        return _NAN


class Chunk:
    """One batch of ticks: times, input columns and a cache of the columns as float64.

    Build one per chunk and hand it to several evaluators so each column is converted once.
    """

    __slots__ = ("t", "n", "columns", "cache")

    def __init__(self, t: np.ndarray, columns: Mapping[str, np.ndarray]):
        self.t = t
        self.n = len(t)
        self.columns = columns
        self.cache: dict[str, np.ndarray] = {}

    def column(self, name: str) -> np.ndarray:
        col = self.cache.get(name)
        if col is None:
            raw = self.columns.get(name)
            if raw is None:
                col = np.full(self.n, _NAN)
            else:
                try:
                    col = np.asarray(raw, dtype=np.float64).reshape(-1)
                except (TypeError, ValueError, OverflowError):
                    col = np.full(self.n, _NAN)
                if len(col) != self.n:
                    raise ValueError(f"column {name!r} has {len(col)} values for {self.n} ticks; "
                                     "every column must have one value per tick")
                finite = np.isfinite(col)
                if not finite.all():
                    col = np.where(finite, col, _NAN)  # +-inf is as unknown as NaN
            self.cache[name] = col
        return col


class _Leaf:
    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def scalar_fn(self):
        name = self.name

        def leaf(t, v):
            x = v.get(name, _NAN)
            if x.__class__ is not float:
                x = _as_float(x)
            return x if x - x == 0.0 else _NAN  # +-inf is as unknown as NaN
        return leaf

    def batch(self, ch: Chunk):
        return ch.column(self.name)


class _Flag(_Leaf):
    """A flag signal read as a condition: 1.0 when non-zero, 0.0, or NaN."""

    __slots__ = ()

    def scalar_fn(self):
        read = _Leaf.scalar_fn(self)

        def flag(t, v):
            x = read(t, v)
            return x if x != x else (1.0 if x != 0.0 else 0.0)
        return flag

    def batch(self, ch):
        a = ch.column(self.name)
        return np.where(np.isnan(a), _NAN, a != 0.0)


class _Const:
    __slots__ = ("x",)

    def __init__(self, x: float):
        self.x = x

    def scalar_fn(self):
        x = self.x

        def const(t, v):
            return x
        return const

    def batch(self, ch):
        return np.full(ch.n, self.x)


class _Unary:
    __slots__ = ("a",)

    def __init__(self, a):
        self.a = a


class _Neg(_Unary):
    __slots__ = ()

    def scalar_fn(self):
        a = self.a.scalar_fn()

        def neg(t, v):
            return -a(t, v)
        return neg

    def batch(self, ch):
        return -self.a.batch(ch)


class _Not(_Unary):
    __slots__ = ()

    def scalar_fn(self):
        a = self.a.scalar_fn()

        def not_(t, v):
            return 1.0 - a(t, v)  # NaN stays NaN
        return not_

    def batch(self, ch):
        return 1.0 - self.a.batch(ch)


class _Abs(_Unary):
    __slots__ = ()

    def scalar_fn(self):
        a = self.a.scalar_fn()

        def abs_(t, v):
            return abs(a(t, v))
        return abs_

    def batch(self, ch):
        return np.abs(self.a.batch(ch))


class _Binary:
    __slots__ = ("a", "b")

    def __init__(self, a, b):
        self.a = a
        self.b = b

    def scalar_fns(self):
        return self.a.scalar_fn(), self.b.scalar_fn()


class _Add(_Binary):
    __slots__ = ()

    def scalar_fn(self):
        a, b = self.scalar_fns()

        def add(t, v):
            return a(t, v) + b(t, v)
        return add

    def batch(self, ch):
        return self.a.batch(ch) + self.b.batch(ch)


class _Sub(_Binary):
    __slots__ = ()

    def scalar_fn(self):
        a, b = self.scalar_fns()

        def sub(t, v):
            return a(t, v) - b(t, v)
        return sub

    def batch(self, ch):
        return self.a.batch(ch) - self.b.batch(ch)


class _Mul(_Binary):
    __slots__ = ()

    def scalar_fn(self):
        a, b = self.scalar_fns()

        def mul(t, v):
            return a(t, v) * b(t, v)
        return mul

    def batch(self, ch):
        return self.a.batch(ch) * self.b.batch(ch)


class _Div(_Binary):
    """Division; dividing by zero gives unknown (never inf, never an exception)."""

    __slots__ = ()

    def scalar_fn(self):
        a, b = self.scalar_fns()

        def div(t, v):
            x = a(t, v)
            y = b(t, v)
            return _NAN if y == 0.0 else x / y
        return div

    def batch(self, ch):
        a = self.a.batch(ch)
        b = self.b.batch(ch)
        zero = b == 0.0
        with np.errstate(all="ignore"):
            out = a / np.where(zero, 1.0, b)
        out[zero] = _NAN
        return out


class _Min(_Binary):
    __slots__ = ()

    def scalar_fn(self):
        a, b = self.scalar_fns()

        def min_(t, v):
            x = a(t, v)
            y = b(t, v)
            return _NAN if x != x or y != y else (x if x <= y else y)
        return min_

    def batch(self, ch):
        a = self.a.batch(ch)
        b = self.b.batch(ch)
        out = np.where(a <= b, a, b)
        out[np.isnan(a) | np.isnan(b)] = _NAN
        return out


class _Max(_Binary):
    __slots__ = ()

    def scalar_fn(self):
        a, b = self.scalar_fns()

        def max_(t, v):
            x = a(t, v)
            y = b(t, v)
            return _NAN if x != x or y != y else (x if x >= y else y)
        return max_

    def batch(self, ch):
        a = self.a.batch(ch)
        b = self.b.batch(ch)
        out = np.where(a >= b, a, b)
        out[np.isnan(a) | np.isnan(b)] = _NAN
        return out


class _Cmp(_Binary):
    """A comparison (``op`` from the operator module, ``np_op`` its ufunc). The usual shape,
    ``name < literal`` or ``f(...) < literal``, compiles to one closure that reads the name or
    calls ``f`` and compares with the literal in place (a literal is never NaN)."""

    __slots__ = ("op", "np_op", "literal_right")

    def __init__(self, a, b, op, np_op):
        super().__init__(a, b)
        self.op = op
        self.np_op = np_op
        self.literal_right = isinstance(b, _Const) and not isinstance(a, _Const)

    def scalar_fn(self):
        op = self.op
        if self.literal_right:
            c = self.b.x
            if type(self.a) is _Leaf:
                # ``name > literal``, the commonest node: _Leaf's read inlined (one call a
                # tick less on the vehicle's cold path); _Leaf.scalar_fn is the rule
                name = self.a.name

                def compare_name(t, v):
                    x = v.get(name, _NAN)
                    if x.__class__ is not float:
                        x = _as_float(x)
                    if x - x != 0.0:
                        return _NAN
                    return 1.0 if op(x, c) else 0.0
                return compare_name
            a = self.a.scalar_fn()

            def compare_literal(t, v):
                x = a(t, v)
                if x != x:
                    return _NAN
                return 1.0 if op(x, c) else 0.0
            return compare_literal
        a, b = self.scalar_fns()

        def compare(t, v):
            x = a(t, v)
            y = b(t, v)
            if x != x or y != y:
                return _NAN
            return 1.0 if op(x, y) else 0.0
        return compare

    def batch(self, ch):
        a = self.a.batch(ch)
        if self.literal_right:
            return np.where(np.isnan(a), _NAN, self.np_op(a, self.b.x))
        b = self.b.batch(ch)
        return np.where(np.isnan(a) | np.isnan(b), _NAN, self.np_op(a, b))


_CMP = {
    "<": (operator.lt, np.less),
    "<=": (operator.le, np.less_equal),
    ">": (operator.gt, np.greater),
    ">=": (operator.ge, np.greater_equal),
    "==": (operator.eq, np.equal),
    "!=": (operator.ne, np.not_equal),
}


def _stateful(node) -> bool:
    """Whether evaluating ``node`` changes state (windows, edges, runs, periods) below it."""
    if isinstance(node, (_Extremum, _Mean, _Last, _Held, _Edge, _Periodic)):
        return True
    return any(_stateful(getattr(node, side)) for side in ("a", "b") if hasattr(node, side))


def _decider_first(node: _Binary):
    """(first, second, lazy) closures of a Kleene and/or: when an operand is stateless, it goes
    second and ``lazy`` is set, so it is only evaluated when the first does not decide. Both
    operators are symmetric and a stateless operand has no effects, so this is exact; a
    stateful operand must see every tick, so with two of them both always run."""
    a, b = node.scalar_fns()
    if not _stateful(node.b):
        return a, b, True
    if not _stateful(node.a):
        return b, a, True
    return a, b, False


def _kleene_fn(node: "_Binary", wins: float):
    """The scalar closure of a Kleene ``and`` (``wins`` 0.0: false wins over unknown) or ``or``
    (``wins`` 1.0: true wins over unknown); otherwise the other value if both are known, NaN
    if not. A stateless operand is evaluated second and skipped once the first decides."""
    a, b, lazy = _decider_first(node)
    loses = 1.0 - wins
    if lazy:
        def kleene_lazy(t, v):
            x = a(t, v)
            if x == wins:
                return wins
            y = b(t, v)
            if y == wins:
                return wins
            return _NAN if x != x or y != y else loses
        return kleene_lazy

    def kleene(t, v):
        x = a(t, v)
        y = b(t, v)  # always evaluated: stateful operands must see every tick
        if x == wins or y == wins:
            return wins
        return _NAN if x != x or y != y else loses
    return kleene


class _And(_Binary):
    """Kleene and: false wins over unknown. Operands are conditions (1.0, 0.0 or NaN)."""

    __slots__ = ()

    def scalar_fn(self):
        return _kleene_fn(self, 0.0)

    def batch(self, ch):
        a = self.a.batch(ch)
        b = self.b.batch(ch)
        # false if either is false (fmin skips NaN), else 1.0 or NaN (maximum keeps NaN)
        return np.where(np.fmin(a, b) == 0.0, 0.0, np.maximum(a, b))


class _Or(_Binary):
    """Kleene or: true wins over unknown. Operands are conditions (1.0, 0.0 or NaN)."""

    __slots__ = ()

    def scalar_fn(self):
        return _kleene_fn(self, 1.0)

    def batch(self, ch):
        a = self.a.batch(ch)
        b = self.b.batch(ch)
        # true if either is true (fmax skips NaN), else 0.0 or NaN (minimum keeps NaN)
        return np.where(np.fmax(a, b) == 1.0, 1.0, np.minimum(a, b))


def _range_max(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """max(x[lo[k] .. hi[k]]) for every k (inclusive, lo <= hi), by a sparse table: O(n log w).

    Row j of the table holds the max of the 2**j values from each index on (-inf past the
    end), so a range of length L is the max of two row-j entries, 2**j <= L < 2**(j+1).
    """
    length = hi - lo + 1
    rows = int(length.max()).bit_length()
    if rows == 1:
        return x[hi]
    table = np.full((rows, len(x)), -np.inf)
    table[0] = x
    for j in range(1, rows):
        span = 1 << (j - 1)
        np.maximum(table[j - 1, :-span], table[j - 1, span:], out=table[j, :-span])
    row = np.frexp(length.astype(np.float64))[1] - 1  # floor(log2(length)), exact
    return np.maximum(table[row, lo], table[row, hi - (1 << row) + 1])


class _Extremum:
    """max_over / min_over: a monotonic deque of (t, value) over [t - window, t].

    State (shared by both paths): ``ts``/``xs`` hold the known samples still in the window that
    no later sample equals or beats, so ``xs[0]`` is the window's extremum. min_over keeps
    negated values and negates the result.
    """

    __slots__ = ("a", "w", "neg", "ts", "xs")

    def __init__(self, a, window_ns: int, is_min: bool):
        self.a = a
        self.w = window_ns
        self.neg = is_min
        self.ts: deque = deque()
        self.xs: deque = deque()

    def scalar_fn(self):
        a = self.a.scalar_fn()
        node, w, neg = self, self.w, self.neg

        def extremum_over(t, v):
            x = a(t, v)
            ts, xs = node.ts, node.xs
            if x == x:
                if neg:
                    x = -x
                while xs and xs[-1] <= x:
                    xs.pop()
                    ts.pop()
                xs.append(x)
                ts.append(t)
            lo = t - w
            while ts and ts[0] < lo:
                ts.popleft()
                xs.popleft()
            if not xs:
                return _NAN
            return -xs[0] if neg else xs[0]
        return extremum_over

    def batch(self, ch):
        x = self.a.batch(ch)
        if self.neg:
            x = -x
        m = len(self.ts)
        T = np.concatenate((np.fromiter(self.ts, np.int64, m), ch.t))
        X = np.concatenate((np.fromiter(self.xs, np.float64, m), x))
        known = ~np.isnan(X)
        count = np.concatenate(([0], np.cumsum(known)))  # known samples before each index
        lo = np.searchsorted(T, ch.t - self.w, "left")
        out = _range_max(np.where(known, X, -np.inf), lo, np.arange(m, m + ch.n))
        out[count[m + 1:] - count[lo] == 0] = _NAN
        # New state: the known samples that can still be in a future window (from the last
        # tick's window on) that no later known sample equals or beats, as the scalar deque.
        start = int(lo[-1])
        tail_x = X[start:]
        later = np.empty(len(tail_x))  # max of the later known samples, NaN if none
        later[-1] = _NAN
        later[:-1] = np.fmax.accumulate(tail_x[:0:-1])[::-1]
        keep = known[start:] & ~(tail_x <= later)
        self.ts = deque(T[start:][keep].tolist())
        self.xs = deque(tail_x[keep].tolist())
        return -out if self.neg else out


class _Mean:
    """mean_over: mean of the known samples in [t - window, t], NaN when there are none.
    Values beyond +-MEAN_LIMIT count as unknown, so one absurd value cannot poison the sum.

    Sums come from one running cumulative sum ``c`` (and count ``k``) since the evaluator
    started, differenced at the window's first sample. Both paths add the same values in the
    same order (``np.cumsum`` accumulates sequentially), so they agree bit for bit. The
    running sum never shrinks, so its rounding grows with |sum|: ~1e-16 relative, i.e. below
    1e-8 of the unit after a day at 100 Hz of values around 100.
    """

    __slots__ = ("a", "w", "c", "k", "ts", "cs", "ks")

    def __init__(self, a, window_ns: int):
        self.a = a
        self.w = window_ns
        self.c = 0.0
        self.k = 0
        self.ts: deque = deque()  # time of each sample in the window
        self.cs: deque = deque()  # running sum before that sample
        self.ks: deque = deque()  # running count before that sample

    def scalar_fn(self):
        a = self.a.scalar_fn()
        node, w = self, self.w

        def mean_over(t, v):
            x = a(t, v)
            ts, cs, ks = node.ts, node.cs, node.ks
            c, k = node.c, node.k
            ts.append(t)
            cs.append(c)
            ks.append(k)
            if -MEAN_LIMIT <= x <= MEAN_LIMIT:
                node.c = c = c + x
                node.k = k = k + 1
            lo = t - w
            while ts[0] < lo:
                ts.popleft()
                cs.popleft()
                ks.popleft()
            n = k - ks[0]
            return _NAN if n == 0 else (c - cs[0]) / n
        return mean_over

    def batch(self, ch):
        x = self.a.batch(ch)
        known = np.abs(x) <= MEAN_LIMIT
        csum = np.cumsum(np.concatenate(([self.c], np.where(known, x, 0.0))))
        ksum = np.cumsum(np.concatenate(([self.k], known)))
        m = len(self.ts)
        T = np.concatenate((np.fromiter(self.ts, np.int64, m), ch.t))
        C = np.concatenate((np.fromiter(self.cs, np.float64, m), csum[:-1]))
        K = np.concatenate((np.fromiter(self.ks, np.int64, m), ksum[:-1]))
        lo = np.searchsorted(T, ch.t - self.w, "left")
        n = ksum[1:] - K[lo]
        out = np.full(ch.n, _NAN)
        np.divide(csum[1:] - C[lo], n, out=out, where=n != 0)
        start = int(lo[-1])  # the last tick's window: what a future window can still reach
        self.ts = deque(T[start:].tolist())
        self.cs = deque(C[start:].tolist())
        self.ks = deque(K[start:].tolist())
        self.c = float(csum[-1])
        self.k = int(ksum[-1])
        return out


class _Last:
    """last(x, D): the value at the latest tick at or before t - D (NaN if none yet);
    delta(x, D) = x - last(x, D) with ``diff`` set (x evaluated once, so nesting stays linear).

    State: every tick after t - D plus the latest one at or before it.
    """

    __slots__ = ("a", "w", "diff", "ts", "xs")

    def __init__(self, a, window_ns: int, diff: bool = False):
        self.a = a
        self.w = window_ns
        self.diff = diff
        self.ts: deque = deque()
        self.xs: deque = deque()

    def scalar_fn(self):
        a = self.a.scalar_fn()
        node, w, diff = self, self.w, self.diff

        def last(t, v):
            x = a(t, v)
            ts, xs = node.ts, node.xs
            ts.append(t)
            xs.append(x)
            lo = t - w
            while len(ts) > 1 and ts[1] <= lo:
                ts.popleft()
                xs.popleft()
            past = xs[0] if ts[0] <= lo else _NAN
            return x - past if diff else past
        return last

    def batch(self, ch):
        x = self.a.batch(ch)
        m = len(self.ts)
        T = np.concatenate((np.fromiter(self.ts, np.int64, m), ch.t))
        X = np.concatenate((np.fromiter(self.xs, np.float64, m), x))
        idx = np.searchsorted(T, ch.t - self.w, "right") - 1
        out = X[np.maximum(idx, 0)]
        out[idx < 0] = _NAN
        start = max(0, int(idx[-1]))  # the last tick's past sample and everything after it
        self.ts = deque(T[start:].tolist())
        self.xs = deque(X[start:].tolist())
        return x - out if self.diff else out


class _Held:
    """held(c, D): true once c has been true at every tick for at least D.

    State: ``since``, the time of the first tick of the current true run (None if not true).
    """

    __slots__ = ("a", "w", "since")

    def __init__(self, a, window_ns: int):
        self.a = a
        self.w = window_ns
        self.since = None

    def scalar_fn(self):
        a = self.a.scalar_fn()
        node, w = self, self.w

        def held(t, v):
            if a(t, v) == 1.0:
                since = node.since
                if since is None:
                    node.since = since = t
                return 1.0 if t - since >= w else 0.0
            node.since = None
            return 0.0
        return held

    def batch(self, ch):
        on = self.a.batch(ch) == 1.0
        t = ch.t
        # A run starts at the tick after each tick that is not true, or carries on from the
        # previous chunk (or starts at the first tick); times never decrease, so the start of
        # the run a tick belongs to is the running max of those candidate starts.
        starts = np.empty(ch.n, np.int64)
        starts[0] = t[0] if self.since is None else self.since
        starts[1:] = np.where(on[:-1], _INT64_MIN, t[1:])
        since = np.maximum.accumulate(starts)
        out = (on & (t - since >= self.w)).astype(np.float64)
        self.since = int(since[-1]) if on[-1] else None
        return out


class _Edge:
    """rising(c) / falling(c): true at a tick where c is known and the previous tick's c was
    known and the opposite. The first tick ever has no previous tick, so it is never an edge."""

    __slots__ = ("a", "before", "after", "prev")

    def __init__(self, a, rising: bool):
        self.a = a
        self.before, self.after = (0.0, 1.0) if rising else (1.0, 0.0)
        self.prev = _NAN

    def scalar_fn(self):
        a = self.a.scalar_fn()
        node, before, after = self, self.before, self.after

        def edge(t, v):
            c = a(t, v)
            fired = 1.0 if (node.prev == before and c == after) else 0.0
            node.prev = c
            return fired
        return edge

    def batch(self, ch):
        c = self.a.batch(ch)
        prev = np.concatenate(([self.prev], c[:-1]))
        self.prev = float(c[-1])
        return ((prev == self.before) & (c == self.after)).astype(np.float64)


class _Periodic:
    """periodic(P): true at the first tick of each P-long slice of the t_ns axis
    (slice = t_ns // P), except the very first tick. Deterministic from t_ns alone."""

    __slots__ = ("p", "prev")

    def __init__(self, period_ns: int):
        self.p = period_ns
        self.prev = None

    def scalar_fn(self):
        node, p = self, self.p

        def periodic(t, v):
            slot = t // p
            prev = node.prev
            node.prev = slot
            return 1.0 if (prev is not None and slot != prev) else 0.0
        return periodic

    def batch(self, ch):
        slot = ch.t // self.p
        prev = np.concatenate(([slot[0] if self.prev is None else self.prev], slot[:-1]))
        self.prev = int(slot[-1])
        return (slot != prev).astype(np.float64)


_BINARY = {"+": _Add, "-": _Sub, "*": _Mul, "/": _Div, "and": _And, "or": _Or, "min": _Min, "max": _Max}


def _build(node: Node):
    op = node.op
    if op == "num" or op == "bool":
        return _Const(float(node.value))
    if op == "name":
        return _Flag(node.value) if node.value in FLAG_SIGNALS else _Leaf(node.value)
    if op == "periodic":
        return _Periodic(node.value)
    args = [_build(a) for a in node.args]
    if op in _BINARY:
        return _BINARY[op](*args)
    if op in _CMP:
        return _Cmp(*args, *_CMP[op])
    if op == "neg":
        return _Neg(args[0])
    if op == "not":
        return _Not(args[0])
    if op == "abs":
        return _Abs(args[0])
    if op in ("max_over", "min_over"):
        return _Extremum(args[0], node.value, op == "min_over")
    if op == "mean_over":
        return _Mean(args[0], node.value)
    if op == "last":
        return _Last(args[0], node.value)
    if op == "delta":
        return _Last(args[0], node.value, diff=True)
    if op == "held":
        return _Held(args[0], node.value)
    if op in ("rising", "falling"):
        return _Edge(args[0], op == "rising")
    raise AssertionError(f"no evaluator for node {op!r}")  # the parser only emits the ops above


class Evaluator:
    """Incremental evaluation of one Expression. Holds the per-node state (windows, edges).

    Feed ticks in time order, through ``scalar`` one at a time or ``batch`` a chunk at a time,
    in any mix: the values are identical either way. Not thread-safe; one evaluator per
    consumer. The caller guarantees non-decreasing ``t_ns`` (TriggerEngine drops late ticks).

    ``scalar(t_ns, values) -> float`` is the expression's value at one tick (1.0/0.0 for
    conditions, NaN = unknown; ``values`` maps names to numbers, a missing one is unknown). It
    is the root's compiled closure itself, so a tick pays no wrapper call.
    """

    __slots__ = ("expression", "_root", "scalar")

    def __init__(self, expression: Expression):
        self.expression = expression
        self._root = _build(expression.root)
        self.scalar = self._root.scalar_fn()

    def batch(self, t_ns: np.ndarray, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The expression's value at each tick of a non-empty chunk (float64 array).

        ``t_ns`` is int64 and non-decreasing; each column has one value per tick (NaN =
        unknown); a name without a column is unknown throughout.
        """
        return self._root.batch(Chunk(t_ns, columns))

    def batch_chunk(self, chunk: Chunk) -> np.ndarray:
        """``batch`` on a prepared Chunk (shared between evaluators of one engine)."""
        return self._root.batch(chunk)


# --------------------------------------------------------------------------- the C evaluator's program

PROGRAM_OPS = ("const", "leaf", "flag", "neg", "not", "abs", "+", "-", "*", "/", "min", "max",
               "<", "<=", ">", ">=", "==", "!=", "and", "or", "max_over", "min_over", "mean_over",
               "last", "delta", "held", "rising", "falling", "periodic")
"""Instruction codes of the C trigger evaluator, by position (SHADOWD_TRIG_* in
native/include/shadowd/trig.h, in the same order): one per node class above."""


def program(root: Node, name_index: Mapping[str, int], out: list[tuple]) -> int:
    """Append ``root``'s tree to ``out`` as C evaluator instructions ``(op code, a, b, name,
    param_ns, value)`` in post-order (operands before the node that reads them) and return the
    root's instruction index. ``name_index`` maps every name the tree reads to its place among
    a tick's values. Each node gets its own instruction (and so its own window state), as each
    gets its own object in ``Evaluator``."""
    op = root.op
    args = [program(a, name_index, out) for a in root.args]
    a, b = (args + [-1, -1])[:2]
    name, param_ns, value = -1, 0, 0.0
    if op in ("num", "bool"):
        code, value = "const", float(root.value)
    elif op == "name":
        code, name = ("flag" if root.value in FLAG_SIGNALS else "leaf"), name_index[root.value]
    elif op in PROGRAM_OPS:
        code = op
        if op in ("max_over", "min_over", "mean_over", "last", "delta", "held", "periodic"):
            param_ns = int(root.value)
    else:
        raise AssertionError(f"no instruction for node {op!r}")  # the parser only emits the ops above
    out.append((PROGRAM_OPS.index(code), a, b, name, param_ns, value))
    return len(out) - 1
