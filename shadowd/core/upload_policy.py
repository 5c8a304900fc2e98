"""Every upload *decision*: config validation, bandwidth, budget, gating, order, retries, expiry.

Rules: this file is pure. Time arrives as an argument (``now_s``: wall-clock seconds for
budgets, ages and retry times; ``now_mono_s`` for the token bucket), randomness arrives as a
number in [0, 1) drawn by the caller from an injected RNG, and the network state arrives as a
value from the platform adapter or the config. Nothing here reads a clock, a file or a socket;
``shadowd/edges/uploader.py`` does the I/O and asks this module what to do next.

Theory of operation: the uploader, on each step, (1) asks :func:`network_allows` whether the
link may be used at all, (2) orders the spool's pending clips with :func:`upload_order`
(priority plus aging, so a low-priority clip climbs one level per ``aging_s_per_level``
seconds and is never starved), skipping clips whose :func:`backoff_s` retry time has not come
and dropping those past :func:`is_expired`, (3) checks the :class:`DailyBudget` for the bytes
of the next request, and (4) paces the body through the :class:`TokenBucket`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError

# --------------------------------------------------------------------------------------------
# Network state and gating


LINK_KINDS = ("none", "cellular", "wifi", "ethernet")

#: policy name → (needs an unmetered link, needs the vehicle parked); None = never upload.
#: Keep in sync with NETWORK_POLICIES in shadowd/core/platform.py (profiles' [network] policy):
#: tests/upload/test_upload_policy.py checks every bundled profile's policy is accepted here.
NETWORK_POLICIES: dict[str, tuple[bool, bool] | None] = {
    "always": (False, False),
    "unmetered_only": (True, False),
    "parked_only": (False, True),
    "unmetered_and_parked": (True, True),
    "never": None,
}


@dataclass(frozen=True, slots=True)
class NetworkState:
    """What the vehicle's link looks like right now (from the platform adapter or config).

    ``link`` is one of :data:`LINK_KINDS`; ``metered`` is true for links billed by the byte
    (cellular, usually); ``parked`` is true when the vehicle is in park / ignition-off upload.
    """

    link: str = "ethernet"
    metered: bool = False
    parked: bool = True

    def __post_init__(self) -> None:
        if self.link not in LINK_KINDS:
            raise ConfigError(
                f"network state link {self.link!r} is unknown; use one of {', '.join(LINK_KINDS)}"
            )


def network_allows(policy: str, state: NetworkState) -> tuple[bool, str]:
    """Whether ``policy`` lets the uploader use the link in ``state``.

    Returns ``(True, "")`` or ``(False, reason)`` with reason one of ``policy_never``,
    ``no_link``, ``metered_link``, ``not_parked`` (shown as ``gated`` in metrics).
    """
    needs = NETWORK_POLICIES[policy]
    if needs is None:
        return False, "policy_never"
    need_unmetered, need_parked = needs
    if state.link == "none":
        return False, "no_link"
    if need_unmetered and state.metered:
        return False, "metered_link"
    if need_parked and not state.parked:
        return False, "not_parked"
    return True, ""


# --------------------------------------------------------------------------------------------
# Token bucket


class TokenBucket:
    """Bandwidth cap: ``rate_bytes_per_s`` sustained, at most ``burst_bytes`` at once.

    Time is monotonic seconds handed in by the caller. Tokens never exceed ``burst_bytes`` and
    never go below zero; :meth:`take` grants at most what is available, so a caller sends in
    pieces of at most ``burst_bytes`` and waits :meth:`wait_s` between them. Over any interval
    of length T starting full, at most ``burst_bytes + rate * T`` bytes are granted.

    A rate of 0 means "no cap": every request is granted in full at once.
    """

    __slots__ = ("rate_bytes_per_s", "burst_bytes", "_tokens", "_t_s")

    def __init__(self, rate_bytes_per_s: float, burst_bytes: int, now_mono_s: float, *,
                 start_full: bool = True):
        if rate_bytes_per_s < 0:
            raise ConfigError(f"bandwidth cap {rate_bytes_per_s!r} B/s is negative; use 0 for no cap")
        if rate_bytes_per_s > 0 and burst_bytes <= 0:
            raise ConfigError(f"token bucket burst {burst_bytes!r} bytes must be > 0")
        self.rate_bytes_per_s = float(rate_bytes_per_s)
        self.burst_bytes = int(burst_bytes)
        self._tokens = float(burst_bytes) if start_full else 0.0
        self._t_s = float(now_mono_s)

    @property
    def unlimited(self) -> bool:
        return self.rate_bytes_per_s == 0

    def _refill(self, now_mono_s: float) -> None:
        if now_mono_s > self._t_s:
            self._tokens = min(
                float(self.burst_bytes), self._tokens + (now_mono_s - self._t_s) * self.rate_bytes_per_s
            )
            self._t_s = now_mono_s
        # a clock that goes backwards grants nothing and is otherwise ignored

    def available(self, now_mono_s: float) -> int:
        """Whole bytes that may be sent right now."""
        if self.unlimited:
            return 1 << 62
        self._refill(now_mono_s)
        return int(self._tokens)

    def take(self, want_bytes: int, now_mono_s: float) -> int:
        """Grant and consume up to ``want_bytes`` (0 when the bucket is empty)."""
        if want_bytes <= 0:
            return 0
        if self.unlimited:
            return want_bytes
        self._refill(now_mono_s)
        granted = min(int(want_bytes), int(self._tokens))
        self._tokens -= granted
        return granted

    def wait_s(self, want_bytes: int, now_mono_s: float) -> float:
        """Seconds until ``min(want_bytes, burst_bytes)`` bytes are available (0 if now)."""
        if self.unlimited:
            return 0.0
        self._refill(now_mono_s)
        need = min(float(want_bytes), float(self.burst_bytes)) - self._tokens
        return max(0.0, need / self.rate_bytes_per_s)


# --------------------------------------------------------------------------------------------
# Daily budget

_DAY_S = 86400


def utc_day(now_s: float) -> int:
    """Days since the epoch (UTC) for wall-clock seconds ``now_s``: the budget's period."""
    return int(now_s // _DAY_S)


@dataclass(slots=True)
class DailyBudget:
    """Bytes the uploader may put on the wire per UTC day (0 = unlimited).

    Failed attempts count too: a metered link bills the bytes that were sent, not the clips
    that arrived. ``day``/``used_bytes`` are the state the uploader persists across restarts.
    """

    budget_bytes: int
    day: int = 0
    used_bytes: int = 0

    def _roll(self, now_s: float) -> None:
        today = utc_day(now_s)
        if today != self.day:
            self.day, self.used_bytes = today, 0

    def remaining(self, now_s: float) -> int:
        if self.budget_bytes == 0:
            return 1 << 62
        self._roll(now_s)
        return max(0, self.budget_bytes - self.used_bytes)

    def charge(self, size_bytes: int, now_s: float) -> None:
        self._roll(now_s)
        self.used_bytes += int(size_bytes)

    def next_day_s(self, now_s: float) -> float:
        """Wall-clock seconds at which the budget refills."""
        return float((utc_day(now_s) + 1) * _DAY_S)


# --------------------------------------------------------------------------------------------
# Order, backoff, expiry


def effective_priority(priority: int, age_s: float, aging_s_per_level: float) -> float:
    """Priority after aging: one level more per ``aging_s_per_level`` seconds waited (0 = off)."""
    if aging_s_per_level <= 0:
        return float(priority)
    return priority + max(0.0, age_s) / aging_s_per_level


@dataclass(frozen=True, slots=True)
class QueuedClip:
    """What the ordering needs to know about one pending clip."""

    clip_id: str
    priority: int
    size_bytes: int
    first_seen_s: float  # wall-clock seconds the uploader first saw it (persisted)
    next_retry_s: float = 0.0  # wall-clock seconds before which it must not be tried


def upload_order(clips: Iterable[QueuedClip], now_s: float, aging_s_per_level: float) -> list[QueuedClip]:
    """Clips in the order to try them: highest aged priority first, then oldest, then id.

    Deterministic for equal inputs (the id breaks the last tie), so tests and the benchmark see
    the same order every run.
    """
    return sorted(
        clips,
        key=lambda c: (
            -effective_priority(c.priority, now_s - c.first_seen_s, aging_s_per_level),
            c.first_seen_s,
            c.clip_id,
        ),
    )


def backoff_s(attempt: int, base_s: float, max_s: float, u: float) -> float:
    """Delay before retry number ``attempt`` (1 = after the first failure), with jitter.

    "Equal jitter": the ceiling ``c = min(max_s, base_s * 2**(attempt-1))`` grows
    exponentially; the delay is uniform in ``[c/2, c)`` using ``u`` in [0, 1) from the caller's
    RNG, so retries of many vehicles spread out but never come back sooner than ``c/2``.
    """
    if attempt < 1:
        return 0.0
    # cap the exponent so 2**n cannot overflow a float for absurd attempt counts
    ceiling = min(max_s, base_s * math.pow(2.0, min(attempt - 1, 1000)))
    u = min(max(u, 0.0), math.nextafter(1.0, 0.0))
    return ceiling / 2.0 + u * ceiling / 2.0


def is_expired(first_seen_s: float, now_s: float, max_age_s: float) -> bool:
    """Whether an undelivered clip has waited longer than ``max_age_s`` (0 = never expires)."""
    return max_age_s > 0 and now_s - first_seen_s > max_age_s


# --------------------------------------------------------------------------------------------
# Config

_TEMPLATE_FIELDS = {"vehicle_id", "date", "clip_id", "platform"}
_FIELD_RE = re.compile(r"\{([^{}]*)\}")
_PIN_RE = re.compile(r"^[0-9a-f]{64}$")
#: body checksums the uploader can send so the server rejects a damaged body:
#: S3's SHA-256 checksum, the classic Content-MD5 (costs one MD5 pass), RFC 9530 Repr-Digest.
INTEGRITY_HEADERS = ("x-amz-checksum-sha256", "content-md5", "repr-digest")


@dataclass(frozen=True, slots=True)
class UploadConfig:
    """The ``[upload]`` config section, validated. See docs/upload-protocol.md.

    ``endpoint_url_template`` is an http(s) URL with ``{clip_id}`` (required, so a retry can
    never create a second object) and optionally ``{vehicle_id}``, ``{date}`` (UTC
    ``YYYY-MM-DD`` the clip was spooled) and ``{platform}``.
    """

    endpoint_url_template: str
    vehicle_id: str = "unknown"
    platform: str = ""
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    pin_sha256: tuple[str, ...] = ()  # hex SHA-256 of the server's SubjectPublicKeyInfo
    bandwidth_bytes_per_s: int = 0  # 0 = uncapped
    burst_bytes: int = 0  # 0 = derived: max(64 KiB, 250 ms of bandwidth)
    daily_budget_bytes: int = 0  # 0 = unlimited
    part_size_bytes: int = 8 * 1024 * 1024
    multipart_threshold_bytes: int = 16 * 1024 * 1024
    network_policy: str = "always"
    max_age_s: float = 7 * 86400.0  # 0 = never expire
    aging_s_per_level: float = 3600.0  # 0 = no aging
    backoff_base_s: float = 2.0
    backoff_max_s: float = 600.0
    timeout_s: float = 30.0
    head_before_put: bool = True
    integrity_headers: tuple[str, ...] = ("x-amz-checksum-sha256",)
    extra_headers: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        url = self.endpoint_url_template
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"upload.endpoint_url_template {url!r} must start with http:// or https://"
            )
        names = set(_FIELD_RE.findall(url))
        unknown = names - _TEMPLATE_FIELDS
        if unknown:
            raise ConfigError(
                f"upload.endpoint_url_template has unknown field(s) {sorted(unknown)}; "
                f"use only {sorted(_TEMPLATE_FIELDS)}"
            )
        if "clip_id" not in names:
            raise ConfigError(
                f"upload.endpoint_url_template {url!r} lacks {{clip_id}}; the key must derive "
                "from the clip's content hash so a retry never makes a second copy"
            )
        if self.network_policy not in NETWORK_POLICIES:
            raise ConfigError(
                f"upload.network_policy {self.network_policy!r} is unknown; use one of "
                f"{', '.join(NETWORK_POLICIES)}"
            )
        if (self.client_cert is None) != (self.client_key is None):
            raise ConfigError("upload.client_cert and upload.client_key must be given together for mTLS")
        for pin in self.pin_sha256:
            if not _PIN_RE.match(pin):
                raise ConfigError(
                    f"upload.pin_sha256 entry {pin!r} is not 64 lowercase hex digits; "
                    "give sha256(SubjectPublicKeyInfo DER) in hex"
                )
        bad_headers = set(self.integrity_headers) - set(INTEGRITY_HEADERS)
        if bad_headers:
            raise ConfigError(
                f"upload.integrity_headers has unknown entries {sorted(bad_headers)}; use any of "
                f"{list(INTEGRITY_HEADERS)}"
            )
        for name in ("bandwidth_bytes_per_s", "burst_bytes", "daily_budget_bytes", "max_age_s",
                     "aging_s_per_level"):
            if getattr(self, name) < 0:
                raise ConfigError(f"upload.{name} = {getattr(self, name)!r} is negative; use 0 to disable")
        if self.part_size_bytes <= 0 or self.multipart_threshold_bytes <= 0:
            raise ConfigError(
                f"upload.part_size_bytes ({self.part_size_bytes}) and multipart_threshold_bytes "
                f"({self.multipart_threshold_bytes}) must be > 0"
            )
        if self.daily_budget_bytes and self.daily_budget_bytes < self.part_size_bytes:
            raise ConfigError(
                f"upload.daily_budget_bytes ({self.daily_budget_bytes}) is smaller than one part "
                f"({self.part_size_bytes}); nothing large could ever be sent. Raise the budget or "
                "lower part_size_bytes"
            )
        if not (0 < self.backoff_base_s <= self.backoff_max_s):
            raise ConfigError(
                f"upload.backoff_base_s ({self.backoff_base_s}) must be > 0 and <= backoff_max_s "
                f"({self.backoff_max_s})"
            )
        if self.timeout_s <= 0:
            raise ConfigError(f"upload.timeout_s = {self.timeout_s!r} must be > 0")

    @property
    def effective_burst_bytes(self) -> int:
        if self.burst_bytes:
            return self.burst_bytes
        # 250 ms of bandwidth: a late wake-up on a busy machine (measured: tens to hundreds of
        # ms on 2 shared cores) is caught up instead of lost, so the achieved rate stays on the
        # cap; the uploader starts the bucket empty, so no burst shows at start-up
        return max(64 * 1024, int(self.bandwidth_bytes_per_s * 0.25))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UploadConfig":
        """Validate a config section (e.g. the ``[upload]`` table of a profile or bundle).

        Raises ConfigError naming the key, the value and the fix for unknown keys, wrong types
        and out-of-range values.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"upload config must be a table, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConfigError(
                f"upload config has unknown key(s) {sorted(unknown)}; known keys: {sorted(known)}"
            )
        if "endpoint_url_template" not in d:
            raise ConfigError("upload config lacks endpoint_url_template, e.g. "
                              "'https://ingest.example/{vehicle_id}/{date}/{clip_id}.shdc'")
        kwargs: dict[str, Any] = {}
        for name, value in d.items():
            kwargs[name] = _coerce(name, value, cls.__dataclass_fields__[name].default)
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["pin_sha256"] = list(self.pin_sha256)
        out["integrity_headers"] = list(self.integrity_headers)
        out["extra_headers"] = dict(self.extra_headers)
        return out


def _coerce(name: str, value: Any, default: Any) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"upload.{name} = {value!r} must be {expected}")

    if name == "pin_sha256":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(p, str) for p in value):
            raise bad("a hex string or a list of them")
        return tuple(p.lower().replace(":", "") for p in value)
    if name == "integrity_headers":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(h, str) for h in value):
            raise bad("a list of header names")
        return tuple(h.lower() for h in value)
    if name == "extra_headers":
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise bad("a table of string header names to string values")
        return dict(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a finite number")
        return float(value)
    if default is None or isinstance(default, str):
        if value is not None and not isinstance(value, str):
            raise bad("a string")
        return value
    return value
