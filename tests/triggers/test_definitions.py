"""Trigger definitions as they arrive in configs: validation of every field, builtin references
with overrides, and the TriggerSet summary the config layer checks against the ring."""

import pytest

from shadowd.core.triggers import (
    BUILTINS, DEFAULT_METRICS, TriggerEngine, builtin_triggers, compile_triggers, parse_trigger,
)
from shadowd.errors import ConfigError


def refused(defs, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        compile_triggers(defs, **kw)
    return str(info.value)


@pytest.mark.parametrize("field, value, fragment", [
    ("priority", 10, "priority = 10 is out of range; use 0 to 9"),
    ("priority", -1, "out of range"),
    ("priority", 2.5, "priority must be a whole number"),
    ("priority", True, "priority must be a whole number"),
    ("pre_s", -1, "pre_s = -1 is out of range"),
    ("pre_s", "10", "pre_s must be a number of seconds"),
    ("post_s", 1e9, "post_s = 1000000000.0 is out of range"),
    ("post_s", float("nan"), "post_s must be a number"),
    ("cooldown_s", float("inf"), "cooldown_s must be a number"),
    ("max_per_hour", 0, "max_per_hour = 0 is out of range; use 1 to 3600"),
    ("max_per_hour", "5", "max_per_hour must be a whole number"),
    ("enabled", "yes", "enabled must be true or false"),
    ("description", 5, "description must be text"),
    ("expr", "speed_mps > ", "expression error at column 13"),
    ("expr", None, "expression must be a string"),
    ("name", "has space", "name must be 1-128 letters"),
    ("name", "", "name must be"),
])
def test_each_field_is_validated_with_the_trigger_named(field, value, fragment):
    d = {"name": "hb", "expr": "speed_mps > 3", field: value}
    msg = refused([d])
    assert fragment in msg
    if field != "name":
        assert msg.startswith('trigger "hb"')


def test_unknown_key_is_refused_by_name():
    assert "unknown key 'cooldown'" in refused([{"name": "hb", "expr": "brake_pressed", "cooldown": 3}])


def test_missing_expression_is_refused_with_a_hint():
    assert "expr is missing" in refused([{"name": "hb"}])


def test_duplicate_names_are_refused():
    d = {"name": "hb", "expr": "brake_pressed"}
    assert "duplicate trigger name 'hb'" in refused([d, d])


def test_non_list_and_non_object_definitions_are_refused():
    assert "expected a list" in refused({"name": "hb"})
    assert "triggers[1]: expected an object" in refused([{"name": "a", "expr": "brake_pressed"}, "b"])


def test_numeric_expression_is_refused_as_a_trigger_condition():
    assert "must be a condition" in refused([{"name": "hb", "expr": "speed_mps * 2"}])


def test_metric_names_may_not_shadow_signals_or_keywords():
    assert "not usable" in refused([], metric_names=["speed_mps"])
    assert "not usable" in refused([], metric_names=["and"])
    assert "not usable" in refused([], metric_names=["bad-name"])


def test_custom_metric_names_replace_the_defaults():
    compile_triggers([{"name": "m", "expr": "lane_err_m > 1"}], metric_names=["lane_err_m"])
    assert 'unknown name "ade_m"' in refused([{"name": "m", "expr": "ade_m > 1"}], metric_names=["lane_err_m"])


def test_omitted_fields_take_documented_defaults():
    d = parse_trigger({"name": "hb", "expr": "brake_pressed"})
    assert (d.priority, d.pre_s, d.post_s, d.cooldown_s, d.max_per_hour, d.enabled) == (5, 10.0, 5.0, 30.0, 30, True)


def test_builtin_reference_takes_builtin_fields_and_overrides():
    ts = compile_triggers([{"builtin": "hard_brake", "post_s": 8}])
    [d] = ts.definitions
    assert d.name == "hard_brake" and d.builtin == "hard_brake"
    assert d.expr == BUILTINS["hard_brake"]["expr"]
    assert d.post_s == 8.0 and d.priority == BUILTINS["hard_brake"]["priority"]


def test_builtin_can_be_renamed_to_run_two_variants():
    ts = compile_triggers([{"builtin": "divergence"},
                           {"builtin": "divergence", "name": "divergence_strict", "expr": "divergence > 3"}])
    assert [d.name for d in ts.definitions] == ["divergence", "divergence_strict"]


def test_unknown_builtin_is_refused_with_a_suggestion():
    assert 'did you mean "hard_brake"' in refused([{"builtin": "hardbrake"}])


def test_definitions_round_trip_through_dicts():
    ts = compile_triggers([{"builtin": "swerve", "pre_s": 3}, {"name": "x", "expr": "brake_pressed",
                                                                  "description": "d", "enabled": False}])
    assert compile_triggers(ts.to_dicts()).definitions == ts.definitions


def test_trigger_set_summarises_windows_and_signals_of_enabled_triggers():
    ts = compile_triggers([
        {"name": "a", "expr": "held(divergence > 1, 0.5s) and speed_mps > 3", "pre_s": 20, "post_s": 2},
        {"name": "b", "expr": "max_over(brake_pressed, 3s)", "pre_s": 5, "post_s": 9},
        {"name": "c", "expr": "steer_rate_dps > 1", "pre_s": 90, "post_s": 90, "enabled": False},
    ])
    assert (ts.max_pre_s, ts.max_post_s, ts.history_s) == (20.0, 9.0, 3.0)
    assert ts.signals_used == {"speed_mps", "brake_pressed"}
    assert ts.metrics_used == {"divergence"}


def test_builtin_library_compiles_and_each_call_returns_fresh_copies():
    defs = builtin_triggers()
    assert [d["name"] for d in defs] == list(BUILTINS)
    ts = compile_triggers(defs, metric_names=DEFAULT_METRICS)
    assert len(ts.enabled) == len(BUILTINS)
    defs[0]["priority"] = 0
    assert builtin_triggers()[0]["priority"] != 0 or BUILTINS[defs[0]["name"]]["priority"] == 0
    TriggerEngine(ts)  # builds without error
