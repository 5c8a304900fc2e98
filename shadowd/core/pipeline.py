"""ShadowCore: the pure shadow pipeline that replay and the daemon share.

Frames in (per topic, time ordered), events out: an InferenceRequest for the model's ticks
whose windows are available, a DivergenceBatch of the predictions whose horizon has passed
(both columnar: one object per call, not per prediction), TriggerFired from
the trigger engine evaluated at ``tick_hz`` on aligned signal columns plus the latest
divergence metrics. No I/O, no clock, no threads: time arrives as ``now_ns``.

Rules:
1. Everything is decided on frame time, never on call pattern: the same frames give the same
   requests, divergences and trigger events however they are chunked into ``push_frames`` /
   ``advance`` calls (tests/pipeline holds this with Hypothesis).
2. A request tick T is due once every input topic has a frame at or after T; a trigger tick T
   once every topic the triggers read has a frame at or after T *and* every prediction whose
   horizon ended by T has been submitted (or given up after ``max_wait_s`` past its horizon,
   counted as ``predictions_late``), so divergence metrics reach the triggers in order.
   A divergence metric becomes visible to triggers at ``t0 + horizon + 2 * score_batch_s``:
   knowable at ``t0 + horizon``, scored in batches of ``score_batch_s`` to save CPU, once the
   batch's bin has closed, and one bin later still, so the scoring pass never stands between
   a frame and the trigger tick it completes (rule 5).
3. Bad input is counted, never raised: out-of-order frames are dropped
   (``frames_out_of_order``), windows with unknown samples are skipped (``windows_incomplete``),
   frames of topics nothing here reads are counted and not kept (``frames_not_needed``: the
   rings or the session's history keep them for clips).
4. Memory is bounded: each topic keeps only what the model window, the pending predictions'
   horizons and the next trigger tick still need.
5. ``advance`` does the latency-critical work first: model requests, then the trigger ticks
   the new frames complete, then scoring (whose metrics only later ticks read), then the ticks
   scoring unblocked (replay's big steps). ``advance(now, settle=False)`` stops after the
   first trigger pass; the caller hands the events on and calls ``settle(now)`` for the rest.

API: ``ShadowCore(contract, triggers, *, tick_hz=50, scorer=None, max_wait_s=0.5)``;
``push_frames(topic, frames)``; ``advance(now_ns, settle=True) -> [InferenceRequest |
DivergenceBatch | TriggerFired]``; ``settle(now_ns)``; ``submit(request, predictions_or_None)``;
``next_due_ns()`` (when a service loop should next wake); ``stats()``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .align import lattice, sample_many
from .divergence import METRIC_NAMES, ScorerConfig, score_batch
from .model_contract import ModelContract
from .signals import RAW_TOPIC, SIGNALS, TOPICS, frame_dtype
from .types import DivergenceBatch, PredictionBatch, TriggerFired

_SCORING_SIGNALS = ("speed_mps", "steer_angle_deg", "accel_long_mps2", "yaw_rate_rps")
_SCALAR_TICKS = 8  # up to this many trigger ticks per advance go through the scalar evaluator
_FAR = 2**62
_NEVER = -(2**63)
_FEW_FRAMES = 8  # push_frames checks the order of this many frames or fewer in Python
_RECENT_ROWS = 32  # newest frames per topic (and newest metrics) kept as Python tuples
_KNOWN_TOPICS = frozenset(TOPICS) | {RAW_TOPIC}
DEFAULT_TICK_HZ = 50.0
"""Trigger ticks per second of frame time (a service wakes once per tick)."""
_TRIM_PERIOD_NS = 1_000_000_000  # frame time between buffer trims (bounds memory, amortizes the cost)
_TRIM_FRAMES = 256  # ... or sooner when this many frames arrived since the last trim


@dataclass(frozen=True, slots=True, eq=False)
class InferenceRequest:
    """Run the model for the request ticks ``t_ns`` (int64 (rows,), ascending) on ``inputs``
    (tensor name -> float32 (rows, steps, signals)): one request per ``advance`` call, however
    many ticks came due (a service wake-up: one; a replay step: hundreds). It is answered as a
    whole with a ``PredictionBatch`` (or None) through ``ShadowCore.submit``."""

    t_ns: np.ndarray
    inputs: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t_ns)


class _Buffer:
    """Append-only frames of one topic with trimming from the front (amortized O(1)); the
    trigger metrics are kept in one too, as frames stamped with the time they become visible.

    The frames' times are also kept as their own contiguous int64 array (``t``): a search on
    the strided ``frames["t_ns"]`` view copies it first. The newest frames are also kept as
    tuples of Python values (``recent``): a service wake-up's trigger tick reads the newest
    frame at or before it (``row_at``) without a numpy call. After a sleep every numpy call
    costs 5-10 us of cold caches, so the per-tick path avoids them.
    """

    def __init__(self, dtype: np.dtype, ffi: Any = None, keep_recent: bool = True, moves: list[int] | None = None):
        self.dtype = dtype
        self._keep_recent = keep_recent  # only the Python tick path reads ``recent``
        # counts each time the memory after the newest frame changes other than by ``commit``
        # (new arrays, an ``append``): a writer holding ``room``'s pointers must ask again
        self._moves = moves
        # frames are copied as opaque records (a view as np.void of the same size): numpy's
        # structured-to-structured assignment walks the fields, ~8x slower for a few frames
        self._void = np.dtype((np.void, dtype.itemsize))
        # with the native build's cffi, a wake-up's few frames are copied with one memmove and
        # the C sampler reads the arrays through pointers kept per allocation: after a sleep,
        # each numpy call this avoids costs ~10-25 us of cold caches
        self._ffi = ffi
        self._start = 0
        self._end = 0
        self._allocate(np.empty(256, dtype), np.empty(256, np.int64))
        self.last_t: int | None = None  # t_ns of the newest frame (kept as a Python int: read per tick)
        self.recent: deque[tuple] = deque(maxlen=_RECENT_ROWS)  # the newest frames (t_ns first)

    def _allocate(self, frames: np.ndarray, t: np.ndarray) -> None:
        self._a, self._t = frames, t
        if self._moves is not None:
            self._moves[0] += 1
        if self._ffi is not None:
            self._a_ptr = self._ffi.from_buffer("uint8_t[]", frames)
            self._t_ptr = self._ffi.from_buffer("int64_t[]", t)

    def pointers(self) -> tuple[Any, Any]:
        """cffi pointers to ``t`` and to ``frames`` (the native build only)."""
        return self._t_ptr + self._start, self._a_ptr + self._start * self.dtype.itemsize

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def frames(self) -> np.ndarray:
        return self._a[self._start:self._end]

    @property
    def t(self) -> np.ndarray:
        """``frames["t_ns"]``, contiguous."""
        return self._t[self._start:self._end]

    def _reserve(self, n: int) -> None:
        """Room for ``n`` frames after the newest (moves the live frames to the front, or to
        bigger arrays)."""
        if self._end + n > len(self._a):
            live = self._end - self._start
            cap = len(self._a)
            if live + n > cap // 2:
                cap = max(cap * 2, 2 * (live + n))
            new, new_t = np.empty(cap, self._a.dtype), np.empty(cap, np.int64)
            new.view(self._void)[:live] = self._a.view(self._void)[self._start:self._end]
            new_t[:live] = self._t[self._start:self._end]
            self._allocate(new, new_t)
            self._start, self._end = 0, live

    def room(self, n: int) -> tuple[Any, Any, int]:
        """cffi pointers to where the next frames and their times go, and how many fit (at
        least ``n``): a writer fills them in place, then ``commit``s (the native build only).
        The pointers stay good, moving past what is committed, until the ``moves`` count
        changes."""
        self._reserve(n)
        end = self._end
        return self._a_ptr + end * self.dtype.itemsize, self._t_ptr + end, len(self._a) - end

    def commit(self, n: int) -> None:
        """``n`` frames (n > 0) written in place after the newest, where ``room`` said."""
        self._end += n
        self.last_t = self._t_ptr[self._end - 1]

    def append(self, frames: np.ndarray, rows: list[tuple] | None = None) -> None:
        """Frames of this dtype, in time order after the newest held (``rows``:
        ``frames.tolist()``, when the caller has it at hand)."""
        n = len(frames)
        if n == 0:
            return
        self._reserve(n)
        if self._moves is not None:
            self._moves[0] += 1
        end = self._end + n
        if rows is None or self._ffi is None or not self._copy_few(frames, rows):
            self._a.view(self._void)[self._end:end] = frames.view(self._void)
            if rows is None:
                self._t[self._end:end] = frames["t_ns"]
                rows = frames[-_RECENT_ROWS:].tolist() if self._keep_recent else None
            else:
                self._t[self._end:end] = [r[0] for r in rows]
        if rows is None:  # only when the Python tick path does not read ``recent``
            self.last_t = int(self._t[end - 1])
        else:
            if self._keep_recent:
                self.recent.extend(rows)
            self.last_t = rows[-1][0]
        self._end = end

    def _copy_few(self, frames: np.ndarray, rows: list[tuple]) -> bool:
        """A few frames in with one memmove and their times from ``rows``; False when
        ``frames`` is not one contiguous buffer (the numpy copy takes it)."""
        size = self.dtype.itemsize
        try:
            self._ffi.memmove(self._a_ptr + self._end * size, frames, len(rows) * size)
        except (TypeError, ValueError, BufferError):
            return False
        t, i = self._t_ptr, self._end
        for row in rows:
            t[i] = row[0]
            i += 1
        return True

    def row(self, i: int) -> tuple:
        """Frame ``i`` (0 = the oldest held) as a tuple of Python values, in dtype field order."""
        return self._a[self._start + i].item()

    def row_at(self, t_ns: int) -> tuple | None:
        """The newest frame at or before ``t_ns`` (zero-order hold) as a tuple, None if none."""
        for row in reversed(self.recent):
            if row[0] <= t_ns:
                return row
        i = int(np.searchsorted(self.t, t_ns, side="right")) - 1  # older than every recent frame
        return self.row(i) if i >= 0 else None

    def trim_before(self, t_ns: int) -> None:
        """Drop frames older than ``t_ns`` but keep the last one before it (zero-order hold)."""
        k = int(np.searchsorted(self.t, t_ns, side="left")) - 1
        if k > 0:
            self._start += k
            first = int(self._t[self._start])
            recent = self.recent
            while recent and recent[0][0] < first:  # no tuple of a frame no longer held
                recent.popleft()


def _held(buf: _Buffer | None, fields, ticks: np.ndarray) -> list[np.ndarray]:
    """Each of ``fields``' zero-order hold at ``ticks`` (the newest frame at or before each), as
    float64; NaN before the first frame or without a buffer."""
    if buf is None or len(buf) == 0:
        return [np.full(len(ticks), np.nan) for _ in fields]
    frames = buf.frames
    idx = np.searchsorted(buf.t, ticks, side="right") - 1
    known = idx >= 0
    idx = np.maximum(idx, 0)
    cols = []
    for f in fields:
        col = frames[f][idx].astype(np.float64)
        col[~known] = np.nan
        cols.append(col)
    return cols


_NATIVE_WINDOW_ABI = 2


def _window_plan(sources, n_signals: int):
    """``(ffi, lib, [(topic, frame size, n fields, offsets, types, linear, out columns)])``
    for the C model-window sampler (native/src/window.c), or None when it is not built or a
    field or interpolation is one it does not take (the numpy path samples those)."""
    from ..native import FIELD_TYPES, kernel  # lazily: core stays importable and pure without a build

    native = kernel("shadowd_window_abi_version", _NATIVE_WINDOW_ABI, "model-window sampler")
    if native is None:
        return None
    ffi, lib = native
    plans = []
    for topic, signals in sources:
        dtype = frame_dtype(topic)
        offsets, types, linear, cols = [], [], [], []
        for j, s, interp in signals:
            field, offset = dtype.fields[s][0], dtype.fields[s][1]
            code = FIELD_TYPES.get(field.str)
            if code is None or field.shape or interp not in ("linear", "zoh") or j >= n_signals:
                return None
            offsets.append(offset)
            types.append(code)
            linear.append(1 if interp == "linear" else 0)
            cols.append(j)
        plans.append((topic, dtype.itemsize, len(signals), ffi.new("size_t[]", offsets), ffi.new("int[]", types),
                      ffi.new("int[]", linear), ffi.new("size_t[]", cols)))
    return ffi, lib, plans


class ShadowCore:
    """See the module docstring. Not thread-safe: one caller drives it."""

    def __init__(self, contract: ModelContract | None, triggers: Any = None, *, tick_hz: float = DEFAULT_TICK_HZ,
                 scorer: ScorerConfig | None = None, max_wait_s: float = 0.5, score_batch_s: float = 0.2,
                 native_triggers: bool | None = None):
        self.contract = contract
        self.tick_ns = int(round(1e9 / tick_hz))
        self.scorer = scorer or ScorerConfig()
        self.max_wait_ns = int(max_wait_s * 1e9)
        # predictions are scored in batches: those whose horizon ends in the same
        # score_batch_s-wide bin of absolute time, once the bin has closed; their metrics
        # become visible to triggers at t0 + horizon + 2 * score_batch_s (one bin after the
        # bin closed, rules 2 and 5). One scoring call per ~4 predictions instead of one each.
        self._batch_ns = max(1, int(score_batch_s * 1e9))
        self._visible_after_ns = 2 * self._batch_ns
        self._buffers: dict[str, _Buffer] = {}
        self._moves = [0]  # the topic buffers' moves (``intake_generation``)
        self._counters = {"frames_in": 0, "frames_out_of_order": 0, "requests": 0, "windows_incomplete": 0,
                          "predictions": 0, "predictions_missing": 0, "predictions_late": 0,
                          "divergences": 0, "trigger_ticks": 0, "triggers_fired": 0, "frames_unknown_topic": 0,
                          "frames_not_needed": 0, "predictions_unscorable": 0}
        # model
        if contract is not None:
            self._req_ns = int(round(1e9 / contract.run_hz))
            # the model window's signals by topic: (column in the window, signal, interpolation)
            by_topic: dict[str, list[tuple[int, str, str]]] = {}
            for j, s in enumerate(contract.signals):
                by_topic.setdefault(SIGNALS[s][0].name, []).append((j, s, contract.interp[s]))
            self._window_sources = sorted(by_topic.items())
            self._window_native = _window_plan(self._window_sources, len(contract.signals))
            self._offsets_ns = contract.window_offsets_ns()
            self._offsets_ns.flags.writeable = False  # C reads it through a pointer kept below
            if self._window_native is not None:  # the C sampler's queries of one window
                self._offsets_ptr = self._window_native[0].from_buffer("int64_t[]", self._offsets_ns)
            self._horizon_ns = int(round(contract.horizon_s * 1e9))
            self._model_topics = sorted({SIGNALS[s][0].name for s in contract.signals})
        else:
            self._req_ns, self._offsets_ns, self._horizon_ns, self._model_topics = 0, np.zeros(1, np.int64), 0, []
            self._window_sources = []
            self._window_native = None
        self._buffer_ffi = self._window_native[0] if self._window_native is not None else None
        self._next_req: int | None = None
        # first tick of a request -> [its ticks, advance call that emitted it, given up waiting for it]
        self._outstanding: dict[int, list] = {}
        self._calls = 0
        self._pushed_since_trim = 0
        self._trim_at_ns = _NEVER  # frame time from which the buffers are trimmed again
        # answered, not yet scored: (first t_ns, last t_ns, batch), rows ascending per batch. The
        # bounds as Python ints let a scoring pass split the queue without numpy calls per batch.
        self._to_score: list[tuple[int, int, PredictionBatch]] = []
        self._score_due_ns = _FAR  # earliest t0 + horizon among _to_score
        self._score_at_ns = _FAR  # the end of its scoring bin: settle has scoring to do from then
        # triggers
        self._engine = None
        self._trigger_signals: list[str] = []
        self._trigger_metrics: list[str] = []
        if triggers is not None and len(triggers) > 0:
            from .triggers import TriggerEngine

            self._engine = TriggerEngine(triggers, native=native_triggers)
            if self._buffer_ffi is None and self._engine.native is not None:
                self._buffer_ffi = self._engine.native.ffi  # the C evaluator reads the buffers too
            used = set(getattr(triggers, "signals_used", ()))
            self._trigger_signals = sorted(s for s in used if s in SIGNALS)
            self._trigger_metrics = sorted(set(getattr(triggers, "metrics_used", ())) | (used - set(SIGNALS)))
        # The trigger metrics of the scored predictions, kept like a topic's frames stamped with
        # the time they become visible (rule 2): ticks read them as they read a signal's hold.
        # Fields by position (m0, m1, ...): a metric's name may be any the trigger set declares;
        # one the scorer does not make stays NaN.
        metrics_dtype = np.dtype([("t_ns", np.int64)] + [(f"m{i}", np.float64) for i in range(len(self._trigger_metrics))])
        self._metric_fields = metrics_dtype.names[1:]
        self._metric_pos = list(range(1, len(self._trigger_metrics) + 1))
        self._scored_metrics = [m if m in METRIC_NAMES else None for m in self._trigger_metrics]
        self._trigger_topics = sorted({SIGNALS[s][0].name for s in self._trigger_signals}) or (
            ["vehicle"] if self._engine is not None else [])
        # topics the core reads; frames of others are counted and not buffered (the rings /
        # the session's history keep them for clips)
        self._needed_topics = set(self._model_topics) | set(self._trigger_topics)
        if contract is not None:
            self._needed_topics.add("vehicle")  # divergence scoring reads the human's motion
        self._trigger_by_topic: dict[str, list[str]] = {}
        for s in self._trigger_signals:
            self._trigger_by_topic.setdefault(SIGNALS[s][0].name, []).append(s)
        # where each trigger signal sits in its topic's frame tuple (the scalar tick path)
        self._field_pos = {topic: [frame_dtype(topic).names.index(s) for s in names]
                           for topic, names in self._trigger_by_topic.items()}
        self._next_tick: int | None = None
        # the C trigger evaluator reads each tick's holds from the buffers in place
        self._held_sources = None
        if self._engine is not None and self._engine.native is not None:
            self._held_topics = list(self._trigger_by_topic)
            self._held_sources = self._engine.hold_sources(
                [(frame_dtype(topic), [(s, s) for s in self._trigger_by_topic[topic]]) for topic in self._held_topics]
                + [(metrics_dtype, list(zip(self._metric_fields, self._trigger_metrics)))])
        # Only the Python tick path (``_ticks_scalar``) reads the buffers' newest frames as
        # tuples; without it, frames may also be written into the buffers in place (``intake``).
        self._keep_recent = self._engine is not None and self._held_sources is None
        self.takes_frames_in_place = self._buffer_ffi is not None and not self._keep_recent
        self._metrics = _Buffer(metrics_dtype, self._buffer_ffi, self._keep_recent)

    # -- input -----------------------------------------------------------------------------
    def push_frames(self, topic: str, frames: np.ndarray) -> None:
        """Frames of one topic, ``t_ns`` ascending; older-than-newest frames are dropped and counted."""
        n = len(frames)
        if n == 0:
            return
        buf = self._buffers.get(topic)
        if buf is not None:
            dtype = buf.dtype
        elif topic not in self._needed_topics:
            key = "frames_not_needed" if topic in _KNOWN_TOPICS else "frames_unknown_topic"
            self._counters[key] += n
            return
        else:
            dtype = frame_dtype(topic)
        if buf is None:
            buf = self._buffers[topic] = _Buffer(dtype, self._buffer_ffi, self._keep_recent, self._moves)
        if frames.dtype is not dtype and frames.dtype != dtype:
            frames = frames.astype(dtype)
        last = buf.last_t
        floor = last + 1 if last is not None else _NEVER
        rows = None
        if n <= _FEW_FRAMES:
            # a service wake-up brings a frame or two per topic: one numpy call gives their
            # tuples, whose order is checked as Python ints and which the buffer keeps as recent
            rows = frames.tolist()
            in_order = True
            prev = floor - 1
            for row in rows:  # a plain loop: a generator costs more after a sleep
                if row[0] <= prev:
                    in_order = False
                    break
                prev = row[0]
        else:
            t = frames["t_ns"]
            in_order = int(t[0]) >= floor and bool((t[1:] > t[:-1]).all())
        if not in_order:
            t = frames["t_ns"]
            running = np.maximum.accumulate(np.concatenate(([floor - 1], t[:-1])))
            keep = t > running
            keep &= t >= floor
            self._counters["frames_out_of_order"] += int(n - keep.sum())
            frames = frames[keep]
            n = len(frames)
            rows = None
            if n == 0:
                return
        self._counters["frames_in"] += n
        self._pushed_since_trim += n
        buf.append(frames, rows)

    def intake(self, topic: str, n: int) -> tuple[Any, Any, int, int] | None:
        """Where the next frames of ``topic`` can be written in place (a service's ring reads):
        cffi pointers to the frames' and their times' memory, how many fit (at least ``n``),
        and the floor: a frame not after it, or not after the frame before it, is out of order
        and must be left out. Then ``commit``. None: this core keeps no frames of ``topic``
        (``commit`` still counts them). Only where ``takes_frames_in_place``."""
        buf = self._buffers.get(topic)
        if buf is None:
            if topic not in self._needed_topics:
                return None
            buf = self._buffers[topic] = _Buffer(frame_dtype(topic), self._buffer_ffi, self._keep_recent, self._moves)
        last = buf.last_t
        return (*buf.room(n), _NEVER if last is None else last)

    @property
    def intake_generation(self) -> int:
        """Changes whenever memory ``intake`` handed out may no longer be where the next
        frames go (a buffer moved to new arrays, frames pushed): ask ``intake`` again then.
        Until it changes, ``intake``'s pointers advanced past each ``commit``ed frame stay good."""
        return self._moves[0]

    def commit(self, topic: str, n: int, out_of_order: int = 0) -> None:
        """``n`` frames of ``topic`` written where ``intake`` said, in order after its floor;
        ``out_of_order`` more were left out (counted as ``push_frames`` counts them)."""
        buf = self._buffers.get(topic)
        if buf is None:
            key = "frames_not_needed" if topic in _KNOWN_TOPICS else "frames_unknown_topic"
            self._counters[key] += n + out_of_order
            return
        if out_of_order:
            self._counters["frames_out_of_order"] += out_of_order
        if n:
            buf.commit(n)
            self._counters["frames_in"] += n
            self._pushed_since_trim += n

    def submit(self, request: InferenceRequest, predictions: PredictionBatch | None) -> None:
        """Hand back the model's answer to ``request``: its predictions, ascending, where rows
        the model could not answer are left out; None: failed or shed. May come late."""
        rows = len(request)
        if rows:
            self._outstanding.pop(int(request.t_ns[0]), None)
        answered = len(predictions) if predictions is not None else 0
        if answered < rows:
            self._counters["predictions_missing"] += rows - answered
        if not answered:
            return
        self._counters["predictions"] += answered
        first = int(predictions.t_ns[0])
        self._to_score.append((first, int(predictions.t_ns[-1]), predictions))
        if first + self._horizon_ns < self._score_due_ns:
            self._score_due_ns = first + self._horizon_ns
            self._score_at_ns = self._bin_end(self._score_due_ns)

    # -- clock ----------------------------------------------------------------------------
    def advance(self, now_ns: int, *, settle: bool = True) -> list[Any]:
        """Process everything due up to ``now_ns``; returns requests, trigger events and
        divergences (rule 5: requests and the trigger ticks first, scoring after).
        ``settle=False`` returns after the first trigger pass; ``settle(now_ns)`` does the rest."""
        events: list[Any] = []
        self._calls += 1
        # helpers with nothing due are not called: after a service's sleep, each call costs
        # microseconds of cold caches
        if self.contract is not None and (self._next_req is None or self._next_req <= now_ns):
            events += self._requests(now_ns)
        if self._engine is not None:
            events += self._triggers(now_ns)
        if settle:
            events += self.settle(now_ns)
        return events

    def settle(self, now_ns: int) -> list[Any]:
        """The work of ``advance`` off the latency-critical path: score the predictions whose
        bin has closed, evaluate the trigger ticks that scoring unblocked, trim the buffers."""
        events: list[Any] = []
        if self.contract is not None and self._score_at_ns <= now_ns:  # a scoring bin may have closed
            scored = self._score(now_ns)
            if scored:
                events += scored
                if self._engine is not None:
                    events += self._triggers(now_ns)
        if now_ns >= self._trim_at_ns or self._pushed_since_trim > _TRIM_FRAMES:
            self._trim(now_ns)
        return events

    def next_due_ns(self) -> int | None:
        """Frame time at which ``advance`` next has latency-critical work: the next trigger
        tick (or, without triggers, the next request tick or horizon end). A service loop
        sleeps until the first frame stamped at or after it is due, instead of waking for every
        frame; model requests and scoring ride along on those wake-ups (at most one trigger
        period late, far inside the model's compute budget). None: as soon as frames arrive."""
        if self._engine is not None and self._next_tick is not None:
            return self._next_tick
        due = [t for t in (self._next_req if self.contract is not None else None,) if t is not None]
        if self._to_score:
            due.append(self._score_at_ns)
        return min(due) if due else None

    def _bin_end(self, t_ns: int) -> int:
        """End of the scoring bin holding horizon end ``t_ns``. Bins are ``score_batch_s`` wide
        and aligned to absolute time, so which predictions a scoring pass takes depends only on
        how far the clock has come, never on how the input was chunked."""
        return (t_ns // self._batch_ns + 1) * self._batch_ns

    def _ready_until(self, topics) -> int | None:
        """The newest frame time every one of ``topics`` has reached (None: one has no frame yet)."""
        end = None
        for t in topics:
            b = self._buffers.get(t)
            last = b.last_t if b is not None else None
            if last is None:
                return None
            if end is None or last < end:
                end = last
        return end

    def _requests(self, now_ns: int) -> list[InferenceRequest]:
        ready = self._ready_until(self._model_topics)
        if ready is None:
            return []
        end = min(ready, now_ns)
        if self._next_req is None:
            first = max(int(self._buffers[t].t[0]) for t in self._model_topics) - int(self._offsets_ns[0])
            self._next_req = -(-first // self._req_ns) * self._req_ns
        if self._next_req > end:
            return []
        first = self._next_req
        n_ticks = (end - first) // self._req_ns + 1
        self._next_req = first + n_ticks * self._req_ns
        ticks = np.arange(first, self._next_req, self._req_ns, dtype=np.int64)
        c = self.contract
        win = np.empty((n_ticks, len(self._offsets_ns), len(c.signals)), np.float32)
        if n_ticks == 1 and self._window_native is not None:
            # a service wake-up's request: one C call per topic samples the window at the tick
            # plus the offsets, straight from the buffered frames (align.sample's values)
            unknown = self._sample_native(win, first, None)
        else:
            instants, gather = lattice(ticks, self._offsets_ns)  # shared by every input signal
            if gather is None and self._window_native is not None:  # windows on no common step
                unknown = self._sample_native(win, 0, instants)
            else:
                self._sample_windows(win, instants, gather)
                unknown = None
        if unknown == 0:  # the sampler saw no unknown value: every window is complete
            return self._request(ticks, win)
        complete = ~np.isnan(win).any(axis=(1, 2))
        rows = int(complete.sum())
        if rows < len(ticks):
            self._counters["windows_incomplete"] += len(ticks) - rows
            if not rows:
                return []
            ticks, win = ticks[complete], win[complete]
        return self._request(ticks, win)

    def _request(self, ticks: np.ndarray, win: np.ndarray) -> list[InferenceRequest]:
        self._outstanding[int(ticks[0])] = [len(ticks), self._calls, False]
        self._counters["requests"] += len(ticks)
        return [InferenceRequest(ticks, {self.contract.input_tensor: win})]

    def _sample_native(self, win: np.ndarray, base_ns: int, instants: np.ndarray | None) -> int:
        """Fill ``win`` with the C sampler, one call per topic, at ``base_ns`` plus the window
        offsets (``instants`` None: one window) or at ``instants``; returns how many values it
        left unknown (NaN)."""
        ffi, lib, plans = self._window_native
        if instants is None:
            queries, n_query = self._offsets_ptr, len(self._offsets_ns)
        else:
            queries, n_query = ffi.from_buffer("int64_t[]", instants), instants.size
        out = ffi.from_buffer("float[]", win)
        unknown = 0
        for topic, frame_size, n_fields, offsets, types, linear, cols in plans:
            buf = self._buffers[topic]
            t, frames = buf.pointers()
            rc = lib.shadowd_window_sample(len(buf), t, frames, frame_size, n_fields, offsets, types, linear,
                                           n_query, base_ns, queries, out, win.shape[2], cols)
            if rc < 0:  # the plan checked every argument: a bug, not bad input
                raise RuntimeError(f"shadowd_window_sample failed ({rc})")
            unknown += rc
        return unknown

    def _sample_windows(self, win: np.ndarray, instants: np.ndarray, gather: np.ndarray | None) -> None:
        """Model windows in numpy (``align.sample_many``): replay's batches (many windows on a
        shared lattice), and the reference of the C sampler."""
        for topic, signals in self._window_sources:
            buf = self._buffers[topic]
            frames = buf.frames
            sampled = sample_many(buf.t, [(frames[s], interp) for _, s, interp in signals], instants)
            for (j, _, _), values in zip(signals, sampled):
                win[:, :, j] = values if gather is None else values[gather]

    def _score(self, now_ns: int) -> list[DivergenceBatch]:
        """Score the queued predictions whose horizon ends in a bin that has closed (settle
        calls it from ``_score_at_ns`` on)."""
        veh = self._buffers.get("vehicle")
        if veh is None or veh.last_t is None:
            return []
        limit = min(veh.last_t, now_ns)
        if self._score_at_ns > limit:
            return []
        # every prediction whose horizon ends in a bin that closed by ``limit`` (batch_ns > 0):
        # t0 < before_ns, a leading run of each batch's ascending rows
        before_ns = (limit // self._batch_ns) * self._batch_ns - self._horizon_ns
        parts, rest = [], []
        for first, last, b in self._to_score:
            if last < before_ns:
                parts.append((first, last, b))
            elif first >= before_ns:
                rest.append((first, last, b))
            else:
                k = int(np.searchsorted(b.t_ns, before_ns, side="left"))
                parts.append((first, int(b.t_ns[k - 1]), b.take(slice(0, k))))
                rest.append((int(b.t_ns[k]), last, b.take(slice(k, None))))
        if not parts:
            return []
        self._to_score = rest
        self._score_due_ns = min((first for first, _, _ in rest), default=_FAR) + self._horizon_ns
        self._score_at_ns = self._bin_end(self._score_due_ns) if rest else _FAR
        due = PredictionBatch.concat([b for _, _, b in parts])
        first_ns, last_ns = parts[0][0], parts[0][1]
        in_order = True
        for first, last, _ in parts[1:]:
            in_order = in_order and first >= last_ns
            first_ns, last_ns = min(first_ns, first), max(last_ns, last)
        if not in_order:  # answers that came out of order
            due = due.take(np.argsort(due.t_ns, kind="stable"))
        fr = veh.frames
        t = veh.t
        if first_ns < int(t[0]):
            # answered after its history was trimmed (a very late async answer): cannot be scored
            stale = int(np.searchsorted(due.t_ns, t[0], side="left"))
            self._counters["predictions_unscorable"] += stale
            if stale == len(due):
                return []
            due = due.take(slice(stale, None))
            first_ns = int(due.t_ns[0])
        lo = max(0, int(np.searchsorted(t, first_ns, side="right")) - 1)
        hi = int(np.searchsorted(t, last_ns + self._horizon_ns, side="left")) + 1
        fr = fr[lo:hi]
        hist = {s: fr[s].astype(np.float64) for s in _SCORING_SIGNALS if s in fr.dtype.names}
        out = score_batch(due, t[lo:hi], hist, self.scorer)
        self._counters["divergences"] += len(out)
        if self._trigger_metrics:
            self._keep_metrics(out)
        return [out]

    def _keep_metrics(self, scored: DivergenceBatch) -> None:
        """Keep the trigger metrics of ``scored`` (rows ascending), visible from t0 + horizon +
        2 * score_batch_s (rule 2)."""
        nan = [float("nan")] * len(scored)
        visible_ns = scored.t_ns + (self._horizon_ns + self._visible_after_ns)
        rows = list(zip(visible_ns.tolist(), *(scored.metrics[m].tolist() if m is not None else nan
                                              for m in self._scored_metrics)))
        frames = np.array(rows, self._metrics.dtype)
        newest = self._metrics.last_t
        if newest is None or rows[0][0] >= newest:  # the usual case: after the newest
            self._metrics.append(frames, rows)
            return
        # a late answer scored after newer ones: merge by time (stable: at equal times, the
        # earlier scored first)
        merged = np.concatenate([self._metrics.frames, frames])
        self._metrics = _Buffer(merged.dtype, self._buffer_ffi, self._keep_recent)
        self._metrics.append(merged[np.argsort(merged["t_ns"], kind="stable")])

    def _triggers(self, now_ns: int) -> list[TriggerFired]:
        ready = self._ready_until(self._trigger_topics)
        if ready is None:
            return []
        end = min(ready, now_ns)
        if self.contract is not None:
            # Wait for predictions whose horizon ends by the tick. A request is given up
            # (counted late) only if it was emitted by an earlier advance call -- the caller
            # had a chance to answer -- and its horizon ended more than max_wait_s ago.
            waiting = []
            for t0, entry in list(self._outstanding.items()):
                if entry[2]:
                    if now_ns - (t0 + self._horizon_ns) > 20 * self.max_wait_ns:
                        del self._outstanding[t0]  # forget it; its frames may be trimmed now
                    continue
                if entry[1] < self._calls and now_ns - (t0 + self._horizon_ns) > self.max_wait_ns:
                    entry[2] = True
                    self._counters["predictions_late"] += entry[0]
                    continue
                waiting.append(t0)
            if waiting:
                end = min(end, min(waiting) + self._horizon_ns + self._visible_after_ns - 1)
            if self._to_score:
                end = min(end, self._score_due_ns + self._visible_after_ns - 1)
        if self._next_tick is None:
            first = max(int(self._buffers[t].t[0]) for t in self._trigger_topics)
            self._next_tick = -(-first // self.tick_ns) * self.tick_ns
        if self._next_tick > end:
            return []
        if (end - self._next_tick) // self.tick_ns < _SCALAR_TICKS:
            # a service wake-up: a tick or two. The engine's scalar path costs microseconds per
            # tick, the batch path ~0.1 ms per call; both give the same events
            # (shadowd.core.triggers rule 4).
            ticks = list(range(self._next_tick, end + 1, self.tick_ns))
            self._next_tick = ticks[-1] + self.tick_ns
            fired = self._ticks_held(ticks) if self._held_sources is not None else self._ticks_scalar(ticks)
        else:
            ticks = np.arange(self._next_tick, end + 1, self.tick_ns, dtype=np.int64)
            self._next_tick = int(ticks[-1]) + self.tick_ns
            fired = self._ticks_held(ticks) if self._held_sources is not None else self._ticks_batch(ticks)
        self._counters["trigger_ticks"] += len(ticks)
        self._counters["triggers_fired"] += len(fired)
        return fired

    def _ticks_scalar(self, ticks: list[int]) -> list[TriggerFired]:
        """Trigger ticks one by one: each signal's and trigger metric's zero-order hold (the
        newest frame at or before the tick; NaN before the first). A row is read as one tuple
        (``item``) and its fields picked by position: per-field access of a numpy record costs
        ~10x more."""
        nan = float("nan")
        sources = [(names, self._field_pos[topic], self._buffers.get(topic))
                   for topic, names in self._trigger_by_topic.items()]
        if self._trigger_metrics:
            sources.append((self._trigger_metrics, self._metric_pos, self._metrics))
        fired = []
        for t in ticks:
            values: dict[str, float] = {}
            for names, pos, buf in sources:
                row = buf.row_at(t) if buf is not None else None
                if row is None:
                    values.update((s, nan) for s in names)
                else:
                    for s, i in zip(names, pos):
                        values[s] = float(row[i])
            fired += self._engine.evaluate(t, values)
        return fired

    def _ticks_held(self, ticks: list[int] | np.ndarray) -> list[TriggerFired]:
        """Trigger ticks on the C evaluator, which reads each signal's and trigger metric's
        zero-order hold from the buffers in place: the same values as ``_ticks_scalar``.
        It is handed each buffer's arrays from their start, trimmed frames included (only the
        count changes from call to call): a trim keeps the last frame before the next tick, so
        no hold of a tick still to come lies among the trimmed ones."""
        sources = self._held_sources
        buffers = self._buffers
        for i, topic in enumerate(self._held_topics):
            buf = buffers.get(topic)
            if buf is not None:
                sources.set(i, buf._end, buf._t_ptr, buf._a_ptr)
        metrics = self._metrics
        sources.set(len(self._held_topics), metrics._end, metrics._t_ptr, metrics._a_ptr)
        return self._engine.evaluate_held(ticks, sources)

    def _ticks_batch(self, ticks: np.ndarray) -> list[TriggerFired]:
        """Trigger ticks as one chunk (numpy): the same values as ``_ticks_scalar``."""
        cols: dict[str, np.ndarray] = {}
        for topic, names in self._trigger_by_topic.items():
            cols.update(zip(names, _held(self._buffers.get(topic), names, ticks)))
        if self._trigger_metrics:
            cols.update(zip(self._trigger_metrics, _held(self._metrics, self._metric_fields, ticks)))
        return self._engine.evaluate_batch(ticks, cols)

    def _trim(self, now_ns: int) -> None:
        self._trim_at_ns = now_ns + _TRIM_PERIOD_NS
        self._pushed_since_trim = 0
        keep = []
        if self.contract is not None and self._next_req is not None:
            keep.append(self._next_req + int(self._offsets_ns[0]))
            if self._to_score:
                keep.append(min(first for first, _, _ in self._to_score))
            if self._outstanding:
                keep.append(min(self._outstanding))
        if self._next_tick is not None:
            keep.append(self._next_tick)
        if not keep:
            return
        t_keep = min(keep) - 2 * self.tick_ns
        for buf in self._buffers.values():
            buf.trim_before(t_keep)
        self._metrics.trim_before(t_keep)

    @property
    def trigger_ticks(self) -> int:
        """Trigger ticks evaluated so far (cheap: a wake-up loop reads it every round)."""
        return self._counters["trigger_ticks"]

    def stats(self) -> dict:
        out = dict(self._counters)
        out["buffered_frames"] = {t: len(b) for t, b in self._buffers.items()}
        out["outstanding_requests"] = sum(e[0] for e in self._outstanding.values() if not e[2])
        out["predictions_unscored"] = sum(len(b) for _, _, b in self._to_score)
        if self._engine is not None and hasattr(self._engine, "stats"):
            out["triggers"] = self._engine.stats()
        return out
