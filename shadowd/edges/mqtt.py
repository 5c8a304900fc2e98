"""MQTT transport for config bundles (paho-mqtt 2.x, MQTT 3.1.1, TLS).

Topics (keep in sync with docs/config-bundle.md):
    shadowd/vehicle/<vehicle_id>/config   retained, QoS 1: the bundle for one vehicle
    shadowd/fleet/<fleet>/config          retained, QoS 1: the bundle for a whole fleet
    shadowd/vehicle/<vehicle_id>/config/status   not retained, QoS 1: what the vehicle did with it

Rules of this file:
1. The broker being down, slow or unreachable never hurts the service: the subscriber
   connects asynchronously on paho's own thread, reconnects with capped exponential backoff,
   and re-subscribes after every reconnect.
2. ``on_bundle(data)`` runs on paho's network thread; anything it raises is logged and swallowed
   so the subscription keeps working. Payloads over MAX_BUNDLE_BYTES are dropped unread.
3. Retained messages mean a vehicle that was offline at push time gets the bundle when it
   connects; the ConfigManager answers a re-delivered active bundle with ``unchanged``.
"""

from __future__ import annotations

import logging
import re
import ssl
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError, ShadowdError
from .bundle import MAX_BUNDLE_BYTES

log = logging.getLogger(__name__)

_TOPIC_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def vehicle_topic(vehicle_id: str) -> str:
    return f"shadowd/vehicle/{_topic_part(vehicle_id, 'vehicle id')}/config"


def fleet_topic(fleet: str) -> str:
    return f"shadowd/fleet/{_topic_part(fleet, 'fleet name')}/config"


def status_topic(vehicle_id: str) -> str:
    return vehicle_topic(vehicle_id) + "/status"


def _topic_part(name: str, what: str) -> str:
    # '+', '#' and '/' would turn a publish into a wildcard or another topic level
    if not isinstance(name, str) or not _TOPIC_PART_RE.match(name):
        raise ConfigError(f"{what} {name!r:.80} cannot be an MQTT topic level; use letters, digits "
                          "and . _ : - only")
    return name


@dataclass(frozen=True)
class MqttEndpoint:
    """Where the broker is and how to talk TLS to it.

    ``url`` is ``mqtts://host:port`` (TLS, default port 8883) or ``mqtt://host:port`` (plain,
    default 1883; for tests and closed networks only). ``cafile`` verifies the broker;
    ``certfile``/``keyfile`` authenticate this client when the broker requires it.
    """

    host: str
    port: int
    tls: bool
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @classmethod
    def parse(cls, url: str, cafile: str | None = None, certfile: str | None = None,
              keyfile: str | None = None) -> "MqttEndpoint":
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"MQTT url {url!r} is not mqtts://host:port (or mqtt://host:port)")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as err:
            raise ConfigError(f"MQTT url {url!r} has a bad port: {err}") from err
        if (certfile is None) != (keyfile is None):
            raise ConfigError("give both --cert and --key for a client certificate, or neither")
        if not tls and (cafile or certfile):
            raise ConfigError(f"TLS files were given but {url!r} is plain mqtt://; use mqtts://")
        return cls(parts.hostname, port, tls, cafile, certfile, keyfile)

    def client(self, client_id: str):
        """A configured paho client (not yet connected)."""
        import paho.mqtt.client as mqtt

        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=True)
        if self.tls:
            try:
                client.tls_set(ca_certs=self.cafile, certfile=self.certfile, keyfile=self.keyfile,
                               cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
            except (OSError, ssl.SSLError, ValueError) as err:
                raise ConfigError(f"cannot set up TLS for {self.host}:{self.port}: {err}; check "
                                  "--cafile/--cert/--key") from err
        return client


def publish_bundle(endpoint: MqttEndpoint, topic: str, data: bytes, *, retain: bool = True,
                   timeout_s: float = 10.0) -> None:
    """Publish ``data`` to ``topic`` with QoS 1 and wait for the broker's PUBACK.

    Raises ShadowdError when the broker cannot be reached or does not acknowledge in time.
    """
    if len(data) > MAX_BUNDLE_BYTES:
        raise ConfigError(f"bundle is {len(data)} bytes, over the {MAX_BUNDLE_BYTES}-byte limit")
    import paho.mqtt.client as mqtt

    client = endpoint.client(f"shadowd-push-{uuid.uuid4().hex[:12]}")
    connected = threading.Event()
    failure: list[str] = []

    def on_connect(client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            failure.append(str(reason_code))
        connected.set()

    def on_gone(client, userdata, *rest):  # refused handshake, closed socket: fail fast
        failure.append("connection closed by the broker (TLS or authentication refused?)")
        connected.set()

    client.on_connect = on_connect
    client.on_connect_fail = on_gone
    client.on_disconnect = on_gone
    try:
        client.connect(endpoint.host, endpoint.port, keepalive=30)
    except (OSError, ssl.SSLError) as err:
        raise ShadowdError(f"cannot connect to MQTT broker {endpoint.host}:{endpoint.port}: {err}; check "
                           "the url, that the broker runs, and the TLS files") from err
    client.loop_start()
    try:
        if not connected.wait(timeout_s) or failure:
            raise ShadowdError(f"MQTT broker {endpoint.host}:{endpoint.port} refused or did not answer the "
                               f"connection ({failure[0] if failure else 'timeout'}); check credentials")
        info = client.publish(topic, data, qos=1, retain=retain)
        info.wait_for_publish(timeout_s)
        if not info.is_published() or info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise ShadowdError(f"MQTT broker {endpoint.host}:{endpoint.port} did not acknowledge the "
                               f"publish to {topic} within {timeout_s} s (rc {info.rc})")
    finally:
        client.disconnect()
        client.loop_stop()


class MqttConfigSubscriber:
    """Receives bundles for one vehicle (its own topic and its fleet's) and hands them on.

    ``on_bundle(data)`` is called on paho's thread for every bundle message (``last_topic``
    says where it came from). Call
    ``start()`` once; it returns at once even when the broker is down. ``publish_status(dict)``
    reports an outcome back to the fleet (best effort). ``stop()`` disconnects and joins.
    """

    def __init__(self, endpoint: MqttEndpoint, vehicle_id: str, fleet: str | None,
                 on_bundle: Callable[[bytes], None], *, min_backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, client_id: str | None = None):
        self.endpoint = endpoint
        self.vehicle_id = vehicle_id
        self.topics = [vehicle_topic(vehicle_id)] + ([fleet_topic(fleet)] if fleet else [])
        self._on_bundle = on_bundle
        self._client = endpoint.client(client_id or f"shadowd-{vehicle_id}-{uuid.uuid4().hex[:6]}")
        self._client.reconnect_delay_set(min_delay=max(1, int(min_backoff_s)), max_delay=int(max_backoff_s))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.connects = 0
        self.messages = 0
        self.dropped = 0
        self.last_topic: str | None = None

    def start(self) -> None:
        self._client.connect_async(self.endpoint.host, self.endpoint.port, keepalive=30)
        self._client.loop_start()  # paho's thread connects, and reconnects with backoff

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish_status(self, status: dict) -> None:
        import json

        if self.connected.is_set():
            self._client.publish(status_topic(self.vehicle_id), json.dumps(status, sort_keys=True), qos=1)

    # paho callbacks (network thread) ---------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.endpoint.host,
                        self.endpoint.port, reason_code)
            return
        self.connects += 1
        self.connected.set()
        client.subscribe([(t, 1) for t in self.topics])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self.subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        self.subscribed.clear()
        if reason_code.is_failure:
            log.info("MQTT connection to %s:%d lost (%s); reconnecting with backoff",
                     self.endpoint.host, self.endpoint.port, reason_code)

    def _on_message(self, client, userdata, message):
        self.messages += 1
        if not message.payload:
            return  # an empty retained message clears the topic; nothing to apply
        if len(message.payload) > MAX_BUNDLE_BYTES:
            self.dropped += 1
            log.error("dropped a %d-byte message on %s: over the %d-byte bundle limit",
                      len(message.payload), message.topic, MAX_BUNDLE_BYTES)
            return
        self.last_topic = message.topic
        try:
            self._on_bundle(bytes(message.payload))
        except Exception:  # never let a handler bug kill paho's thread
            self.dropped += 1
            log.exception("bundle handler failed for a message on %s", message.topic)
