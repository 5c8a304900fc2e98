"""edges/config_apply.py: the ConfigManager on a real state dir, real model files, real onnxruntime."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from shadowd.bench.fleet import build_tiny_model
from shadowd.core.bundle_state import REFUSAL_REASONS, VehicleIdentity
from shadowd.errors import ConfigError


def test_bundle_with_model_in_store_is_prepared_warmed_and_activated(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        result = manager.offer(fleet.bundle(1), "test")
        assert result.outcome == "prepared", result.detail
        prepared = result.prepared
        assert prepared.model is not None  # a loaded, warmed session the service can swap in
        assert prepared.model_path.name == f"{prepared.config.model.sha256}.onnx"
        assert manager.status()["active_version"] is None  # nothing changes until the swap
        manager.activated(prepared)
        assert manager.status()["active_version"] == 1
        assert manager.active is prepared


def test_every_refusal_names_its_reason_and_keeps_the_running_config(fleet):
    fleet.install_model()
    fleet.add_key("rogue", trust=False)
    other_model = build_tiny_model(fleet.root / "other.onnx", bias=2.0)
    with fleet.manager() as manager:
        assert manager.apply(fleet.bundle(10), "test").outcome == "applied"
        envelope = json.loads(fleet.bundle(11))
        envelope["signature"] = base64.b64encode(b"\x01" * 64).decode()
        wrong_hash = fleet.config(17)
        wrong_hash["model"]["sha256"] = hashlib.sha256(b"not the model").hexdigest()
        (manager.incoming_dir / "candidate.onnx").write_bytes(other_model.read_bytes())
        cases = {
            "bad_signature": json.dumps(envelope).encode(),
            "unknown_key": fleet.bundle(12, key_id="rogue"),
            "replayed_version": fleet.bundle(9),
            "expired": fleet.bundle(13, expires="2027-01-01T00:00:00Z", not_before="2026-01-01T00:00:00Z"),
            "not_yet_valid": fleet.bundle(14, not_before="2030-01-01T00:00:00Z", expires="2030-02-01T00:00:00Z"),
            "wrong_target": fleet.bundle(15, targets={"platforms": ["nt3"]}),
            "model_missing": fleet.bundle(16, model=build_tiny_model(fleet.root / "m3.onnx", bias=3.0)),
            "model_hash_mismatch": _sign(fleet, wrong_hash),
            "invalid_config": fleet.bundle(18, windows={"pre_s": 10, "post_s": 5, "max_clip_s": 30}),
        }
        (fleet.root / "m3.onnx").unlink()
        for reason, data in cases.items():
            result = manager.offer(data, reason)
            assert (result.outcome, result.reason) == ("refused", reason), result.detail
            assert result.detail
            assert manager.status()["active_version"] == 10
        assert set(cases) == set(REFUSAL_REASONS)
        assert manager.status()["refusals"] == dict.fromkeys(REFUSAL_REASONS, 1)


def _sign(fleet, config: dict) -> bytes:
    from shadowd.edges.bundle import load_private_key, sign_bundle

    # the config names a sha256 that no file has, but a file of the right *name* is delivered
    config["model"]["file_name"] = "candidate.onnx"
    return sign_bundle(config, load_private_key(fleet.keys / "fleet-a.key"), "fleet-a")


@pytest.mark.parametrize("overrides, detail", [
    ({"triggers": [{"name": "hb", "expr": "speed_mps >"}]}, "triggers:"),
    ({"triggers": [{"name": "hb", "expr": "sped_mps > 3"}]}, "sped_mps"),
    ({"upload": {"endpoint_url_template": "ftp://ingest/{clip_id}"}}, "upload:"),
    ({"windows": {"pre_s": 10, "post_s": 5, "max_clip_s": 30}}, "ring"),
])
def test_config_failing_a_teammates_validator_is_invalid_config_with_detail(fleet, overrides, detail):
    fleet.install_model()
    with fleet.manager() as manager:
        result = manager.offer(fleet.bundle(2, **overrides), "test")
    assert result.reason == "invalid_config"
    assert detail in result.detail


def test_valid_triggers_and_upload_section_are_compiled_into_the_prepared_config(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        result = manager.offer(fleet.bundle(2, triggers=[{"name": "fast", "expr": "speed_mps > 30", "pre_s": 4}],
                                            upload={"endpoint_url_template": "https://ingest/{clip_id}"}), "t")
    assert result.outcome == "prepared", result.detail
    assert result.prepared.triggers.max_pre_s == 4
    assert result.prepared.upload.vehicle_id == "veh-001"  # filled in from the vehicle's identity


def test_model_whose_contract_does_not_fit_is_refused(fleet):
    import onnx

    model = onnx.load(str(fleet.model))
    del model.metadata_props[:]
    bare = fleet.root / "bare.onnx"
    bare.write_bytes(model.SerializeToString())
    fleet.install_model(bare)
    with fleet.manager() as manager:
        result = manager.offer(fleet.bundle(2, model=bare), "test")
    assert result.reason == "invalid_config" and "contract" in result.detail


def test_anti_rollback_survives_a_restart(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        assert manager.apply(fleet.bundle(5), "test").outcome == "applied"
    with fleet.manager() as manager:  # the service restarted
        prepared = manager.startup()
        assert prepared.version == 5 and prepared.model is not None
        manager.activated(prepared)  # the service swapped the startup config in: nothing changes
        assert manager.offer(fleet.bundle(4), "test").reason == "replayed_version"
        assert manager.offer(fleet.bundle(5), "test").outcome == "unchanged"
        assert manager.apply(fleet.bundle(6), "test").outcome == "applied"


def test_misbehaving_config_rolls_back_to_last_known_good_in_memory(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        assert manager.apply(fleet.bundle(1, probation_s=0), "test").outcome == "applied"
        good = manager.active
        new = manager.offer(fleet.bundle(2, probation_s=60, budgets={"max_model_errors": 2}), "test").prepared
        manager.activated(new)
        assert manager.status()["probation_version"] == 2
        assert manager.report_health("model_error", "shape mismatch") is None
        rolled = manager.report_health("model_error", "shape mismatch")
        assert (rolled.from_version, rolled.to_version, rolled.reason) == (2, 1, "model_error")
        assert rolled.prepared is good  # the old model stayed loaded: the swap back is instant
        assert manager.status()["active_version"] == 1
        assert manager.status()["history"][-1]["event"] == "rolled_back"
        assert manager.offer(fleet.bundle(2), "test").reason == "replayed_version"


def test_candidate_replacing_one_still_on_trial_rolls_back_to_the_last_committed(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        manager.apply(fleet.bundle(1, probation_s=0), "test")
        committed = manager.active
        manager.apply(fleet.bundle(2, probation_s=60), "test")
        manager.apply(fleet.bundle(3, probation_s=60, budgets={"max_model_errors": 1}), "test")
        rolled = manager.report_health("model_error")
        assert (rolled.to_version, rolled.prepared) == (1, committed)


def test_config_that_behaves_through_probation_becomes_last_known_good(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        manager.apply(fleet.bundle(1, probation_s=30), "test")
        manager.report_health("budget_overrun")
        fleet.clock.advance(29)
        assert manager.tick() is None and manager.status()["last_good_version"] is None
        fleet.clock.advance(1)
        assert manager.tick() is None
        assert manager.status()["last_good_version"] == 1 and manager.status()["probation_version"] is None
    with fleet.manager() as manager:
        assert manager.startup().version == 1


def test_rollback_after_restart_reloads_last_known_good_from_disk(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        manager.apply(fleet.bundle(1, probation_s=0), "test")
        manager.apply(fleet.bundle(2, probation_s=60), "test")
    with fleet.manager() as manager:
        assert manager.startup().version == 2  # one restart within the default limit
        rolled = None
        for _ in range(2):
            rolled = manager.report_health("stage_crash", "ingest")
        assert rolled.to_version == 1 and rolled.prepared.version == 1 and rolled.prepared.model is not None


def test_crash_loop_of_the_whole_service_during_probation_rolls_back_at_startup(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        manager.apply(fleet.bundle(1, probation_s=0), "test")
        manager.apply(fleet.bundle(2, probation_s=600, budgets={"max_stage_crashes": 2}), "test")
    versions = []
    for _ in range(3):  # systemd restarts the crashing service
        with fleet.manager() as manager:
            versions.append(manager.startup().version)
    assert versions == [2, 2, 1]


def test_first_config_failing_probation_leaves_no_candidate(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        manager.apply(fleet.bundle(1, probation_s=60, budgets={"max_stage_crashes": 1}), "test")
        rolled = manager.report_health("stage_crash")
        assert rolled.to_version is None and rolled.prepared is None
        assert manager.status()["active_version"] is None


def test_incoming_directory_applies_bundle_with_model_beside_it_and_empties(fleet):
    from shadowd.cli import main

    with fleet.manager() as manager:
        assert main(["config", "push", str(_write(fleet, fleet.bundle(3), "v3.bundle")),
                     "--to-dir", str(manager.incoming_dir), "--model", str(fleet.model)]) == 0
        results = manager.apply_incoming(activate_now=True)
        assert [(r.outcome, r.version) for r in results] == [("applied", 3)]
        assert not list(manager.incoming_dir.iterdir())  # bundle and model consumed
        assert (manager.models_dir / f"{results[0].prepared.config.model.sha256}.onnx").is_file()


def test_bundle_waiting_for_its_model_applies_when_the_model_arrives(fleet):
    with fleet.manager() as manager:
        assert manager.offer(fleet.bundle(3), "mqtt").reason == "model_missing"
        assert manager.apply_incoming(activate_now=True) == []  # nothing new: not offered again
        (manager.incoming_dir / fleet.model.name).write_bytes(fleet.model.read_bytes())
        results = manager.apply_incoming(activate_now=True)
        assert [(r.outcome, r.version) for r in results] == [("applied", 3)]


def test_corrupted_model_in_store_is_detected_on_restart_and_last_good_loads(fleet):
    other = build_tiny_model(fleet.root / "other.onnx", bias=5.0)
    fleet.install_model()
    fleet.install_model(other)
    with fleet.manager() as manager:
        manager.apply(fleet.bundle(1, probation_s=0), "test")
        manager.apply(fleet.bundle(2, probation_s=0, model=other), "test")
    stored = fleet.state / "models" / f"{hashlib.sha256(other.read_bytes()).hexdigest()}.onnx"
    stored.write_bytes(b"bit rot")
    with fleet.manager() as manager:
        assert manager.startup().version == 1


def test_service_starts_without_candidate_when_no_stored_config_loads(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        manager.apply(fleet.bundle(1, probation_s=0), "test")
    for model in (fleet.state / "models").iterdir():
        model.write_bytes(b"bit rot")
    with fleet.manager() as manager:
        assert manager.startup() is None
        assert "does not hash" in manager.status()["startup_error"]
        fleet.install_model()  # the fleet re-delivers; a new version repairs the vehicle
        assert manager.apply(fleet.bundle(2), "test").outcome == "applied"


def test_candidate_overtaken_while_prepared_is_not_activated(fleet):
    from shadowd.errors import BundleError

    fleet.install_model()
    with fleet.manager() as manager:
        slow = manager.offer(fleet.bundle(3), "a").prepared
        fast = manager.offer(fleet.bundle(4), "b").prepared
        manager.activated(fast)
        with pytest.raises(BundleError) as info:
            manager.activated(slow)
        assert info.value.reason == "replayed_version"
        assert manager.status()["active_version"] == 4


def test_missing_trust_directory_refuses_bundles_without_crashing(fleet):
    import shutil

    fleet.install_model()
    shutil.rmtree(fleet.trust)
    with fleet.manager() as manager:
        result = manager.offer(fleet.bundle(1), "test")
    assert result.reason == "unknown_key" and "does not exist" in result.detail


def test_two_managers_on_one_state_are_refused(fleet):
    with fleet.manager():
        with pytest.raises(ConfigError, match="locked"):
            fleet.manager()


def test_health_events_outside_probation_change_nothing(fleet):
    fleet.install_model()
    with fleet.manager(identity=VehicleIdentity("veh-001", "desktop", "eu-test")) as manager:
        manager.apply(fleet.bundle(1, probation_s=0), "test")
        assert manager.report_health("model_error") is None
        assert manager.status()["active_version"] == 1


def _write(fleet, data: bytes, name: str):
    path = fleet.root / name
    path.write_bytes(data)
    return path


def test_wall_clock_jump_does_not_disturb_probation(fleet):
    fleet.install_model()
    with fleet.manager() as manager:
        manager.apply(fleet.bundle(1, probation_s=30), "test")
        next_bundle = fleet.bundle(2)  # signed by the backend with the right time
        fleet.clock.wall_s -= 365 * 86400  # NTP / RTC fault: a year back; monotonic time is unaffected
        fleet.clock.mono_ns += 30 * 10**9
        assert manager.tick() is None
        assert manager.status()["last_good_version"] == 1
        # validity windows use the wall clock, so while it is wrong new bundles wait (and say why)
        assert manager.offer(next_bundle, "test").reason == "not_yet_valid"


def test_store_keeps_models_of_kept_configs_and_fresh_deliveries_and_prunes_the_rest(fleet):
    import os

    import time

    from shadowd.edges.config_apply import MODEL_KEEP_S

    fleet.clock.wall_s = time.time()  # compared with real file times
    models = [build_tiny_model(fleet.root / f"m{i}.onnx", bias=float(i)) for i in range(5)]
    stored = {m.name: fleet.install_model(m) for m in models}
    with fleet.manager() as manager:
        for version, model in enumerate(models[:4], start=1):
            result = manager.apply(fleet.bundle(version, model=model, probation_s=0), "t")
            assert result.outcome == "applied", result.detail
        assert all(p.exists() for p in stored.values())  # everything is young so far
        old_s = fleet.clock.wall_s - MODEL_KEEP_S - 60
        for name, path in stored.items():
            if name != "m4.onnx":  # m4 was delivered just now, ahead of its bundle
                os.utime(path, (old_s, old_s))
        assert manager.apply(fleet.bundle(5, model=models[3], probation_s=0), "t").outcome == "applied"
    # kept: v5 active = last good (m3), earlier good v4 (m3) and v3 (m2); m4 is fresh
    assert {name for name, path in stored.items() if path.exists()} == {"m2.onnx", "m3.onnx", "m4.onnx"}
