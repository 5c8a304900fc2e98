"""Trigger tuning maths: expression literals, sweep specs, capture/noise/upload share, best point."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from shadowd.core.triggers import BUILTINS
from shadowd.errors import ConfigError
from shadowd.replay.labels import (
    SweepAxis,
    expression_literals,
    label_metrics,
    parse_sweep,
    run_sweep,
    set_expression_literal,
)


def test_literals_of_builtin_triggers_keep_their_sign_and_skip_durations():
    assert expression_literals(BUILTINS["hard_brake"]["expr"]) == [-4.0]
    assert expression_literals(BUILTINS["swerve"]["expr"]) == [8.0, 180.0, 4.0]
    assert expression_literals(BUILTINS["baseline"]["expr"]) == [1.0]  # 600s is a duration


def test_setting_a_literal_changes_only_that_literal():
    expr = BUILTINS["swerve"]["expr"]
    out = set_expression_literal(expr, 1, 150.0)
    assert expression_literals(out) == [8.0, 150.0, 4.0]
    assert out.replace("150.0", "180") == expr
    assert expression_literals(set_expression_literal(BUILTINS["hard_brake"]["expr"], 0, -3.0)) == [-3.0]
    with pytest.raises(ConfigError, match="threshold:0..0"):
        set_expression_literal(BUILTINS["hard_brake"]["expr"], 1, 2.0)


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False).map(lambda x: round(x, 3)), min_size=1, max_size=4),
       st.data())
def test_any_literal_round_trips_through_set_expression_literal(values, data):
    expr = " and ".join(f"speed_mps > {v!r}" if v >= 0 else f"accel_long_mps2 < {v!r}" for v in values)
    assert expression_literals(expr) == values
    n = data.draw(st.integers(0, len(values) - 1))
    new = data.draw(st.floats(-1e3, 1e3, allow_nan=False))
    got = expression_literals(set_expression_literal(expr, n, new))
    assert got[n] == float(new) and got[:n] == values[:n] and got[n + 1:] == values[n + 1:]


def test_sweep_specs_parse_and_bad_ones_say_the_format():
    assert parse_sweep("hard_brake:threshold=-3,-4.5") == SweepAxis("hard_brake", "threshold:0", (-3.0, -4.5))
    assert parse_sweep("swerve:cooldown_s=5,10").param == "cooldown_s"
    with pytest.raises(ConfigError, match="TRIGGER:PARAM=v1,v2"):
        parse_sweep("hard_brake=3")


def _result(duration_s, clips, labels):
    return {"status": "ok", "duration_s": duration_s, "labels": labels,
            "clips": [{"t0_s": a, "t1_s": b, "duration_s": b - a, "triggers": trig} for a, b, trig in clips]}


def test_capture_noise_and_upload_share_per_trigger():
    results = [
        _result(3600.0, [(10, 25, ["hard_brake"]), (100, 115, ["swerve"]), (500, 520, ["hard_brake", "swerve"])],
                [{"kind": "brake", "start_s": 20, "end_s": 21}, {"kind": "cut_in", "start_s": 900, "end_s": 905}]),
        _result(3600.0, [], [{"kind": "brake", "start_s": 5, "end_s": 6}]),
        {"status": "error", "error": "bad"},
    ]
    m = label_metrics(results)
    assert m["labelled_events"] == 3 and m["by_kind"] == {"brake": 2, "cut_in": 1}
    assert m["all"]["captured_events"] == 1 and m["all"]["capture_share"] == pytest.approx(1 / 3, abs=1e-6)
    assert m["all"]["clips_without_event_per_h"] == 1.0  # 2 noise clips in 2 h
    assert m["all"]["upload_share"] == pytest.approx(50 / 7200, abs=1e-6)
    assert m["triggers"]["hard_brake"]["captured_events"] == 1
    assert m["triggers"]["swerve"]["captured_events"] == 0
    assert label_metrics([_result(10.0, [], [])]) is None


def test_sweep_picks_highest_capture_within_the_upload_budget():
    labels = [{"kind": "x", "start_s": s, "end_s": s + 1} for s in (100, 200, 300)]
    # lower threshold -> more clips: 1 clip (20 s), 2 clips, 3 clips (60 s of 1000 s)
    def replay(overrides):
        (_, _, v), = overrides
        n = {3.0: 1, 2.0: 2, 1.0: 3}[v]
        return [_result(1000.0, [(s - 10, s + 10, ["t"]) for s in (100, 200, 300)[:n]], labels)]

    out = run_sweep([SweepAxis("t", "threshold:0", (3.0, 2.0, 1.0))], 0.05, replay)
    assert [p["upload_share"] for p in out["points"]] == [0.02, 0.04, 0.06]
    assert out["best"]["params"] == {"t:threshold:0": 2.0}
    assert out["best"]["capture_share"] == pytest.approx(2 / 3, abs=1e-6)
    none = run_sweep([SweepAxis("t", "threshold:0", (1.0,))], 0.05, replay)
    assert none["best"] is None and "no grid point" in none["verdict"]
