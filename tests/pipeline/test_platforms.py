"""Platform profiles, their validation errors, and the adapter registry."""

from __future__ import annotations

import copy
import logging
import tomllib

import pytest

from shadowd.adapters import create_adapter, get_adapter_class, known_adapters
from shadowd.core.platform import parse_platform
from shadowd.edges.platforms import _REPO_PLATFORMS, available_platforms, load_platform
from shadowd.errors import AdapterNotAvailableError, ConfigError

PROFILES = ("nt2", "nt2_5", "nt3", "desktop")


def _raw(name: str) -> dict:
    return tomllib.loads((_REPO_PLATFORMS / f"{name}.toml").read_text())


@pytest.mark.parametrize("name", PROFILES)
def test_every_bundled_profile_loads_and_its_adapter_resolves(name):
    p = load_platform(name)
    assert p.name == name
    assert p.inference.providers[-1] == "CPUExecutionProvider"
    assert create_adapter(p).platform is p
    assert {"speed_mps", "steer_angle_deg", "accel_long_mps2"} <= set(p.signals)


def test_bundled_profiles_are_all_found():
    assert set(PROFILES) <= set(available_platforms())


def test_two_genuinely_different_buses_are_mapped():
    toyota, honda = load_platform("nt2"), load_platform("nt2_5")
    assert toyota.bus("car").dbc != honda.bus("car").dbc
    assert toyota.signals["speed_mps"].message != honda.signals["speed_mps"].message


def test_rav4_accel_x_sign_is_flipped_and_kph_converted():
    p = load_platform("nt2")
    assert p.signals["accel_long_mps2"].factor == -1.0
    assert p.signals["speed_mps"].factor == pytest.approx(1 / 3.6)
    assert p.signals["steer_angle_deg"].sources == ("STEER_ANGLE", "STEER_FRACTION")


def test_honda_profile_does_not_provide_yaw_rate_or_perception():
    p = load_platform("nt2_5")
    assert not p.provides("yaw_rate_rps") and not p.provides("lead_distance_m")
    assert load_platform("nt2").provides("lead_distance_m")


@pytest.mark.parametrize("mutate, key", [
    (lambda d: d["signals"]["speed_mps"].update(unit="furlong"), "signals.speed_mps.unit"),
    (lambda d: d["signals"]["speed_mps"].update(bus="flexray"), "signals.speed_mps.bus"),
    (lambda d: d["signals"].update(sped_mps={"bus": "car", "sources": ["SPEED.SPEED"]}), "signals.sped_mps"),
    (lambda d: d["signals"]["steer_angle_deg"].update(sources=["A.X", "B.Y"]), "signals.steer_angle_deg.sources"),
    (lambda d: d["inference"].update(budget_ms="fast"), "inference.budget_ms"),
    (lambda d: d["network"].update(policy="whenever"), "network.policy"),
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["memory"].pop("ring_budget_bytes"), "memory.ring_budget_bytes"),
])
def test_invalid_profile_error_names_file_and_key(mutate, key):
    d = copy.deepcopy(_raw("nt2"))
    mutate(d)
    with pytest.raises(ConfigError) as err:
        parse_platform(d, source="platforms/nt2.toml")
    assert str(err.value).startswith(f"platforms/nt2.toml: {key}")


def test_unknown_platform_lists_known_ones():
    with pytest.raises(ConfigError, match="known platforms: .*nt2"):
        load_platform("nt9")


def test_toml_syntax_error_is_a_config_error(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text("name = \n")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_platform(str(f))


def test_unknown_adapter_names_the_known_ones():
    with pytest.raises(AdapterNotAvailableError) as err:
        get_adapter_class("nt9")
    for name in ("desktop", "nt2", "nt2_5", "nt3"):
        assert name in str(err.value)
    assert isinstance(err.value, NotImplementedError)
    assert set(known_adapters()) >= {"desktop", "nt2", "nt2_5", "nt3"}


def test_provider_resolution_keeps_profile_order_and_falls_back_to_cpu(caplog):
    nt2 = create_adapter(load_platform("nt2"))
    offered = ["CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"]
    assert nt2.resolve_providers(offered) == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    with caplog.at_level(logging.INFO):
        chosen = create_adapter(load_platform("nt3")).resolve_providers(["CPUExecutionProvider"])
    assert chosen == ["CPUExecutionProvider"]
    assert "VendorNPUExecutionProvider" in caplog.text


def test_provider_resolution_on_this_machine_uses_what_onnxruntime_offers():
    import onnxruntime

    chosen = create_adapter(load_platform("nt2")).resolve_providers()
    assert set(chosen) <= set(onnxruntime.get_available_providers())
    assert chosen[-1] == "CPUExecutionProvider"


def test_desktop_adapter_opens_a_real_virtual_bus():
    bus = create_adapter(load_platform("desktop")).open_bus("car")
    try:
        assert bus.channel_info
    finally:
        bus.shutdown()
    with pytest.raises(AdapterNotAvailableError, match="no bus 'flexray'"):
        create_adapter(load_platform("desktop")).open_bus("flexray")
