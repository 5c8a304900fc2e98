"""core/config.py: what a fleet engineer may write, and that it survives serialisation."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.config import (ServiceConfig, canonical_json, format_rfc3339_utc, parse_config,
                                 parse_rfc3339_utc)
from shadowd.errors import ConfigError

SHA = "ab" * 32


def minimal(**overrides) -> dict:
    d = {"version": 7, "not_before": "2027-01-01T00:00:00Z", "expires": "2027-02-01T00:00:00Z",
         "targets": {"fleets": ["eu-test"]}, "model": {"sha256": SHA, "file_name": "candidate.onnx"}}
    d.update(overrides)
    return d


def test_minimal_config_takes_documented_defaults():
    cfg = parse_config(minimal())
    assert cfg.version == 7
    assert cfg.not_before_unix_s == 1798761600
    assert cfg.probation_s == 300.0
    assert cfg.windows.pre_s == 10.0 and cfg.windows.post_s == 5.0
    assert cfg.budgets.max_model_errors == 3
    assert cfg.compression_dictionary is None


@pytest.mark.parametrize("overrides, message", [
    ({"version": 0}, "version: 0 is out of range"),
    ({"version": True}, "version: expected an integer"),
    ({"version": "7"}, "version: expected an integer"),
    ({"expires": "2026-01-01T00:00:00Z"}, "is not after not_before"),
    ({"not_before": "2027-01-01T00:00:00+02:00"}, "is not in UTC"),
    ({"not_before": "yesterday"}, "is not an RFC 3339 time"),
    ({"targets": {}}, "no platform, vehicle or fleet named"),
    ({"targets": {"fleet": ["x"]}}, "unknown key 'fleet'"),
    ({"targets": {"vehicles": ["a/b"]}}, "targets.vehicles[0]"),
    ({"model": {"sha256": "AB" * 32, "file_name": "m.onnx"}}, "64 lowercase hex"),
    ({"model": {"sha256": SHA, "file_name": "../etc/passwd"}}, "plain file name"),
    ({"model": {"sha256": SHA}}, "missing 'file_name'"),
    ({"windows": {"pre_s": 50, "post_s": 20, "max_clip_s": 60}}, "exceeds max_clip_s"),
    ({"windows": {"pre_s": -1}}, "windows.pre_s: -1 is out of range"),
    ({"probation_s": float("nan")}, "expected a finite number"),
    ({"budgets": {"max_model_errors": 0}}, "budgets.max_model_errors: 0 is out of range"),
    ({"triggers": [{"expr": "speed_mps > 3"}]}, 'needs a "name"'),
    ({"triggers": [{"name": "a", "expr": "x"}, {"name": "a", "expr": "y"}]}, "duplicate trigger name 'a'"),
    ({"triggers": {"name": "a"}}, "expected a list of trigger objects"),
    ({"upload": []}, "upload: expected a JSON object"),
    ({"compression_dictionary": {"sha256": SHA}}, "exactly one of 'file_name'"),
    ({"schema": 2}, "schema 2 is not the schema 1"),
    ({"verison": 8}, "unknown key 'verison'"),
])
def test_invalid_config_is_refused_naming_field_and_value(overrides, message):
    with pytest.raises(ConfigError) as info:
        parse_config(minimal(**overrides))
    assert message in str(info.value)


def test_missing_required_key_is_named():
    raw = minimal()
    del raw["model"]
    with pytest.raises(ConfigError, match="missing required key 'model'"):
        parse_config(raw)


def test_builtin_trigger_reference_needs_no_name():
    cfg = parse_config(minimal(triggers=[{"builtin": "hard_brake", "post_s": 8}]))
    assert cfg.triggers == ({"builtin": "hard_brake", "post_s": 8},)


def test_rfc3339_accepts_fractions_and_offset_zero():
    assert parse_rfc3339_utc("2027-01-01T00:00:00.75Z", "t") == 1798761600
    assert parse_rfc3339_utc("2027-01-01T00:00:00+00:00", "t") == 1798761600
    assert format_rfc3339_utc(1798761600) == "2027-01-01T00:00:00Z"


def test_canonical_json_is_order_independent_and_refuses_nan():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1}) == b'{"a":[1,2],"b":1}'
    with pytest.raises(ConfigError, match="not plain JSON"):
        canonical_json({"x": float("inf")})


# --- property: parsing a serialised config gives back the same config ------------------------

_names = st.lists(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True), max_size=3, unique=True)
_secs = st.floats(min_value=0, max_value=100, allow_nan=False)
_json_scalar = st.one_of(st.booleans(), st.integers(-10**6, 10**6), st.text(max_size=8),
                         st.floats(allow_nan=False, allow_infinity=False, width=32))


@st.composite
def configs(draw) -> dict:
    not_before = draw(st.integers(0, 4_000_000_000))
    pre_s, post_s = draw(_secs), draw(_secs)
    targets = {"platforms": draw(_names), "vehicles": draw(_names), "fleets": draw(_names)}
    if not any(targets.values()):
        targets["fleets"] = ["all"]
    raw = {
        "version": draw(st.integers(1, 2**63 - 1)),
        "not_before": format_rfc3339_utc(not_before),
        "expires": format_rfc3339_utc(not_before + draw(st.integers(1, 10**8))),
        "targets": targets,
        "model": {"sha256": draw(st.from_regex(r"[0-9a-f]{64}", fullmatch=True)),
                  "file_name": draw(st.from_regex(r"[a-z][a-z0-9_]{0,10}\.onnx", fullmatch=True))},
        "triggers": [{"name": f"t{i}", "expr": draw(st.text(max_size=20)), "extra": draw(_json_scalar)}
                     for i in range(draw(st.integers(0, 3)))],
        "windows": {"pre_s": pre_s, "post_s": post_s, "max_clip_s": pre_s + post_s + draw(st.floats(0.5, 50))},
        "upload": draw(st.dictionaries(st.text(max_size=6), _json_scalar, max_size=3)),
        "budgets": {"max_model_errors": draw(st.integers(1, 100))},
        "probation_s": draw(_secs),
        "description": draw(st.text(max_size=20)),
    }
    if draw(st.booleans()):
        raw["compression_dictionary"] = {"sha256": "0" * 64, "inline_b64": "AAEC"}
    return raw


@given(configs())
def test_parsing_a_serialised_config_gives_back_the_same_config(raw):
    cfg = parse_config(raw)
    assert isinstance(cfg, ServiceConfig)
    again = parse_config(json.loads(canonical_json(cfg.to_dict())))
    assert again == cfg
    assert canonical_json(again.to_dict()) == canonical_json(cfg.to_dict())
