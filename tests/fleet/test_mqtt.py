"""edges/mqtt.py against a real mosquitto over TLS on loopback."""

from __future__ import annotations

import queue
import ssl
import time

import pytest

from shadowd.bench.fleet import LocalBroker
from shadowd.edges.mqtt import (MqttConfigSubscriber, MqttEndpoint, fleet_topic, publish_bundle, status_topic,
                                vehicle_topic)
from shadowd.errors import ConfigError, ShadowdError
from tests.fixtures.mosquitto import mosquitto, mosquitto_mtls, require_mosquitto  # noqa: F401  (fixtures)


def _subscriber(endpoint, vehicle="veh-001", fleet="eu-test"):
    got: queue.Queue = queue.Queue()
    sub = MqttConfigSubscriber(endpoint, vehicle, fleet, lambda data: got.put((sub.last_topic, data)))
    return sub, got


def test_retained_push_reaches_a_vehicle_that_subscribes_later(mosquitto):
    publish_bundle(mosquitto.endpoint(), vehicle_topic("veh-001"), b'{"bundle": 1}')
    sub, got = _subscriber(mosquitto.endpoint())
    sub.start()
    try:
        assert got.get(timeout=10) == ("shadowd/vehicle/veh-001/config", b'{"bundle": 1}')
    finally:
        sub.stop()


def test_fleet_push_reaches_subscribed_vehicle_and_not_other_fleets(mosquitto):
    sub, got = _subscriber(mosquitto.endpoint())
    other, other_got = _subscriber(mosquitto.endpoint(), vehicle="veh-002", fleet="us-test")
    sub.start()
    other.start()
    try:
        assert sub.subscribed.wait(10) and other.subscribed.wait(10)
        publish_bundle(mosquitto.endpoint(), fleet_topic("eu-test"), b"fleet-bundle")
        assert got.get(timeout=10) == ("shadowd/fleet/eu-test/config", b"fleet-bundle")
        publish_bundle(mosquitto.endpoint(), vehicle_topic("veh-002"), b"marker")
        assert other_got.get(timeout=10)[1] == b"marker"  # the fleet bundle never came before it
    finally:
        sub.stop()
        other.stop()


def test_mutual_tls_broker_refuses_a_client_without_certificate(mosquitto_mtls):
    with pytest.raises((ShadowdError, ssl.SSLError, OSError)):
        publish_bundle(mosquitto_mtls.endpoint(client_cert=False), vehicle_topic("v"), b"x", timeout_s=3)
    publish_bundle(mosquitto_mtls.endpoint(client_cert=True), vehicle_topic("v"), b"x")
    sub, got = _subscriber(mosquitto_mtls.endpoint(client_cert=True), vehicle="v")
    sub.start()
    try:
        assert got.get(timeout=10)[1] == b"x"
    finally:
        sub.stop()


def test_broker_with_a_certificate_from_another_ca_is_refused(mosquitto, tmp_path):
    endpoint = MqttEndpoint.parse(mosquitto.url, cafile=str(mosquitto.pki.other_ca_cert))
    with pytest.raises((ShadowdError, ssl.SSLError, OSError)):
        publish_bundle(endpoint, vehicle_topic("v"), b"x", timeout_s=3)


def test_subscriber_started_while_broker_is_down_connects_when_it_comes_up(tmp_path):
    require_mosquitto()
    broker = LocalBroker(tmp_path / "late")
    sub, got = _subscriber(broker.endpoint())
    sub.start()  # returns at once; nothing to connect to yet
    try:
        time.sleep(0.3)
        assert not sub.connected.is_set()
        broker.start()
        publish_bundle(broker.endpoint(), vehicle_topic("veh-001"), b"after-outage")
        assert got.get(timeout=20) == ("shadowd/vehicle/veh-001/config", b"after-outage")
    finally:
        sub.stop()
        broker.stop()


def test_subscriber_survives_a_failing_handler(mosquitto):
    calls = []

    def handler(data):
        calls.append(data)
        if data == b"boom":
            raise RuntimeError("handler bug")

    sub = MqttConfigSubscriber(mosquitto.endpoint(), "veh-001", None, handler)
    sub.start()
    try:
        assert sub.subscribed.wait(10)
        publish_bundle(mosquitto.endpoint(), vehicle_topic("veh-001"), b"boom", retain=False)
        publish_bundle(mosquitto.endpoint(), vehicle_topic("veh-001"), b"fine", retain=False)
        deadline = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert calls == [b"boom", b"fine"] and sub.dropped == 1
    finally:
        sub.stop()


def test_vehicle_status_reaches_the_fleet_backend(mosquitto):
    import json

    seen: queue.Queue = queue.Queue()
    backend = mosquitto.endpoint().client("backend")
    backend.on_connect = lambda c, *a: c.subscribe(status_topic("veh-001"), qos=1)
    backend.on_subscribe = lambda *a: seen.put("subscribed")
    backend.on_message = lambda c, u, m: seen.put(json.loads(m.payload))
    backend.connect(mosquitto.endpoint().host, mosquitto.port)
    backend.loop_start()
    sub, _got = _subscriber(mosquitto.endpoint())
    sub.start()
    try:
        assert seen.get(timeout=10) == "subscribed" and sub.subscribed.wait(10)
        sub.publish_status({"outcome": "applied", "version": 4})
        assert seen.get(timeout=10) == {"outcome": "applied", "version": 4}
    finally:
        sub.stop()
        backend.disconnect()
        backend.loop_stop()


def test_topic_levels_cannot_carry_wildcards_or_separators():
    for bad in ("a/b", "+", "#", "", "x y"):
        with pytest.raises(ConfigError, match="MQTT topic level"):
            vehicle_topic(bad)
    assert status_topic("veh-1") == "shadowd/vehicle/veh-1/config/status"


@pytest.mark.parametrize("url, kwargs, message", [
    ("http://h:1", {}, "not mqtts://"),
    ("mqtts://h:99999", {}, "bad port"),
    ("mqtt://h", {"cafile": "ca.pem"}, "use mqtts://"),
    ("mqtts://h", {"certfile": "c.pem"}, "both --cert and --key"),
])
def test_bad_endpoint_is_refused_with_the_fix(url, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        MqttEndpoint.parse(url, **kwargs)


def test_unreachable_broker_is_a_clear_error(tmp_path):
    from shadowd.bench._nginx import free_port

    endpoint = MqttEndpoint.parse(f"mqtt://127.0.0.1:{free_port()}")
    with pytest.raises(ShadowdError, match="cannot connect to MQTT broker"):
        publish_bundle(endpoint, vehicle_topic("v"), b"x", timeout_s=2)
