"""Service settings: the shipped example parses, and mistakes are refused by name."""

import tomllib
from pathlib import Path

import pytest

from shadowd.core.settings import parse_settings
from shadowd.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "systemd" / "settings.example.toml"


def test_the_shipped_example_settings_parse():
    s = parse_settings(tomllib.loads(EXAMPLE.read_text()), str(EXAMPLE))
    assert s.rings["vehicle"] == "shadowd.vehicle" and s.mqtt is not None and s.state_dir == "/var/lib/shadowd"


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"vehicle_idd": "x"}, "unknown setting 'vehicle_idd'"),
        ({"vehicle_id": "has space"}, "vehicle_id 'has space'"),
        ({"rings": {"lidar": "x"}}, "rings.lidar: unknown topic"),
        ({"rings": {"vehicle": "../etc"}}, "segment name '../etc'"),
        ({"shutdown_grace_s": -1}, "shutdown_grace_s must be a number in"),
        ({"can": [{"interface": "socketcan"}]}, "channel is missing"),
    ],
)
def test_bad_settings_are_refused_with_the_key(patch, message):
    base = {"vehicle_id": "v1", "state_dir": "/tmp/s", "trust_dir": "/tmp/k"}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_settings({**base, **patch}, "settings.toml")


def test_missing_required_setting_says_how_to_fix():
    with pytest.raises(ConfigError, match=r'state_dir is missing; add `state_dir = "\.\.\."`'):
        parse_settings({"vehicle_id": "v1", "trust_dir": "/k"}, "settings.toml")
