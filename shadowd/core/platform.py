"""Platform profiles: parse and validate a profile dict into frozen dataclasses.

This file owns the *meaning* of platforms/*.toml (keep the two in sync; tests/pipeline
loads every bundled profile through here). It is pure: the TOML is read by
``shadowd.edges.platforms``; here a dict goes in and a ``Platform`` comes out, or a
ConfigError that names the file and the key.

A canonical signal is mapped from one DBC message:

    value = (sum_i weights[i] * dbc_signal_i) * sign * unit_factor(unit -> canonical) * scale + offset

then, for enums, ``values`` maps the raw number to the canonical code (unknown -> default).
All sources of one canonical signal live in the same message so they update together
(STEER_ANGLE + STEER_FRACTION). The pipeline never branches on the platform: everything that
differs between NT2, NT2.5, NT3 and desktop is data here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import ConfigError
from .signals import IMU, PERCEPTION, SIGNALS, TOPICS, VEHICLE

# Unit conversions to the canonical unit named by the signal's suffix.
_UNIT_FACTORS: dict[str, dict[str, float]] = {
    "mps": {"mps": 1.0, "kph": 1.0 / 3.6, "mph": 0.44704},
    "deg": {"deg": 1.0, "rad": 180.0 / math.pi},
    "dps": {"dps": 1.0, "rps": 180.0 / math.pi},
    "rps": {"rps": 1.0, "dps": math.pi / 180.0},
    "mps2": {"mps2": 1.0, "g": 9.80665},
    "nm": {"nm": 1.0},
}

NETWORK_POLICIES = ("always", "unmetered_only", "parked_only", "never")

_TOP_KEYS = {"name", "adapter", "description", "buses", "topics", "signals", "perception",
             "inference", "memory", "spool", "network"}
_SIGNAL_KEYS = {"bus", "sources", "weights", "unit", "scale", "offset", "sign", "values", "default"}
_PERCEPTION_KEYS = {"kind", "bus", "messages", "track_count", "distance", "lateral", "lateral_sign",
                    "rel_speed", "valid", "lane_half_width_m", "stale_s"}


@dataclass(frozen=True, slots=True)
class BusSpec:
    name: str  # logical name the mappings refer to
    channel: str  # SocketCAN interface / log channel
    dbc: str  # file name in shadowd/data/dbc (or an absolute path)


@dataclass(frozen=True, slots=True)
class SignalMapping:
    """How one canonical signal is computed from one DBC message."""

    name: str
    bus: str
    message: str
    sources: tuple[str, ...]  # DBC signal names inside ``message``
    weights: tuple[float, ...]
    factor: float  # sign * unit factor * scale, folded
    offset: float
    values: tuple[tuple[int, int], ...] | None = None  # enum map raw -> canonical
    default: float = 0.0  # value before the first frame (ints) / for unmapped enum values

    def apply(self, parts):
        """Canonical value(s) from the decoded physical values of ``sources`` (scalars or arrays)."""
        acc = parts[0] * self.weights[0]
        for w, p in zip(self.weights[1:], parts[1:]):
            acc = acc + p * w
        return acc * self.factor + self.offset


@dataclass(frozen=True, slots=True)
class PerceptionSpec:
    """Lead-vehicle selection from an array of radar tracks (nearest valid track in lane)."""

    kind: str
    bus: str
    messages: tuple[str, ...]
    distance: str
    lateral: str
    lateral_sign: float
    rel_speed: str
    valid: str
    lane_half_width_m: float
    stale_s: float


@dataclass(frozen=True, slots=True)
class InferenceSpec:
    providers: tuple[str, ...]  # preferred ONNX Runtime execution providers, in order
    intra_op_threads: int
    inter_op_threads: int
    cpu_affinity: tuple[int, ...]
    budget_ms: float  # per-inference compute budget


@dataclass(frozen=True, slots=True)
class Platform:
    name: str
    adapter: str
    description: str
    buses: tuple[BusSpec, ...]
    topic_rates_hz: Mapping[str, float]
    signals: Mapping[str, SignalMapping]
    perception: PerceptionSpec | None
    inference: InferenceSpec
    ring_budget_bytes: int
    history_window_s: float
    spool_quota_bytes: int
    network_policy: str
    source: str = "<dict>"
    provided: frozenset[str] = field(default=frozenset())

    def bus(self, name: str) -> BusSpec:
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(name)

    def provides(self, signal: str) -> bool:
        """True when this platform produces canonical ``signal`` (vehicle, perception or IMU)."""
        return signal in self.provided


def _err(source: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: {key}: {msg}")


def _get(d: Mapping, key: str, typ, source: str, path: str, default: Any = ...):
    if key not in d:
        if default is ...:
            raise _err(source, f"{path}{key}", "missing; add it to the profile")
        return default
    value = d[key]
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise _err(source, f"{path}{key}", f"expected {getattr(typ, '__name__', typ)}, got {value!r}")
    return value


def _unknown_keys(d: Mapping, allowed: set[str], source: str, path: str) -> None:
    extra = sorted(set(d) - allowed)
    if extra:
        raise _err(source, f"{path}{extra[0]}", f"unknown key; allowed keys are {sorted(allowed)}")


def _unit_factor(name: str, unit: str | None, source: str, path: str) -> float:
    if unit is None or unit == "raw":
        return 1.0
    suffix = name.rsplit("_", 1)[-1]
    table = _UNIT_FACTORS.get(suffix)
    if table is None or unit not in table:
        allowed = sorted(table) if table else ["raw"]
        raise _err(source, f"{path}unit", f"cannot convert {unit!r} to the unit of {name!r}; use one of {allowed + ['raw']}")
    return table[unit]


def _parse_signal(name: str, d: Mapping, buses: set[str], source: str) -> SignalMapping:
    path = f"signals.{name}."
    if name not in VEHICLE.dtype.names:
        raise _err(source, f"signals.{name}", f"not a canonical vehicle signal; known: {list(VEHICLE.dtype.names[1:])}")
    if not isinstance(d, Mapping):
        raise _err(source, f"signals.{name}", f"expected a table, got {d!r}")
    _unknown_keys(d, _SIGNAL_KEYS, source, path)
    bus = _get(d, "bus", str, source, path)
    if bus not in buses:
        raise _err(source, f"{path}bus", f"unknown bus {bus!r}; declared buses: {sorted(buses)}")
    sources = _get(d, "sources", list, source, path)
    if not sources or not all(isinstance(s, str) and s.count(".") == 1 for s in sources):
        raise _err(source, f"{path}sources", f"expected a list of \"MESSAGE.SIGNAL\", got {sources!r}")
    messages = {s.split(".")[0] for s in sources}
    if len(messages) != 1:
        raise _err(source, f"{path}sources", f"all sources must be in one message, got {sorted(messages)}")
    weights = _get(d, "weights", list, source, path, [1.0] * len(sources))
    if len(weights) != len(sources) or not all(isinstance(w, (int, float)) for w in weights):
        raise _err(source, f"{path}weights", f"expected {len(sources)} numbers, got {weights!r}")
    sign = _get(d, "sign", int, source, path, 1)
    if sign not in (1, -1):
        raise _err(source, f"{path}sign", f"must be 1 or -1, got {sign!r}")
    scale = _get(d, "scale", float, source, path, 1.0)
    offset = _get(d, "offset", float, source, path, 0.0)
    factor = sign * _unit_factor(name, d.get("unit"), source, path) * scale
    values = d.get("values")
    value_map = None
    if values is not None:
        if not isinstance(values, Mapping):
            raise _err(source, f"{path}values", f"expected a table raw = canonical, got {values!r}")
        try:
            value_map = tuple(sorted((int(k), int(v)) for k, v in values.items()))
        except (TypeError, ValueError) as err:
            raise _err(source, f"{path}values", f"keys and values must be integers, got {values!r}") from err
    sig = SIGNALS[name][1]
    default = float(_get(d, "default", int, source, path, 0)) if sig.dtype != "<f4" else math.nan
    return SignalMapping(
        name=name, bus=bus, message=next(iter(messages)),
        sources=tuple(s.split(".")[1] for s in sources), weights=tuple(float(w) for w in weights),
        factor=float(factor), offset=float(offset), values=value_map, default=default,
    )


def _parse_perception(d: Mapping, buses: set[str], source: str) -> PerceptionSpec:
    path = "perception."
    _unknown_keys(d, _PERCEPTION_KEYS, source, path)
    kind = _get(d, "kind", str, source, path)
    if kind != "radar_tracks":
        raise _err(source, f"{path}kind", f"unknown perception kind {kind!r}; supported: ['radar_tracks']")
    bus = _get(d, "bus", str, source, path)
    if bus not in buses:
        raise _err(source, f"{path}bus", f"unknown bus {bus!r}; declared buses: {sorted(buses)}")
    pattern = _get(d, "messages", str, source, path)
    count = _get(d, "track_count", int, source, path)
    if "{i}" not in pattern or not 1 <= count <= 64:
        raise _err(source, f"{path}messages", f"need a pattern with {{i}} and 1 <= track_count <= 64, got {pattern!r}, {count}")
    lateral_sign = _get(d, "lateral_sign", int, source, path, 1)
    if lateral_sign not in (1, -1):
        raise _err(source, f"{path}lateral_sign", f"must be 1 or -1, got {lateral_sign!r}")
    return PerceptionSpec(
        kind=kind, bus=bus, messages=tuple(pattern.replace("{i}", str(i)) for i in range(count)),
        distance=_get(d, "distance", str, source, path), lateral=_get(d, "lateral", str, source, path),
        lateral_sign=float(lateral_sign), rel_speed=_get(d, "rel_speed", str, source, path),
        valid=_get(d, "valid", str, source, path),
        lane_half_width_m=_get(d, "lane_half_width_m", float, source, path, 1.8),
        stale_s=_get(d, "stale_s", float, source, path, 0.25),
    )


def parse_platform(d: Mapping[str, Any], source: str = "<dict>") -> Platform:
    """Validate a profile dict (as read from platforms/<name>.toml) into a ``Platform``.

    Raises:
        ConfigError: ``"<source>: <key>: <what is wrong and how to fix it>"``.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"{source}: expected a table at the top level, got {type(d).__name__}")
    _unknown_keys(d, _TOP_KEYS, source, "")
    name = _get(d, "name", str, source, "")
    adapter = _get(d, "adapter", str, source, "", name)
    bus_list = _get(d, "buses", list, source, "")
    buses = []
    for i, b in enumerate(bus_list):
        p = f"buses[{i}]."
        if not isinstance(b, Mapping):
            raise _err(source, f"buses[{i}]", f"expected a table, got {b!r}")
        _unknown_keys(b, {"name", "channel", "dbc"}, source, p)
        buses.append(BusSpec(_get(b, "name", str, source, p), _get(b, "channel", str, source, p), _get(b, "dbc", str, source, p)))
    bus_names = {b.name for b in buses}
    if len(bus_names) != len(buses):
        raise _err(source, "buses", f"bus names must be unique, got {[b.name for b in buses]}")
    topics = _get(d, "topics", Mapping, source, "", {})
    rates = {}
    for t in TOPICS:
        rate = _get(topics, f"{t}_hz", float, source, "topics.", TOPICS[t].nominal_rate_hz)
        if not 0 < rate <= 10_000:
            raise _err(source, f"topics.{t}_hz", f"must be in (0, 10000] Hz, got {rate}")
        rates[t] = rate
    sig_tables = _get(d, "signals", Mapping, source, "")
    signals = {n: _parse_signal(n, v, bus_names, source) for n, v in sig_tables.items()}
    perception = None
    if "perception" in d:
        perception = _parse_perception(_get(d, "perception", Mapping, source, ""), bus_names, source)
    inf = _get(d, "inference", Mapping, source, "")
    providers = _get(inf, "providers", list, source, "inference.")
    if not providers or not all(isinstance(p, str) and p.endswith("ExecutionProvider") for p in providers):
        raise _err(source, "inference.providers", f"expected ONNX Runtime provider names (…ExecutionProvider), got {providers!r}")
    if "CPUExecutionProvider" not in providers:
        providers = [*providers, "CPUExecutionProvider"]  # every platform falls back to CPU
    affinity = _get(inf, "cpu_affinity", list, source, "inference.", [])
    if not all(isinstance(c, int) and c >= 0 for c in affinity):
        raise _err(source, "inference.cpu_affinity", f"expected a list of CPU numbers, got {affinity!r}")
    inference = InferenceSpec(
        providers=tuple(providers),
        intra_op_threads=_get(inf, "intra_op_threads", int, source, "inference.", 1),
        inter_op_threads=_get(inf, "inter_op_threads", int, source, "inference.", 1),
        cpu_affinity=tuple(affinity),
        budget_ms=_get(inf, "budget_ms", float, source, "inference."),
    )
    if inference.budget_ms <= 0 or inference.intra_op_threads < 1 or inference.inter_op_threads < 1:
        raise _err(source, "inference", f"budget_ms must be > 0 and thread counts >= 1, got {inference}")
    mem = _get(d, "memory", Mapping, source, "")
    spool = _get(d, "spool", Mapping, source, "")
    net = _get(d, "network", Mapping, source, "")
    policy = _get(net, "policy", str, source, "network.")
    if policy not in NETWORK_POLICIES:
        raise _err(source, "network.policy", f"unknown policy {policy!r}; use one of {list(NETWORK_POLICIES)}")
    ring_budget = _get(mem, "ring_budget_bytes", int, source, "memory.")
    history_s = _get(mem, "history_window_s", float, source, "memory.")
    quota = _get(spool, "quota_bytes", int, source, "spool.")
    if ring_budget <= 0 or history_s <= 0 or quota <= 0:
        raise _err(source, "memory/spool", f"budgets must be positive, got ring={ring_budget}, history={history_s}, quota={quota}")
    provided = set(signals) | {s.name for s in IMU.signals}
    if perception is not None:
        provided |= {s.name for s in PERCEPTION.signals}
    return Platform(
        name=name, adapter=adapter, description=_get(d, "description", str, source, "", ""),
        buses=tuple(buses), topic_rates_hz=rates, signals=signals, perception=perception,
        inference=inference, ring_budget_bytes=ring_budget, history_window_s=history_s,
        spool_quota_bytes=quota, network_policy=policy, source=source, provided=frozenset(provided),
    )
