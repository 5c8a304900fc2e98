"""Test helpers for the trigger engine: a brute-force reference evaluator and Hypothesis
strategies for well-typed random expressions and tick sequences.

The reference evaluates a compiled tree over the *whole* history at once, straight from the
definitions in docs/triggers.md (O(n * window), no incremental state), so it shares nothing
with shadowd.core.expr's evaluators except the syntax tree.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

from shadowd.core.expr import FLAG_SIGNALS, Node

NAN = math.nan

NUM_NAMES = ("speed_mps", "accel_long_mps2", "divergence")
FLAG_NAMES = ("brake_pressed", "adas_engaged")
ALL_NAMES = NUM_NAMES + FLAG_NAMES


def reference(node: Node, t: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
    """Value of ``node`` at every tick of the full history (``t`` int64, ``cols`` float64)."""
    n = len(t)
    op = node.op
    if op in ("num", "bool"):
        return np.full(n, float(node.value))
    if op == "name":
        x = cols.get(node.value, np.full(n, NAN)).astype(np.float64)
        x = np.where(np.isfinite(x), x, NAN)
        if node.value in FLAG_SIGNALS:
            x = np.where(np.isnan(x), NAN, (x != 0).astype(float))
        return x
    if op == "periodic":
        out = np.zeros(n)
        for i in range(1, n):
            out[i] = float(t[i] // node.value != t[i - 1] // node.value)
        return out
    args = [reference(a, t, cols) for a in node.args]
    w = node.value
    if op == "mean_over":
        return _mean_over(args[0], t, w)
    out = np.full(n, NAN)
    for i in range(n):
        a = args[0][i] if args else NAN
        b = args[1][i] if len(args) > 1 else NAN
        out[i] = _point(op, a, b, args, t, i, w)
    return out


def _mean_over(x: np.ndarray, t: np.ndarray, w: int) -> np.ndarray:
    """mean_over as docs/triggers.md defines it: the known samples (|x| <= 1e12) in [t - w, t],
    their sum taken as the difference of one running sum since the first tick (so a mean
    rounds as that difference does), NaN when there are none."""
    run = [0.0]  # run[j]: the running sum of the known samples before tick j
    for v in x:
        run.append(run[-1] + v if abs(v) <= 1e12 else run[-1])
    out = np.full(len(x), NAN)
    for i in range(len(x)):
        lo = next(j for j in range(i + 1) if t[j] >= t[i] - w)
        count = sum(1 for j in range(lo, i + 1) if abs(x[j]) <= 1e12)
        if count:
            out[i] = (run[i + 1] - run[lo]) / count
    return out


def _point(op, a, b, args, t, i, w):  # noqa: C901 - one branch per operator is the point
    unknown = math.isnan(a) or math.isnan(b)
    if op == "neg":
        return -a
    if op == "not":
        return NAN if math.isnan(a) else 1.0 - a
    if op == "abs":
        return abs(a)
    if op in ("+", "-", "*", "/"):
        if op == "/":
            return NAN if b == 0 or unknown else a / b
        return {"+": a + b, "-": a - b, "*": a * b}[op] if not unknown else NAN
    if op in ("min", "max"):
        return NAN if unknown else (min(a, b) if op == "min" else max(a, b))
    if op in ("<", "<=", ">", ">=", "==", "!="):
        if unknown:
            return NAN
        return float({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[op])
    if op == "and":
        return 0.0 if (a == 0 or b == 0) else (NAN if unknown else 1.0)
    if op == "or":
        return 1.0 if (a == 1 or b == 1) else (NAN if unknown else 0.0)
    x = args[0]
    if op in ("max_over", "min_over"):
        win = [x[j] for j in range(i + 1) if t[j] >= t[i] - w and not math.isnan(x[j])]
        if not win:
            return NAN
        return {"max_over": max, "min_over": min}[op](win)
    if op in ("last", "delta"):
        js = [j for j in range(i + 1) if t[j] <= t[i] - w]
        past = x[js[-1]] if js else NAN
        return past if op == "last" else x[i] - past
    if op == "held":
        if x[i] != 1.0:
            return 0.0
        s = i
        while s > 0 and x[s - 1] == 1.0:
            s -= 1
        return float(t[i] - t[s] >= w)
    if op in ("rising", "falling"):
        if i == 0:
            return 0.0
        before, after = (0.0, 1.0) if op == "rising" else (1.0, 0.0)
        return float(x[i - 1] == before and x[i] == after)
    raise AssertionError(op)


# --------------------------------------------------------------------------- strategies

_DURS = ("20ms", "50ms", "0.1s", "0.25s", "1s", "3s")


@st.composite
def num_expr(draw, depth: int = 3) -> str:
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.one_of(st.sampled_from(NUM_NAMES),
                              st.sampled_from(("0", "1", "2.5", "-3", "0.5", "10"))))
    kind = draw(st.integers(0, 7))
    sub = num_expr(depth - 1)
    if kind == 0:
        return f"({draw(sub)} {draw(st.sampled_from('+-*/'))} {draw(sub)})"
    if kind == 1:
        return f"-{draw(sub)}"
    if kind == 2:
        return f"abs({draw(sub)})"
    if kind == 3:
        return f"{draw(st.sampled_from(('min', 'max')))}({draw(sub)}, {draw(sub)})"
    if kind == 4:
        fn = draw(st.sampled_from(("max_over", "min_over", "mean_over", "last", "delta")))
        return f"{fn}({draw(sub)}, {draw(st.sampled_from(_DURS))})"
    if kind == 5:
        return f"mean_over({draw(bool_expr(depth - 1))}, {draw(st.sampled_from(_DURS))})"
    return draw(sub)


@st.composite
def bool_expr(draw, depth: int = 3) -> str:
    if depth <= 0 or draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(st.sampled_from(FLAG_NAMES + ("true", "false")),
                              st.builds(lambda a, o, b: f"{a} {o} {b}", num_expr(0),
                                        st.sampled_from(("<", "<=", ">", ">=", "==", "!=")), num_expr(0))))
    kind = draw(st.integers(0, 7))
    sub = bool_expr(depth - 1)
    if kind == 0:
        return f"({draw(sub)} {draw(st.sampled_from(('and', 'or')))} {draw(sub)})"
    if kind == 1:
        return f"not {draw(sub)}"
    if kind == 2:
        op = draw(st.sampled_from(("<", "<=", ">", ">=", "==", "!=")))
        return f"{draw(num_expr(depth - 1))} {op} {draw(num_expr(depth - 1))}"
    if kind == 3:
        return f"held({draw(sub)}, {draw(st.sampled_from(_DURS))})"
    if kind == 4:
        return f"{draw(st.sampled_from(('rising', 'falling')))}({draw(sub)})"
    if kind == 5:
        fn = draw(st.sampled_from(("max_over", "min_over", "last")))
        return f"{fn}({draw(sub)}, {draw(st.sampled_from(_DURS))})"
    if kind == 6:
        return f"periodic({draw(st.sampled_from(('1s', '2s')))})"
    return f"(({draw(sub)}) == ({draw(sub)}))"


_VALUES = st.one_of(
    st.sampled_from((0.0, 1.0, -1.0, 2.5, -4.5, 0.1, 3.0, NAN, NAN, math.inf)),
    st.floats(-50, 50, allow_nan=False, width=32),
)


@st.composite
def ticks(draw, min_size: int = 1, max_size: int = 60, max_step_ns: int = 60_000_000):
    """(t_ns int64 array, {name: float64 column}) with non-decreasing times (repeats allowed)."""
    n = draw(st.integers(min_size, max_size))
    steps = draw(st.lists(st.sampled_from((0, 10_000_000, 20_000_000, 20_000_000, 33_000_000, max_step_ns)),
                          min_size=n, max_size=n))
    t0 = draw(st.integers(-10**12, 10**12))
    t = t0 + np.cumsum(np.array(steps, dtype=np.int64))
    cols = {}
    for name in ALL_NAMES:
        if name in FLAG_NAMES:
            vals = draw(st.lists(st.sampled_from((0.0, 1.0, 1.0, NAN)), min_size=n, max_size=n))
        else:
            vals = draw(st.lists(_VALUES, min_size=n, max_size=n))
        cols[name] = np.array(vals, dtype=np.float64)
    return t, cols


def row(cols: dict[str, np.ndarray], i: int) -> dict[str, float]:
    """Tick ``i`` as the mapping ``evaluate`` takes; unknown values are left out half the time."""
    out = {}
    for k, v in cols.items():
        x = float(v[i])
        if math.isnan(x) and (i + len(k)) % 2:
            continue
        out[k] = x
    return out


def splits(draw_list: list[int], n: int) -> list[tuple[int, int]]:
    """Chunk boundaries [(lo, hi), ...] covering range(n) from a list of cut sizes."""
    out, lo = [], 0
    for size in draw_list:
        if lo >= n:
            break
        out.append((lo, min(n, lo + size)))
        lo += size
    if lo < n:
        out.append((lo, n))
    return out
