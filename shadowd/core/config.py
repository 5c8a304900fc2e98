"""The typed service config a fleet bundle carries: parse and validate a JSON dict, and back.

Rules of this file:
1. Pure: stdlib only (plus shadowd.errors). No files, no clock, no crypto. Time values arrive
   as RFC 3339 strings and are kept as integer Unix seconds; "now" is always passed in by the
   caller (see core/bundle_state.py).
2. Nothing here is ever evaluated as code. Trigger definitions and the upload section are kept
   as plain JSON data; their deep validation (the TRIGGERS expression compiler, the UPLOADER's
   UploadConfig) is called by edges/config_apply.py, not here.
3. Unknown keys are refused (a typo in a fleet push must not silently fall back to a default).
   Every error names the JSON path, shows the offending value and says how to fix it.
4. ``parse_config(c.to_dict()) == c`` for every valid config (a Hypothesis test holds it).
   Keep ``to_dict`` and ``parse_config`` in sync; docs/config-bundle.md documents every field.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import ConfigError

CONFIG_SCHEMA = 1
"""The config schema this build reads (``"schema"`` in the payload). Bump on a breaking change."""

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_FILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MAX_VERSION = 2**63 - 1


def canonical_json(obj: Any) -> bytes:
    """The one byte form of a JSON value that is signed and hashed: sorted keys, no spaces, UTF-8.

    Raises ConfigError for values JSON cannot carry exactly (NaN, infinities).
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config is not plain JSON data: {err}; use only objects, arrays, "
                          "strings, finite numbers, booleans and null") from err


def parse_rfc3339_utc(text: Any, where: str) -> int:
    """Parse ``2026-11-25T17:00:00Z`` (UTC, ``Z`` or ``+00:00``) into integer Unix seconds.

    Fractions of a second are dropped (floor). Any other offset is refused, because a validity
    window is fleet-wide and an offset invites mistakes.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{where}: expected an RFC 3339 UTC time string like "
                          f"\"2026-11-25T17:00:00Z\", got {text!r}")
    candidate = text.strip()
    if candidate.endswith(("Z", "z")):
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError as err:
        raise ConfigError(f"{where}: {text!r} is not an RFC 3339 time; write it like "
                          "\"2026-11-25T17:00:00Z\"") from err
    if parsed.tzinfo is None or parsed.utcoffset().total_seconds() != 0:
        raise ConfigError(f"{where}: {text!r} is not in UTC; end it with \"Z\"")
    return math.floor(parsed.timestamp())


def format_rfc3339_utc(unix_s: int) -> str:
    """Integer Unix seconds → ``YYYY-MM-DDTHH:MM:SSZ``."""
    return datetime.fromtimestamp(unix_s, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Targets:
    """Which vehicles a bundle is for. Each non-empty list is a condition; all must hold.

    ``platforms=("nt2",), fleets=("eu-test",)`` means: NT2 vehicles of fleet eu-test. At least
    one list must be non-empty (a bundle for "everyone" must say so by naming the fleets).
    """

    platforms: tuple[str, ...] = ()
    vehicles: tuple[str, ...] = ()
    fleets: tuple[str, ...] = ()

    def matches(self, platform: str, vehicle_id: str, fleet: str | None) -> str | None:
        """None when the vehicle is targeted, else the detail of why not."""
        if self.platforms and platform not in self.platforms:
            return f"platform {platform!r} is not in targets.platforms {list(self.platforms)}"
        if self.vehicles and vehicle_id not in self.vehicles:
            return f"vehicle {vehicle_id!r} is not in targets.vehicles {list(self.vehicles)}"
        if self.fleets and fleet not in self.fleets:
            return f"fleet {fleet!r} is not in targets.fleets {list(self.fleets)}"
        return None


@dataclass(frozen=True, slots=True)
class ModelRef:
    """The candidate model, by content: ``sha256`` (lowercase hex) and the delivered file name."""

    sha256: str
    file_name: str


@dataclass(frozen=True, slots=True)
class DictionaryRef:
    """An optional zstd dictionary for clip compression: by sha256, inline (base64) or a file."""

    sha256: str
    file_name: str | None = None
    inline_b64: str | None = None


@dataclass(frozen=True, slots=True)
class ClipWindowConfig:
    """Default clip windows (seconds before / after a trigger) and the longest merged clip."""

    pre_s: float = 10.0
    post_s: float = 5.0
    max_clip_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Budgets:
    """Limits the service enforces, and the probation thresholds that judge a new config.

    inference_ms: per-inference compute budget (overrides the platform's when set).
    max_model_errors / max_budget_overruns / max_stage_crashes: how many of each health event
    within probation make the new config "misbehaving" (roll back at the limit).
    """

    inference_ms: float | None = None
    max_model_errors: int = 3
    max_budget_overruns: int = 50
    max_stage_crashes: int = 2


@dataclass(frozen=True, slots=True)
class ServiceConfig:
    """One complete, validated service config (the payload of a bundle)."""

    version: int
    not_before_unix_s: int
    expires_unix_s: int
    targets: Targets
    model: ModelRef
    triggers: tuple[dict, ...] = ()
    windows: ClipWindowConfig = field(default_factory=ClipWindowConfig)
    upload: dict = field(default_factory=dict)
    budgets: Budgets = field(default_factory=Budgets)
    probation_s: float = 300.0
    compression_dictionary: DictionaryRef | None = None
    description: str = ""

    def to_dict(self) -> dict:
        """The JSON form (what ``shadowd config sign`` reads); ``parse_config`` inverts it."""
        out: dict[str, Any] = {
            "schema": CONFIG_SCHEMA,
            "version": self.version,
            "not_before": format_rfc3339_utc(self.not_before_unix_s),
            "expires": format_rfc3339_utc(self.expires_unix_s),
            "targets": {k: list(getattr(self.targets, k)) for k in ("platforms", "vehicles", "fleets")
                        if getattr(self.targets, k)},
            "model": {"sha256": self.model.sha256, "file_name": self.model.file_name},
            "triggers": [dict(t) for t in self.triggers],
            "windows": {"pre_s": self.windows.pre_s, "post_s": self.windows.post_s,
                        "max_clip_s": self.windows.max_clip_s},
            "upload": dict(self.upload),
            "budgets": {k: getattr(self.budgets, k) for k in
                        ("inference_ms", "max_model_errors", "max_budget_overruns", "max_stage_crashes")
                        if getattr(self.budgets, k) is not None},
            "probation_s": self.probation_s,
        }
        if self.compression_dictionary is not None:
            d = self.compression_dictionary
            out["compression_dictionary"] = {k: v for k, v in
                                             (("sha256", d.sha256), ("file_name", d.file_name),
                                              ("inline_b64", d.inline_b64)) if v is not None}
        if self.description:
            out["description"] = self.description
        return out


# --- parsing helpers ------------------------------------------------------------------------


def _require_obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(value).__name__} {value!r:.80}")
    return value


def _refuse_unknown(obj: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed keys are {sorted(allowed)} "
                          "(check the spelling)")


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: expected an integer, got {value!r:.80}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: {value} is out of range [{lo}, {hi}]")
    return value


def _number(value: Any, where: str, lo: float, hi: float, *, open_lo: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r:.80}")
    if value < lo or value > hi or (open_lo and value == lo):
        bound = "(" if open_lo else "["
        raise ConfigError(f"{where}: {value} is out of range {bound}{lo}, {hi}]")
    return float(value)


def _str(value: Any, where: str, pattern: re.Pattern | None = None, hint: str = "") -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r:.80}")
    if pattern is not None and not pattern.match(value):
        raise ConfigError(f"{where}: {value!r:.80} is not valid{'; ' + hint if hint else ''}")
    return value


def _names(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list of names, got {value!r:.80}")
    names = tuple(_str(v, f"{where}[{i}]", _NAME_RE, "use letters, digits and . _ : -")
                  for i, v in enumerate(value))
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: duplicate name in {list(names)}")
    return names


def _sha256(value: Any, where: str) -> str:
    return _str(value, where, _SHA256_RE, "expected 64 lowercase hex digits (sha256sum output)")


def _parse_targets(raw: Any) -> Targets:
    obj = _require_obj(raw, "targets")
    _refuse_unknown(obj, {"platforms", "vehicles", "fleets"}, "targets")
    targets = Targets(**{k: _names(obj[k], f"targets.{k}") for k in obj})
    if not (targets.platforms or targets.vehicles or targets.fleets):
        raise ConfigError("targets: no platform, vehicle or fleet named; name at least one "
                          "(a bundle for every vehicle names its fleets)")
    return targets


def _parse_model(raw: Any) -> ModelRef:
    obj = _require_obj(raw, "model")
    _refuse_unknown(obj, {"sha256", "file_name"}, "model")
    for key in ("sha256", "file_name"):
        if key not in obj:
            raise ConfigError(f"model: missing {key!r}; a bundle names its model by sha256 and file name")
    return ModelRef(sha256=_sha256(obj["sha256"], "model.sha256"),
                    file_name=_str(obj["file_name"], "model.file_name", _FILE_RE,
                                   "a plain file name without directories, like \"candidate.onnx\""))


def _parse_dictionary(raw: Any) -> DictionaryRef:
    where = "compression_dictionary"
    obj = _require_obj(raw, where)
    _refuse_unknown(obj, {"sha256", "file_name", "inline_b64"}, where)
    if "sha256" not in obj:
        raise ConfigError(f"{where}: missing 'sha256'")
    file_name = obj.get("file_name")
    inline = obj.get("inline_b64")
    if (file_name is None) == (inline is None):
        raise ConfigError(f"{where}: give exactly one of 'file_name' (delivered beside the bundle) "
                          "or 'inline_b64'")
    return DictionaryRef(
        sha256=_sha256(obj["sha256"], f"{where}.sha256"),
        file_name=None if file_name is None else _str(file_name, f"{where}.file_name", _FILE_RE,
                                                      "a plain file name without directories"),
        inline_b64=None if inline is None else _str(inline, f"{where}.inline_b64"),
    )


def _parse_windows(raw: Any) -> ClipWindowConfig:
    obj = _require_obj(raw, "windows")
    _refuse_unknown(obj, {"pre_s", "post_s", "max_clip_s"}, "windows")
    defaults = ClipWindowConfig()
    pre_s = _number(obj.get("pre_s", defaults.pre_s), "windows.pre_s", 0.0, 3600.0)
    post_s = _number(obj.get("post_s", defaults.post_s), "windows.post_s", 0.0, 3600.0)
    max_clip_s = _number(obj.get("max_clip_s", defaults.max_clip_s), "windows.max_clip_s", 0.0, 7200.0,
                         open_lo=True)
    if pre_s + post_s > max_clip_s:
        raise ConfigError(f"windows: pre_s + post_s = {pre_s + post_s} s exceeds max_clip_s = "
                          f"{max_clip_s} s; raise max_clip_s or shorten the windows")
    return ClipWindowConfig(pre_s=pre_s, post_s=post_s, max_clip_s=max_clip_s)


def _parse_budgets(raw: Any) -> Budgets:
    obj = _require_obj(raw, "budgets")
    keys = {"inference_ms", "max_model_errors", "max_budget_overruns", "max_stage_crashes"}
    _refuse_unknown(obj, keys, "budgets")
    d = Budgets()
    inference_ms = obj.get("inference_ms")
    return Budgets(
        inference_ms=None if inference_ms is None else _number(inference_ms, "budgets.inference_ms",
                                                               0.0, 10_000.0, open_lo=True),
        max_model_errors=_int(obj.get("max_model_errors", d.max_model_errors), "budgets.max_model_errors",
                              1, 1_000_000),
        max_budget_overruns=_int(obj.get("max_budget_overruns", d.max_budget_overruns),
                                 "budgets.max_budget_overruns", 1, 1_000_000),
        max_stage_crashes=_int(obj.get("max_stage_crashes", d.max_stage_crashes),
                               "budgets.max_stage_crashes", 1, 1_000),
    )


def _parse_triggers(raw: Any) -> tuple[dict, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"triggers: expected a list of trigger objects, got {raw!r:.80}")
    seen: set[str] = set()
    out = []
    for i, t in enumerate(raw):
        obj = _require_obj(t, f"triggers[{i}]")
        # a built-in is referenced as {"builtin": "hard_brake", ...overrides}; its name defaults to it
        key = "name" if "name" in obj or "builtin" not in obj else "builtin"
        if key not in obj:
            raise ConfigError(f"triggers[{i}]: every trigger needs a \"name\" (or a \"builtin\" "
                              f"reference); got keys {sorted(obj)}")
        name = _str(obj.get(key), f"triggers[{i}].{key}", _NAME_RE,
                    "every trigger needs a name (or a builtin) of letters, digits and . _ : -")
        if name in seen:
            raise ConfigError(f"triggers[{i}]: duplicate trigger name {name!r}; names must be unique")
        seen.add(name)
        canonical_json(obj)  # plain JSON only (no NaN), so the payload signs and round-trips
        out.append(dict(obj))
    return tuple(out)


_TOP_KEYS = {"schema", "version", "not_before", "expires", "targets", "model", "triggers", "windows",
             "upload", "budgets", "probation_s", "compression_dictionary", "description"}


def parse_config(raw: Any) -> ServiceConfig:
    """Validate a config dict (the JSON a fleet engineer writes) into a ServiceConfig.

    Raises ConfigError naming the field, the offending value and the fix. Checks what can be
    checked without the vehicle (types, ranges, window order, names); edges/config_apply.py
    then checks what needs it (trigger compile, ring history, model file, upload section).
    """
    obj = _require_obj(raw, "config")
    _refuse_unknown(obj, _TOP_KEYS, "config")
    schema = obj.get("schema", CONFIG_SCHEMA)
    if schema != CONFIG_SCHEMA:
        raise ConfigError(f"config: schema {schema!r} is not the schema {CONFIG_SCHEMA} this build reads; "
                          "upgrade shadowd on the vehicle or write the bundle for schema "
                          f"{CONFIG_SCHEMA}")
    for key in ("version", "not_before", "expires", "targets", "model"):
        if key not in obj:
            raise ConfigError(f"config: missing required key {key!r}; see docs/config-bundle.md")
    version = _int(obj["version"], "version", 1, _MAX_VERSION)
    not_before = parse_rfc3339_utc(obj["not_before"], "not_before")
    expires = parse_rfc3339_utc(obj["expires"], "expires")
    if expires <= not_before:
        raise ConfigError(f"expires ({obj['expires']}) is not after not_before ({obj['not_before']}); "
                          "a validity window must be non-empty")
    upload = _require_obj(obj.get("upload", {}), "upload")
    canonical_json(upload)
    description = obj.get("description", "")
    return ServiceConfig(
        version=version,
        not_before_unix_s=not_before,
        expires_unix_s=expires,
        targets=_parse_targets(obj["targets"]),
        model=_parse_model(obj["model"]),
        triggers=_parse_triggers(obj.get("triggers", [])),
        windows=_parse_windows(obj.get("windows", {})),
        upload=dict(upload),
        budgets=_parse_budgets(obj.get("budgets", {})),
        probation_s=_number(obj.get("probation_s", 300.0), "probation_s", 0.0, 7 * 86400.0),
        compression_dictionary=(None if obj.get("compression_dictionary") is None
                                else _parse_dictionary(obj["compression_dictionary"])),
        description=_str(description, "description"),
    )
