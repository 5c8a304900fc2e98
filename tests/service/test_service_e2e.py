"""End to end through real I/O: a producer process → rings → `shadowd run` → spool → nginx.

The service runs as its own process (as under systemd), the real RAV4 drive is played into
the rings by a separate producer process, clips land on a real nginx over TLS, and the
operator tools (`shadowd status`, `flush`, SIGTERM) are exercised on the live service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shadowd.clip import decode_clip
from shadowd.edges.control import request
from tests.fixtures.nginx import nginx_plain, nginx_tls, pki, server_objects  # noqa: F401 (fixtures)

DRIVE = Path(__file__).resolve().parents[2] / "shadowd" / "data" / "rav4" / "c2k19_rav4_seg40.candump.log"


def _settings(tmp_path: Path, tag: str, upload: dict | None = None, extra: str = "") -> Path:
    lines = [
        f'vehicle_id = "veh-{tag}"',
        'fleet = "test"',
        f'state_dir = "{tmp_path / "state"}"',
        f'trust_dir = "{tmp_path / "keys"}"',
        f'control_socket = "{tmp_path / "run" / "control.sock"}"',
        "shutdown_grace_s = 5.0",
        "[rings]",
        *(f'{t} = "t{tag}.{t}"' for t in ("vehicle", "imu", "perception", "can_raw")),
    ]
    if upload:
        lines.append("[upload]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in upload.items()]
    (tmp_path / "keys").mkdir(exist_ok=True)
    path = tmp_path / "settings.toml"
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


def _wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as err:  # noqa: BLE001 - service still starting
            last = err
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _start_service(settings: Path, tmp_path: Path) -> subprocess.Popen:
    log = open(tmp_path / "service.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "shadowd", "run", "--platform", "desktop", "--config", str(settings)],
                            stdout=log, stderr=subprocess.STDOUT)


def _produce(tag: str, speed: float) -> subprocess.Popen:
    rings = [f"--ring={t}=t{tag}.{t}" for t in ("vehicle", "imu", "perception", "can_raw")]
    return subprocess.Popen([sys.executable, "-m", "shadowd", "produce", str(DRIVE), "--speed", str(speed), *rings],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def tag():
    return f"{os.getpid()}x{time.monotonic_ns() % 100000}"


def test_service_turns_a_producer_stream_into_clips_on_nginx(tmp_path, nginx_tls, pki, tag):
    settings = _settings(tmp_path, tag, upload={
        "endpoint_url_template": nginx_tls.url + "/{vehicle_id}/{clip_id}.shdc",
        "ca_file": str(pki.ca_cert),
        "backoff_base_s": 0.2,
    })
    sock = tmp_path / "run" / "control.sock"
    service = _start_service(settings, tmp_path)
    try:
        _wait_for(lambda: request(sock, "status"), 30, "the control socket")
        producer = _produce(tag, speed=6.0)
        out, err = producer.communicate(timeout=60)
        assert producer.returncode == 0, err.decode()[-2000:]
        written = json.loads(out)["written"]
        status = _wait_for(lambda: (s := request(sock, "status"))["ingest"]["frames"].get("vehicle", 0)
                           >= written["vehicle"] and s, 20, "the service to read every vehicle frame")
        assert status["ingest"]["frames"]["can_raw"] == written["can_raw"]
        assert status["stages"]["pipeline"]["restarts"] == 0
        assert request(sock, "flush") == "flush requested"
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0, (tmp_path / "service.log").read_text()[-3000:]
    finally:
        if service.poll() is None:
            service.kill()
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    objects = server_objects(nginx_tls.root)
    assert objects.clip_ids, f"no clip reached the server; service log:\n{log[-3000:]}"
    assert not objects.duplicates()
    assert not objects.problems
    for clip_id, keys in objects.objects.items():
        clip = decode_clip((nginx_tls.root / keys[0]).read_bytes())
        assert clip.provenance.vehicle_id == f"veh-{tag}"
        assert clip.provenance.platform == "desktop"
        assert len(clip.streams["vehicle"]) > 0 and len(clip.streams["can_raw"]) > 0


def _shadowd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shadowd", *args], capture_output=True, text=True)


def test_pushed_bundle_is_applied_live_and_its_trigger_produces_clips(tmp_path, nginx_plain, tag):
    """Fleet push through the incoming directory: keygen → sign → push → SIGHUP → swap → clips."""
    from shadowd.edges.model_runner import default_model_path

    settings = _settings(tmp_path, tag)
    sock = tmp_path / "run" / "control.sock"
    backend = tmp_path / "backend"
    assert _shadowd("config", "keygen", "--out", str(backend), "--key-id", "fleet-test").returncode == 0
    (tmp_path / "keys" / "fleet-test.pub").write_bytes((backend / "fleet-test.pub").read_bytes())
    model = Path(default_model_path())
    import hashlib

    config = {
        "version": 7, "not_before": "2020-01-01T00:00:00Z", "expires": "2099-01-01T00:00:00Z",
        "targets": {"vehicles": [f"veh-{tag}"]},
        "model": {"sha256": hashlib.sha256(model.read_bytes()).hexdigest(), "file_name": model.name},
        # the openpilot engagement ~9 s into the drive is the one event of this minute
        "triggers": [{"name": "engaged", "expr": "rising(adas_steering)", "priority": 6, "pre_s": 3, "post_s": 2}],
        "windows": {"pre_s": 3, "post_s": 2, "max_clip_s": 20},
        "upload": {"endpoint_url_template": nginx_plain.url + "/{vehicle_id}/{clip_id}.shdc", "backoff_base_s": 0.2},
        "probation_s": 0,
    }
    (tmp_path / "v7.json").write_text(json.dumps(config))
    signed = _shadowd("config", "sign", str(tmp_path / "v7.json"), "--key", str(backend / "fleet-test.key"),
                      "--out", str(tmp_path / "v7.bundle"))
    assert signed.returncode == 0, signed.stderr
    service = _start_service(settings, tmp_path)
    try:
        first = _wait_for(lambda: request(sock, "status"), 30, "the control socket")
        assert first["config"]["source"] == "factory"
        pushed = _shadowd("config", "push", str(tmp_path / "v7.bundle"), "--to-dir", str(tmp_path / "state" / "incoming"),
                          "--model", str(model))
        assert pushed.returncode == 0, pushed.stderr
        service.send_signal(signal.SIGHUP)
        _wait_for(lambda: request(sock, "status")["config"]["active_version"] == 7, 30, "config v7 to be active")
        producer = _produce(tag, speed=6.0)
        out, err = producer.communicate(timeout=60)
        assert producer.returncode == 0, err.decode()[-2000:]
        _wait_for(lambda: request(sock, "status")["clips"]["clips_spooled"] >= 1, 20, "a clip in the spool")
        _wait_for(lambda: server_objects(nginx_plain.root).clip_ids, 20, "the clip on the server")
        service.send_signal(signal.SIGTERM)
        assert service.wait(30) == 0
    finally:
        if service.poll() is None:
            service.kill()
    log = (tmp_path / "service.log").read_text()
    assert "Traceback" not in log, log[-3000:]
    objects = server_objects(nginx_plain.root)
    assert not objects.problems and not objects.duplicates()
    causes = set()
    for keys in objects.objects.values():
        clip = decode_clip((nginx_plain.root / keys[0]).read_bytes())
        assert clip.provenance.config_version == 7
        causes |= {c.trigger for c in clip.causes}
    assert causes == {"engaged"}
