"""Clip windows: which stretch of time becomes a clip, given the triggers that fired.

Every decision about clip boundaries is made here: merging overlapping or adjacent trigger
windows, capping a clip's length, sealing a clip once no trigger that may still arrive can
touch it, and finishing pending clips (truncated) when the service stops.

Rules of this file:
1. Pure: no clock, no files, no threads. Time comes in as ``now_ns`` / ``TriggerFired.t_ns``
   (monotonic nanoseconds) from the caller; results are returned as values (``ClipSpec``).
2. Invariants (tested with Hypothesis in tests/clip/test_windows.py):
   - every trigger handed to ``on_trigger`` ends up as a cause of exactly one clip, and its
     ``t_ns`` lies inside that clip;
   - clips come out ordered and pairwise disjoint (``next.t0_ns > prev.t1_ns``);
   - two clips closer than ``merge_gap_s`` exist only when the earlier one reached
     ``max_clip_s`` (otherwise they would have been merged).
3. Theory of operation: a trigger at ``t`` asks for ``[t - pre_s, t + post_s]``. The window is
   merged into the last pending clip when it overlaps it or starts within ``merge_gap_s`` of
   its end (unless the result would exceed ``max_clip_s``). A pending clip is sealed once
   ``now_ns > t1_ns + hold`` where ``hold = max_pre_s + merge_gap_s + max_trigger_lag_s``:
   a trigger arriving later has ``t_ns >= now_ns - max_trigger_lag_s`` (triggers arrive in
   time order, at most that late), so its pre-window cannot reach back into the sealed clip.
   The ring must therefore hold ``max_clip_s + hold`` seconds: ``validate_windows`` checks it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shadowd.core.types import ClipSpec, TriggerFired
from shadowd.errors import ConfigError

_NS_PER_S = 1_000_000_000


def _check_seconds(name: str, value: float, *, allow_zero: bool = True) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} = {value!r} is not a finite number of seconds; give e.g. {name} = 10.0")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} = {value!r} s must be {bound}; fix the trigger or clip config")


def default_max_clip_s(max_pre_s: float, max_post_s: float) -> float:
    """The default cap on a merged clip's length: two full windows back to back."""
    return 2.0 * (max_pre_s + max_post_s)


def required_history_s(
    max_pre_s: float,
    max_post_s: float,
    *,
    max_clip_s: float | None = None,
    merge_gap_s: float = 0.0,
    max_trigger_lag_s: float = 0.0,
) -> float:
    """Seconds of ring history the clip builder needs to assemble any clip at seal time."""
    cap_s = default_max_clip_s(max_pre_s, max_post_s) if max_clip_s is None else max_clip_s
    return cap_s + max_pre_s + merge_gap_s + max_trigger_lag_s


def validate_windows(
    pre_s: float,
    post_s: float,
    history_s: float,
    *,
    max_clip_s: float | None = None,
    merge_gap_s: float = 0.0,
    max_trigger_lag_s: float = 0.0,
) -> float:
    """Refuse clip windows the ring history cannot hold (never clamp them).

    Args:
        pre_s, post_s: the longest pre- and post-trigger windows of any trigger.
        history_s: seconds of frames the rings keep (the smallest ring counts).
        max_clip_s, merge_gap_s, max_trigger_lag_s: as for ``ClipWindows``.
    Returns:
        the history in seconds the windows need (<= history_s).
    Raises:
        ConfigError naming the values and the fix.
    """
    _check_seconds("pre_s", pre_s)
    _check_seconds("post_s", post_s)
    _check_seconds("history_s", history_s, allow_zero=False)
    _check_seconds("merge_gap_s", merge_gap_s)
    _check_seconds("max_trigger_lag_s", max_trigger_lag_s)
    if pre_s + post_s <= 0:
        raise ConfigError(f"clip window pre_s + post_s = {pre_s + post_s} s is empty; give a pre_s or post_s > 0")
    if max_clip_s is not None:
        _check_seconds("max_clip_s", max_clip_s, allow_zero=False)
        if max_clip_s < pre_s + post_s:
            raise ConfigError(
                f"max_clip_s = {max_clip_s} s is shorter than one window (pre_s {pre_s} + post_s {post_s}); "
                f"raise max_clip_s to at least {pre_s + post_s}"
            )
    need_s = required_history_s(
        pre_s, post_s, max_clip_s=max_clip_s, merge_gap_s=merge_gap_s, max_trigger_lag_s=max_trigger_lag_s
    )
    if need_s > history_s:
        raise ConfigError(
            f"clip windows pre_s {pre_s} s / post_s {post_s} s need {need_s:g} s of ring history "
            f"(longest clip {need_s - pre_s - merge_gap_s - max_trigger_lag_s:g} s + seal hold "
            f"{pre_s + merge_gap_s + max_trigger_lag_s:g} s) but the ring keeps {history_s:g} s; "
            f"shorten the windows or size the rings for {need_s:g} s"
        )
    return need_s


@dataclass(slots=True)
class _Pending:
    t0_ns: int
    t1_ns: int
    causes: list[TriggerFired] = field(default_factory=list)

    def spec(self, truncated: bool = False, t1_ns: int | None = None) -> ClipSpec:
        return ClipSpec(
            t0_ns=self.t0_ns,
            t1_ns=self.t1_ns if t1_ns is None else t1_ns,
            causes=tuple(self.causes),
            priority=max(c.priority for c in self.causes),
            truncated=truncated,
        )


class ClipWindows:
    """Turns TriggerFired events into sealed, merged, disjoint ClipSpec windows.

    Not thread-safe: one owner feeds it (the daemon's pipeline thread or replay).
    """

    def __init__(
        self,
        max_pre_s: float,
        max_post_s: float,
        *,
        merge_gap_s: float = 0.0,
        max_clip_s: float | None = None,
        max_trigger_lag_s: float = 0.0,
    ):
        _check_seconds("max_pre_s", max_pre_s)
        _check_seconds("max_post_s", max_post_s)
        _check_seconds("merge_gap_s", merge_gap_s)
        _check_seconds("max_trigger_lag_s", max_trigger_lag_s)
        cap_s = default_max_clip_s(max_pre_s, max_post_s) if max_clip_s is None else max_clip_s
        _check_seconds("max_clip_s", cap_s, allow_zero=False)
        if cap_s < max_pre_s + max_post_s:
            raise ConfigError(
                f"max_clip_s = {cap_s} s is shorter than one window ({max_pre_s} + {max_post_s} s); "
                f"raise it to at least {max_pre_s + max_post_s}"
            )
        self.max_pre_ns = int(round(max_pre_s * _NS_PER_S))
        self.max_post_ns = int(round(max_post_s * _NS_PER_S))
        self.merge_gap_ns = int(round(merge_gap_s * _NS_PER_S))
        self.max_clip_ns = int(round(cap_s * _NS_PER_S))
        self.hold_ns = self.max_pre_ns + self.merge_gap_ns + int(round(max_trigger_lag_s * _NS_PER_S))
        self.required_history_s = (self.max_clip_ns + self.hold_ns) / _NS_PER_S
        self._pending: list[_Pending] = []
        self._last_sealed_t1_ns: int | None = None
        self.counters = {"triggers": 0, "merged": 0, "capped": 0, "clamped": 0, "sealed": 0, "truncated": 0}

    @property
    def pending_count(self) -> int:
        """Clips waiting for their post-window (or seal hold) to pass."""
        return len(self._pending)

    def on_trigger(self, ev: TriggerFired) -> None:
        """Add a fired trigger. Raises ConfigError if its window exceeds the configured maximum."""
        pre_ns = int(round(ev.pre_s * _NS_PER_S))
        post_ns = int(round(ev.post_s * _NS_PER_S))
        if pre_ns > self.max_pre_ns or post_ns > self.max_post_ns or pre_ns < 0 or post_ns < 0:
            raise ConfigError(
                f"trigger {ev.trigger!r} asks for pre_s {ev.pre_s} / post_s {ev.post_s} but clip windows "
                f"allow 0..{self.max_pre_ns / _NS_PER_S} / 0..{self.max_post_ns / _NS_PER_S} s; "
                f"validate trigger windows with validate_windows() when loading the config"
            )
        self.counters["triggers"] += 1
        a_ns, b_ns = ev.t_ns - pre_ns, ev.t_ns + post_ns
        if self._last_sealed_t1_ns is not None and a_ns <= self._last_sealed_t1_ns:
            # Only reachable when a trigger arrives later than max_trigger_lag_s allows.
            self.counters["clamped"] += 1
            a_ns = self._last_sealed_t1_ns + 1
            b_ns = max(b_ns, a_ns)
            if ev.t_ns < a_ns:
                a_ns = b_ns = max(ev.t_ns, self._last_sealed_t1_ns + 1)
        last = self._pending[-1] if self._pending else None
        if last is None or a_ns > last.t1_ns + self.merge_gap_ns:
            self._pending.append(_Pending(a_ns, b_ns, [ev]))
            return
        if ev.t_ns < last.t0_ns:
            # Out-of-order trigger older than the last clip: it joins the clip that holds it,
            # or the last one (extended back) when none does.
            for p in reversed(self._pending):
                if p.t0_ns <= ev.t_ns <= p.t1_ns:
                    p.causes.append(ev)
                    self.counters["merged"] += 1
                    return
        new_t0 = min(last.t0_ns, a_ns)
        new_t1 = max(last.t1_ns, b_ns)
        prev_t1 = self._pending[-2].t1_ns if len(self._pending) > 1 else self._last_sealed_t1_ns
        if prev_t1 is not None:
            new_t0 = max(new_t0, prev_t1 + 1)
        if new_t1 - new_t0 <= self.max_clip_ns:
            last.t0_ns, last.t1_ns = new_t0, new_t1
            last.causes.append(ev)
            self.counters["merged"] += 1
            self._merge_back(min(last.t0_ns, a_ns))
            return
        self.counters["capped"] += 1
        if ev.t_ns <= last.t1_ns or ev.t_ns - last.t0_ns <= self.max_clip_ns:
            # The trigger lies in (or within the cap of) the full clip: record it there and
            # extend as far as the cap allows; the rest of its post-window is cut.
            last.t0_ns = min(last.t0_ns, a_ns)
            if prev_t1 is not None:
                last.t0_ns = max(last.t0_ns, prev_t1 + 1)
            last.t1_ns = max(last.t1_ns, min(b_ns, last.t0_ns + self.max_clip_ns))
            last.causes.append(ev)
            return
        self._pending.append(_Pending(max(a_ns, last.t1_ns + 1), b_ns, [ev]))

    def _merge_back(self, want_t0_ns: int) -> None:
        """The last clip grew back to ``want_t0_ns``: fold it into earlier pending clips it now reaches."""
        while len(self._pending) >= 2:
            prev, last = self._pending[-2], self._pending[-1]
            if want_t0_ns > prev.t1_ns + self.merge_gap_ns:
                return
            t0 = min(prev.t0_ns, want_t0_ns)
            if max(prev.t1_ns, last.t1_ns) - t0 > self.max_clip_ns:
                self.counters["capped"] += 1
                return
            prev.t0_ns, prev.t1_ns = t0, max(prev.t1_ns, last.t1_ns)
            prev.causes.extend(last.causes)
            self._pending.pop()
            self.counters["merged"] += 1
            want_t0_ns = prev.t0_ns

    def advance(self, now_ns: int) -> list[ClipSpec]:
        """Seal every pending clip no future trigger can reach; returns them in time order."""
        out: list[ClipSpec] = []
        while self._pending and now_ns > self._pending[0].t1_ns + self.hold_ns:
            out.append(self._seal(self._pending.pop(0).spec()))
        return out

    def close(self, now_ns: int) -> list[ClipSpec]:
        """The service is stopping: finish every pending clip with what there is.

        A clip whose post-window has not passed yet ends at ``now_ns`` and is marked
        ``truncated``; one whose window is complete is sealed as usual.
        """
        out: list[ClipSpec] = []
        for p in self._pending:
            if now_ns >= p.t1_ns:
                out.append(self._seal(p.spec()))
            else:
                self.counters["truncated"] += 1
                out.append(self._seal(p.spec(truncated=True, t1_ns=max(now_ns, p.t0_ns, max(c.t_ns for c in p.causes)))))
        self._pending.clear()
        return out

    def _seal(self, spec: ClipSpec) -> ClipSpec:
        self.counters["sealed"] += 1
        self._last_sealed_t1_ns = spec.t1_ns
        return spec
