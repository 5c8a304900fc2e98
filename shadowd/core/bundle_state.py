"""Every decision about whether a config bundle may run, and for how long, is made here.

The lifecycle of a pushed config, as a pure state machine (h11 style: values in, values out):

    offered ──admit()──► refused(reason)            running config untouched
       │
       └─► admitted ──(edges validate + prepare)──► activate() ──► PROBATION
                                                                      │ health events, tick()
                                         misbehaved ◄─────────────────┤
                         rollback() to last known good                └──► commit(): LAST KNOWN GOOD

Rules of this file:
1. Pure: no files, no clocks, no threads. Wall-clock Unix seconds (validity windows) and
   monotonic nanoseconds (probation) are passed in by the caller; persisting ``ApplyState``
   is edges/bundle.py's job (``to_dict``/``from_dict``).
2. Anti-rollback: ``highest_version`` only grows. It is raised when a version is activated
   (not when it is merely offered, so a bundle whose model file has not arrived yet can be
   offered again), and it is *not* lowered by a rollback: a bad version can never come back,
   the fleet must push a higher one.
3. Every refusal names one of ``REFUSAL_REASONS`` plus a human detail.
4. A restart during probation counts against the candidate (a crash loop restarts the whole
   service); more than ``Budgets.max_stage_crashes`` restarts roll it back at startup.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError
from .config import ServiceConfig, format_rfc3339_utc

REFUSAL_REASONS = (
    "bad_signature",       # the signature does not verify against the named trusted key
    "unknown_key",         # the key id is not trusted here (never added, retired or revoked)
    "replayed_version",    # version <= the highest version ever activated on this vehicle
    "expired",             # now >= expires
    "not_yet_valid",       # now < not_before
    "wrong_target",        # this vehicle's platform / id / fleet is not targeted
    "model_hash_mismatch",  # the delivered model file's sha256 differs from the bundle's
    "model_missing",       # no model file with that sha256 beside the bundle or in the store
    "invalid_config",      # anything else that does not validate (detail says what)
)

HEALTH_EVENTS = ("model_error", "budget_overrun", "stage_crash")

KEEP_EARLIER_GOOD = 2
"""Committed configs kept besides the last known good, as fallbacks when it cannot load."""


@dataclass(frozen=True, slots=True)
class VehicleIdentity:
    """Who is asking: what a bundle's targets are matched against."""

    vehicle_id: str
    platform: str
    fleet: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer to an offered bundle. ``outcome`` is ``admitted``, ``unchanged`` or ``refused``."""

    outcome: str
    version: int
    reason: str | None = None
    detail: str = ""

    @property
    def refused(self) -> bool:
        return self.outcome == "refused"


@dataclass(frozen=True, slots=True)
class Slot:
    """A config the vehicle has run: its version and the sha256 of its signed payload."""

    version: int
    payload_sha256: str


@dataclass(frozen=True, slots=True)
class ApplyState:
    """What survives a restart. ``probation`` is the active slot while it is still on trial."""

    highest_version: int = 0
    active: Slot | None = None
    last_good: Slot | None = None
    probation: Slot | None = None
    probation_restarts: int = 0
    earlier_good: tuple[Slot, ...] = ()  # committed before last_good, newest first (fallbacks)

    def fallbacks(self) -> tuple[Slot, ...]:
        """Known good configs to fall back to when the active one cannot load, best first."""
        return tuple(s for s in (self.last_good, *self.earlier_good) if s is not None and s != self.active)

    def to_dict(self) -> dict:
        def slot(s: Slot | None) -> dict | None:
            return None if s is None else {"version": s.version, "payload_sha256": s.payload_sha256}

        return {"highest_version": self.highest_version, "active": slot(self.active),
                "last_good": slot(self.last_good), "probation": slot(self.probation),
                "probation_restarts": self.probation_restarts,
                "earlier_good": [slot(x) for x in self.earlier_good]}

    @classmethod
    def from_dict(cls, raw: Any) -> "ApplyState":
        """Inverse of ``to_dict``; a corrupt state raises ConfigError saying which field."""

        def slot(value: Any, key: str) -> Slot | None:
            if value is None:
                return None
            if (not isinstance(value, dict) or not isinstance(value.get("version"), int)
                    or not isinstance(value.get("payload_sha256"), str)):
                raise ConfigError(f"apply state: {key} = {value!r:.80} is not a {{version, payload_sha256}} "
                                  "object; restore the state file from its backup or remove it "
                                  "(anti-rollback then restarts from the active bundle's version)")
            return Slot(value["version"], value["payload_sha256"])

        if not isinstance(raw, dict) or not isinstance(raw.get("highest_version"), int):
            raise ConfigError(f"apply state: {raw!r:.80} has no integer highest_version; restore the "
                              "state file from its backup or remove it")
        restarts = raw.get("probation_restarts", 0)
        earlier = raw.get("earlier_good", [])
        if not isinstance(earlier, list):
            earlier = []
        return cls(highest_version=raw["highest_version"], active=slot(raw.get("active"), "active"),
                   last_good=slot(raw.get("last_good"), "last_good"),
                   probation=slot(raw.get("probation"), "probation"),
                   probation_restarts=restarts if isinstance(restarts, int) else 0,
                   earlier_good=tuple(slot(x, "earlier_good") for x in earlier if x is not None))


def admit(state: ApplyState, config: ServiceConfig, payload_sha256: str, identity: VehicleIdentity,
          now_unix_s: float) -> Verdict:
    """Decide whether an (already signature-verified) config may go on to validation.

    The active bundle offered again (a retained MQTT message after a reconnect) is
    ``unchanged``, not a refusal. Order of checks: anti-rollback, validity window, target.
    """
    v = config.version
    if state.active is not None and state.active.payload_sha256 == payload_sha256:
        return Verdict("unchanged", v, None, f"version {v} is already active")
    if v <= state.highest_version:
        return Verdict("refused", v, "replayed_version",
                       f"version {v} is not above the highest version {state.highest_version} ever "
                       f"applied here; push it again with version >= {state.highest_version + 1}")
    if now_unix_s < config.not_before_unix_s:
        return Verdict("refused", v, "not_yet_valid",
                       f"not valid before {format_rfc3339_utc(config.not_before_unix_s)}, the vehicle's "
                       f"clock says {format_rfc3339_utc(int(now_unix_s))}; it is accepted when offered "
                       "again after not_before")
    if now_unix_s >= config.expires_unix_s:
        return Verdict("refused", v, "expired",
                       f"expired at {format_rfc3339_utc(config.expires_unix_s)}, the vehicle's clock says "
                       f"{format_rfc3339_utc(int(now_unix_s))}; re-sign it with a later 'expires' and a "
                       "higher version")
    mismatch = config.targets.matches(identity.platform, identity.vehicle_id, identity.fleet)
    if mismatch is not None:
        return Verdict("refused", v, "wrong_target", mismatch)
    return Verdict("admitted", v)


def activate(state: ApplyState, slot: Slot, probation_s: float) -> ApplyState:
    """The service swapped to ``slot``: it is active, on probation unless ``probation_s`` is 0."""
    if slot.version <= state.highest_version:
        raise ConfigError(f"activate: version {slot.version} is not above {state.highest_version}; "
                          "admit() must be called first (this is a bug in the caller)")
    new = replace(state, highest_version=slot.version, active=slot, probation=slot, probation_restarts=0)
    return commit(new) if probation_s <= 0 else new


def commit(state: ApplyState) -> ApplyState:
    """Probation passed: the active config becomes the last known good."""
    if state.probation is None:
        return state
    earlier = state.earlier_good
    if state.last_good is not None and state.last_good != state.probation:
        earlier = (state.last_good, *earlier)[:KEEP_EARLIER_GOOD]
    return replace(state, last_good=state.probation, probation=None, probation_restarts=0,
                   earlier_good=earlier)


def fall_back(state: ApplyState, slot: Slot) -> ApplyState:
    """The active config cannot load (e.g. its model file rotted): run known-good ``slot``."""
    if slot not in state.fallbacks():
        raise ConfigError(f"fall_back: v{slot.version} is not a known good config here (a bug in the caller)")
    earlier = tuple(s for s in state.earlier_good if s != slot)
    return replace(state, active=slot, last_good=slot, probation=None, probation_restarts=0,
                   earlier_good=earlier)


def rollback(state: ApplyState) -> ApplyState:
    """Probation failed: the last known good (possibly none) becomes active again.

    ``highest_version`` stays: the failed version can never be applied again.
    """
    return replace(state, active=state.last_good, probation=None, probation_restarts=0)


def restarted(state: ApplyState, max_restarts: int) -> tuple[ApplyState, bool]:
    """The service started. Returns (new state, whether the candidate on trial must roll back)."""
    if state.probation is None:
        return state, False
    new = replace(state, probation_restarts=state.probation_restarts + 1)
    return new, new.probation_restarts > max_restarts


@dataclass(frozen=True, slots=True)
class ProbationDecision:
    """``action`` is ``commit`` or ``rollback``; ``reason``/``detail`` say why for a rollback."""

    action: str
    version: int
    reason: str = ""
    detail: str = ""


class ProbationMonitor:
    """Judges one candidate during its probation from the health events the service reports.

    Pure: every call takes the monotonic time ``t_ns``. Not thread-safe; the ConfigManager
    serialises calls under its lock.
    """

    def __init__(self, config: ServiceConfig, started_ns: int):
        self.version = config.version
        self.deadline_ns = started_ns + int(config.probation_s * 1e9)
        self.limits = {"model_error": config.budgets.max_model_errors,
                       "budget_overrun": config.budgets.max_budget_overruns,
                       "stage_crash": config.budgets.max_stage_crashes}
        self.counts = dict.fromkeys(HEALTH_EVENTS, 0)
        self.decision: ProbationDecision | None = None

    def record(self, kind: str, t_ns: int, detail: str = "") -> ProbationDecision | None:
        """Count one health event; returns the rollback decision when a limit is reached."""
        if kind not in self.counts:
            raise ConfigError(f"health event {kind!r} is unknown; report one of {list(HEALTH_EVENTS)}")
        if self.decision is not None:
            return None
        if t_ns >= self.deadline_ns:
            return self.tick(t_ns)
        self.counts[kind] += 1
        if self.counts[kind] >= self.limits[kind]:
            self.decision = ProbationDecision(
                "rollback", self.version, kind,
                f"{self.counts[kind]} {kind} event(s) within probation (limit {self.limits[kind]})"
                + (f"; last: {detail}" if detail else ""))
            return self.decision
        return None

    def tick(self, t_ns: int) -> ProbationDecision | None:
        """Returns the commit decision once the probation deadline has passed (once)."""
        if self.decision is None and t_ns >= self.deadline_ns:
            self.decision = ProbationDecision("commit", self.version)
            return self.decision
        return None
