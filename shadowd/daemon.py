"""The vehicle service: ``shadowd run`` wires every stage and owns their threads.

Ownership (one thread each, supervised by ``edges.stages.Stage``: a stage that crashes is
restarted, never the whole service):

- ``pipeline``: reads the topic rings (frames from producer processes and from ``can``),
  feeds the shared ``Session`` (the very loop replay runs), advances the pipeline clock to the
  newest frame minus ``lateness_s``, and swaps configs between two frames. It sleeps until the
  vehicle frame that completes the next trigger tick is due, then drains every ring in batches
  (see ``_pipeline_body``), and reopens rings a restarted producer recreated. The model runs on
  the model runner's own worker thread (async executor: never blocks ingest).
- ``can`` (one per ``[[can]]`` source): python-can bus → ``CanIngest`` (cantools) → rings.
- ``spool``: writes sealed clips into the durable spool (fsync off the pipeline thread); a
  clip is held until it is durable: a full disk keeps it in memory (bounded), reports it and
  retries; a crash of the stage loses nothing.
- ``upload``: the uploader loop (gated, budgeted, resumable).
- ``config``: probation ticks, the incoming directory, MQTT bundles, SIGHUP reloads.
- control socket thread (``shadowd status | reload | flush``) and the main thread, which handles
  signals, pings the systemd watchdog only while the pipeline makes progress, and writes
  ``STATUS=`` lines.

Time: the pipeline runs on the frames' monotonic timestamps (CLOCK_MONOTONIC, shared by all
processes on the SoC); wall-clock time is used only for config validity windows and upload
budgets, so a wall-clock jump never disturbs the pipeline.

Status (``status()``, the control socket's ``status``/``metrics``) is built from counters the
stages own; fields are listed in docs/service.md, with the failure behaviour and benchmarks
(``shadowd bench soak``, ``shadowd bench fleet --real-services``).
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import signal
import threading
import time
import tomllib
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .core.settings import ServiceSettings, parse_settings
from .core.signals import RAW_TOPIC, TOPICS, frame_dtype
from .edges.control import ControlServer
from .edges.sdnotify import Notifier
from .edges.stages import Stage
from .errors import BundleError, ConfigError, RingError, ShadowdError, SpoolError

log = logging.getLogger("shadowd.daemon")

_READ_BATCH = 1024
_PENDING_CLIPS_MAX = 256
_WAIT_S = 0.05
"""Longest the pipeline blocks on a ring: bounds how late a swap, flush or drain is served."""
_MAIN_TICK_S = 1.0
"""Period of the main thread's loop (watchdog pings, ingest rates, STATUS=). Idle threads wake
as rarely as their work allows: on a VM each wake-up of a sleeping thread costs ~100 us of CPU."""
_IDLE_WAIT_S = 1.0
"""How long the spool and config stages block waiting for work before they look at their stop
flag (and the config stage ticks probation). A clean shutdown wakes the spool stage at once."""
_TRIM_EVERY_S = 30.0
"""How often freed heap is handed back to the OS (glibc ``malloc_trim``), see ``_malloc_trimmer``."""
_MMAP_THRESHOLD_BYTES = 1 << 20
"""Allocations of at least 1 MiB (clip building) get their own mapping, returned to the OS when
freed; see ``_pin_mmap_threshold``. (128 KiB, glibc's start value, cost ~20 % more service CPU
at 90x playback, where batches of a few 100 kB were mapped and unmapped every round.)"""
_REOPEN_CHECK_S = 1.0
"""How often missing rings are retried and open ones checked for having been recreated."""


def load_settings(path: str | os.PathLike) -> ServiceSettings:
    """Read the service settings TOML (see ``shadowd.core.settings``)."""
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"settings file {path} does not exist; pass --config PATH (see docs/service.md)") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"settings file {path}: {err}; fix the TOML syntax") from None
    except OSError as err:
        raise ConfigError(f"cannot read settings file {path}: {err.strerror}") from err
    return parse_settings(raw, str(path))


@dataclass
class _ActiveConfig:
    """What the pipeline runs now: a PreparedConfig of the ConfigManager, or the factory default."""

    version: int
    model: Any
    triggers: Any
    windows: Any
    upload: dict
    source: str
    prepared: Any = None


class Service:
    """One running shadowd. ``start()`` then ``wait()``; ``stop()`` from any thread."""

    def __init__(self, platform_name: str, settings: ServiceSettings, *, environ: dict[str, str] | None = None):
        from .edges.platforms import load_platform

        self.settings = settings
        self.platform = load_platform(platform_name)
        self.started_mono = time.monotonic()
        self.notifier = Notifier(environ)
        self.state_dir = Path(settings.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._flush = threading.Event()
        self._swap_lock = threading.Lock()
        self._pending_swap: _ActiveConfig | None = None
        self._clips: queue.Queue = queue.Queue(maxsize=_PENDING_CLIPS_MAX)
        self._spool_retry: deque = deque()
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue()  # bundles from MQTT
        self._draining = threading.Event()  # SIGTERM: finish post-windows, then seal
        self._clips_done = threading.Event()  # the pipeline sealed its last clip
        self._drain_deadline = 0.0
        self._ring_drops: dict[str, int] = {}
        self._missing_rings: set[str] = set()
        self._reopened: dict[str, int] = {}  # topic -> times its ring was reopened (recreated)
        self._swapped: queue.Queue[_ActiveConfig] = queue.Queue()  # swapped in, to persist
        self.counters: dict[str, int] = {"clips_lost_queue_full": 0, "spool_errors": 0, "clips_spooled": 0,
                                         "config_swaps": 0, "rollbacks": 0, "frames_late": 0,
                                         "pipeline_wakeups": 0}
        self._frames: dict[str, int] = {}
        self._rates_hz: dict[str, float] = {}
        self._last_error: dict[str, str] = {}

        from .edges.spool import Spool

        self.spool = Spool(self.state_dir / "spool", self.platform.spool_quota_bytes)
        self.config_manager = self._make_config_manager()
        self.active = self._initial_config()
        self.session = None  # built by the pipeline stage (it owns it)
        self.uploader = None
        self._readers: dict[str, Any] = {}
        self._writers: dict[str, Any] = {}
        self._mqtt = None
        self.stages: dict[str, Stage] = {}
        self.control = ControlServer(settings.control_socket, {
            "status": self.status, "reload": self.request_reload, "flush": self.request_flush,
            "metrics": self._metrics_text,
        })

    # ------------------------------------------------------------------ config lifecycle
    def _make_config_manager(self):
        from .core.bundle_state import VehicleIdentity
        from .edges.config_apply import ConfigManager

        identity = VehicleIdentity(vehicle_id=self.settings.vehicle_id, platform=self.platform.name,
                                   fleet=self.settings.fleet)
        return ConfigManager(self.state_dir, Path(self.settings.trust_dir), identity, self.platform)

    def _initial_config(self) -> _ActiveConfig:
        prepared = self.config_manager.startup()
        if prepared is not None:
            self.config_manager.activated(prepared)
            return self._from_prepared(prepared, "bundle")
        if self.config_manager.startup_error:
            log.warning("no fleet config runs: %s; running the factory default", self.config_manager.startup_error)
        return self._factory_default()

    def _factory_default(self) -> _ActiveConfig:
        from .core.config import ClipWindowConfig
        from .core.triggers import builtin_triggers, compile_triggers
        from .edges.model_runner import ModelRunner, default_model_path

        model = ModelRunner(default_model_path(), self.platform)
        return _ActiveConfig(0, model, compile_triggers(builtin_triggers()), ClipWindowConfig(),
                             dict(self.settings.upload), "factory")

    def _from_prepared(self, prepared, source: str) -> _ActiveConfig:
        from .core.triggers import builtin_triggers, compile_triggers

        cfg = prepared.config
        triggers = prepared.triggers if prepared.triggers is not None else compile_triggers(builtin_triggers())
        upload = dict(cfg.upload) if cfg.upload else dict(self.settings.upload)
        return _ActiveConfig(cfg.version, prepared.model, triggers, cfg.windows, upload, source, prepared)

    def _offer_bundle(self, data: bytes, source: str) -> None:
        result = self.config_manager.offer(data, source)
        log.info("config bundle from %s: %s", source, result.as_dict())
        if result.prepared is not None:
            self._queue_swap(self._from_prepared(result.prepared, source))

    def _queue_swap(self, new: _ActiveConfig) -> None:
        with self._swap_lock:
            self._pending_swap = new

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.control.start()
        self._open_rings()
        self.stages["pipeline"] = Stage("pipeline", self._pipeline_body, on_crash=self._stage_crashed)
        self.stages["spool"] = Stage("spool", self._spool_body, on_crash=self._stage_crashed)
        self.stages["config"] = Stage("config", self._config_body, on_crash=self._stage_crashed)
        for src in self.settings.can:
            self.stages[f"can-{src.channel}"] = Stage(f"can-{src.channel}", self._can_body(src),
                                                      on_crash=self._stage_crashed)
        self._start_uploader(self.active.upload)
        for st in self.stages.values():
            st.start()
        self._start_mqtt()
        self.notifier.ready(f"running config v{self.active.version} ({self.active.source}) on {self.platform.name}")
        log.info("shadowd %s running: platform %s, vehicle %s, config v%d (%s), model %s, EP %s",
                 __version__, self.platform.name, self.settings.vehicle_id, self.active.version,
                 self.active.source, Path(self.active.model.path).name, self.active.model.providers[0])

    def _open_rings(self) -> None:
        """Rings written in-process (CAN ingest) are created here; producer rings are opened
        by the pipeline stage (and re-tried while their producer has not started yet)."""
        from .ring import RingWriter, capacity_for

        if not self.settings.can:
            return
        for topic in ("vehicle", "perception", RAW_TOPIC):
            name = self._ring_name(topic)
            rate = self.platform.topic_rates_hz.get(topic, 2000.0 if topic == RAW_TOPIC else 100.0)
            cap = self.settings.ring_capacity.get(topic) or capacity_for(self.platform.history_window_s, rate)
            self._writers[topic] = RingWriter.create(name, frame_dtype(topic), cap)

    def _ring_name(self, topic: str) -> str:
        return self.settings.rings.get(topic, f"shadowd.{topic}")

    def _start_uploader(self, upload: dict) -> None:
        old = self.stages.pop("upload", None)
        if old is not None:
            old.stop()
        if self.uploader is not None:
            self.uploader.close()
            self.uploader = None
        if not upload or not upload.get("endpoint_url_template"):
            log.info("upload disabled: no [upload] endpoint in the settings or the active config")
            return
        from .core.upload_policy import UploadConfig
        from .edges.uploader import Uploader

        section = {"vehicle_id": self.settings.vehicle_id, "platform": self.platform.name,
                   "network_policy": self.platform.network_policy, **upload}
        self.uploader = Uploader(self.spool, UploadConfig.from_dict(section), network_state=self._network_state)
        uploader = self.uploader
        stage = Stage("upload", lambda st: uploader.run_forever(st._stop), on_crash=self._stage_crashed)
        self.stages["upload"] = stage
        if self.control is not None and self.stages.get("pipeline") and self.stages["pipeline"].alive:
            stage.start()

    def _network_state(self):
        """The link as the vehicle's connectivity manager reports it (see settings)."""
        import json

        from .core.upload_policy import NetworkState

        path = self.settings.network_state_file
        if path is None:
            return NetworkState()
        try:
            with open(path, "rb") as f:
                raw = json.load(f)
            return NetworkState(link=str(raw.get("link", "none")), metered=bool(raw.get("metered", True)),
                                parked=bool(raw.get("parked", False)))
        except (OSError, ValueError, AttributeError, ShadowdError):
            return NetworkState(link="none", metered=True, parked=False)  # unknown: do not upload

    def _start_mqtt(self) -> None:
        m = self.settings.mqtt
        if m is None:
            return
        from .edges.mqtt import MqttConfigSubscriber, MqttEndpoint

        endpoint = MqttEndpoint.parse(m.url, cafile=m.cafile, certfile=m.certfile, keyfile=m.keyfile)
        self._mqtt = MqttConfigSubscriber(endpoint, self.settings.vehicle_id, self.settings.fleet,
                                          on_bundle=lambda data: self._inbox.put(("mqtt", data)))
        self._mqtt.start()

    def stop(self) -> None:
        self._stop.set()

    def wait(self) -> int:
        """Run the main loop (signals, watchdog, STATUS=) until stopped; then shut down."""
        last_progress = -1
        next_ping = 0.0
        next_status = 0.0
        last_rate_t = time.monotonic()
        last_frames: dict[str, int] = {}
        trim = _malloc_trimmer()
        next_trim = time.monotonic() + _TRIM_EVERY_S
        while not self._stop.wait(_MAIN_TICK_S):
            now = time.monotonic()
            pipeline = self.stages["pipeline"]
            progress = pipeline.progress_count
            if self.notifier.watchdog_interval_s is not None and now >= next_ping and progress != last_progress and pipeline.alive:
                self.notifier.watchdog()
                last_progress = progress
                next_ping = now + self.notifier.watchdog_interval_s
            if now - last_rate_t >= 1.0:
                dt = now - last_rate_t
                for topic, n in list(self._frames.items()):
                    self._rates_hz[topic] = round((n - last_frames.get(topic, 0)) / dt, 1)
                last_frames = dict(self._frames)
                last_rate_t = now
            if now >= next_status:
                self.notifier.status(self._status_line())
                next_status = now + 5.0
            if trim is not None and now >= next_trim:
                trim(0)
                next_trim = now + _TRIM_EVERY_S
        return self.shutdown()

    def shutdown(self) -> int:
        """SIGTERM path: finish pending post-windows (bounded), flush clips, stop stages."""
        self.notifier.stopping()
        log.info("stopping: finishing post-windows (up to %.1f s) and flushing clips", self.settings.shutdown_grace_s)
        for name, st in self.stages.items():
            if name.startswith("can-"):
                st.stop()
        self._drain_deadline = time.monotonic() + self.settings.shutdown_grace_s
        self._draining.set()
        pipeline = self.stages["pipeline"]
        pipeline._thread and pipeline._thread.join(self.settings.shutdown_grace_s + 5)
        pipeline.stop()
        spool_stage = self.stages["spool"]
        self._clips_done.set()
        try:
            self._clips.put_nowait(None)  # wakes the spool stage once it took every clip before it
        except queue.Full:
            pass  # it is busy with those clips and sees _clips_done within _IDLE_WAIT_S after
        spool_stage._thread and spool_stage._thread.join(30)
        spool_stage.stop()
        for name, st in self.stages.items():
            if name not in ("pipeline", "spool"):
                st.stop()
        while not self._swapped.empty():  # swapped in just before the stop: still record it
            self._after_swap(self._swapped.get(), restart_uploader=False)
        if self._mqtt is not None:
            self._mqtt.stop()
        if self.uploader is not None:
            self.uploader.close()
        try:
            self.active.model.close()
        except Exception:  # noqa: BLE001
            pass
        for w in self._writers.values():
            w.close()
        self.control.stop()
        self.config_manager.close()
        self.spool.close()
        log.info("stopped: %d clips spooled, %d pending in spool", self.counters["clips_spooled"],
                 len(self.spool.pending()))
        return 0

    # ------------------------------------------------------------------ control
    def request_reload(self) -> str:
        self._reload.set()
        return "reload requested"

    def request_flush(self) -> str:
        self._flush.set()
        return "flush requested"

    def _stage_crashed(self, name: str, err: BaseException) -> None:
        self._last_error[name] = f"{type(err).__name__}: {err}"
        self._health("stage_crash", f"{name}: {err}")

    def _health(self, kind: str, detail: str) -> None:
        rolled = self.config_manager.report_health(kind, detail)
        if rolled is not None:
            self._rolled_back(rolled)

    def _rolled_back(self, rolled) -> None:
        self.counters["rollbacks"] += 1
        log.warning("config v%d rolled back to v%s: %s", rolled.from_version, rolled.to_version, rolled.detail)
        self._queue_swap(self._from_prepared(rolled.prepared, "rollback") if rolled.prepared is not None
                         else self._factory_default())

    # ------------------------------------------------------------------ stages
    def _new_session(self, active: _ActiveConfig, history):
        from .session import Session

        return Session(self.platform, active.model, active.triggers, sink=self._sink,
                       provenance=self._provenance(active), history=history, executor=active.model,
                       windows=active.windows)

    def _provenance(self, active: _ActiveConfig):
        from .session import make_provenance

        return make_provenance(self.settings.vehicle_id, self.platform.name, active.model, active.version,
                               active.triggers, {"producer": "service", "config_source": active.source})

    def _sink(self, spec, data: bytes) -> None:
        try:
            self._clips.put_nowait((spec, data))
        except queue.Full:
            self.counters["clips_lost_queue_full"] += 1
            log.error("clip [%d, %d] dropped: %d clips wait for the spool already", spec.t0_ns, spec.t1_ns,
                      _PENDING_CLIPS_MAX)

    def _open_readers(self) -> dict[str, Any]:
        from .ring import RingReader

        topics = [t for t in (*TOPICS, RAW_TOPIC) if t in self.settings.rings or t in self._writers]
        if not topics:
            topics = list(TOPICS)
        readers = {}
        for topic in topics:
            if topic in self._readers:
                readers[topic] = self._readers[topic]
                continue
            try:
                # "oldest": whatever the producer wrote before we came is history we still want
                readers[topic] = RingReader.open(self._ring_name(topic), frame_dtype(topic), start="oldest")
                log.info("reading topic %s from ring %s", topic, self._ring_name(topic))
                self._missing_rings.discard(topic)
            except RingError as err:
                if topic not in self._missing_rings:
                    log.info("ring for %s not available yet (%s); waiting for its producer", topic, err)
                    self._missing_rings.add(topic)
                self._last_error["rings"] = f"{topic}: {err}"
        self._readers = readers
        return readers

    def _pipeline_body(self, stage: Stage) -> None:
        """Drain the rings into the session; wake only when a trigger tick can be evaluated.

        Wake strategy (the service's CPU floor): nothing can be evaluated before a vehicle
        frame stamped at or after ``core.next_due_ns() + lateness`` exists, and vehicle frames
        come every ``period`` after the last one. So the loop blocks on the vehicle ring until
        the k-th frame after the last one read is published (``RingReader.wait_for``: woken by
        the producer's publishes inside one C call, not by a timer, which on a VM can fire
        milliseconds late), then drains every ring. No wait is longer than ``_WAIT_S``, so
        swaps, flushes and the drain are served within that bound (and playback far faster
        than real time is drained in bigger batches).
        """
        from .ring import RingHistory

        buffers = {t: np.empty(_READ_BATCH, frame_dtype(t)) for t in (*TOPICS, RAW_TOPIC)}
        times = {t: b["t_ns"] for t, b in buffers.items()}  # each buffer's time column (a view)
        readers = self._open_readers()
        history = RingHistory(readers)
        drain, drain_topics = self._make_drain(readers)
        drain_core, drain_generation = None, 0  # whose buffers the drain writes into, as of when
        session = self.session = self._new_session(self.active, history)
        gc.collect()
        gc.freeze()  # setup objects (models, DBCs, numpy) never need scanning again
        lateness_ns = int(self.settings.lateness_s * 1e9)
        now_ns = 0
        newest_ns = 0
        last_vehicle_ns: int | None = None
        vehicle_period_ns = int(1e9 / max(1.0, self.platform.topic_rates_hz.get("vehicle", 100.0)))
        next_reopen = 0.0
        dropped_seen: dict[str, int] = dict(self._ring_drops)
        errors_seen = self.active.model.counters.get("errors", 0)
        overruns_seen = self.active.model.counters.get("overruns", 0)
        while True:
            mono = time.monotonic()
            if self._draining.is_set() and (mono >= self._drain_deadline or not session.windows_pending()):
                session.close(max(now_ns, newest_ns))
                return
            if stage.stopping:
                return
            if mono >= next_reopen:  # once a second: what need not be checked each wake-up
                readers = self._refresh_readers(readers)
                history._rings = dict(readers)  # the same History, the current rings
                if drain is not None and drain.readers != list(readers.values()):
                    drain, drain_topics = self._make_drain(readers)
                    drain_core = None
                next_reopen = mono + _REOPEN_CHECK_S
                model = self.active.model
                errors = model.counters.get("errors", 0)
                if errors > errors_seen:
                    self._health("model_error", f"{errors - errors_seen} inference errors")
                    errors_seen = errors
                overruns = model.counters.get("overruns", 0)
                if overruns > overruns_seen:
                    self._health("budget_overrun", f"{overruns - overruns_seen} budget overruns")
                    overruns_seen = overruns
            swap = self._take_swap() if self._pending_swap is not None else None  # a read, then the lock
            if swap is not None:
                session.swap(swap.model, swap.triggers, windows=swap.windows,
                             provenance=self._provenance(swap), executor=swap.model)
                old, self.active = self.active, swap
                self.counters["config_swaps"] += 1
                errors_seen = swap.model.counters.get("errors", 0)
                overruns_seen = swap.model.counters.get("overruns", 0)
                if old.model is not swap.model:
                    old.model.close()  # its async worker; the manager may keep it for rollback
                self._swapped.put(swap)  # persisting the activation (fsync) is the config stage's job
                log.info("config v%d (%s) swapped in between two frames", swap.version, swap.source)
            primary = readers.get("vehicle") or next(iter(readers.values()), None)
            if primary is None:
                stage.progress()
                stage.sleep(0.1)
                continue
            due = session.core.next_due_ns()
            if (due is not None and last_vehicle_ns is not None and "vehicle" in readers
                    and not self._draining.is_set() and not self._flush.is_set()):
                wanted = due + lateness_ns
                # the awaited frame is the k-th after the last one read
                k = max(0, -(-(wanted - last_vehicle_ns) // vehicle_period_ns))
                if k > 1 and primary is readers["vehicle"]:
                    # woken by the producer's publishes, not by a timer (on a VM a timer
                    # wake-up can come milliseconds late): back at once if it is early
                    primary.wait_for(k, _WAIT_S)
            if not primary.poll():
                primary.wait(_WAIT_S)
            self.counters["pipeline_wakeups"] += 1
            got = 0
            watermark_ns = None  # the least newest frame of the rings that had frames this round
            if drain is not None and session.takes_frames_in_place:
                # one C call reads every ring straight into the core's buffers, appending
                # where the last one stopped until the core's memory moved or filled up
                topic_last: dict[str, int] = {}
                full = False
                while True:
                    core = session.core
                    if full or core is not drain_core or core.intake_generation != drain_generation:
                        drain.aim(lambda i: session.intake(drain_topics[i], _READ_BATCH))
                        drain_core, drain_generation = core, core.intake_generation
                    results = drain.run(now_ns)
                    full = failed = False
                    at = 0
                    for topic in drain_topics:
                        read, n, late, out_of_order, filled, dropped, last_ns, error = results[at:at + 8]
                        at += 8
                        if dropped:
                            dropped_seen[topic] = dropped_seen.get(topic, 0) + dropped
                        full = full or filled != 0
                        if not read:
                            failed = failed or error != 0
                            continue
                        if late:
                            self.counters["frames_late"] += late
                        if n or out_of_order:
                            session.commit(topic, n, out_of_order, last_ns)
                            topic_last[topic] = last_ns
                            if last_ns > newest_ns:
                                newest_ns = last_ns
                            if topic == "vehicle":
                                last_vehicle_ns = last_ns
                        self._frames[topic] = self._frames.get(topic, 0) + read
                        got += read
                    if failed:  # a ring whose read failed, raised once the others' frames are in
                        drain.raise_errors()
                    if not full:
                        break
                if topic_last:
                    watermark_ns = min(topic_last.values())
            else:
                for topic, reader in readers.items():
                    buf, ts = buffers[topic], times[topic]
                    topic_last_ns = None
                    while True:
                        n, dropped = reader.read_into(buf)
                        if dropped:
                            dropped_seen[topic] = dropped_seen.get(topic, 0) + dropped
                        if not n:
                            break
                        frames = buf[:n]
                        last_ns = int(ts[n - 1])
                        if int(ts[0]) <= now_ns:
                            t = ts[:n]
                            late = int(np.count_nonzero(t <= now_ns))
                            if late:
                                self.counters["frames_late"] += late
                                frames = frames[t > now_ns]
                                last_ns = int(frames["t_ns"][-1]) if len(frames) else None
                        if len(frames):
                            # the buffer is read into again: the session copies what it keeps
                            # (the core's buffers); a history that keeps fed frames gets a copy
                            session.feed(topic, frames.copy() if session.keeps_fed_frames else frames, last_ns)
                            topic_last_ns = last_ns
                            newest_ns = max(newest_ns, topic_last_ns)
                            if topic == "vehicle":
                                last_vehicle_ns = topic_last_ns
                        self._frames[topic] = self._frames.get(topic, 0) + n
                        got += n
                        if n < len(buf):
                            break
                    if topic_last_ns is not None and (watermark_ns is None or topic_last_ns < watermark_ns):
                        watermark_ns = topic_last_ns
            self._ring_drops = dropped_seen
            # The clock runs `lateness` behind the newest frame, and never past a ring read
            # earlier in this round: frames its producer wrote while later rings were drained
            # are not late (matters when playback runs far faster than real time).
            target = newest_ns - lateness_ns
            if watermark_ns is not None:
                target = min(target, watermark_ns)
            if self._flush.is_set():
                self._flush.clear()
                session.flush(max(now_ns, newest_ns))
            if target > now_ns:
                now_ns = target
                session.advance(now_ns)
            stage.progress(1 + got)

    @staticmethod
    def _make_drain(readers: dict[str, Any]) -> tuple[Any, list[str]]:
        """The one-call reader of ``readers`` (``shadowd.ring.RingDrain``) and its topics in
        order, or (None, []) when the native build has none."""
        from .ring import RingDrain, drain_available

        if not drain_available():
            return None, []
        return RingDrain(list(readers.values()), _READ_BATCH), list(readers)

    def _refresh_readers(self, readers: dict[str, Any]) -> dict[str, Any]:
        """Open rings whose producer has come up; reopen rings that were recreated.

        A producer restarted with the same ring parameters re-attaches to its segment and the
        reader keeps reading. One restarted with other parameters recreates the segment: the
        name then points at a new file (``reader.replaced``) and this reader would see nothing
        more, so it is closed and the new segment opened from its oldest frame. A writer that
        stays dead on the same segment is reported (``writer_alive`` in status), not reopened.
        """
        readers = dict(readers)
        for topic, reader in list(readers.items()):
            if topic in self._writers:
                continue  # written in-process (CAN ingest): never replaced under us
            try:
                replaced = reader.replaced and not reader.writer_alive
            except RingError:
                replaced = True
            if not replaced:
                continue
            log.warning("ring %s of topic %s was recreated by its producer; reopening it", reader.path, topic)
            self._reopened[topic] = self._reopened.get(topic, 0) + 1
            self._readers.pop(topic, None)
            readers.pop(topic, None)
            reader.close()
        expected = set(self.settings.rings) | set(self._writers)
        if len(readers) < max(1, len(expected)):
            readers = self._open_readers()
        return readers

    def _take_swap(self) -> _ActiveConfig | None:
        with self._swap_lock:
            swap, self._pending_swap = self._pending_swap, None
        return swap

    def _spool_body(self, stage: Stage) -> None:
        """Move sealed clips into the spool in order. A clip stays in ``_spool_retry`` until it
        is durable: a full disk keeps it (retried every second) and a crash of this stage
        loses nothing (the restarted stage takes it up again)."""
        while True:
            if not self._spool_retry:
                try:
                    item = self._clips.get(timeout=_IDLE_WAIT_S)
                except queue.Empty:
                    item = None
                if item is None:  # nothing yet, or shutdown's wake-up after the last clip
                    if stage.stopping or self._clips_done.is_set():
                        return
                    continue
                self._spool_retry.append(item)
            spec, data = self._spool_retry[0]
            if self._put(spec, data):
                self._spool_retry.popleft()
                stage.progress()
                continue
            if self._clips_done.is_set() or stage.sleep(1.0):  # shutting down: no more retries
                log.error("stopping with %d clips not spooled (spool errors: %s)", len(self._spool_retry) + self._clips.qsize(),
                          self._last_error.get("spool", "?"))
                return

    def _put(self, spec, data: bytes) -> bool:
        try:
            self.spool.put(data, priority=int(spec.priority), t_ns=int(spec.t0_ns),
                           meta={"causes": [c.trigger for c in spec.causes], "truncated": bool(spec.truncated)})
        except SpoolError as err:
            self.counters["spool_errors"] += 1
            self._last_error["spool"] = str(err)
            log.error("clip not spooled yet (kept in memory, retrying): %s", err)
            return False
        self.counters["clips_spooled"] += 1
        return True

    def _config_body(self, stage: Stage) -> None:
        next_incoming = 0.0
        while not stage.stopping:
            rolled = self.config_manager.tick()
            if rolled is not None:
                self._rolled_back(rolled)
            now = time.monotonic()
            if self._reload.is_set() or now >= next_incoming:
                if self._reload.is_set():
                    self.notifier.reloading(time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
                for result in self.config_manager.apply_incoming():
                    log.info("incoming bundle: %s", result.as_dict())
                    if result.prepared is not None:
                        self._queue_swap(self._from_prepared(result.prepared, "incoming"))
                if self._reload.is_set():
                    self._reload.clear()
                    self.notifier.notify("READY=1", f"STATUS={self._status_line()}")
                next_incoming = now + 2.0
            while not self._swapped.empty():
                self._after_swap(self._swapped.get())
            try:
                source, data = self._inbox.get(timeout=_IDLE_WAIT_S)
            except queue.Empty:
                pass
            else:
                self._offer_bundle(data, source)
            stage.progress()

    def _after_swap(self, swap: _ActiveConfig, *, restart_uploader: bool = True) -> None:
        """Record a swapped-in config as active (fsync: off the pipeline thread), then run the
        uploader with its upload section."""
        if swap.prepared is not None:
            try:
                self.config_manager.activated(swap.prepared)
            except BundleError as err:
                # a newer version overtook this candidate while it was prepared; it swaps in next
                log.warning("config v%d not recorded as active: %s", swap.version, err)
        if restart_uploader:
            self._start_uploader(swap.upload)

    def _can_body(self, src):
        def body(stage: Stage) -> None:
            import can

            from .edges.can_ingest import CanIngest

            ingest = CanIngest(self.platform)
            bus = can.Bus(interface=src.interface, channel=src.channel, receive_own_messages=False)
            try:
                while not stage.stopping:
                    msg = bus.recv(timeout=0.1)
                    if msg is None:
                        continue
                    batch = [msg]
                    while len(batch) < 256:
                        more = bus.recv(timeout=0)
                        if more is None:
                            break
                        batch.append(more)
                    offset_s = time.time() - time.monotonic()  # kernel stamps are wall clock
                    for m in batch:
                        m.timestamp = m.timestamp - offset_s
                        m.channel = src.channel
                    for topic, frames in ingest.feed_many(batch).items():
                        writer = self._writers.get(topic)
                        if writer is not None and len(frames):
                            writer.write(frames)
                    stage.progress(len(batch))
            finally:
                bus.shutdown()

        return body

    # ------------------------------------------------------------------ status
    def status(self) -> dict:
        model = self.active.model
        stats = model.stats() if hasattr(model, "stats") else {}
        session = self.session
        readers = dict(self._readers)
        return {
            "service": {"version": __version__, "platform": self.platform.name,
                        "vehicle_id": self.settings.vehicle_id,
                        "uptime_s": round(time.monotonic() - self.started_mono, 1),
                        "draining": self._draining.is_set()},
            "config": self._config_status(),
            "ingest": {
                "rate_hz": {"__label__": "topic", **self._rates_hz},
                "frames": {"__label__": "topic", **self._frames},
                "dropped": {"__label__": "topic", **self._ring_drops},
                "writer_alive": {"__label__": "topic", **{t: _safe(lambda r=r: r.writer_alive) for t, r in readers.items()}},
                "reopened": {"__label__": "topic", **self._reopened},
                "frames_late": self.counters["frames_late"],
            },
            "model": {"path": str(model.path), "sha256": model.sha256,
                      "execution_provider": model.providers[0] if model.providers else "",
                      "latency_ms": _quantiles(_safe(model.latency_percentiles)),
                      **{k: v for k, v in stats.items()
                         if isinstance(v, (int, float)) and k not in _LATENCY_KEYS}},
            "pipeline": {"wakeups": self.counters["pipeline_wakeups"],
                         **(_jsonable(session.stats()) if session is not None else {})},
            "spool": _jsonable(_safe(self.spool.stats)),
            "upload": _jsonable(_safe(self.uploader.metrics)) if self.uploader is not None else {"enabled": False},
            "mqtt": self._mqtt_status(),
            "clips": {**{k: v for k, v in self.counters.items() if k not in ("pipeline_wakeups", "frames_late")},
                      "held_for_spool": len(self._spool_retry), "queued_for_spool": self._clips.qsize()},
            "stages": {name: st.status() for name, st in self.stages.items()},
            "cpu_s": _safe(_thread_cpu_s),
        }

    def _mqtt_status(self) -> dict:
        sub = self._mqtt
        if sub is None:
            return {"enabled": False}
        return {"enabled": True, "connected": sub.connected.is_set(), "subscribed": sub.subscribed.is_set(),
                "connects": sub.connects, "messages": sub.messages, "dropped": sub.dropped}

    def _config_status(self) -> dict:
        """What runs (``active_version``, ``source``: factory / incoming / mqtt / rollback /
        bundle) over the manager's persisted view (``stored_active_version``, refusals, ...)."""
        manager = _safe(self.config_manager.status)
        if "active_version" in manager:
            manager["stored_active_version"] = manager.pop("active_version")
        return {**manager, "active_version": self.active.version, "source": self.active.source}

    def _metrics_text(self) -> str:
        from .core.metrics import to_prometheus

        return to_prometheus(self.status())

    def _status_line(self) -> str:
        rates = ", ".join(f"{t} {r:.0f} Hz" for t, r in sorted(self._rates_hz.items()))
        return (f"config v{self.active.version}; {rates or 'no frames yet'}; "
                f"{self.counters['clips_spooled']} clips spooled")


_LATENCY_KEYS = {"p50_ms": "0.5", "p90_ms": "0.9", "p99_ms": "0.99"}


def _quantiles(pcts: dict) -> dict:
    """Model latency percentiles as one Prometheus-style quantile map; None before the first inference."""
    out: dict = {"__label__": "quantile"}
    for key, q in _LATENCY_KEYS.items():
        v = pcts.get(key)
        out[q] = round(v, 3) if isinstance(v, float) and v == v else None
    return out


def _malloc_trimmer():
    """glibc's ``malloc_trim`` or None (another libc). The pipeline and model threads allocate
    in their own malloc arenas; without a periodic trim, freed fragments stay resident and read
    as slow RSS growth over hours (measured by ``shadowd bench soak``). Big transient buffers
    are kept out of the heap by ``_pin_mmap_threshold``."""
    import ctypes

    return _glibc_function("malloc_trim", [ctypes.c_size_t])


def _glibc_function(name: str, argtypes: list):
    """The C library's function ``name`` (returning int) through ctypes, or None on a libc
    without it: the one place the service reaches into the allocator."""
    import ctypes
    import ctypes.util

    try:
        fn = getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
    fn.argtypes = argtypes
    fn.restype = ctypes.c_int
    return fn


def _pin_mmap_threshold(environ=os.environ) -> bool:
    """Pin glibc's mmap threshold at ``_MMAP_THRESHOLD_BYTES`` (``mallopt(M_MMAP_THRESHOLD)``,
    which also turns off glibc's dynamic threshold). True if set; False on another libc or when
    the operator set one (``MALLOC_MMAP_THRESHOLD_``, ``GLIBC_TUNABLES=glibc.malloc.mmap_threshold``).

    glibc raises the threshold to the size of each mmapped block freed, up to 32 MB. Building a
    clip frees buffers of several MB, so after the first clip such buffers come from the heap
    instead, fragment it and keep ~20-25 MB of freed heap resident that ``malloc_trim`` can
    return only when the top of the heap happens to be free: RSS then saws by 10-20 MB and
    sits ~25 MB higher (``shadowd bench soak``, 8 h at 90x: ~157 MB saw +-10 MB before, a flat
    ~134 MB after).
    """
    if "MALLOC_MMAP_THRESHOLD_" in environ or "glibc.malloc.mmap_threshold" in environ.get("GLIBC_TUNABLES", ""):
        return False
    import ctypes

    mallopt = _glibc_function("mallopt", [ctypes.c_int, ctypes.c_int])
    m_mmap_threshold = -3  # <malloc.h>
    return mallopt is not None and mallopt(m_mmap_threshold, _MMAP_THRESHOLD_BYTES) == 1


def _thread_cpu_s() -> dict:
    """CPU seconds per Python thread name (threads of one name summed) and for the process,
    from /proc/self/task/<tid>/stat (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict = {"__label__": "thread"}
    for th in threading.enumerate():
        tid = th.native_id
        if tid is None:
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the thread ended meanwhile
        out[th.name] = round(out.get(th.name, 0.0) + (int(fields[11]) + int(fields[12])) / tick, 2)
    t = os.times()
    out["process"] = round(t.user + t.system, 2)
    return out


def _safe(fn):
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - status must answer even when a part is broken
        return {"error": f"{type(err).__name__}: {err}"}


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    return obj


def run_service(platform_name: str, settings_path: str) -> int:
    """``shadowd run``: start, handle SIGTERM/SIGINT (stop) and SIGHUP (reload), run until stopped."""
    settings = load_settings(settings_path)
    _pin_mmap_threshold()  # before the service allocates: models, rings, clip buffers
    service = Service(platform_name, settings)
    signal.signal(signal.SIGTERM, lambda *_: service.stop())
    signal.signal(signal.SIGINT, lambda *_: service.stop())
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    service.start()
    return service.wait()
