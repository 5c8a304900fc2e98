"""Clip window merging (shadowd.core.clips): property tests of the merge invariants."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from shadowd.core.clips import ClipWindows, validate_windows
from shadowd.core.types import TriggerFired
from shadowd.errors import ConfigError

S = 1_000_000_000


def _ev(t_ns: int, name: str = "t", priority: int = 1, pre_s: float = 2.0, post_s: float = 3.0) -> TriggerFired:
    return TriggerFired(t_ns=t_ns, trigger=name, priority=priority, score=1.0, pre_s=pre_s, post_s=post_s)


def test_overlapping_triggers_merge_into_one_clip_keeping_every_cause_and_max_priority():
    w = ClipWindows(2.0, 3.0)
    w.on_trigger(_ev(10 * S, "a", priority=1))
    w.on_trigger(_ev(12 * S, "b", priority=5))
    assert w.advance(16 * S) == []  # post-window of b has not passed plus hold
    (clip,) = w.advance(30 * S)
    assert [c.trigger for c in clip.causes] == ["a", "b"]
    assert clip.priority == 5
    assert (clip.t0_ns, clip.t1_ns) == (8 * S, 15 * S)
    assert not clip.truncated


def test_separate_triggers_give_separate_clips_in_time_order():
    w = ClipWindows(2.0, 3.0)
    w.on_trigger(_ev(10 * S, "a"))
    w.on_trigger(_ev(30 * S, "b"))
    clips = w.advance(100 * S)
    assert [(c.t0_ns, c.t1_ns) for c in clips] == [(8 * S, 13 * S), (28 * S, 33 * S)]


def test_clip_is_not_sealed_while_a_later_trigger_could_still_reach_back_into_it():
    w = ClipWindows(2.0, 3.0)
    w.on_trigger(_ev(10 * S, "a"))
    assert w.advance(14 * S) == []  # 13 s post end + 2 s hold
    w.on_trigger(_ev(14 * S, "b"))  # its pre-window [12, 17] overlaps [8, 13]
    (clip,) = w.advance(100 * S)
    assert len(clip.causes) == 2


def test_close_finishes_pending_clip_as_truncated_at_stop_time():
    w = ClipWindows(2.0, 3.0)
    w.on_trigger(_ev(10 * S, "a", priority=3))
    (clip,) = w.close(11 * S)
    assert clip.truncated and clip.t1_ns == 11 * S and clip.t0_ns == 8 * S and clip.priority == 3
    assert w.pending_count == 0


def test_trigger_asking_for_a_longer_window_than_configured_is_refused():
    w = ClipWindows(2.0, 3.0)
    with pytest.raises(ConfigError, match="pre_s 5.0"):
        w.on_trigger(_ev(10 * S, pre_s=5.0))


def test_validate_windows_refuses_windows_the_ring_cannot_hold():
    assert validate_windows(2.0, 3.0, 60.0) == pytest.approx(2 * 5.0 + 2.0)
    with pytest.raises(ConfigError, match="ring keeps 10 s"):
        validate_windows(2.0, 3.0, 10.0)
    with pytest.raises(ConfigError, match="not a finite"):
        validate_windows(float("nan"), 3.0, 60.0)
    with pytest.raises(ConfigError, match="must be >= 0"):
        validate_windows(-1.0, 3.0, 60.0)


_trig = st.tuples(
    st.integers(0, 40_000),  # ms increments between triggers
    st.integers(0, 5_000),  # pre ms
    st.integers(0, 5_000),  # post ms
    st.integers(0, 9),  # priority
    st.integers(0, 30_000),  # advance step after the trigger, ms
)


@given(st.lists(_trig, min_size=1, max_size=40), st.sampled_from([None, 12.0, 25.0]), st.sampled_from([0.0, 1.0]))
def test_merge_invariants_hold_for_any_trigger_sequence(trigs, max_clip_s, gap_s):
    w = ClipWindows(5.0, 5.0, max_clip_s=max_clip_s, merge_gap_s=gap_s)
    now = 0
    t = 0
    fired: list[TriggerFired] = []
    clips = []
    for i, (dt_ms, pre_ms, post_ms, prio, step_ms) in enumerate(trigs):
        t = max(t + dt_ms * 1_000_000, now)  # triggers arrive in time order, never late
        ev = TriggerFired(t_ns=t, trigger=f"t{i}", priority=prio, score=0.0, pre_s=pre_ms / 1000, post_s=post_ms / 1000)
        w.on_trigger(ev)
        fired.append(ev)
        now = t + step_ms * 1_000_000
        clips += w.advance(now)
    clips += w.close(now)
    # every trigger in exactly one clip, inside its window
    seen = [c.trigger for clip in clips for c in clip.causes]
    assert sorted(seen) == sorted(e.trigger for e in fired)
    cap_ns = int((max_clip_s if max_clip_s is not None else 20.0) * S)
    for clip in clips:
        assert clip.t0_ns <= clip.t1_ns <= clip.t0_ns + cap_ns
        assert clip.priority == max(c.priority for c in clip.causes)
        for c in clip.causes:
            assert clip.t0_ns <= c.t_ns <= clip.t1_ns
    for prev, nxt in zip(clips, clips[1:]):
        assert nxt.t0_ns > prev.t1_ns  # disjoint and ordered
        if nxt.t0_ns - prev.t1_ns <= gap_s * S:
            assert prev.t1_ns - prev.t0_ns >= cap_ns - 5 * S or prev.truncated  # only a full clip stays apart
