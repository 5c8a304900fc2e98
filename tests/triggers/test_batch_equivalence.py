"""The numpy chunk path gives bit-identical results to the one-tick path, whatever the chunk
boundaries, and the two can be mixed on one evaluator or engine; the C evaluator, where built,
gives the Python evaluators' values and events through both (tests/triggers/
test_native_equivalence.py: reading frames in place)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.expr import compile_expression
from shadowd.core.triggers import (DEFAULT_METRICS, NativeEvaluator, TriggerEngine, builtin_triggers, compile_triggers,
                                    native_available)

from .reference import bool_expr, num_expr, row, splits, ticks

CUTS = st.lists(st.integers(1, 25), max_size=12)

NATIVE = [False] + ([True] if native_available() else [])
"""Whether the engine under test runs on the C evaluator: Python's always, C's where built."""


def _cut(cols, lo, hi):
    return {k: v[lo:hi] for k, v in cols.items()}


@pytest.mark.parametrize("native", NATIVE)
@given(src=st.one_of(bool_expr(), num_expr()), tk=ticks(), cuts=CUTS, use_scalar=st.lists(st.booleans(), max_size=12))
def test_expression_values_do_not_depend_on_chunking_or_path(native, src, tk, cuts, use_scalar):
    t, cols = tk
    expr = compile_expression(src, metric_names=DEFAULT_METRICS)
    one_by_one = expr.evaluator()
    want = np.array([one_by_one.scalar(int(t[i]), row(cols, i)) for i in range(len(t))])
    mixed = NativeEvaluator(expr) if native else expr.evaluator()
    got = []
    for k, (lo, hi) in enumerate(splits(cuts, len(t))):
        if k < len(use_scalar) and use_scalar[k]:
            got.extend(mixed.scalar(int(t[i]), row(cols, i)) for i in range(lo, hi))
        else:
            got.extend(mixed.batch(t[lo:hi], _cut(cols, lo, hi)).tolist())
    assert np.array_equal(np.array(got), want, equal_nan=True), src


@st.composite
def trigger_defs(draw):
    n = draw(st.integers(1, 4))
    return [{"name": f"t{i}", "expr": draw(bool_expr()), "priority": draw(st.integers(0, 9)),
             "cooldown_s": draw(st.sampled_from([0, 0.02, 0.1, 1.0])),
             "max_per_hour": draw(st.integers(1, 5))} for i in range(n)]


@pytest.mark.parametrize("native", NATIVE)
@given(defs=trigger_defs(), tk=ticks(max_size=80), cuts=CUTS, use_scalar=st.lists(st.booleans(), max_size=12))
def test_engine_events_do_not_depend_on_chunking_or_path(native, defs, tk, cuts, use_scalar):
    t, cols = tk
    ts = compile_triggers(defs)
    ref = TriggerEngine(ts, native=False)
    want = [ev for i in range(len(t)) for ev in ref.evaluate(int(t[i]), row(cols, i))]
    eng = TriggerEngine(ts, native=native)
    got = []
    for k, (lo, hi) in enumerate(splits(cuts, len(t))):
        if k < len(use_scalar) and use_scalar[k]:
            for i in range(lo, hi):
                got.extend(eng.evaluate(int(t[i]), row(cols, i)))
        else:
            got.extend(eng.evaluate_batch(t[lo:hi], _cut(cols, lo, hi)))
    assert got == want
    assert eng.stats() == ref.stats()


@given(ticks(max_size=80), st.lists(st.integers(0, 79), max_size=6), CUTS)
def test_out_of_order_ticks_are_dropped_the_same_way_in_both_paths(tk, swaps, cuts):
    t, cols = tk
    t = t.copy()
    for i in swaps:
        if i < len(t):
            t[i] -= 200_000_000  # a late tick
    ts = compile_triggers(builtin_triggers() + [{"name": "edge", "expr": "rising(brake_pressed)", "cooldown_s": 0}])
    ref = TriggerEngine(ts)
    want = [ev for i in range(len(t)) for ev in ref.evaluate(int(t[i]), row(cols, i))]
    eng = TriggerEngine(ts)
    got = []
    for lo, hi in splits(cuts, len(t)):
        got.extend(eng.evaluate_batch(t[lo:hi], _cut(cols, lo, hi)))
    assert got == want
    assert eng.stats() == ref.stats()
