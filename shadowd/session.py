"""The edge-level driver that replay and the daemon share: frames in, clips out.

A Session owns one run of the shadow pipeline: the pure ``ShadowCore`` (alignment, model
requests, divergence, triggers), a model executor, the clip windows, a bounded history of
topic frames plus the predictions and divergence trace, clip building and encoding, and a clip
sink. Replay feeds it recorded frames on a simulated clock and runs inference inline in
batches; the daemon feeds it from the rings, passes a ring-backed history and an asynchronous
executor, and sinks clips into the spool. There is no second implementation of this loop.

Rules:
- Time only arrives as arguments (``now_ns``); the session reads no clock and starts no thread.
- A failed inference or clip build is counted and logged, never raised: the session keeps
  running what still can run (the core sees a missing prediction, the clip is skipped).
- Everything a clip needs to say where it came from is in ``Provenance`` (the clip format's
  own type, ``shadowd.clip.Provenance``).
- Clip content is deterministic: predictions and divergences go into clips without their
  wall-clock latency, so replaying the same inputs gives byte-identical clips.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections import Counter, deque
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from . import __version__
from .clip import Provenance, TriggerDef, build_clip, encode_clip
from .core.signals import RAW_TOPIC, TOPICS
from .core.types import ClipSpec, DivergenceBatch, History, PredictionBatch, TriggerFired
from .errors import ShadowdError

__all__ = ["BoundedHistory", "ClipSink", "Executor", "InlineExecutor", "Provenance", "Session", "make_provenance"]

log = logging.getLogger(__name__)

ClipSink = Callable[[ClipSpec, bytes], None]
"""Receives each sealed clip and its encoded bytes: replay writes a file, the daemon spools it."""


def make_provenance(vehicle_id: str, platform: str, model: Any, config_version: int | str, triggers: Any,
                    extra: dict[str, str] | None = None) -> Provenance:
    """The Provenance of clips made with ``model`` and ``triggers`` (a compiled TriggerSet or
    definition dicts). A non-integer config version (``"builtin"``) is written as 0 and kept
    in ``extra["config_version"]``."""
    defs = getattr(triggers, "definitions", triggers) or ()
    tdefs = []
    for d in defs:
        d = d.to_dict() if hasattr(d, "to_dict") else dict(d)
        params = {k: float(v) for k, v in sorted(d.items())
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        tdefs.append(TriggerDef(name=str(d.get("name", "")), expr=str(d.get("expr", "")), params=params))
    extra = dict(extra or {})
    if not isinstance(config_version, int):
        extra["config_version"] = str(config_version)
    return Provenance(
        vehicle_id=vehicle_id,
        platform=platform,
        model_sha256=str(getattr(model, "sha256", "") or ""),
        config_version=config_version if isinstance(config_version, int) else 0,
        software_version=__version__,
        triggers=tuple(tdefs),
        extra=extra,
    )


class Executor(Protocol):
    """Runs inference requests. ``run`` takes the new requests and returns the (request,
    predictions or None) pairs finished so far: all of them at once for the inline executor,
    whatever has completed for an asynchronous one."""

    def run(self, requests: list[Any]) -> list[tuple[Any, PredictionBatch | None]]: ...


class InlineExecutor:
    """Runs each request synchronously, one ``model.infer`` call for all its ticks (replay)."""

    def __init__(self, model: Any):
        self._model = model

    def run(self, requests: list[Any]) -> list[tuple[Any, PredictionBatch | None]]:
        out = []
        for r in requests:
            try:
                out.append((r, self._model.infer(r)))
            except ShadowdError as err:
                log.warning("inference of %d ticks failed: %s", len(r.t_ns), err)
                out.append((r, None))
        return out


class BoundedHistory:
    """In-memory History keeping the last ``retention_s`` of each topic (the default one).

    Chunks are kept as fed (no copy) and dropped whole once entirely older than the window.
    """

    def __init__(self, retention_s: float):
        self._retention_ns = int(retention_s * 1e9)
        self._chunks: dict[str, deque[np.ndarray]] = {}

    def retain(self, retention_s: float) -> None:
        """Keep at least ``retention_s`` from now on (never shrinks: a pending clip may need it)."""
        self._retention_ns = max(self._retention_ns, int(retention_s * 1e9))

    def append(self, topic: str, frames: np.ndarray) -> None:
        if len(frames):
            self._chunks.setdefault(topic, deque()).append(frames)

    def trim(self, now_ns: int) -> None:
        horizon = now_ns - self._retention_ns
        for dq in self._chunks.values():
            while len(dq) > 1 and int(dq[0]["t_ns"][-1]) < horizon:
                dq.popleft()

    def topics(self) -> list[str]:
        return sorted(self._chunks)

    def frames_by_topic(self) -> dict[str, list[np.ndarray]]:
        """The chunks held per topic (for status and tests); do not modify them."""
        return {k: list(v) for k, v in self._chunks.items()}

    def frames(self, topic: str, t0_ns: int, t1_ns: int) -> np.ndarray:
        if topic not in self._chunks:
            raise KeyError(topic)
        parts = []
        for c in self._chunks[topic]:
            t = c["t_ns"]
            if int(t[-1]) < t0_ns or int(t[0]) > t1_ns:
                continue
            parts.append(c[np.searchsorted(t, t0_ns, "left"): np.searchsorted(t, t1_ns, "right")])
        if not parts:
            return self._chunks[topic][0][:0]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


class _BatchTrace:
    """Time-ordered batches of predictions or divergences (``PredictionBatch`` /
    ``DivergenceBatch``), kept ``retention_ns``: a clip window's rows are sliced out of them,
    with no object per row. Batches arrive ascending (an out-of-order one is inserted by its
    first row); each batch's rows are ascending."""

    def __init__(self, retention_ns: int, concat: Callable[[list[Any]], Any]):
        self._retention_ns = retention_ns
        self._concat = concat
        self._first: list[int] = []  # first row's t_ns of each batch, ascending
        self._last: list[int] = []  # last row's t_ns of each batch
        self._batches: list[Any] = []

    def add(self, batch: Any) -> None:
        first, last = int(batch.t_ns[0]), int(batch.t_ns[-1])
        i = len(self._first)
        if i and first < self._first[-1]:
            i = bisect_right(self._first, first)
        self._first.insert(i, first)
        self._last.insert(i, last)
        self._batches.insert(i, batch)

    def trim(self, now_ns: int) -> None:
        horizon = now_ns - self._retention_ns
        if bisect_left(self._first, horizon) > 64:  # amortise: drop in blocks, not per batch
            k = 0
            while k < len(self._last) and self._last[k] < horizon:
                k += 1
            del self._first[:k], self._last[:k], self._batches[:k]

    def between(self, t0_ns: int, t1_ns: int) -> Any:
        """The rows with t0_ns <= t_ns <= t1_ns as one batch, in time order; None if none."""
        parts = []
        for i in range(bisect_right(self._first, t1_ns)):
            if self._last[i] < t0_ns:
                continue
            b = self._batches[i]
            lo = int(np.searchsorted(b.t_ns, t0_ns, "left"))
            hi = int(np.searchsorted(b.t_ns, t1_ns, "right"))
            if hi > lo:
                parts.append(b if hi - lo == len(b) else b.take(slice(lo, hi)))
        if not parts:
            return None
        out = self._concat(parts)
        if len(parts) > 1 and (out.t_ns[1:] < out.t_ns[:-1]).any():  # batches that overlap in time
            out = out.take(np.argsort(out.t_ns, kind="stable"))
        return out


def predictions_array(preds: PredictionBatch | None) -> np.ndarray:
    """Predictions as a clip stream: ``t_ns`` then ``<control>_h<k>`` per horizon step and
    ``traj_x_m_h<k>`` / ``traj_y_m_h<k>`` (latency is left out: it is not deterministic)."""
    if preds is None or not len(preds):
        return _columns_to_records({"t_ns": np.empty(0, np.int64)})
    cols: dict[str, np.ndarray] = {"t_ns": preds.t_ns}
    for name in sorted(preds.controls):
        m = preds.controls[name]
        for k in range(m.shape[1]):
            cols[f"{name}_h{k}"] = m[:, k]
    if preds.trajectory_xy_m is not None:
        m = preds.trajectory_xy_m
        for k in range(m.shape[1]):
            cols[f"traj_x_m_h{k}"] = m[:, k, 0]
            cols[f"traj_y_m_h{k}"] = m[:, k, 1]
    return _columns_to_records(cols)


def divergences_array(divs: DivergenceBatch | None) -> np.ndarray:
    """Divergences as a clip stream: ``t_ns``, ``score`` and every metric (sorted by name)."""
    if divs is None or not len(divs):
        return _columns_to_records({"t_ns": np.empty(0, np.int64), "score": np.empty(0, np.float32)})
    cols = {"t_ns": divs.t_ns, "score": divs.score}
    for m in sorted(divs.metrics):
        cols[m] = divs.metrics[m]
    return _columns_to_records(cols)


def _columns_to_records(cols: dict[str, np.ndarray]) -> np.ndarray:
    """Columns as a record array: ``t_ns`` int64, every other column float32."""
    out = np.empty(len(cols["t_ns"]), np.dtype([(k, "<i8" if k == "t_ns" else "<f4") for k in cols]))
    for k, v in cols.items():
        out[k] = v
    return out


_NEVER = -(2**63)
_FRAMES_KEY = {t: f"frames_{t}" for t in (*TOPICS, RAW_TOPIC)}  # counter names, not formatted per call
_TRACE_TRIM_PERIOD_NS = 1_000_000_000  # clock time between trims of the prediction / divergence traces


class Session:
    """One shadow-mode run: feed frames, advance the clock, get events; clips go to ``sink``.

    Args:
        platform: the platform profile (its tick rate and name).
        model: a loaded model runner (``.contract``, ``.sha256``, ``.infer``).
        triggers: compiled triggers for the core.
        sink: receives each sealed clip ``(ClipSpec, bytes)``.
        provenance: written into every clip.
        history: where pre-trigger frames are read from; None keeps them in memory
            (``BoundedHistory``). A history with ``append`` is fed every frame.
        executor: runs inference; None runs ``model.infer`` inline.
        windows: clip window settings (``shadowd.core.config.ClipWindowConfig``: ``pre_s``,
            ``post_s``, ``max_clip_s``); None uses the config defaults. The longest trigger
            window widens them.
        retention_s: how much history and trace to keep; None keeps what the clip windows
            need (``ClipWindows.required_history_s``).
    """

    def __init__(
        self,
        platform: Any,
        model: Any,
        triggers: Any,
        *,
        sink: ClipSink,
        provenance: Provenance,
        history: History | None = None,
        executor: Executor | None = None,
        windows: Any = None,
        retention_s: float | None = None,
    ):
        self.platform = platform
        self._sink = sink
        self._last_fed_ns: dict[str, int] = {}
        # After a swap the new core re-reads recent history; what it says about times the old
        # core already covered is not reported twice (see ``swap``).
        self._seen_ns = {"prediction": _NEVER, "divergence": _NEVER, "trigger": _NEVER}
        self._replayed_until_ns = {"prediction": _NEVER, "divergence": _NEVER, "trigger": _NEVER}
        self._retiring: list[tuple[Any, Provenance]] = []  # clip windows of a swapped-out config
        self._install(model, triggers, windows, provenance, executor)
        if retention_s is None:
            retention_s = self.windows.required_history_s
        self.history = history if history is not None else BoundedHistory(retention_s)
        self._history_append = getattr(self.history, "append", None)
        self._history_trim = getattr(self.history, "trim", None)
        self._predictions = _BatchTrace(int(retention_s * 1e9), PredictionBatch.concat)
        self._divergences = _BatchTrace(int(retention_s * 1e9), DivergenceBatch.concat)
        self._trace_trim_at_ns = _NEVER  # clock time from which the traces are trimmed again
        self.counters: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()

    def _install(self, model: Any, triggers: Any, windows: Any, provenance: Provenance, executor: Any) -> None:
        from .core.clips import ClipWindows
        from .core.pipeline import ShadowCore

        self.model = model
        self.triggers = triggers
        self.provenance = provenance
        tick_hz = getattr(self.platform, "trigger_tick_hz", None)
        self.core = ShadowCore(model.contract, triggers, **({"tick_hz": tick_hz} if tick_hz else {}))
        self.windows = _clip_windows(ClipWindows, triggers, windows)
        self.executor = executor if executor is not None else InlineExecutor(model)

    # -- input -------------------------------------------------------------------------

    @property
    def keeps_fed_frames(self) -> bool:
        """Whether ``feed`` keeps the arrays it is given (a history with ``append``): a caller
        that reuses its read buffer must then feed copies. The core copies what it buffers."""
        return self._history_append is not None

    def feed(self, topic: str, frames: np.ndarray, newest_ns: int | None = None) -> None:
        """Frames of one topic, in time order, not older than the last ``advance``
        (``newest_ns``: the last frame's ``t_ns``, when the caller has it at hand)."""
        if not len(frames):
            return
        if self._history_append is not None:
            self._history_append(topic, frames)
        if topic != RAW_TOPIC:  # raw CAN is history for clips only; the core reads decoded topics
            self.core.push_frames(topic, frames)
        self._last_fed_ns[topic] = int(frames["t_ns"][-1]) if newest_ns is None else newest_ns
        self.counters[_FRAMES_KEY.get(topic) or f"frames_{topic}"] += len(frames)

    @property
    def takes_frames_in_place(self) -> bool:
        """Whether ``intake`` / ``commit`` may replace ``feed``: the history does not keep fed
        frames and the core takes frames in place (the native build, the C trigger evaluator)."""
        return self._history_append is None and self.core.takes_frames_in_place

    def intake(self, topic: str, n: int) -> tuple[Any, Any, int, int] | None:
        """Where the next frames of ``topic`` may be written in place (``ShadowCore.intake``);
        None: read them elsewhere and only ``commit`` their count."""
        return None if topic == RAW_TOPIC else self.core.intake(topic, n)

    def commit(self, topic: str, n: int, out_of_order: int, newest_ns: int) -> None:
        """Frames of ``topic`` that arrived, as ``feed`` takes them: ``n`` written where
        ``intake`` said (or not kept, if it said None) and ``out_of_order`` left out, the last
        of them all stamped ``newest_ns``."""
        seen = n + out_of_order
        if not seen:
            return
        if topic != RAW_TOPIC:
            self.core.commit(topic, n, out_of_order)
        self._last_fed_ns[topic] = newest_ns
        key = _FRAMES_KEY.get(topic) or f"frames_{topic}"
        self.counters[key] += seen

    # -- clock -------------------------------------------------------------------------

    def advance(self, now_ns: int) -> list[Any]:
        """Run everything due up to ``now_ns``; returns the events (DivergenceBatch,
        TriggerFired, sealed ClipSpec) in the order they happened. Clips are built and sunk here."""
        events: list[Any] = []
        # an async executor hands back what finished since the last call; inline: nothing
        pending = self._step(now_ns, events, self.executor.run([]))
        # Inline executors answer at once: submit and step again so the core sees the
        # predictions of this advance before the clock moves on. An asynchronous one that has
        # finished nothing more leaves the core nothing new to do at this time: no second step.
        for _ in range(8):
            if not pending:
                break
            done = self.executor.run(pending)
            pending = self._step(now_ns, events, done) if done else []
        if pending:  # an async executor keeps them; they come back on a later advance
            self._submit(self.executor.run(pending))
        if self._retiring:
            for windows, provenance in self._retiring:
                for spec in windows.advance(now_ns):
                    self._seal(spec, events, provenance)
            self._retiring = [(w, p) for w, p in self._retiring if w.pending_count]
        for spec in self.windows.advance(now_ns):
            self._seal(spec, events)
        if self._history_trim is not None:
            self._history_trim(now_ns)
        if now_ns >= self._trace_trim_at_ns:  # they drop in blocks anyway: not every wake-up
            self._trace_trim_at_ns = now_ns + _TRACE_TRIM_PERIOD_NS
            self._predictions.trim(now_ns)
            self._divergences.trim(now_ns)
        return events

    def close(self, now_ns: int) -> list[Any]:
        """Stop: seal the open clip windows (truncated where their post-window has not
        passed) and sink them. Same as ``flush``; the name says the caller is done."""
        return self.flush(now_ns)

    def flush(self, now_ns: int) -> list[Any]:
        """Advance to ``now_ns``, then seal every open clip now (truncated where the
        post-window has not passed). The session keeps running afterwards."""
        events = self.advance(now_ns)
        for windows, provenance in self._retiring:
            for spec in windows.close(now_ns):
                self._seal(spec, events, provenance)
        self._retiring = []
        for spec in self.windows.close(now_ns):
            self._seal(spec, events)
        return events

    def windows_pending(self) -> bool:
        """True while a clip waits for its post-window (a draining service waits for it)."""
        return self.windows.pending_count > 0 or any(w.pending_count for w, _ in self._retiring)

    def swap(self, model: Any, triggers: Any, *, windows: Any = None, provenance: Provenance | None = None,
             executor: Executor | None = None, prime_s: float | None = None) -> None:
        """Switch to another model / trigger set between two frames.

        The new core is primed with the last ``prime_s`` seconds of every topic from the
        history (default: the model's input window or the triggers' own history, whichever is
        longer, plus 0.5 s), so it requests inferences and evaluates windowed triggers at once;
        no frame fed before or after the swap is lost. Priming no more than that matters: a
        trigger whose condition holds in the primed stretch starts its cooldown there. What the new core says about the primed stretch warms its state but is
        not reported again: triggers up to the newest frame fed before the swap, predictions
        and divergences up to the newest ones the old core produced (counted as
        ``swap_repeated_*``). The old core's unscored predictions are scored again by the new
        core, so divergence has no gap. Clips already pending finish under the old config and
        carry its provenance. Requests in flight with the old executor are dropped (counted as
        ``swap_dropped_requests``).
        """
        old_windows, old_provenance = self.windows, self.provenance
        self._replayed_until_ns = dict(self._seen_ns)
        self._replayed_until_ns["trigger"] = max(
            [self._seen_ns["trigger"], *(t for k, t in self._last_fed_ns.items() if k != RAW_TOPIC)])
        self.counters["swap_dropped_requests"] += int(self.core.stats().get("outstanding_requests", 0))
        self._install(model, triggers, windows, provenance or old_provenance, executor)
        if old_windows.pending_count:
            self._retiring.append((old_windows, old_provenance))
        window_s = float(getattr(model.contract, "window_s", 0.0)) if model.contract is not None else 0.0
        history_s = float(getattr(triggers, "history_s", 0.0) or 0.0)
        back_ns = int((max(window_s, history_s) + 0.5 if prime_s is None else prime_s) * 1e9)
        for topic, last in sorted(self._last_fed_ns.items()):
            if topic == RAW_TOPIC:
                continue
            try:
                frames = self.history.frames(topic, last - back_ns, last)
            except (KeyError, ShadowdError):
                continue
            self.core.push_frames(topic, frames)
        if isinstance(self.history, BoundedHistory):
            self.history.retain(self.windows.required_history_s)
        self.counters["swaps"] += 1

    def _new(self, kind: str, t_ns: int) -> bool:
        """False for an event the previous core already reported (re-read after a swap)."""
        if t_ns <= self._replayed_until_ns[kind]:
            self.counters[f"swap_repeated_{kind}s"] += 1
            return False
        self._seen_ns[kind] = max(self._seen_ns[kind], t_ns)
        return True

    def _submit(self, done: Iterable[tuple[Any, PredictionBatch | None]]) -> None:
        replayed_ns = self._replayed_until_ns["prediction"]
        for request, preds in done:
            answered = len(preds) if preds is not None else 0
            if answered < len(request):
                self.counters["predictions_missing"] += len(request) - answered  # failed, shed or superseded
            if answered:
                new = self._new_rows("prediction", preds, replayed_ns)
                if new is not None:
                    self._predictions.add(new)
                    self.counters["predictions"] += len(new)
            self.core.submit(request, preds)

    def _new_rows(self, kind: str, batch: Any, replayed_ns: int) -> Any:
        """The rows of ``batch`` the previous core has not reported (see ``_new``), or None."""
        repeated = int(np.searchsorted(batch.t_ns, replayed_ns, "right")) if batch.t_ns[0] <= replayed_ns else 0
        if repeated:
            self.counters[f"swap_repeated_{kind}s"] += repeated
            if repeated == len(batch):
                return None
            batch = batch.take(slice(repeated, None))
        self._seen_ns[kind] = max(self._seen_ns[kind], int(batch.t_ns[-1]))
        return batch

    def _step(self, now_ns: int, events: list[Any], done=()) -> list[Any]:
        if done:
            self._submit(done)
        requests = []
        for ev in self.core.advance(now_ns):
            if isinstance(ev, DivergenceBatch):
                ev = self._new_rows("divergence", ev, self._replayed_until_ns["divergence"])
                if ev is not None:
                    self._divergences.add(ev)
                    self.counters["divergences"] += len(ev)
                    events.append(ev)
            elif isinstance(ev, TriggerFired):
                if self._new("trigger", int(ev.t_ns)):
                    self.fired[ev.trigger] += 1
                    self.windows.on_trigger(ev)
                    events.append(ev)
            else:
                requests.append(ev)
        if requests:
            self.counters["inference_requests"] += sum(len(r) for r in requests)
        return requests

    # -- clips -------------------------------------------------------------------------

    def _seal(self, spec: ClipSpec, events: list[Any], provenance: Provenance | None = None) -> None:
        events.append(spec)
        try:
            clip = build_clip(
                spec,
                self.history,
                topics=sorted(self._last_fed_ns),  # what was fed: a ring history may lack others
                extra_streams={
                    "predictions": predictions_array(self._predictions.between(spec.t0_ns, spec.t1_ns)),
                    "divergence": divergences_array(self._divergences.between(spec.t0_ns, spec.t1_ns)),
                },
                provenance=provenance or self.provenance,
            )
            data = encode_clip(clip)
        except ShadowdError as err:
            self.counters["clip_build_failed"] += 1
            log.warning("clip [%d, %d] not built: %s", spec.t0_ns, spec.t1_ns, err)
            return
        self.counters["clips"] += 1
        self.counters["clip_bytes"] += len(data)
        self._sink(spec, data)

    def predictions_between(self, t0_ns: int, t1_ns: int) -> PredictionBatch | None:
        """Predictions still held (within retention) with t0_ns <= t_ns <= t1_ns, in time order
        (None: none)."""
        return self._predictions.between(t0_ns, t1_ns)

    def stats(self) -> dict[str, Any]:
        """Counters of this session and of its core, JSON-ready."""
        out: dict[str, Any] = dict(sorted(self.counters.items()))
        out["triggers_fired"] = dict(sorted(self.fired.items()))
        core_stats = getattr(self.core, "stats", None)
        if core_stats is not None:
            out["core"] = core_stats()
        return out


def _clip_windows(cls: Any, triggers: Any, windows: Any) -> Any:
    if windows is None:
        from .core.config import ClipWindowConfig as _Defaults

        windows = _Defaults()
    pre_s = max(float(windows.pre_s), float(getattr(triggers, "max_pre_s", 0.0)))
    post_s = max(float(windows.post_s), float(getattr(triggers, "max_post_s", 0.0)))
    max_clip_s = max(float(getattr(windows, "max_clip_s", 0.0) or 0.0), pre_s + post_s)
    return cls(pre_s, post_s, max_clip_s=max_clip_s)
