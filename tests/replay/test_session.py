"""The shared Session driver: the daemon's path (bounded history fed frame by frame) gives the
same clips as replay's whole-drive history, and BoundedHistory answers like the full arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, strategies as st

from shadowd.clip import ArrayHistory, decode_clip
from shadowd.core.signals import frame_dtype
from shadowd.replay.inputs import read_input
from shadowd.replay.runner import ReplayOptions, build_session, default_model_path, load_model, load_platform
from shadowd.session import BoundedHistory
from tests.replay.conftest import RAV4_LOG

TRIGGERS = {"triggers": [
    {"name": "slowing", "expr": "speed_mps < 15", "pre_s": 3.0, "post_s": 2.0, "cooldown_s": 10.0},
    {"name": "steering", "expr": "abs(steer_angle_deg) > 2", "pre_s": 2.0, "post_s": 2.0, "cooldown_s": 5.0},
], "windows": {"pre_s": 3.0, "post_s": 2.0, "max_clip_s": 10.0}}  # keeps ~13 s of the 60 s drive


def _drive_through(session, drive, step_s: float):
    step = int(step_s * 1e9)
    t, end = drive.t0_ns, drive.t1_ns
    pos = dict.fromkeys(drive.topics, 0)
    events = []
    while t < end:
        t = min(t + step, end)
        for k, a in sorted(drive.topics.items()):
            j = int(np.searchsorted(a["t_ns"], t, "right"))
            session.feed(k, a[pos[k]:j])
            pos[k] = j
        events += session.advance(t)
    return events + session.close(end)


def test_bounded_history_fed_in_small_steps_gives_the_clips_of_the_whole_drive_history(tmp_path):
    cfg = tmp_path / "t.json"
    cfg.write_text(json.dumps(TRIGGERS))
    opts = ReplayOptions(model_path=default_model_path(), config_path=str(cfg))
    platform = load_platform("desktop")
    model = load_model(opts.model_path, platform)
    drive = read_input(RAV4_LOG, platform)
    replay_clips, daemon_clips = [], []
    full = build_session(model, platform, opts, lambda s, b: replay_clips.append(b), ArrayHistory(drive.topics))
    _drive_through(full, drive, 10.0)
    bounded = build_session(model, platform, opts, lambda s, b: daemon_clips.append(b), None)
    assert isinstance(bounded.history, BoundedHistory)
    _drive_through(bounded, drive, 0.25)
    assert len(replay_clips) >= 2
    a = [decode_clip(b) for b in replay_clips]
    b = [decode_clip(b) for b in daemon_clips]
    assert [(c.t0_ns, c.t1_ns, [x.trigger for x in c.causes]) for c in a] == \
        [(c.t0_ns, c.t1_ns, [x.trigger for x in c.causes]) for c in b]
    for ca, cb in zip(a, b):
        for topic in ("vehicle", "perception", "imu", "can_raw"):
            assert ca.streams[topic].tobytes() == cb.streams[topic].tobytes(), topic
    assert bounded.stats()["clips"] == len(daemon_clips)
    # the bounded history really is bounded: ~13 s of the drive's 135k raw frames (+ one chunk)
    assert sum(len(c) for c in bounded.history.frames_by_topic()["can_raw"]) < 40_000


def _frames(t_ns):
    a = np.zeros(len(t_ns), frame_dtype("vehicle"))
    a["t_ns"] = t_ns
    a["speed_mps"] = np.arange(len(t_ns))
    return a


@given(st.lists(st.integers(1, 40), min_size=1, max_size=30), st.integers(0, 10**9), st.integers(0, 10**9))
def test_bounded_history_answers_like_the_full_arrays_within_its_retention(chunk_sizes, a, b):
    t = np.cumsum(np.full(sum(chunk_sizes), 10_000_000, np.int64))  # 100 Hz
    frames = _frames(t)
    h = BoundedHistory(retention_s=1.0)
    i = 0
    for n in chunk_sizes:
        h.append("vehicle", frames[i:i + n])
        i += n
        h.trim(int(frames["t_ns"][i - 1]))
    now = int(t[-1])
    t0, t1 = sorted((now - 1_000_000_000 + a % 10**9, now - 1_000_000_000 + b % 10**9))
    want = frames[(t >= t0) & (t <= t1)]
    assert h.frames("vehicle", t0, t1).tobytes() == want.tobytes()
    with pytest.raises(KeyError):
        h.frames("imu", t0, t1)


def test_session_with_the_async_model_runner_collects_predictions_on_later_advances(tmp_path):
    """The daemon's executor: ModelRunner.run hands requests to its worker thread and returns
    what finished since the last call; the Session polls it on every advance."""
    import time

    from shadowd.edges.model_runner import ModelRunner

    cfg = tmp_path / "t.json"
    cfg.write_text(json.dumps(TRIGGERS))
    opts = ReplayOptions(model_path=default_model_path(), config_path=str(cfg))
    platform = load_platform("desktop")
    runner = ModelRunner(default_model_path(), platform)  # its own instance: it starts a thread
    try:
        drive = read_input(RAV4_LOG, platform)
        session = build_session(runner, platform, opts, lambda s, b: None, None, executor=runner)
        step = 50_000_000  # one model period: one request per advance, like the daemon's loop
        t, end = drive.t0_ns, drive.t0_ns + 10 * 10**9
        pos = dict.fromkeys(drive.topics, 0)
        while t < end:
            t += step
            for k, a in sorted(drive.topics.items()):
                j = int(np.searchsorted(a["t_ns"], t, "right"))
                session.feed(k, a[pos[k]:j])
                pos[k] = j
            session.advance(t)
            deadline = time.monotonic() + 1.0  # let the worker thread answer before the next frame
            while time.monotonic() < deadline and sum(
                    runner.counters[k] for k in ("inferences", "superseded", "shed", "errors")
            ) < session.counters["inference_requests"]:
                time.sleep(0.0005)
        stats = session.stats()
        assert stats["predictions"] > 100  # ~180 requests in 9 s after the 1 s input window
        assert stats["divergences"] > 50
    finally:
        runner.close()


def test_swap_between_frames_keeps_scoring_and_finishes_old_clips_under_the_old_config(tmp_path):
    from shadowd.core.triggers import compile_triggers
    from shadowd.core.types import DivergenceBatch
    from shadowd.session import make_provenance

    cfg = tmp_path / "t.json"
    cfg.write_text(json.dumps(TRIGGERS))
    opts = ReplayOptions(model_path=default_model_path(), config_path=str(cfg))
    platform = load_platform("desktop")
    model = load_model(opts.model_path, platform)
    drive = read_input(RAV4_LOG, platform)
    clips = []
    session = build_session(model, platform, opts, lambda s, b: clips.append(decode_clip(b)), None)
    step, t_swap = 250_000_000, drive.t0_ns + 33 * 10**9  # "slowing" fired at 32.06 s; its clip is open
    t, end = drive.t0_ns, drive.t1_ns
    pos = dict.fromkeys(drive.topics, 0)
    events = []
    swapped = False
    while t < end:
        t = min(t + step, end)
        for k, a in sorted(drive.topics.items()):
            j = int(np.searchsorted(a["t_ns"], t, "right"))
            session.feed(k, a[pos[k]:j])
            pos[k] = j
        events += session.advance(t)
        if t >= t_swap and not swapped:
            assert session.windows_pending()  # a clip waits for its post-window
            fast = compile_triggers([{"name": "fast", "expr": "speed_mps > 17", "pre_s": 1.0, "post_s": 1.0,
                                      "cooldown_s": 60.0}])
            session.swap(model, fast, provenance=make_provenance("veh", "desktop", model, 2, fast))
            swapped = True
    events += session.flush(end)
    assert not session.windows_pending()
    by_cause = {c.causes[0].trigger: c for c in clips}
    assert {"slowing", "fast"} <= set(by_cause)
    assert by_cause["fast"].provenance.config_version == 2 and by_cause["fast"].causes[0].t_ns > t_swap
    old = [c for c in clips if c.causes[0].trigger != "fast"]
    assert old and all(c.provenance.config_version == 0 for c in old)  # built from the file config
    div_t = np.concatenate([e.t_ns for e in events if isinstance(e, DivergenceBatch)])
    assert ((div_t > t_swap) & (div_t < t_swap + 3 * 10**9)).any()  # scoring resumes within 3 s
    assert session.stats()["swaps"] == 1
