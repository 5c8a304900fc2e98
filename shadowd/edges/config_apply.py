"""ConfigManager: takes pushed bundles from any transport and turns them into running configs.

    bytes ──verify (edges/bundle.py)──► admit (core/bundle_state.py: anti-rollback, validity,
    target) ──► validate everything (triggers compile, windows fit the ring, upload section,
    model file sha256 + I/O contract, dictionary) ──► prepare (load + warm the model beside the
    running one) ──► PreparedConfig handed to the service, which swaps it in between two frames
    and calls ``activated()`` ──► probation (health events, ``tick()``) ──► commit, or roll back
    to the last known good.

Rules of this file:
1. The running config is never touched by a refusal: ``offer()`` returns an ApplyResult with
   the reason and the running service carries on. Nothing raised here reaches the frame loop.
2. Thread-safe: MQTT callbacks, the incoming-directory watcher and the service thread may call
   in concurrently. One lock serialises offers (one candidate warms at a time); another,
   held only briefly, guards the state. Calls that persist (``activated``, and ``tick`` /
   ``report_health`` when they decide) fsync: make them off the frame thread.
3. Persistence goes through StateStore (atomic writes) *before* the caller is told, so a crash
   at any moment leaves anti-rollback and the last known good intact.
4. Teammates' validators (TRIGGERS compiler, UPLOADER's UploadConfig, PIPELINE's ModelRunner,
   CLIPS' window check) are imported inside functions, so this module stays cheap to import;
   a check that cannot run (no platform given, validator missing) is logged and listed in
   ``PreparedConfig.unchecked``, never silently passed.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import importlib
import logging
import os
import shutil
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.bundle_state import (ApplyState, ProbationDecision, ProbationMonitor, Slot, VehicleIdentity,
                                 activate, admit, commit, fall_back, restarted, rollback)
from ..core.config import ServiceConfig
from ..errors import BundleError, ConfigError, ShadowdError
from .bundle import StateStore, TrustStore, VerifiedBundle, sha256_file, verify_bundle

log = logging.getLogger(__name__)


@dataclass
class PreparedConfig:
    """A validated config with its model loaded and warmed, ready to swap in between two frames.

    ``model`` is the loaded and warmed ``edges.model_runner.ModelRunner``; ``triggers`` the
    compiled TriggerSet (or None); ``upload`` the parsed UploadConfig (or None);
    ``dictionary`` the zstd dictionary bytes (or None). The service owns the model once it
    swaps it in, and closes the one it swapped out when it no longer needs it.
    """

    config: ServiceConfig
    payload_sha256: str
    key_id: str
    model_path: Path
    model: Any = None
    triggers: Any = None
    upload: Any = None
    dictionary: bytes | None = None
    unchecked: tuple[str, ...] = ()
    timings_s: dict = field(default_factory=dict)
    raw: bytes = field(default=b"", repr=False)  # the signed bundle, kept on activation

    @property
    def version(self) -> int:
        return self.config.version


@dataclass(frozen=True)
class ApplyResult:
    """What became of one offered bundle. ``outcome``: prepared / applied / unchanged / refused."""

    outcome: str
    version: int | None
    source: str
    reason: str | None = None
    detail: str = ""
    prepared: PreparedConfig | None = None
    timings_s: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"outcome": self.outcome, "version": self.version, "source": self.source,
                "reason": self.reason, "detail": self.detail,
                "timings_s": {k: round(v, 6) for k, v in self.timings_s.items()}}


@dataclass(frozen=True)
class ConfigRolledBack:
    """Probation failed: swap to ``prepared`` (the last known good; None = no candidate model)."""

    from_version: int
    to_version: int | None
    reason: str
    detail: str
    prepared: PreparedConfig | None


def _preload_validators(platform: Any) -> None:
    """Do the one-time work of an apply now, at service start, not during the first apply
    while frames flow: a first import holds the GIL for hundreds of milliseconds (measured:
    660 ms for the model runner and adapters)."""
    for module in ("shadowd.core.triggers", "shadowd.core.upload_policy", "shadowd.core.clips",
                   "shadowd.edges.model_runner", "shadowd.adapters"):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    if platform is not None:
        with contextlib.suppress(ShadowdError, ImportError):
            from ..adapters import create_adapter

            create_adapter(platform)
    # The first onnxruntime session of a process sets up its environment with the GIL held
    # (measured: ~40 ms, a late frame at 100 Hz); pay that here with the bundled model.
    with contextlib.suppress(ShadowdError, ImportError, OSError):
        from .model_runner import ModelRunner, default_model_path

        ModelRunner(default_model_path(), platform, warmup=1).close()


MODEL_KEEP_S = 7 * 86400
"""How long an unreferenced model may wait in the store for the bundle that names it."""


class _Refusal(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ConfigManager:
    """Owns the vehicle's config lifecycle under ``state_dir`` (``config/``, ``models/``, ``incoming/``).

    Args:
        state_dir: the service's state directory (``/var/lib/shadowd``).
        trust_dir: directory of trusted ``<key_id>.pub`` files (re-read on every offer, so a
            rotated key takes effect without a restart).
        identity: this vehicle's id, platform name and fleet.
        platform: the loaded Platform profile (ring history, EPs, budgets); None skips the
            checks that need it and lists them in ``unchecked``.
        wall_clock_s / mono_clock_ns: clocks, injectable for tests (validity windows use the
            wall clock; probation uses the monotonic one).
        warm_model: load and warm the model when preparing (False only for tools that verify).
    """

    def __init__(self, state_dir: Path, trust_dir: Path, identity: VehicleIdentity, platform: Any = None, *,
                 wall_clock_s: Callable[[], float] = time.time,
                 mono_clock_ns: Callable[[], int] = time.monotonic_ns, warm_model: bool = True):
        self.state_dir = Path(state_dir)
        self.trust_dir = Path(trust_dir)
        self.identity = identity
        self.platform = platform
        self.models_dir = self.state_dir / "models"
        self.incoming_dir = self.state_dir / "incoming"
        for d in (self.models_dir, self.incoming_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._wall = wall_clock_s
        self._mono = mono_clock_ns
        self._warm = warm_model
        self._lock = threading.RLock()  # guards state, active, monitor, counters, history
        self._offer_lock = threading.Lock()  # one candidate is verified/prepared at a time
        self.store = StateStore(self.state_dir)
        self._lock_file = self.store.lock()  # one writer of the apply state per vehicle
        self.state: ApplyState = self.store.load()
        self.active: PreparedConfig | None = None
        self._last_good: PreparedConfig | None = None
        self._monitor: ProbationMonitor | None = None
        self._awaiting_model: tuple[bytes, str, ServiceConfig] | None = None  # refused model_missing
        self.startup_error: str | None = None
        if warm_model:
            _preload_validators(platform)
        self.refusals: Counter[str] = Counter()
        self.history: deque[dict] = deque(maxlen=64)

    def close(self) -> None:
        """Release the state lock (models stay loaded in PreparedConfigs the service holds)."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> "ConfigManager":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- startup -------------------------------------------------------------------------

    def startup(self) -> PreparedConfig | None:
        """Load the persisted active config (re-verified, model re-checked) for the service to run.

        A restart during probation counts against the candidate; past the limit (the
        candidate's ``max_stage_crashes``) it is rolled back. When the active bundle no longer
        loads (model file rotted, key revoked), the last known good and then earlier good ones
        are tried. Returns None when the vehicle has no config yet, or none of them loads
        (``startup_error`` then says why; the service runs without a candidate and the next
        pushed bundle repairs it).
        """
        with self._lock:
            if self.state.probation is not None:
                max_restarts = self._max_restarts_of(self.state.probation)
                self.state, must_roll_back = restarted(self.state, max_restarts)
                self.store.save(self.state)
                if must_roll_back:
                    failed = self.state.probation.version
                    self.state = rollback(self.state)
                    self.store.save(self.state)
                    self._record("rolled_back", failed, "startup", "stage_crash",
                                 f"service restarted more than {max_restarts} times during probation")
            slot = self.state.active
            if slot is None:
                return None
            prepared, errors = None, []
            for candidate in (slot, *self.state.fallbacks()):
                try:
                    prepared = self._prepare(self._load_verified(candidate), source="startup")
                except (_Refusal, ShadowdError, OSError) as err:
                    log.error("config v%s does not load (%s); trying the next known good one",
                              candidate.version, err)
                    errors.append(f"v{candidate.version}: {err}")
                    continue
                if candidate != slot:
                    self.state = fall_back(self.state, candidate)
                    self.store.save(self.state)
                    self._record("fell_back", candidate.version, "startup", "invalid_config", errors[0])
                break
            if prepared is None:
                self.startup_error = (f"no stored config loads ({'; '.join(errors)}); push a new bundle "
                                      "(with its model) to this vehicle")
                log.error("%s; running without a candidate config", self.startup_error)
                self._record("no_config", slot.version, "startup", "invalid_config", self.startup_error)
                return None
            self.active = prepared
            if self.state.probation is not None:
                self._last_good = None
                self._monitor = ProbationMonitor(prepared.config, self._mono())
            return prepared

    # --- offering --------------------------------------------------------------------------

    def offer(self, data: bytes, source: str = "api", model_dir: Path | None = None) -> ApplyResult:
        """Verify, admit, validate and prepare one bundle. Never raises for a bad bundle.

        Returns ApplyResult ``prepared`` (swap ``result.prepared`` in, then call
        ``activated()``), ``unchanged`` (already active) or ``refused`` (``reason`` is one of
        core.bundle_state.REFUSAL_REASONS; the running config is untouched). ``model_dir`` is
        where the bundle was delivered: a model file found there (by the bundle's file name
        and sha256) is moved into the model store ``<state>/models/<sha256>.onnx``.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        version = None
        # One candidate at a time (_offer_lock); the state lock is held only for the decision,
        # so report_health()/tick()/status() never wait behind a model warm-up.
        with self._offer_lock:
            try:
                verified = self._verify(data)
                version = verified.config.version
                timings["verify_s"] = time.perf_counter() - t0
                with self._lock:
                    verdict = admit(self.state, verified.config, verified.payload_sha256, self.identity,
                                    self._wall())
                if verdict.outcome == "unchanged":
                    return self._result("unchanged", version, source, None, verdict.detail, None, timings, t0)
                if verdict.refused:
                    raise _Refusal(verdict.reason, verdict.detail)
                prepared = self._prepare(verified, source, model_dir=model_dir)
                timings.update(prepared.timings_s)
                return self._result("prepared", version, source, None, "", prepared, timings, t0)
            except _Refusal as ref:
                if ref.reason == "model_missing":
                    self._awaiting_model = (bytes(data), source, verified.config)
                return self._result("refused", version, source, ref.reason, ref.detail, None, timings, t0)
            except Exception as err:  # a validator bug must not take the service down
                log.exception("unexpected error while applying a bundle from %s", source)
                return self._result("refused", version, source, "invalid_config",
                                    f"internal error while validating: {type(err).__name__}: {err}",
                                    None, timings, t0)

    def activated(self, prepared: PreparedConfig) -> None:
        """The service now runs ``prepared`` (swapped between two frames): persist, start probation.

        For the config that ``startup()`` (or a rollback) returned it only records the swap.
        Persists with fsync (milliseconds): call it off the frame thread. Raises BundleError
        ``replayed_version`` when a higher version was activated since ``prepared`` was offered
        (the service should then swap back; nothing was persisted).
        """
        with self._lock:
            if self.state.active == Slot(prepared.version, prepared.payload_sha256):
                self.active = prepared  # the config startup() or a rollback returned: nothing to persist
                return
            if prepared.version <= self.state.highest_version:
                raise BundleError(f"v{prepared.version} was overtaken by v{self.state.highest_version} "
                                  "while it was being prepared; keep running the newer one",
                                  reason="replayed_version")
            slot = Slot(prepared.version, prepared.payload_sha256)
            # the config to fall back to stays loaded: the running one if it had passed
            # probation, else the one kept while it was on trial
            fallback = self._last_good if self.state.probation is not None else self.active
            self.store.keep_bundle(prepared.payload_sha256, prepared.raw)
            self.state = activate(self.state, slot, prepared.config.probation_s)
            self.store.save(self.state)
            self.store.prune(self.state)
            if self.state.probation is None:
                self._prune_models()
            self._last_good = fallback if self.state.probation is not None else None
            self.active = prepared
            self._monitor = (ProbationMonitor(prepared.config, self._mono())
                             if self.state.probation is not None else None)
            self._record("activated", prepared.version, "service", None,
                         f"probation {prepared.config.probation_s:g} s")

    def apply(self, data: bytes, source: str = "api", model_dir: Path | None = None) -> ApplyResult:
        """``offer`` + ``activated`` at once, for holders without a frame loop (CLI, fleet bench)."""
        result = self.offer(data, source, model_dir=model_dir)
        if result.outcome != "prepared":
            return result
        t = time.perf_counter()
        try:
            self.activated(result.prepared)
        except BundleError as err:
            return ApplyResult("refused", result.version, source, err.reason, str(err), None, result.timings_s)
        timings = dict(result.timings_s)
        timings["activate_s"] = time.perf_counter() - t  # persisting the state (fsync) included
        timings["total_s"] = timings.get("total_s", 0.0) + timings["activate_s"]
        return ApplyResult("applied", result.version, source, None, "", result.prepared, timings)

    def apply_incoming(self, incoming_dir: Path | None = None, *, activate_now: bool = False) -> list[ApplyResult]:
        """Offer every ``*.bundle`` in the incoming directory, oldest first, then remove it.

        Bundles are moved out whatever the outcome (the verdict is in ``history`` and the log),
        so the systemd path unit stops firing. Model files beside them are offered with them.
        A bundle refused earlier for ``model_missing`` is offered again when new files arrive.
        Returns the results; with ``activate_now`` prepared configs are activated too.
        """
        incoming = Path(incoming_dir) if incoming_dir is not None else self.incoming_dir
        results = []
        bundles = sorted(incoming.glob("*.bundle"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        awaiting = self._awaiting_model
        if not bundles and awaiting is not None:
            cfg = awaiting[2]
            if ((incoming / cfg.model.file_name).is_file()
                    or (self.models_dir / f"{cfg.model.sha256}.onnx").is_file()):
                self._awaiting_model = None
                results.append(self._offer_or_apply(awaiting[0], awaiting[1] + " (model arrived)", incoming,
                                                    activate_now))
        for path in bundles:
            try:
                data = path.read_bytes()
            except OSError as err:
                log.error("cannot read incoming bundle %s: %s", path, err)
                continue
            results.append(self._offer_or_apply(data, f"file:{path.name}", incoming, activate_now))
            try:
                path.unlink()
            except OSError as err:
                log.error("cannot remove processed bundle %s: %s", path, err)
        return results

    def _offer_or_apply(self, data: bytes, source: str, model_dir: Path, activate_now: bool) -> ApplyResult:
        return (self.apply if activate_now else self.offer)(data, source, model_dir=model_dir)

    # --- probation -------------------------------------------------------------------------

    def report_health(self, kind: str, detail: str = "") -> ConfigRolledBack | None:
        """The service reports ``model_error`` / ``budget_overrun`` / ``stage_crash``.

        Returns a ConfigRolledBack when this event ends the candidate's probation; the service
        must then swap to ``rolled_back.prepared``. Outside probation it only counts.
        """
        with self._lock:
            if self._monitor is None:
                return None
            decision = self._monitor.record(kind, self._mono(), detail)
            return self._decide(decision)

    def tick(self) -> ConfigRolledBack | None:
        """Call periodically (e.g. each second): commits the candidate once probation passed."""
        with self._lock:
            if self._monitor is None:
                return None
            return self._decide(self._monitor.tick(self._mono()))

    def _decide(self, decision: ProbationDecision | None) -> ConfigRolledBack | None:
        if decision is None:
            return None
        self._monitor = None
        if decision.action == "commit":
            self.state = commit(self.state)
            self.store.save(self.state)
            self.store.prune(self.state)
            self._prune_models()
            self._last_good = None  # the old model can be released now
            self._record("committed", decision.version, "probation", None, "probation passed")
            return None
        self.state = rollback(self.state)
        self.store.save(self.state)
        prepared = self._last_good
        if prepared is not None and self.state.active != Slot(prepared.version, prepared.payload_sha256):
            prepared = None  # not the last known good on record: load that one instead
        if prepared is None and self.state.active is not None:
            try:
                prepared = self._prepare(self._load_verified(self.state.active), source="rollback")
            except (_Refusal, ShadowdError, OSError) as err:
                log.error("last known good v%d does not load (%s); running without a candidate",
                          self.state.active.version, err)
        self._last_good = None
        self.active = prepared
        to_version = None if self.state.active is None else self.state.active.version
        self._record("rolled_back", decision.version, "probation", decision.reason, decision.detail)
        log.warning("config v%d rolled back to %s: %s", decision.version,
                    f"v{to_version}" if to_version else "no config", decision.detail)
        return ConfigRolledBack(decision.version, to_version, decision.reason, decision.detail, prepared)

    # --- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        """For ``shadowd status`` and the fleet: versions, probation, refusals by reason, history."""
        with self._lock:
            return {
                "highest_version": self.state.highest_version,
                "active_version": self.state.active.version if self.state.active else None,
                "last_good_version": self.state.last_good.version if self.state.last_good else None,
                "probation_version": self.state.probation.version if self.state.probation else None,
                "probation_counts": dict(self._monitor.counts) if self._monitor else None,
                "refusals": dict(self.refusals),
                "startup_error": self.startup_error,
                "history": list(self.history),
            }

    # --- internals -------------------------------------------------------------------------

    def _prune_models(self) -> None:
        """Delete store models no kept config names and nobody delivered recently.

        A model delivered ahead of its bundle (the MQTT flow) is young and stays; one that
        only a forgotten config named goes once it is older than ``MODEL_KEEP_S``.
        """
        wanted = set()
        for slot in (self.state.active, self.state.last_good, self.state.probation, *self.state.earlier_good):
            if slot is None:
                continue
            try:
                wanted.add(self._load_verified(slot).config.model.sha256)
            except (_Refusal, ShadowdError, OSError):
                return  # cannot tell what is needed: keep everything
        now_s = self._wall()
        for path in self.models_dir.glob("*.onnx"):
            with contextlib.suppress(OSError):
                if path.stem not in wanted and now_s - path.stat().st_mtime > MODEL_KEEP_S:
                    path.unlink()
                    log.info("pruned model %s (no kept config names it)", path.name)

    def _result(self, outcome, version, source, reason, detail, prepared, timings, t0) -> ApplyResult:
        timings["total_s"] = time.perf_counter() - t0
        with self._lock:
            if outcome == "refused":
                self.refusals[reason] += 1
            self._record(outcome, version, source, reason, detail)
        if outcome == "refused":
            log.warning("config bundle from %s refused (%s): %s", source, reason, detail)
        else:
            log.info("config bundle v%s from %s %s in %.3f s", version, source, outcome, timings["total_s"])
        return ApplyResult(outcome, version, source, reason, detail, prepared, dict(timings))

    def _record(self, event: str, version, source, reason, detail) -> None:
        self.history.append({"event": event, "version": version, "source": source, "reason": reason,
                             "detail": detail, "wall_s": round(self._wall(), 3)})

    def _max_restarts_of(self, slot: Slot) -> int:
        try:
            return self._load_verified(slot).config.budgets.max_stage_crashes
        except (_Refusal, ShadowdError, OSError):
            return 0

    def _load_verified(self, slot: Slot) -> VerifiedBundle:
        try:
            data = self.store.read_bundle(slot.payload_sha256)
        except OSError as err:
            raise ConfigError(f"stored bundle for v{slot.version} is missing: {err}") from err
        return self._verify(data, f"stored v{slot.version}: ")

    def _verify(self, data: bytes, context: str = "") -> VerifiedBundle:
        try:
            trust = TrustStore.load(self.trust_dir)  # re-read each time: rotation needs no restart
        except ConfigError as err:
            raise _Refusal("unknown_key", f"{context}no key can be trusted: {err}") from err
        try:
            return verify_bundle(data, trust)
        except BundleError as err:
            raise _Refusal(err.reason, f"{context}{err}") from err

    def _prepare(self, verified: VerifiedBundle, source: str, model_dir: Path | None = None) -> PreparedConfig:
        cfg = verified.config
        timings: dict[str, float] = {}
        unchecked: list[str] = []
        t = time.perf_counter()
        triggers = self._validate_triggers(cfg, unchecked)
        self._validate_windows(cfg, triggers, unchecked)
        upload = self._validate_upload(cfg, unchecked)
        dictionary = self._resolve_dictionary(cfg, model_dir)
        model_path = self._resolve_model(cfg, model_dir)
        timings["validate_s"] = time.perf_counter() - t
        t = time.perf_counter()
        model = self._load_model(cfg, model_path, unchecked) if self._warm else None
        timings["model_warm_s"] = time.perf_counter() - t
        for gap in unchecked:
            log.warning("config v%d: %s", cfg.version, gap)
        return PreparedConfig(cfg, verified.payload_sha256, verified.key_id, model_path, model, triggers,
                              upload, dictionary, tuple(unchecked), timings, raw=verified.raw)

    def _validate_triggers(self, cfg: ServiceConfig, unchecked: list[str]) -> Any:
        try:
            from ..core.triggers import compile_triggers
        except ImportError:
            if cfg.triggers:
                unchecked.append("trigger expressions not compiled: shadowd.core.triggers is not available")
            return None
        try:
            return compile_triggers([dict(t) for t in cfg.triggers])
        except ConfigError as err:
            raise _Refusal("invalid_config", f"triggers: {err}") from err

    def _validate_windows(self, cfg: ServiceConfig, triggers: Any, unchecked: list[str]) -> None:
        if self.platform is None:
            unchecked.append("clip windows not checked against the ring history: no platform given")
            return
        from ..core.clips import validate_windows

        pre_s = max(cfg.windows.pre_s, float(getattr(triggers, "max_pre_s", 0.0) or 0.0))
        post_s = max(cfg.windows.post_s, float(getattr(triggers, "max_post_s", 0.0) or 0.0))
        try:
            validate_windows(pre_s, post_s, self.platform.history_window_s, max_clip_s=cfg.windows.max_clip_s)
        except ConfigError as err:
            raise _Refusal("invalid_config", f"windows: {err}") from err

    def _validate_upload(self, cfg: ServiceConfig, unchecked: list[str]) -> Any:
        if not cfg.upload:
            return None
        try:
            from ..core.upload_policy import UploadConfig
        except ImportError:
            unchecked.append("upload section not validated: shadowd.core.upload_policy is not available")
            return None
        # the section is fleet-wide; this vehicle's identity fills in what it does not say
        section = {"vehicle_id": self.identity.vehicle_id, "platform": self.identity.platform, **cfg.upload}
        try:
            return UploadConfig.from_dict(section)
        except ConfigError as err:
            raise _Refusal("invalid_config", f"upload: {err}") from err

    def _resolve_dictionary(self, cfg: ServiceConfig, model_dir: Path | None) -> bytes | None:
        ref = cfg.compression_dictionary
        if ref is None:
            return None
        if ref.inline_b64 is not None:
            try:
                data = base64.b64decode(ref.inline_b64, validate=True)
            except (binascii.Error, ValueError) as err:
                raise _Refusal("invalid_config", f"compression_dictionary.inline_b64 is not base64: {err}") from err
        else:
            candidates = [d / ref.file_name for d in (model_dir, self.incoming_dir) if d is not None]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                raise _Refusal("invalid_config", f"compression dictionary {ref.file_name!r} was not delivered "
                               f"beside the bundle (looked in {[str(p.parent) for p in candidates]})")
            data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != ref.sha256:
            raise _Refusal("invalid_config", f"compression dictionary sha256 is {actual}, the bundle says "
                           f"{ref.sha256}; deliver the dictionary the bundle was signed for")
        return data

    def _resolve_model(self, cfg: ServiceConfig, model_dir: Path | None) -> Path:
        """Find the model by sha256: the store first, else the delivered file (moved into the store)."""
        want = cfg.model.sha256
        stored = self.models_dir / f"{want}.onnx"
        if stored.is_file():
            actual = sha256_file(stored)
            if actual == want:
                return stored
            log.error("model store file %s is corrupt (sha256 %s); looking for a fresh copy", stored, actual)
        candidates = [d / cfg.model.file_name for d in dict.fromkeys([model_dir, self.incoming_dir]) if d]
        delivered = next((p for p in candidates if p.is_file()), None)
        if delivered is None:
            if stored.is_file():
                raise _Refusal("model_hash_mismatch", f"model store file {stored} does not hash to {want} "
                               "(corrupt on disk) and no fresh copy was delivered; deliver the model again")
            raise _Refusal("model_missing", f"model {cfg.model.file_name} (sha256 {want}) is neither in the "
                           f"model store {self.models_dir} nor beside the bundle; deliver it with the bundle")
        actual = sha256_file(delivered)
        if actual != want:
            raise _Refusal("model_hash_mismatch", f"delivered model {delivered.name} has sha256 {actual}, the "
                           f"bundle says {want}; deliver the model file the bundle was signed for")
        tmp = stored.with_suffix(".onnx.tmp")
        shutil.copyfile(delivered, tmp)
        os.replace(tmp, stored)
        with contextlib.suppress(OSError):
            delivered.unlink()  # consumed: the store keeps it by content from now on
        if sha256_file(stored) != want:  # the copy itself must not be trusted blindly
            raise _Refusal("model_hash_mismatch", f"model copy {stored} does not hash to {want}; disk error?")
        return stored

    def _load_model(self, cfg: ServiceConfig, path: Path, unchecked: list[str]) -> Any:
        """Load ``path`` beside the running model with the platform's providers, warm it, check
        its I/O contract against the platform (PIPELINE's ModelRunner does all three)."""
        from .model_runner import ModelRunner

        if self.platform is None:
            unchecked.append("model input signals not checked against a platform: no platform given")
        try:
            return ModelRunner(path, self.platform, budget_ms=cfg.budgets.inference_ms)
        except ShadowdError as err:
            raise _Refusal("invalid_config", f"model {cfg.model.file_name}: {err}") from err
