"""Firing semantics of TriggerEngine: rising edge, cooldown, rolling-hour rate cap, score and
causes, counters, late ticks; Hypothesis properties for cooldown and rate cap."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.triggers import HOUR_NS, TriggerEngine, compile_triggers

S = 1_000_000_000


def engine(**fields) -> TriggerEngine:
    d = {"name": "brake", "expr": "brake_pressed", "cooldown_s": 0, "max_per_hour": 1000, **fields}
    return TriggerEngine(compile_triggers([d]))


def fire_times(eng: TriggerEngine, t_s, flags) -> list[int]:
    out = []
    for t, f in zip(t_s, flags):
        out += [ev.t_ns for ev in eng.evaluate(round(t * S), {"brake_pressed": f})]
    return out


def test_condition_that_stays_true_fires_once_at_its_rising_edge():
    eng = engine()
    assert fire_times(eng, [0, 1, 2, 3, 4], [0, 1, 1, 1, 1]) == [1 * S]


def test_condition_true_at_the_first_tick_fires_at_the_first_tick():
    assert fire_times(engine(), [5, 6], [1, 1]) == [5 * S]


def test_condition_that_goes_false_and_true_again_fires_again():
    assert fire_times(engine(), [0, 1, 2, 3], [1, 0, 1, 1]) == [0, 2 * S]


def test_unknown_condition_does_not_fire_and_breaks_the_edge():
    eng = engine()
    assert fire_times(eng, [0, 1, 2, 3], [math.nan, 1, math.nan, 1]) == [1 * S, 3 * S]


def test_trigger_does_not_refire_within_cooldown_and_counts_the_suppressed_edge():
    eng = engine(cooldown_s=2.5)
    assert fire_times(eng, [0, 1, 2, 3, 4, 5], [1, 0, 1, 0, 1, 0]) == [0, 4 * S]
    assert eng.stats()["triggers"]["brake"] == {"fired": 2, "suppressed_cooldown": 1, "suppressed_rate": 0}


def test_suppressed_edges_do_not_restart_the_cooldown():
    eng = engine(cooldown_s=3)
    assert fire_times(eng, [0, 1, 2, 2.5, 3], [1, 0, 1, 0, 1]) == [0, 3 * S]


def test_rate_cap_limits_fires_in_any_rolling_hour():
    eng = engine(max_per_hour=2)
    t_s = [0, 1, 600, 601, 1200, 1201, 3600, 3601, 3602, 3603, 4200, 4201]
    flags = [1, 0] * 6
    assert fire_times(eng, t_s, flags) == [0, 600 * S, 3600 * S, 4200 * S]
    assert eng.stats()["triggers"]["brake"]["suppressed_rate"] == 2


def test_fired_event_carries_definition_fields_score_and_known_causes():
    ts = compile_triggers([{"name": "div", "expr": "held(divergence > 1, 0.1s) and speed_mps > 3 or brake_pressed",
                            "priority": 7, "pre_s": 12, "post_s": 4}])
    eng = TriggerEngine(ts)
    assert eng.evaluate(0, {"divergence": 2.0, "speed_mps": 5.0}) == []
    [ev] = eng.evaluate(S // 5, {"divergence": 2.5, "speed_mps": 5.0})
    assert (ev.t_ns, ev.trigger, ev.priority, ev.pre_s, ev.post_s) == (S // 5, "div", 7, 12.0, 4.0)
    assert ev.score == 2.5
    assert ev.causes == {"divergence": 2.5, "speed_mps": 5.0}  # brake_pressed unknown: left out


def test_score_is_one_for_triggers_that_do_not_read_divergence():
    [ev] = engine().evaluate(0, {"brake_pressed": 1})
    assert ev.score == 1.0 and ev.causes == {"brake_pressed": 1.0}


def test_several_triggers_fire_at_one_tick_in_definition_order():
    ts = compile_triggers([{"name": "b", "expr": "speed_mps > 1"}, {"name": "a", "expr": "speed_mps > 2"}])
    assert [ev.trigger for ev in TriggerEngine(ts).evaluate(0, {"speed_mps": 3})] == ["b", "a"]


def test_late_tick_is_dropped_and_counted_without_disturbing_state():
    eng = engine()
    assert fire_times(eng, [0, 2, 1, 3], [0, 0, 1, 1]) == [3 * S]
    assert eng.stats()["dropped_out_of_order"] == 1
    assert eng.stats()["ticks"] == 3


def test_disabled_trigger_is_kept_in_definitions_but_never_evaluated():
    ts = compile_triggers([{"name": "off", "expr": "brake_pressed", "enabled": False},
                           {"name": "on", "expr": "speed_mps > 1"}])
    assert [d.name for d in ts.definitions] == ["off", "on"]
    assert ts.signals_used == {"speed_mps"}
    eng = TriggerEngine(ts)
    assert [ev.trigger for ev in eng.evaluate(0, {"brake_pressed": 1, "speed_mps": 2})] == ["on"]
    assert list(eng.stats()["triggers"]) == ["on"]


def test_batch_refuses_a_column_of_the_wrong_length():
    with pytest.raises(ValueError, match="one value per tick"):
        engine().evaluate_batch(np.arange(3), {"brake_pressed": np.ones(2)})


def test_batch_of_no_ticks_fires_nothing():
    assert engine().evaluate_batch(np.array([], dtype=np.int64), {}) == []


def test_batch_reads_flags_of_any_numeric_dtype():
    cols = {"brake_pressed": np.array([0, 1, 1], dtype=np.uint8)}
    assert [ev.t_ns for ev in engine().evaluate_batch(np.arange(3) * S, cols)] == [S]


_FLAGS = st.lists(st.tuples(st.sampled_from([0, 1, 5, 10**8, 10**9, 59 * S, 10 * 60 * S]),
                            st.sampled_from([0.0, 1.0, 1.0, math.nan])), min_size=1, max_size=300)


@given(_FLAGS, st.sampled_from([0.0, 0.5, 1.0, 7.0, 600.0]), st.integers(1, 6), st.booleans())
def test_trigger_never_fires_twice_within_its_cooldown_or_over_its_hourly_cap(seq, cooldown_s, cap, batch):
    eng = engine(cooldown_s=cooldown_s, max_per_hour=cap)
    t = np.cumsum([dt for dt, _ in seq]).astype(np.int64)
    flags = np.array([f for _, f in seq])
    if batch:
        fires = [ev.t_ns for ev in eng.evaluate_batch(t, {"brake_pressed": flags})]
    else:
        fires = [ev.t_ns for i in range(len(t)) for ev in eng.evaluate(int(t[i]), {"brake_pressed": flags[i]})]
    cooldown_ns = round(cooldown_s * S)
    assert all(b - a >= cooldown_ns for a, b in zip(fires, fires[1:]))
    for k, tf in enumerate(fires):
        assert sum(1 for x in fires[: k + 1] if x > tf - HOUR_NS) <= cap
    st_ = eng.stats()["triggers"]["brake"]
    edges = int(np.sum((flags == 1) & ~np.concatenate(([False], flags[:-1] == 1))))
    assert st_["fired"] + st_["suppressed_cooldown"] + st_["suppressed_rate"] == edges
    assert st_["fired"] == len(fires)


def test_window_state_stays_bounded_by_window_times_tick_rate():
    from shadowd.core.expr import compile_expression

    expr = compile_expression("max_over(speed_mps, 1s) + mean_over(speed_mps, 1s) + last(speed_mps, 1s)")
    ev = expr.evaluator()
    n = 20_000  # 200 s at 100 Hz, strictly decreasing: the worst case for the max deque
    t = np.arange(n, dtype=np.int64) * (S // 100)
    speed = np.linspace(100.0, 0.0, n)
    for i in range(n // 2):
        ev.scalar(int(t[i]), {"speed_mps": speed[i]})
    ev.batch(t[n // 2:], {"speed_mps": speed[n // 2:]})
    sizes = []

    def walk(node):
        for attr in ("ts", "xs", "cs", "ks"):
            if hasattr(node, attr):
                sizes.append(len(getattr(node, attr)))
        for attr in ("a", "b"):
            if hasattr(node, attr):
                walk(getattr(node, attr))

    walk(ev._root)
    assert sizes and max(sizes) <= 102  # 1 s at 100 Hz, both ends included, plus last()'s anchor
