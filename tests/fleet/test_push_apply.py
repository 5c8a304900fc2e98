"""End to end: `shadowd config` CLI → mosquitto (TLS) → subscriber → ConfigManager, and N vehicles."""

from __future__ import annotations

import json
import queue
import stat
import time

import pytest

from shadowd.bench.fleet import build_tiny_model, run_fleet
from shadowd.cli import main
from shadowd.edges.mqtt import MqttConfigSubscriber
from tests.fixtures.mosquitto import mosquitto, require_mosquitto  # noqa: F401  (pytest fixture)


def test_cli_keygen_sign_verify_round_trip(tmp_path, capsys, fleet):
    assert main(["config", "keygen", "--out", str(tmp_path / "k"), "--key-id", "ops-1"]) == 0
    assert stat.S_IMODE((tmp_path / "k/ops-1.key").stat().st_mode) == 0o600
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(fleet.config(4, targets={"platforms": ["nt2"], "fleets": ["eu-test"]})))
    assert main(["config", "sign", str(cfg), "--key", str(tmp_path / "k/ops-1.key"),
                 "--out", str(tmp_path / "v4.bundle")]) == 0
    capsys.readouterr()
    trust = ["--trust", str(tmp_path / "k")]
    assert main(["config", "verify", str(tmp_path / "v4.bundle"), *trust, "--platform", "nt2",
                 "--now", "2027-01-15T08:00:00Z"]) == 0
    assert capsys.readouterr().out.startswith("ok: v4 signed by ops-1")
    assert main(["config", "verify", str(tmp_path / "v4.bundle"), *trust, "--platform", "nt3",
                 "--now", "2027-01-15T08:00:00Z"]) == 1
    assert capsys.readouterr().out.startswith("refused (wrong_target): platform 'nt3'")
    assert main(["config", "verify", str(tmp_path / "v4.bundle"), *trust, "--now", "2030-01-01T00:00:00Z"]) == 1
    assert capsys.readouterr().out.startswith("refused (expired)")
    assert main(["config", "verify", str(tmp_path / "v4.bundle"), "--trust", str(fleet.trust)]) == 1
    assert capsys.readouterr().out.startswith("refused (unknown_key)")
    now = ["--now", "2027-01-15T08:00:00Z"]
    assert main(["config", "verify", str(tmp_path / "v4.bundle"), *trust, *now, "--model", str(fleet.model)]) == 0
    capsys.readouterr()
    other = build_tiny_model(tmp_path / "other.onnx", bias=9.0)
    assert main(["config", "verify", str(tmp_path / "v4.bundle"), *trust, *now, "--model", str(other)]) == 1
    assert capsys.readouterr().out.startswith("refused (model_hash_mismatch)")


def test_cli_sign_warns_about_a_bundle_every_vehicle_would_refuse(tmp_path, capsys, fleet):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(fleet.config(4, not_before="2020-01-01T00:00:00Z", expires="2020-02-01T00:00:00Z")))
    assert main(["config", "sign", str(cfg), "--key", str(fleet.keys / "fleet-a.key"),
                 "--out", str(tmp_path / "b")]) == 0
    assert "already expired" in capsys.readouterr().err


def test_cli_sign_reports_an_invalid_config_as_one_line(tmp_path, capsys, fleet):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps(fleet.config(4, probation_s=-1)))
    assert main(["config", "sign", str(cfg), "--key", str(fleet.keys / "fleet-a.key"),
                 "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: probation_s: -1 is out of range") and err.count("\n") == 1
    assert not (tmp_path / "b").exists()


def test_cli_push_over_mqtt_is_applied_by_a_subscribed_vehicle(tmp_path, fleet, mosquitto):
    fleet.install_model()
    bundle = tmp_path / "v7.bundle"
    bundle.write_bytes(fleet.bundle(7))
    results: queue.Queue = queue.Queue()
    with fleet.manager() as manager:
        sub = MqttConfigSubscriber(mosquitto.endpoint(), "veh-001", "eu-test",
                                   lambda data: results.put(manager.apply(data, "mqtt")))
        sub.start()
        try:
            assert main(["config", "push", str(bundle), "--mqtt", mosquitto.url, "--fleet", "eu-test",
                         "--cafile", str(mosquitto.pki.ca_cert)]) == 0
            result = results.get(timeout=15)
            assert (result.outcome, result.version) == ("applied", 7), result.detail
            # a vehicle-topic push of an older bundle is refused; the running config stays
            older = tmp_path / "v6.bundle"
            older.write_bytes(fleet.bundle(6))
            assert main(["config", "push", str(older), "--mqtt", mosquitto.url, "--vehicle", "veh-001",
                         "--cafile", str(mosquitto.pki.ca_cert)]) == 0
            result = results.get(timeout=15)
            assert (result.outcome, result.reason) == ("refused", "replayed_version")
            assert manager.status()["active_version"] == 7
        finally:
            sub.stop()


def test_cli_push_refuses_a_file_that_is_not_a_bundle(tmp_path, capsys):
    junk = tmp_path / "x.json"
    junk.write_text("{}")
    (tmp_path / "in").mkdir()
    assert main(["config", "push", str(junk), "--to-dir", str(tmp_path / "in")]) == 1
    assert "is not a signed bundle" in capsys.readouterr().err
    assert not list((tmp_path / "in").iterdir())


def test_apply_incoming_cli_applies_and_reports(tmp_path, capsys, fleet):
    fleet.clock.wall_s = time.time()  # the CLI reads the real clock
    bundle = tmp_path / "v2.bundle"
    bundle.write_bytes(fleet.bundle(2))
    (fleet.state / "incoming").mkdir(parents=True, exist_ok=True)
    assert main(["config", "push", str(bundle), "--to-dir", str(fleet.state / "incoming"),
                 "--model", str(fleet.model)]) == 0
    argv = ["config", "apply-incoming", "--state-dir", str(fleet.state), "--trust", str(fleet.trust),
            "--platform", "desktop", "--vehicle", "veh-001", "--fleet", "eu-test"]
    assert main(argv) == 0
    assert "v2 applied" in capsys.readouterr().out
    assert main(["config", "push", str(bundle), "--to-dir", str(fleet.state / "incoming")]) == 0
    assert main(argv) == 0  # the same bundle again: unchanged, not an error
    assert "v2 unchanged" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_every_vehicle_of_a_fleet_applies_one_push_exactly_once(tmp_path):
    require_mosquitto()
    figures = run_fleet(tmp_path, instances=3, timeout_s=60)
    assert figures["applied_exactly_once"] and figures["refused"] == 0
    assert figures["push_to_applied_s_max"] < 30
