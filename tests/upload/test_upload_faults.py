"""Network and server faults against a real nginx: after each, every clip on the server verifies,
none is there twice, and no spooled clip is missing from both the spool and the server.

Faults are real: nginx stopped, TCP resets and throttling from tests/fixtures/faultproxy.py,
HTTP errors from nginx switch files, a full disk from a small tmpfs (when this process may
mount one; otherwise nginx answers 507 Insufficient Storage, and the test says so), and a
SIGKILLed uploader process.
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

from shadowd.bench._nginx import LoopbackNginx
from shadowd.edges.spool import Spool
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.nginx import nginx_plain, nginx_tls, pki, server_objects  # noqa: F401
from tests.upload._helpers import Clock, assert_exactly_once, config, drain, fill_spool, make_uploader

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def proxy(nginx_tls):
    with FaultProxy("127.0.0.1", nginx_tls.port) as p:
        yield p


def _via(proxy) -> str:
    return f"https://{proxy.url_host}"


def test_server_down_then_back_delivers_everything_once(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [2000, 300_000])
    clock = Clock()
    up = make_uploader(spool, config(nginx_plain.url), clock)
    nginx_plain.stop()
    r = up.run_once()
    assert (r.action, r.cause) == ("failed", "connect")
    assert r.wait_s >= 0.5
    assert len(spool.clips()) == 2
    nginx_plain.start()
    drain(up, clock)
    assert server_objects(nginx_plain.root).clip_ids == set(ids)
    assert_exactly_once(spool, nginx_plain.root, ids)


def test_connection_reset_mid_body_leaves_no_partial_object_and_retries(tmp_path, nginx_tls, pki, proxy):
    spool, ids = fill_spool(tmp_path / "spool", [600_000])
    clock = Clock()
    up = make_uploader(spool, config(_via(proxy), ca_file=str(pki.ca_cert)), clock)
    proxy.reset_next(after_bytes=200_000)
    r = up.run_once()
    assert (r.action, r.cause) == ("failed", "reset")
    assert proxy.resets_done == 1
    assert server_objects(nginx_tls.root).clip_ids == set()  # nginx dropped the half body
    assert_exactly_once(spool, nginx_tls.root, ids)
    drain(up, clock)
    assert_exactly_once(spool, nginx_tls.root, ids)
    assert server_objects(nginx_tls.root).clip_ids == set(ids)


def test_reset_during_a_part_resends_only_that_part(tmp_path, nginx_tls, pki, proxy):
    size, part = 1_000_000, 128 * 1024
    spool, ids = fill_spool(tmp_path / "spool", [size])
    clock = Clock()
    up = make_uploader(spool, config(_via(proxy), ca_file=str(pki.ca_cert), part_size_bytes=part,
                                     multipart_threshold_bytes=part), clock)
    for _ in range(4):
        assert up.run_once().action == "part_sent"
    proxy.cut_all()  # the link drops under the kept-alive connection...
    proxy.reset_next(after_bytes=part // 2)  # ...and the reconnect is reset mid-part
    results = drain(up, clock)
    assert [r.cause for r in results if r.action == "failed"][-1] == "reset"
    assert_exactly_once(spool, nginx_tls.root, ids)
    assert server_objects(nginx_tls.root).clip_ids == set(ids)
    # parts 1-4 were never sent again: each failure cost at most the part in flight
    failures = sum(1 for r in results if r.action == "failed")
    assert up.metrics()["bytes_sent"] <= size + failures * part + 4096
    assert [r.part_number for r in results if r.action == "part_sent"] == [5, 6, 7, 8]


@pytest.mark.parametrize("code, cause, retryable", [(503, "http_5xx", True), (500, "http_5xx", True),
                                                     (403, "http_4xx", False), (404, "http_4xx", False)])
def test_http_error_answers_keep_the_clip_and_back_off(tmp_path, nginx_plain, code, cause, retryable):
    spool, ids = fill_spool(tmp_path / "spool", [5000])
    clock = Clock()
    cfg = config(nginx_plain.url, backoff_base_s=1.0, backoff_max_s=100.0, head_before_put=False)
    up = make_uploader(spool, cfg, clock)
    nginx_plain.set_fault(code)
    delays = []
    for _ in range(3):
        r = up.run_once()
        assert (r.action, r.cause) == ("failed", cause)
        assert str(code) in r.message
        delays.append(r.wait_s)
        clock.t_s += r.wait_s
    if retryable:
        assert delays[0] < 1.0 and 2.0 <= delays[2] < 4.0  # exponential: [0.5,1), [1,2), [2,4)
    else:
        assert all(d >= 50.0 for d in delays)  # a refusal waits the longest backoff
    assert [c.clip_id for c in spool.clips()] == ids
    nginx_plain.clear_faults()
    drain(up, clock)
    assert_exactly_once(spool, nginx_plain.root, ids)
    assert server_objects(nginx_plain.root).clip_ids == set(ids)


def test_slow_server_still_gets_a_complete_clip(tmp_path, nginx_tls, pki, proxy):
    spool, ids = fill_spool(tmp_path / "spool", [400_000])
    clock = Clock()
    proxy.throttle_bytes_per_s = 1_000_000
    up = make_uploader(spool, config(_via(proxy), ca_file=str(pki.ca_cert), timeout_s=10.0), clock)
    drain(up, clock)
    assert proxy.bytes_up >= 400_000
    assert_exactly_once(spool, nginx_tls.root, ids)
    assert server_objects(nginx_tls.root).clip_ids == set(ids)


def test_slow_plain_http_server_gets_a_complete_unpaced_body(tmp_path, nginx_plain):
    # a full socket buffer must make the sender wait, not fail (EAGAIN under a socket timeout)
    spool, ids = fill_spool(tmp_path / "spool", [12_000_000])  # more than any socket buffer
    clock = Clock()
    with FaultProxy("127.0.0.1", nginx_plain.port) as slow:
        slow.throttle_bytes_per_s = 30_000_000
        up = make_uploader(spool, config(f"http://{slow.url_host}", timeout_s=10.0), clock)
        r = up.run_once()
        assert r.action == "uploaded", r
    assert_exactly_once(spool, nginx_plain.root, ids)
    assert server_objects(nginx_plain.root).clip_ids == set(ids)


def test_stalled_server_times_out_and_the_retry_succeeds(tmp_path, nginx_tls, pki, proxy):
    spool, ids = fill_spool(tmp_path / "spool", [300_000])
    clock = Clock()
    proxy.throttle_bytes_per_s = 2_000  # a stall: 300 kB would take 150 s
    up = make_uploader(spool, config(_via(proxy), ca_file=str(pki.ca_cert), timeout_s=0.5,
                                     head_before_put=False), clock)
    r = up.run_once()
    assert (r.action, r.cause) == ("failed", "timeout")
    proxy.throttle_bytes_per_s = 0
    drain(up, clock)
    assert_exactly_once(spool, nginx_tls.root, ids)
    assert server_objects(nginx_tls.root).clip_ids == set(ids)


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_server_disk_full_is_retried_until_space_frees(tmp_path):
    spool, ids = fill_spool(tmp_path / "spool", [700_000])
    root = tmp_path / "srvroot"
    real_disk = _tmpfs(root, "512k")
    try:
        with LoopbackNginx(tmp_path / "nginx", root=root) as server:
            if not real_disk:
                # cannot mount a small filesystem here: nginx answers 507 Insufficient Storage,
                # which is what a WebDAV server with a full disk sends
                server.set_fault(507)
            clock = Clock()
            up = make_uploader(spool, config(server.url), clock)
            r = up.run_once()
            assert r.action == "failed"
            # nginx itself answers 500 when writing the body fails on a full disk
            assert r.cause == ("http_5xx" if real_disk else "disk_full")
            assert server_objects(root).clip_ids == set()
            assert_exactly_once(spool, root, ids)
            if real_disk:
                subprocess.run(["mount", "-o", "remount,size=8m", str(root)], check=True)
            else:
                server.clear_faults()
            drain(up, clock)
            assert_exactly_once(spool, root, ids)
            assert server_objects(root).clip_ids == set(ids)
    finally:
        if real_disk:
            subprocess.run(["umount", "-l", str(root)], capture_output=True)


def test_link_flapping_during_a_large_multipart_upload_resumes_not_restarts(tmp_path, nginx_tls, pki, proxy):
    size, part = 3_000_000, 128 * 1024
    spool, ids = fill_spool(tmp_path / "spool", [size, 50_000])
    clock = Clock()
    up = make_uploader(spool, config(_via(proxy), ca_file=str(pki.ca_cert), part_size_bytes=part,
                                     multipart_threshold_bytes=part, timeout_s=2.0), clock)
    proxy.throttle_bytes_per_s = 4_000_000  # ~0.75 s of transfer: several flaps happen during it
    proxy.start_flapping(up_s=0.15, down_s=0.1)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = up.run_once()
        if r.action == "idle":
            break
        if r.action == "failed":
            clock.t_s += r.wait_s
        elif r.action == "waiting":
            clock.t_s += r.wait_s
    assert not spool.clips(), "flapping link never let the upload finish"
    m = up.metrics()
    failures = sum(v for k, v in m["failures"].items() if k != "__label__")
    assert failures >= 2
    # resumed, never restarted: each failure cost at most the one part in flight
    assert m["bytes_sent"] <= size + 50_000 + failures * part + 8192
    assert_exactly_once(spool, nginx_tls.root, ids)
    assert server_objects(nginx_tls.root).clip_ids == set(ids)


def test_uploader_killed_mid_upload_resumes_after_restart(tmp_path, nginx_plain):
    size, part = 2_000_000, 128 * 1024
    spool, ids = fill_spool(tmp_path / "spool", [size])
    cfg = {"endpoint_url_template": nginx_plain.url + "/{vehicle_id}/{date}/{clip_id}.shdc",
           "vehicle_id": "VTEST1", "part_size_bytes": part, "multipart_threshold_bytes": part,
           "bandwidth_bytes_per_s": 1_000_000}
    spool.close()  # one process per spool directory: the child takes it over
    child = subprocess.Popen([sys.executable, "-m", "tests.upload._upload_child", str(spool.root), json.dumps(cfg)],
                             cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True)
    sidecar = spool.root / ".upload" / f"{ids[0]}.json"
    try:
        deadline = time.monotonic() + 20
        done = 0
        while time.monotonic() < deadline and done < 5:
            try:
                done = len(json.loads(sidecar.read_text())["parts_done"])
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        assert done >= 5, "the child uploader made no progress"
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL
    spool = Spool(spool.root, quota_bytes=1 << 32)  # reopened: recovery verifies every clip
    assert_exactly_once(spool, nginx_plain.root, ids)  # nothing lost in the crash
    done = len(json.loads(sidecar.read_text())["parts_done"])
    clock = Clock()
    cfg["bandwidth_bytes_per_s"] = 0
    from shadowd.core.upload_policy import UploadConfig

    up = make_uploader(spool, UploadConfig.from_dict(cfg), clock)
    drain(up, clock)
    assert_exactly_once(spool, nginx_plain.root, ids)
    assert server_objects(nginx_plain.root).clip_ids == set(ids)
    # the restart sent only the parts the killed process had not recorded (+ at most the one in flight)
    assert up.metrics()["bytes_sent"] <= size - (done - 1) * part + 4096


def test_endpoint_changed_by_a_config_push_mid_multipart_restarts_the_parts_there(tmp_path, nginx_plain):
    size, part = 600_000, 128 * 1024
    spool, ids = fill_spool(tmp_path / "spool", [size])
    clock = Clock()
    old = config(nginx_plain.url + "/old", part_size_bytes=part, multipart_threshold_bytes=part)
    up = make_uploader(spool, old, clock)
    assert [up.run_once().action for _ in range(2)] == ["part_sent", "part_sent"]
    up.close()  # the daemon rebuilds the uploader with the pushed config
    new = config(nginx_plain.url + "/new", part_size_bytes=part, multipart_threshold_bytes=part)
    up = make_uploader(spool, new, clock)
    drain(up, clock)
    assert server_objects(nginx_plain.root / "new").clip_ids == set(ids)
    assert server_objects(nginx_plain.root / "old").clip_ids == set()  # orphan parts, no object
    assert_exactly_once(spool, nginx_plain.root, ids)
