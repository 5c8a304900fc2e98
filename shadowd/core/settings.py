"""The service's local settings: who this vehicle is and how the service is wired.

``shadowd run --config PATH`` reads a TOML file with these settings. They are *local*
(identity, directories, producers, brokers); what the service *does* (model, triggers, clip
windows, upload policy, budgets) comes from the signed fleet config bundle that
``shadowd.edges.config_apply.ConfigManager`` keeps, with the factory default (bundled reference
model, built-in triggers) until the first bundle is applied. The ``[upload]`` table here is the
fallback upload section used until a bundle brings one.

Pure: parses a dict (from ``tomllib``) into a frozen dataclass; reads no file.

```toml
vehicle_id = "veh-0042"
fleet = "pilot"
state_dir = "/var/lib/shadowd"          # spool/, config/, models/, incoming/
trust_dir = "/etc/shadowd/keys"         # trusted bundle signing keys (<key_id>.pub)
control_socket = "/run/shadowd/control.sock"
shutdown_grace_s = 10.0                 # SIGTERM: how long to keep collecting post-windows
lateness_s = 0.05                       # how far behind the newest frame the pipeline clock runs
network_state_file = "/run/shadowd/network.json"  # written by the vehicle's connectivity manager:
                                        # {"link": "wifi", "metered": false, "parked": true};
                                        # missing file = no link. Unset: always an unmetered link.

[rings]                                 # topic -> ring segment name written by a producer
vehicle = "shadowd.vehicle"
imu = "shadowd.imu"

[[can]]                                 # in-process CAN ingest through python-can
interface = "socketcan"                 # or "virtual" for tests
channel = "can0"                        # must be a channel of the platform's buses
bus = "car"

[mqtt]                                  # fleet config push subscription (optional)
url = "mqtts://broker:8883"
cafile = "/etc/shadowd/ca.pem"

[upload]                                # fallback upload section (see docs/upload-protocol.md)
endpoint_url_template = "https://ingest.example/{vehicle_id}/{clip_id}.shdc"
```
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .signals import RAW_TOPIC, TOPICS

_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KNOWN = {"vehicle_id", "fleet", "state_dir", "trust_dir", "control_socket", "shutdown_grace_s",
          "lateness_s", "rings", "can", "mqtt", "upload", "ring_capacity", "network_state_file"}


@dataclass(frozen=True, slots=True)
class CanSource:
    interface: str
    channel: str
    bus: str


@dataclass(frozen=True, slots=True)
class MqttSettings:
    url: str
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


@dataclass(frozen=True, slots=True)
class ServiceSettings:
    vehicle_id: str
    state_dir: str
    trust_dir: str
    fleet: str | None = None
    control_socket: str = "/run/shadowd/control.sock"
    shutdown_grace_s: float = 10.0
    lateness_s: float = 0.05
    rings: Mapping[str, str] = field(default_factory=dict)
    can: tuple[CanSource, ...] = ()
    mqtt: MqttSettings | None = None
    upload: Mapping[str, Any] = field(default_factory=dict)
    ring_capacity: Mapping[str, int] = field(default_factory=dict)
    network_state_file: str | None = None


def _where(source: str, key: str) -> str:
    return f"{source}: {key}"


def _str(d: Mapping, key: str, source: str, default: Any = ...) -> Any:
    if key not in d:
        if default is ...:
            raise ConfigError(f"{_where(source, key)} is missing; add `{key} = \"...\"`")
        return default
    v = d[key]
    if not isinstance(v, str) or not v:
        raise ConfigError(f"{_where(source, key)} must be a non-empty string, got {v!r}")
    return v


def _num(d: Mapping, key: str, source: str, default: float, lo: float, hi: float) -> float:
    v = d.get(key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ConfigError(f"{_where(source, key)} must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def parse_settings(d: Mapping[str, Any], source: str = "<settings>") -> ServiceSettings:
    """Validate a settings dict. Raises ConfigError naming the key and the fix."""
    unknown = sorted(set(d) - _KNOWN)
    if unknown:
        raise ConfigError(f"{source}: unknown setting {unknown[0]!r}; known: {sorted(_KNOWN)}")
    vehicle_id = _str(d, "vehicle_id", source)
    if not _ID_RE.match(vehicle_id):
        raise ConfigError(f"{_where(source, 'vehicle_id')} {vehicle_id!r}: use letters, digits, '_', '.', '-' (max 64)")
    fleet = _str(d, "fleet", source, None)
    known_topics = set(TOPICS) | {RAW_TOPIC}
    rings = d.get("rings", {})
    if not isinstance(rings, Mapping):
        raise ConfigError(f"{_where(source, 'rings')} must be a table topic = \"segment name\"")
    for topic, name in rings.items():
        if topic not in known_topics:
            raise ConfigError(f"{_where(source, 'rings.' + topic)}: unknown topic; known: {sorted(known_topics)}")
        if not isinstance(name, str) or not _ID_RE.match(name):
            raise ConfigError(f"{_where(source, 'rings.' + topic)}: segment name {name!r} must match {_ID_RE.pattern}")
    caps = d.get("ring_capacity", {})
    if not isinstance(caps, Mapping) or any(
        k not in known_topics or isinstance(v, bool) or not isinstance(v, int) or v < 2 for k, v in caps.items()
    ):
        raise ConfigError(f"{_where(source, 'ring_capacity')} must map topics to integer frame counts >= 2, got {caps!r}")
    can_raw = d.get("can", [])
    if not isinstance(can_raw, list):
        raise ConfigError(f"{_where(source, 'can')} must be an array of tables ([[can]])")
    can = []
    for i, c in enumerate(can_raw):
        if not isinstance(c, Mapping):
            raise ConfigError(f"{_where(source, f'can[{i}]')} must be a table")
        can.append(CanSource(_str(c, "interface", source), _str(c, "channel", source), _str(c, "bus", source)))
    mqtt = None
    if "mqtt" in d:
        m = d["mqtt"]
        if not isinstance(m, Mapping):
            raise ConfigError(f"{_where(source, 'mqtt')} must be a table")
        mqtt = MqttSettings(_str(m, "url", source), m.get("cafile"), m.get("certfile"), m.get("keyfile"))
    upload = d.get("upload", {})
    if not isinstance(upload, Mapping):
        raise ConfigError(f"{_where(source, 'upload')} must be a table")
    return ServiceSettings(
        vehicle_id=vehicle_id,
        fleet=fleet,
        state_dir=_str(d, "state_dir", source),
        trust_dir=_str(d, "trust_dir", source),
        control_socket=_str(d, "control_socket", source, "/run/shadowd/control.sock"),
        shutdown_grace_s=_num(d, "shutdown_grace_s", source, 10.0, 0.0, 300.0),
        lateness_s=_num(d, "lateness_s", source, 0.05, 0.0, 5.0),
        rings=dict(rings),
        can=tuple(can),
        mqtt=mqtt,
        upload=dict(upload),
        ring_capacity=dict(caps),
        network_state_file=_str(d, "network_state_file", source, None),
    )
