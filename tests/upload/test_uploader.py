"""The uploader against a real nginx on loopback: protocol, TLS, dedupe, policy, metrics."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from shadowd.core.upload_policy import NetworkState
from shadowd.edges.http_client import spki_sha256
from shadowd.errors import ConfigError
from tests.fixtures.nginx import nginx_mtls, nginx_plain, nginx_tls, pki, server_objects  # noqa: F401
from tests.upload._helpers import Clock, assert_exactly_once, config, drain, fill_spool, make_uploader


def _log(server) -> list[list[str]]:
    return [line.split() for line in server.access_log.read_text().splitlines()]


def test_small_and_large_clips_arrive_verified_over_tls_and_leave_the_spool(tmp_path, nginx_tls, pki):
    sizes = [1000, 300_000, 2_500_000]
    spool, ids = fill_spool(tmp_path / "spool", sizes)
    clock = Clock()
    up = make_uploader(spool, config(nginx_tls.url, ca_file=str(pki.ca_cert), part_size_bytes=1 << 20,
                                     multipart_threshold_bytes=1 << 20), clock)
    results = drain(up, clock)
    assert [r.action for r in results].count("uploaded") == 3
    assert spool.clips() == []
    held = server_objects(nginx_tls.root)
    assert held.clip_ids == set(ids)
    assert_exactly_once(spool, nginx_tls.root, ids)
    # the big one went as 3 parts + a manifest, the others as one PUT each
    puts = [entry for entry in _log(nginx_tls) if entry[0] == "PUT"]
    assert len(puts) == 2 + 3 + 1
    assert up.metrics()["connections"] == 1  # one kept-alive connection for everything


def test_object_key_comes_from_the_template_and_the_content_hash(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [5000])
    spool_day = [c.spooled_at_s for c in spool.clips()]
    clock = Clock()
    up = make_uploader(spool, config(nginx_plain.url), clock)
    drain(up, clock)
    (path,) = [p for p in nginx_plain.root.rglob("*.shdc")]
    # {date} is the UTC day the spool accepted the clip, whatever the uploader's clock says
    import datetime as dt

    day = dt.datetime.fromtimestamp(spool_day[0], dt.timezone.utc).strftime("%Y-%m-%d")
    assert path.relative_to(nginx_plain.root).as_posix() == f"VTEST1/{day}/{ids[0]}.shdc"


def test_every_put_carries_the_sha256_checksum_header_of_its_body(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [5000, 300_000])
    clock = Clock()
    up = make_uploader(spool, config(nginx_plain.url, part_size_bytes=128 * 1024,
                                     multipart_threshold_bytes=200_000), clock)
    drain(up, clock)
    for method, uri, status, _length, checksum in _log(nginx_plain):
        if method != "PUT":
            continue
        body = (nginx_plain.root / uri.lstrip("/")).read_bytes()
        assert checksum == base64.b64encode(hashlib.sha256(body).digest()).decode(), uri


def test_mtls_client_certificate_is_accepted_and_required(tmp_path, nginx_mtls, pki):
    spool, ids = fill_spool(tmp_path / "spool", [4000])
    clock = Clock()
    without = make_uploader(spool, config(nginx_mtls.url, ca_file=str(pki.ca_cert)), clock)
    r = without.run_once()
    assert r.action == "failed" and r.cause in ("http_4xx", "tls", "reset")
    with_cert = make_uploader(spool, config(nginx_mtls.url, ca_file=str(pki.ca_cert),
                                            client_cert=str(pki.client_cert), client_key=str(pki.client_key)),
                              clock, state_dir=tmp_path / "state2")
    assert with_cert.run_once().action == "uploaded"
    assert_exactly_once(spool, nginx_mtls.root, ids)


def test_a_server_signed_by_another_ca_is_refused_and_nothing_is_sent(tmp_path, nginx_tls, pki):
    spool, ids = fill_spool(tmp_path / "spool", [4000])
    up = make_uploader(spool, config(nginx_tls.url, ca_file=str(pki.other_ca_cert)))
    r = up.run_once()
    assert (r.action, r.cause) == ("failed", "tls")
    assert up.metrics()["bytes_sent"] == 0
    assert [c.clip_id for c in spool.clips()] == ids


def test_key_pinning_accepts_the_pinned_key_and_refuses_any_other(tmp_path, nginx_tls, pki):
    good_pin = spki_sha256(_der(pki.server_cert))
    spool, ids = fill_spool(tmp_path / "spool", [4000, 5000])
    wrong = make_uploader(spool, config(nginx_tls.url, ca_file=str(pki.ca_cert), pin_sha256=["0" * 64]))
    r = wrong.run_once()
    assert (r.action, r.cause) == ("failed", "tls_pin")
    assert good_pin in r.message
    clock = Clock()
    right = make_uploader(spool, config(nginx_tls.url, ca_file=str(pki.ca_cert), pin_sha256=[good_pin]),
                          clock, state_dir=tmp_path / "state2")
    drain(right, clock)
    assert_exactly_once(spool, nginx_tls.root, ids)
    assert server_objects(nginx_tls.root).clip_ids == set(ids)


def _der(pem_path):
    import ssl

    return ssl.PEM_cert_to_DER_cert(pem_path.read_text())


def test_a_clip_already_on_the_server_is_acked_without_sending_it_again(tmp_path, nginx_plain):
    # the crash between the server's 2xx and the spool ack: the clip is still spooled
    spool, ids = fill_spool(tmp_path / "spool", [400_000])
    clock = Clock()
    crashed = make_uploader(spool, config(nginx_plain.url), clock)
    assert crashed.run_once().action == "uploaded"  # 2xx; its spool ack is still queued
    spool.close()  # ...and the process dies here: no ack, no cleanup
    from shadowd.edges.spool import Spool

    spool = Spool(spool.root, 1 << 30)
    assert [c.clip_id for c in spool.clips()] == ids
    import time

    clock.t_s = time.time()  # the restart comes after the clip was spooled
    up = make_uploader(spool, config(nginx_plain.url), clock)
    assert up.run_once().action == "deduped"
    assert up.run_once().action == "idle"  # nothing left to send: queued acks are done now
    assert spool.clips() == []
    assert [e[0] for e in _log(nginx_plain)].count("PUT") == 1
    assert up.metrics()["deduped"] == 1
    assert not list((spool.root / ".upload").glob("*.json"))  # no state left behind


def test_a_clip_spooled_before_the_uploader_started_is_headed_once(tmp_path, nginx_plain):
    import time

    spool, ids = fill_spool(tmp_path / "spool", [1000])
    clock = Clock(time.time() + 1)
    drain(make_uploader(spool, config(nginx_plain.url), clock), clock)
    assert [e[0] for e in _log(nginx_plain)] == ["HEAD", "PUT"]


def test_a_fresh_clip_is_sent_without_a_head_round_trip(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [1000, 2000])
    clock = Clock()
    drain(make_uploader(spool, config(nginx_plain.url), clock), clock)
    assert [e[0] for e in _log(nginx_plain)] == ["PUT", "PUT"]


def test_higher_priority_clips_go_first(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [1000, 1000, 1000], priorities=[0, 9, 3])
    clock = Clock()
    results = drain(make_uploader(spool, config(nginx_plain.url), clock), clock)
    order = [r.clip_id for r in results if r.action == "uploaded"]
    assert order == [ids[1], ids[2], ids[0]]


def test_network_gate_holds_uploads_until_the_link_is_allowed(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [1000])
    state = {"now": NetworkState("cellular", metered=True, parked=False)}
    up = make_uploader(spool, config(nginx_plain.url, network_policy="unmetered_only"),
                       network_state=lambda: state["now"])
    r = up.run_once()
    assert (r.action, r.cause) == ("gated", "metered_link")
    assert up.metrics()["gated"] == "metered_link"
    assert not nginx_plain.access_log.read_text()
    state["now"] = NetworkState("wifi", metered=False, parked=False)
    assert up.run_once().action == "uploaded"
    assert up.metrics()["gated"] == ""


def test_daily_budget_stops_uploads_until_the_next_utc_day_and_survives_restart(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [60_000, 60_000, 60_000])
    clock = Clock()
    cfg = config(nginx_plain.url, daily_budget_bytes=150_000, part_size_bytes=64 * 1024)
    up = make_uploader(spool, cfg, clock)
    assert up.run_once().action == "uploaded"
    assert up.run_once().action == "uploaded"
    r = up.run_once()
    assert (r.action, r.cause) == ("gated", "daily_budget")
    restarted = make_uploader(spool, cfg, clock)  # the budget is persisted, not reset by a restart
    assert restarted.run_once().cause == "daily_budget"
    clock.t_s += r.wait_s
    assert restarted.run_once().action == "uploaded"
    assert_exactly_once(spool, nginx_plain.root, ids)


def test_an_undeliverable_clip_expires_and_is_counted(tmp_path):
    spool, ids = fill_spool(tmp_path / "spool", [1000])
    clock = Clock()
    # nothing listens on port 9 of loopback: every attempt is refused
    up = make_uploader(spool, config("http://127.0.0.1:9", max_age_s=3600.0), clock)
    assert up.run_once().cause == "connect"
    clock.t_s += 3601
    r = up.run_once()
    assert r.action == "expired"
    assert spool.clips() == []
    m = up.metrics()
    assert m["expired"] == 1 and m["failures"]["connect"] == 1


def test_low_priority_clip_is_not_starved_by_a_stream_of_high_priority_ones(tmp_path, nginx_plain):
    spool, (low,) = fill_spool(tmp_path / "spool", [1000], priorities=[0])
    clock = Clock()
    up = make_uploader(spool, config(nginx_plain.url, aging_s_per_level=60.0), clock)
    import os

    uploaded = []
    for i in range(30):  # a new priority-5 clip arrives every minute
        spool.put(os.urandom(1000), priority=5, t_ns=100 + i)
        r = up.run_once()
        uploaded.append(r.clip_id)
        clock.t_s += 60
    assert low in uploaded
    assert uploaded.index(low) < 10


def test_metrics_report_queue_by_priority_oldest_age_and_failures(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [1000, 2000, 3000], priorities=[1, 1, 7])
    clock = Clock()
    up = make_uploader(spool, config(nginx_plain.url), clock)
    nginx_plain.set_fault(503)
    first = up.run_once()
    clock.t_s += 0.25  # the first clip backs off; the next one is tried (and fails too)
    second = up.run_once()
    assert first.cause == second.cause == "http_5xx"
    assert first.clip_id == ids[2]  # priority 7 first
    m = up.metrics()
    assert m["oldest_clip_age_s"] == 0.25
    assert m["queue_clips"] == 3 and m["queue_bytes"] == 6000
    assert m["queue_by_priority"]["1"] == {"clips": 2, "bytes": 3000}
    assert m["queue_by_priority"]["7"] == {"clips": 1, "bytes": 3000}
    assert m["failures"]["http_5xx"] == 2 and m["attempts"] == 2
    nginx_plain.clear_faults()
    drain(up, clock)
    m = up.metrics()
    assert m["uploaded"] == 3 and m["queue_clips"] == 0
    # 6000 delivered, plus the two bodies answered 503: a metered link bills them
    size = dict(zip(ids, [1000, 2000, 3000]))
    assert m["bytes_sent"] == 6000 + size[first.clip_id] + size[second.clip_id]
    from shadowd.core.metrics import to_prometheus

    text = to_prometheus({"upload": m})
    assert 'shadowd_upload_failures{cause="http_5xx"} 2' in text


def test_upload_state_survives_a_corrupt_sidecar_file(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [300_000])
    clock = Clock()
    cfg = config(nginx_plain.url, part_size_bytes=64 * 1024, multipart_threshold_bytes=100_000)
    up = make_uploader(spool, cfg, clock)
    assert up.run_once().action == "part_sent"
    sidecar = tmp_path / "spool" / ".upload" / f"{ids[0]}.json"
    assert json.loads(sidecar.read_text())["parts_done"]
    sidecar.write_text("{not json")
    restarted = make_uploader(spool, cfg, clock)
    drain(restarted, clock)
    assert_exactly_once(spool, nginx_plain.root, ids)


def test_config_with_unreadable_ca_file_is_a_clear_config_error(tmp_path):
    spool, ids = fill_spool(tmp_path / "spool", [1000])
    with pytest.raises(ConfigError, match="nope.pem"):
        make_uploader(spool, config("https://127.0.0.1:9", ca_file=str(tmp_path / "nope.pem")))


def test_a_clip_corrupted_on_local_disk_is_dropped_when_the_server_rejects_its_body(tmp_path, nginx_plain):
    spool, ids = fill_spool(tmp_path / "spool", [5000, 6000])
    path = spool.path(ids[0])
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 0xFF
    path.write_bytes(bytes(damaged))  # bit rot after the spool verified it
    clock = Clock()
    up = make_uploader(spool, config(nginx_plain.url), clock)
    nginx_plain.set_fault(400)  # what S3 answers to a body that does not match its checksum
    results = [up.run_once(), up.run_once()]
    assert {(r.clip_id, r.action) for r in results} == {(ids[0], "corrupt"), (ids[1], "failed")}
    assert up.metrics()["corrupt"] == 1
    nginx_plain.clear_faults()
    drain(up, clock)
    assert server_objects(nginx_plain.root).clip_ids == {ids[1]}
    assert spool.clips() == []


def test_run_forever_uploads_in_a_thread_and_stops_promptly_mid_body(tmp_path, nginx_plain):
    import threading
    import time

    size, part = 1_500_000, 256 * 1024
    spool, ids = fill_spool(tmp_path / "spool", [3000, size], priorities=[5, 0])
    cfg = config(nginx_plain.url, part_size_bytes=part, multipart_threshold_bytes=part,
                 bandwidth_bytes_per_s=300_000)  # the big clip needs ~5 s
    up = make_uploader(spool, cfg, clock=None)
    stop = threading.Event()
    worker = threading.Thread(target=up.run_forever, args=(stop,))
    worker.start()
    deadline = time.monotonic() + 10
    while up.metrics()["parts_sent"] < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert up.metrics()["uploaded"] == 1  # the small, high-priority clip went first
    t0 = time.monotonic()
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert time.monotonic() - t0 < 1.0  # not the seconds the paced body still needed
    assert_exactly_once(spool, nginx_plain.root, ids)
    assert [c.clip_id for c in spool.clips()] == [ids[1]]
    clock = Clock()
    resumed = make_uploader(spool, config(nginx_plain.url, part_size_bytes=part,
                                          multipart_threshold_bytes=part), clock)
    drain(resumed, clock)
    assert server_objects(nginx_plain.root).clip_ids == set(ids)
    assert resumed.metrics()["bytes_sent"] <= size - part  # parts sent before the stop stayed sent


def test_close_twice_from_two_threads_and_reuse_after_close(tmp_path, nginx_plain):
    import threading

    spool, ids = fill_spool(tmp_path / "spool", [1000, 2000])
    clock = Clock()
    up = make_uploader(spool, config(nginx_plain.url), clock)
    assert up.run_once().action == "uploaded"  # its ack is queued
    closers = [threading.Thread(target=up.close) for _ in range(2)]
    for t in closers:
        t.start()
    for t in closers:
        t.join(timeout=5)
    assert len(spool.clips()) == 1  # the queued ack was done by close()
    drain(up, clock)  # and the closed uploader works again
    assert spool.clips() == []
    assert server_objects(nginx_plain.root).clip_ids == set(ids)
