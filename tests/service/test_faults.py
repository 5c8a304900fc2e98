"""Fault tests against a real ``shadowd run`` process: what breaks around the service must not
break the service.

Each test runs the service as its own process (``shadowd.bench.soak.ServiceProcess``, the same
helper the soak and fleet benchmarks use), fed by a real ``shadowd produce`` process playing
the bundled RAV4 minute, and checks what ``shadowd status`` reports and what lands on disk:

- the producer killed (-9) and restarted, then restarted with other ring parameters;
- a pushed bundle whose model file is corrupt, and the active model rotting on disk before a
  restart;
- the spool's disk full (a small tmpfs; skipped with the reason where it cannot be mounted);
- the MQTT broker down when the service starts, a retained bundle applied once it is up;
- the wall clock jumping (days forward and back) while the pipeline runs on monotonic time;
- SIGTERM with a post-window pending: the clip lands, marked truncated when cut short.
A stage crash restarting only that stage is tested in-process (test_stage_crash.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shadowd.bench.fleet import LocalBroker, bench_config
from shadowd.bench.soak import ServiceProcess, start_producer, stop_process, wait_for
from shadowd.clip import decode_clip
from shadowd.edges.bundle import generate_keypair, load_private_key, sha256_file, sign_bundle
from shadowd.edges.model_runner import default_model_path
from shadowd.edges.spool import Spool
from tests.fixtures.mosquitto import require_mosquitto

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tag():
    return f"f{os.getpid()}x{time.monotonic_ns() % 1000000}"


def _ingest(status: dict, key: str) -> dict:
    return {k: v for k, v in status["ingest"][key].items() if k != "__label__"}


def _keys(work: Path) -> tuple:
    """A signing key pair; the public half trusted by the service under ``work``."""
    priv, pub = generate_keypair(work / "backend", "fleet-test")
    (work / "keys").mkdir(parents=True, exist_ok=True)
    shutil.copy(pub, work / "keys" / "fleet-test.pub")
    return load_private_key(priv), "fleet-test"


def _deliver(incoming: Path, bundle: bytes, name: str, model_bytes: bytes | None = None) -> None:
    """Drop a bundle (and its model) into the incoming directory, each file appearing whole."""
    incoming.mkdir(parents=True, exist_ok=True)
    if model_bytes is not None:
        (incoming / ".model.tmp").write_bytes(model_bytes)
        os.replace(incoming / ".model.tmp", incoming / default_model_path().name)
    (incoming / ".bundle.tmp").write_bytes(bundle)
    os.replace(incoming / ".bundle.tmp", incoming / name)


def _assert_clean_log(svc: ServiceProcess) -> None:
    log = svc.log_text()
    assert "Traceback" not in log, log[-4000:]


def test_killed_producer_is_reported_dead_and_its_restarts_are_read_again(tmp_path, tag):
    topics = ("vehicle", "imu", "perception")
    with ServiceProcess(tmp_path, tag, topics=topics) as svc:
        prod = start_producer(tag, speed=1.0, topics=topics)
        try:
            wait_for(lambda: _ingest(svc.status(), "frames").get("vehicle", 0) > 100, 30, "frames from the producer")
            prod.kill()
            prod.wait()
            wait_for(lambda: _ingest(svc.status(), "writer_alive").get("vehicle") is False, 10,
                     "the vehicle writer reported dead")
            before = _ingest(svc.status(), "frames")["vehicle"]
            # same parameters: the producer re-attaches to its rings and the reader keeps reading
            prod = start_producer(tag, speed=1.0, topics=topics)
            wait_for(lambda: (s := svc.status()) and _ingest(s, "writer_alive").get("vehicle") is True
                     and _ingest(s, "frames")["vehicle"] > before + 100, 30, "frames from the restarted producer")
            assert _ingest(svc.status(), "reopened") == {}
            prod.kill()
            prod.wait()
            # other parameters: the rings are recreated under the same names; the service reopens them
            script = ("import sys; from shadowd.bench.pipeline import _frames; from shadowd.producer import play; "
                      f"play(_frames(), {json.dumps({t: f's{tag}.{t}' for t in topics})}, speed=1.0, "
                      "capacity={'vehicle': 16384, 'imu': 16384, 'perception': 8192})")
            prod = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.DEVNULL)
            before = _ingest(svc.status(), "frames")["vehicle"]
            status = wait_for(lambda: (s := svc.status()) and _ingest(s, "reopened").get("vehicle", 0) >= 1
                              and _ingest(s, "frames")["vehicle"] > before + 100 and s, 30,
                              "the recreated rings reopened and read")
        finally:
            stop_process(prod)
        assert set(_ingest(status, "reopened")) == set(topics)
        assert status["stages"]["pipeline"]["restarts"] == 0
        assert status["ingest"]["frames_late"] == 0
        assert svc.stop() == 0
    _assert_clean_log(svc)


def test_corrupt_model_is_refused_and_a_rotten_active_model_falls_back_at_restart(tmp_path, tag):
    key, key_id = _keys(tmp_path)
    model = default_model_path()
    good = model.read_bytes()
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0xFF
    incoming = tmp_path / "state" / "incoming"
    svc = ServiceProcess(tmp_path, tag)
    with svc:
        _deliver(incoming, sign_bundle(bench_config(5, model), key, key_id), "v5.bundle", bytes(corrupt))
        svc.proc.send_signal(signal.SIGHUP)
        status = wait_for(lambda: (s := svc.status())["config"]["refusals"].get("model_hash_mismatch") and s, 20,
                          "the corrupt-model bundle to be refused")
        assert status["config"]["active_version"] == 0 and status["config"]["source"] == "factory"
        # the running config keeps going: a good bundle after it applies
        _deliver(incoming, sign_bundle(bench_config(7, model), key, key_id), "v7.bundle", good)
        svc.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: svc.status()["config"]["active_version"] == 7, 30, "v7 active")
        assert svc.stop() == 0
    stored = tmp_path / "state" / "models" / f"{sha256_file(model)}.onnx"
    assert stored.is_file()
    rotten = bytearray(stored.read_bytes())
    rotten[100:200] = bytes(100)
    stored.write_bytes(bytes(rotten))
    with svc:  # restart on the same state
        status = svc.status()
        assert status["config"]["source"] == "factory" and status["config"]["active_version"] == 0
        assert "v7" in status["config"]["startup_error"]
        prod = start_producer(tag, speed=4.0)
        try:
            wait_for(lambda: _ingest(svc.status(), "frames").get("vehicle", 0) > 200, 30,
                     "frames through the factory config")
        finally:
            stop_process(prod)
        assert svc.stop() == 0
    _assert_clean_log(svc)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 3 MiB tmpfs at tmp_path/spool-fs (needs CAP_SYS_ADMIN; skips with the reason otherwise)."""
    mnt = tmp_path / "spool-fs"
    mnt.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount binary: cannot make a small filesystem for the disk-full test")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the disk-full test (needs root/CAP_SYS_ADMIN): {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_spool_disk_is_reported_and_the_held_clip_spools_when_space_returns(tmp_path, tag, small_tmpfs):
    state = tmp_path / "state"
    state.mkdir()
    os.symlink(small_tmpfs, state / "spool")
    with ServiceProcess(tmp_path, tag) as svc:
        filler = small_tmpfs / "filler"
        with open(filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass  # ENOSPC: the disk is full
        prod = start_producer(tag, speed=4.0)
        try:
            status = wait_for(lambda: (s := svc.status())["clips"]["spool_errors"] >= 1 and s, 40,
                              "a clip failing to spool on the full disk")
        finally:
            stop_process(prod)
        assert status["clips"]["held_for_spool"] >= 1
        assert status["clips"]["clips_spooled"] == 0
        assert status["stages"]["spool"]["alive"] and status["stages"]["spool"]["restarts"] == 0
        filler.unlink()
        status = wait_for(lambda: (s := svc.status())["clips"]["clips_spooled"] >= 1 and s, 20,
                          "the held clip spooled once space returned")
        assert status["clips"]["clips_lost_queue_full"] == 0
        assert svc.stop() == 0
    _assert_clean_log(svc)
    spool = Spool(state / "spool", 1 << 30)
    try:
        clips = spool.pending()
        assert clips
        decode_clip(clips[0].path.read_bytes())
    finally:
        spool.close()


def test_service_runs_with_the_broker_down_and_applies_the_retained_bundle_once_it_is_up(tmp_path, tag):
    require_mosquitto()
    key, key_id = _keys(tmp_path)
    broker = LocalBroker(tmp_path / "mosquitto")  # port chosen, broker not started yet
    mqtt = {"url": broker.url, "cafile": str(broker.pki.ca_cert)}
    model = default_model_path()
    incoming = tmp_path / "state" / "incoming"
    incoming.mkdir(parents=True)
    shutil.copy(model, incoming / model.name)  # the model rides ahead of its bundle
    with ServiceProcess(tmp_path, tag, mqtt=mqtt) as svc:
        prod = start_producer(tag, speed=4.0)
        try:
            wait_for(lambda: _ingest(svc.status(), "frames").get("vehicle", 0) > 200, 30,
                     "frames while the broker is down")
            assert svc.status()["config"]["active_version"] == 0
            with broker:
                from shadowd.edges.mqtt import fleet_topic, publish_bundle

                publish_bundle(broker.endpoint(), fleet_topic("bench"), sign_bundle(bench_config(3, model), key, key_id))
                status = wait_for(lambda: (s := svc.status())["config"]["active_version"] == 3 and s, 40,
                                  "the retained bundle applied after the broker came up")
        finally:
            stop_process(prod)
        assert status["config"]["source"] == "mqtt"
        assert status["stages"]["config"]["restarts"] == 0
        assert svc.stop() == 0
    _assert_clean_log(svc)


def test_wall_clock_jumps_do_not_disturb_the_pipeline_and_sigterm_lands_a_truncated_clip(tmp_path, tag):
    """The service reads a wall clock jumping a day forward, two back, ... every 1.5 s (see
    _walljump.py); frames, triggers and clips run on CLOCK_MONOTONIC and do not notice. Then
    the producer dies with the divergence clip's post-window open and SIGTERM must still land
    that clip, sealed as truncated, within the shutdown grace."""
    svc = ServiceProcess(tmp_path, tag, shutdown_grace_s=1.5)
    launcher = Path(__file__).with_name("_walljump.py")
    log = open(svc.log_path, "ab")
    svc.proc = subprocess.Popen([sys.executable, str(launcher), "run", "--platform", "desktop", "--config",
                                 str(svc.settings)], stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    log.close()
    prod = None
    try:
        wait_for(svc.status, 60, "the service under the jumping wall clock")
        prod = start_producer(tag, speed=3.0)
        status = wait_for(lambda: (s := svc.status())["pipeline"].get("triggers_fired", {}).get("divergence") and s,
                          40, "the divergence trigger on the RAV4 handover")
        prod.kill()
        prod.wait()
        assert status["clips"]["clips_spooled"] == 0  # its post-window is still open
        assert status["ingest"]["frames_late"] == 0
        assert sum(_ingest(status, "dropped").values()) == 0
        t0 = time.monotonic()
        assert svc.stop() == 0
        assert time.monotonic() - t0 < 15
    finally:
        stop_process(prod)
        svc.stop()
    _assert_clean_log(svc)
    spool = Spool(tmp_path / "state" / "spool", 1 << 30)
    try:
        clips = spool.pending()
    finally:
        spool.close()
    # the built-in baseline trigger fires on 10-minute boundaries of frame time (this host's
    # monotonic clock), so one may fall in the run: in the divergence clip or a clip of its own
    div = [c for c in clips if "divergence" in c.meta["causes"]]
    assert len(div) == 1, svc.log_text()[-3000:]
    assert all(set(c.meta["causes"]) <= {"divergence", "baseline"} for c in clips)
    assert div[0].meta["truncated"] is True
    clip = decode_clip(div[0].path.read_bytes())
    assert clip.truncated
    assert len(clip.streams["vehicle"]) > 100


@pytest.mark.skipif(os.environ.get("SHADOWD_SLOW_TESTS") != "1", reason="slow (~15 s): set SHADOWD_SLOW_TESTS=1")
def test_sigterm_waits_for_the_pending_post_window_and_the_whole_clip_lands(tmp_path, tag):
    """With frames still coming and a long enough grace, SIGTERM collects the post-window
    before sealing: the clip is complete, not truncated."""
    with ServiceProcess(tmp_path, tag, shutdown_grace_s=30.0) as svc:
        prod = start_producer(tag, speed=3.0)
        try:
            wait_for(lambda: svc.status()["pipeline"].get("triggers_fired", {}).get("divergence"), 40,
                     "the divergence trigger on the RAV4 handover")
            assert svc.status()["clips"]["clips_spooled"] == 0
            assert svc.stop(timeout_s=40) == 0
        finally:
            stop_process(prod)
    _assert_clean_log(svc)
    spool = Spool(tmp_path / "state" / "spool", 1 << 30)
    try:
        clips = spool.pending()
    finally:
        spool.close()
    assert len(clips) == 1 and clips[0].meta["truncated"] is False
    assert not decode_clip(clips[0].path.read_bytes()).truncated
