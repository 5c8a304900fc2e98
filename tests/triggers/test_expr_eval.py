"""Expression values: table tests of operators and functions, and Hypothesis checks of every
function against the brute-force reference in tests/triggers/reference.py."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.expr import BOOL, NUM, compile_expression
from shadowd.core.triggers import DEFAULT_METRICS

from .reference import bool_expr, num_expr, reference, row, splits, ticks

NAN = math.nan
S = 1_000_000_000


def value(src: str, values: dict, t_ns: int = 0) -> float:
    return compile_expression(src, metric_names=DEFAULT_METRICS).evaluator().scalar(t_ns, values)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("src, values, expected", [
    ("speed_mps > 3", {"speed_mps": 4.0}, 1.0),
    ("speed_mps > 3", {"speed_mps": 3.0}, 0.0),
    ("speed_mps >= 3", {"speed_mps": 3.0}, 1.0),
    ("speed_mps != 3", {"speed_mps": 2.0}, 1.0),
    ("1 + 2 * 3 == 7", {}, 1.0),
    ("(1 + 2) * 3 == 9", {}, 1.0),
    ("-2 * -3 == 6", {}, 1.0),
    ("10 / 4 - 1 == 1.5", {}, 1.0),
    ("1 - 2 - 3 == -4", {}, 1.0),  # left-associative
    ("abs(accel_long_mps2) > 4", {"accel_long_mps2": -5.0}, 1.0),
    ("min(speed_mps, 2) + max(speed_mps, 2) == 7", {"speed_mps": 5.0}, 1.0),
    ("speed_mps / 0 > 1", {"speed_mps": 1.0}, NAN),  # division by zero is unknown
    ("1.5e1 == 15", {}, 1.0),
    (".5 == 0.5", {}, 1.0),
    ("true and not false", {}, 1.0),
    ("not speed_mps > 3 or speed_mps > 10", {"speed_mps": 5.0}, 0.0),  # not binds looser than >
    ("brake_pressed", {"brake_pressed": 1}, 1.0),
    ("brake_pressed", {"brake_pressed": 0}, 0.0),
    ("brake_pressed and gear == 0", {"brake_pressed": 7, "gear": 0}, 1.0),  # flags: non-zero is true
    ("brake_pressed == adas_engaged", {"brake_pressed": 1, "adas_engaged": 1}, 1.0),
    ("divergence > 1", {"divergence": 2.0}, 1.0),
    # unknown values: missing, NaN, inf, non-numeric
    ("speed_mps > 3", {}, NAN),
    ("speed_mps > 3", {"speed_mps": NAN}, NAN),
    ("speed_mps > 3", {"speed_mps": math.inf}, NAN),
    ("speed_mps > 3", {"speed_mps": "fast"}, NAN),
    ("not speed_mps > 3", {}, NAN),
    ("speed_mps > 3 and false", {}, 0.0),  # Kleene: false wins over unknown
    ("speed_mps > 3 and true", {}, NAN),
    ("speed_mps > 3 or true", {}, 1.0),  # Kleene: true wins over unknown
    ("speed_mps > 3 or false", {}, NAN),
    ("min(speed_mps, 1) < 5", {}, NAN),
])
def test_expression_value_table(src, values, expected):
    assert same(value(src, values), expected)


@pytest.mark.parametrize("raw", [4, True, np.float32(4.5), np.int64(-5), np.float64(5.0), "3.5", "fast",
                                 None, 10**400, math.inf, -math.inf, NAN, 0.0, -0.0])
def test_every_compiled_shape_of_a_name_reads_a_raw_value_the_same_way(raw):
    # The one-tick closures read a name in place in several shapes (alone, inside abs, compared
    # with a literal, as a flag); each must treat a value that is not a plain float alike.
    try:
        x = float(raw)
    except (TypeError, ValueError, OverflowError):
        x = NAN
    if not math.isfinite(x):
        x = NAN
    flag = NAN if math.isnan(x) else float(x != 0.0)
    cmp = NAN if math.isnan(x) else float(x > 3)
    cases = [("speed_mps + 0", x + 0), ("abs(speed_mps) + 0", abs(x)), ("abs(speed_mps + 0)", abs(x)),
             ("speed_mps > 3", cmp), ("3 < speed_mps", cmp), ("speed_mps + 0 > 3", cmp),
             ("brake_pressed", flag), ("brake_pressed == true", flag), ("max_over(speed_mps, 1s)", x)]
    for src, expected in cases:
        assert same(value(src, {"speed_mps": raw, "brake_pressed": raw}), expected), src


def test_type_of_compiled_expression_follows_its_root():
    assert compile_expression("speed_mps * 2").type == NUM
    assert compile_expression("speed_mps * 2 > 1").type == BOOL
    assert compile_expression("max_over(brake_pressed, 1s)").type == BOOL
    assert compile_expression("mean_over(brake_pressed, 1s)").type == NUM


def test_compiled_expression_reports_names_signals_metrics_and_history():
    e = compile_expression("held(divergence > 1, 0.5s) and max_over(speed_mps, 2s) > last(speed_mps, 250ms)",
                           metric_names=DEFAULT_METRICS)
    assert e.names == ("divergence", "speed_mps")
    assert e.signals == {"speed_mps"}
    assert e.metrics == {"divergence"}
    assert e.history_s == 2.0


def run_scalar(src, t, cols):
    ev = compile_expression(src, metric_names=DEFAULT_METRICS).evaluator()
    return np.array([ev.scalar(int(t[i]), row(cols, i)) for i in range(len(t))])


def test_max_over_window_includes_its_start_and_forgets_older_samples():
    t = np.array([0, 1, 2, 3], dtype=np.int64) * S
    cols = {"speed_mps": np.array([9.0, 1.0, 2.0, 1.0])}
    assert run_scalar("max_over(speed_mps, 1s)", t, cols).tolist() == [9.0, 9.0, 2.0, 2.0]


def test_last_is_the_value_at_or_before_the_delay_and_unknown_before_that():
    t = np.array([0, 500, 1000, 1500], dtype=np.int64) * 1_000_000
    cols = {"speed_mps": np.array([1.0, 2.0, 3.0, 4.0])}
    out = run_scalar("last(speed_mps, 1s)", t, cols)
    assert math.isnan(out[0]) and math.isnan(out[1]) and out[2:].tolist() == [1.0, 2.0]


def test_held_becomes_true_only_after_the_condition_lasted_the_duration():
    t = np.arange(8, dtype=np.int64) * 100_000_000  # 10 Hz
    cols = {"brake_pressed": np.array([1, 1, 1, 0, 1, 1, 1, 1], dtype=float)}
    assert run_scalar("held(brake_pressed, 0.2s)", t, cols).tolist() == [0, 0, 1, 0, 0, 0, 1, 1]


def test_unknown_breaks_a_held_run():
    t = np.arange(5, dtype=np.int64) * 100_000_000
    cols = {"brake_pressed": np.array([1, 1, NAN, 1, 1])}
    assert run_scalar("held(brake_pressed, 0.1s)", t, cols).tolist() == [0, 1, 0, 0, 1]


def test_rising_needs_a_known_false_before_a_true():
    t = np.arange(6, dtype=np.int64) * S
    cols = {"brake_pressed": np.array([1, 0, 1, NAN, 1, 1])}
    assert run_scalar("rising(brake_pressed)", t, cols).tolist() == [0, 0, 1, 0, 0, 0]


@pytest.mark.parametrize("src", ["speed_mps > 3 and rising(brake_pressed)",
                                 "rising(brake_pressed) and speed_mps > 3",
                                 "not (speed_mps <= 3 or not rising(brake_pressed))"])
def test_a_stateful_operand_sees_every_tick_when_a_stateless_one_decides(src):
    # and/or may skip a stateless operand, never a stateful one: rising() must see the brake
    # go down and up while the speed alone makes the result false.
    t = np.arange(6, dtype=np.int64) * S
    cols = {"speed_mps": np.array([0, 0, 0, 5, 5, 5.0]), "brake_pressed": np.array([1, 0, 1, 1, 0, 1])}
    assert run_scalar(src, t, cols).tolist() == [0, 0, 0, 0, 0, 1]


def test_periodic_fires_at_the_first_tick_of_each_period_but_not_the_first_tick():
    t = np.array([5, 9, 10, 11, 25, 26], dtype=np.int64) * S
    assert run_scalar("periodic(10s)", t, {}).tolist() == [0, 0, 1, 0, 1, 0]


def test_mean_over_ignores_unknown_and_absurd_values():
    t = np.arange(4, dtype=np.int64) * S
    cols = {"speed_mps": np.array([2.0, NAN, 1e300 * 10, 4.0])}
    out = run_scalar("mean_over(speed_mps * 1, 10s)", t, cols)
    assert out.tolist() == [2.0, 2.0, 2.0, 3.0]


@given(st.data())
def test_windowed_and_stateful_functions_equal_brute_force_reference(data):
    fn = data.draw(st.sampled_from(["max_over({x}, {d})", "min_over({x}, {d})", "mean_over({x}, {d})",
                                    "last({x}, {d})", "delta({x}, {d})", "held({x} > 0, {d})",
                                    "rising({x} > 0)", "falling({x} > 0)", "periodic(1s)"]))
    x = data.draw(st.sampled_from(["speed_mps", "accel_long_mps2 * 2 - speed_mps"]))
    d = data.draw(st.sampled_from(["20ms", "100ms", "0.5s", "1s"]))
    src = fn.format(x=x, d=d)
    t, cols = data.draw(ticks())
    got = run_scalar(src, t, cols)
    want = reference(compile_expression(src).root, t, cols)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=src)
    ev = compile_expression(src).evaluator()
    cuts = splits(data.draw(st.lists(st.integers(1, 20), max_size=8)), len(t))
    chunked = np.concatenate([ev.batch(t[lo:hi], {k: v[lo:hi] for k, v in cols.items()}) for lo, hi in cuts])
    np.testing.assert_allclose(chunked, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=src)


@given(st.data())
def test_random_expressions_equal_brute_force_reference(data):
    src = data.draw(st.one_of(bool_expr(), num_expr()))
    t, cols = data.draw(ticks(max_size=30))
    got = run_scalar(src, t, cols)
    want = reference(compile_expression(src, metric_names=DEFAULT_METRICS).root, t, cols)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=src)
