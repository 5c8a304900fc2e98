"""ShadowCore: chunking independence, bad input, bounded memory, late predictions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from shadowd.core.divergence import METRIC_NAMES
from shadowd.core import pipeline as P
from shadowd.core.pipeline import InferenceRequest, ShadowCore
from shadowd.core.signals import VEHICLE
from shadowd.core.triggers import compile_triggers, native_available
from shadowd.core.types import DivergenceBatch, PredictionBatch, TriggerFired

from ._onnx_models import contract as make_contract
from shadowd.core.model_contract import TensorSpec, parse_contract
import json

TRIGGERS = [
    {"name": "big_divergence", "expr": "divergence > 0.5", "cooldown_s": 1.0},
    {"name": "engaged", "expr": "rising(adas_steering)", "cooldown_s": 1.0},
    {"name": "fast", "expr": "held(speed_mps > 15, 0.5s)", "cooldown_s": 5.0},
]


def _contract():
    c = make_contract(signals=("speed_mps", "steer_angle_deg", "accel_long_mps2"), window_steps=10, rate_hz=20.0,
                      horizon_steps=10, out_rate_hz=10.0, controls=("steer_angle_deg", "accel_long_mps2"))
    return parse_contract({"shadowd.contract": json.dumps(c)},
                          [TensorSpec("window", ("batch", 10, 3), "float32")],
                          [TensorSpec("controls", ("batch", 10, 2), "float32")])


def _numpy_model(req: InferenceRequest) -> PredictionBatch:
    """Deterministic stand-in: predicts the last steer and accel of each window stay put."""
    last = req.inputs["window"][:, -1, :].astype(np.float64)  # (rows, signals)
    ones = np.ones(10)
    return PredictionBatch(req.t_ns, np.arange(1, 11) / 10.0,
                           {"steer_angle_deg": last[:, 1, None] * ones, "accel_long_mps2": last[:, 2, None] * ones})


def _ticks(requests) -> list[int]:
    return [t for r in requests for t in r.t_ns.tolist()]


def _divs(events):
    return [d for e in events if isinstance(e, DivergenceBatch) for d in e.rows()]


def _drive(core, vehicle, cuts, answer=True, split=False):
    """Push ``vehicle`` in chunks cut at ``cuts`` (indices), advance after each, answer requests.
    ``split``: as a service loop does, ``advance(settle=False)``, answer, then ``settle``."""
    events = []
    edges = [0, *sorted(set(cuts)), len(vehicle)]
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        core.push_frames("vehicle", vehicle[a:b])
        now = int(vehicle["t_ns"][b - 1])
        for _ in range(50):
            out = core.advance(now, settle=not split)
            reqs = [e for e in out if isinstance(e, InferenceRequest)]
            events += [e for e in out if not isinstance(e, InferenceRequest)]
            events += [("req", t) for t in _ticks(reqs)]
            for r in reqs:
                core.submit(r, _numpy_model(r) if answer else None)
            if split:
                events += core.settle(now)
            if not reqs:
                break
    return events


def _key(events):
    out = []
    for e in events:
        if isinstance(e, DivergenceBatch):
            out += [("div", d.t_ns, d.score) for d in e.rows()]
        elif isinstance(e, TriggerFired):
            out.append(("trig", e.t_ns, e.trigger, tuple(sorted(e.causes.items()))))
        else:
            out.append(e)
    return sorted(out, key=repr)


def _core(triggers=TRIGGERS, native_triggers=None):
    return ShadowCore(_contract(), compile_triggers(triggers, metric_names=METRIC_NAMES), tick_hz=50.0,
                      native_triggers=native_triggers)


NATIVE_TRIGGERS = [False] + ([True] if native_available() else [])
"""The trigger paths to test: Python's always, the C evaluator's where it is built."""


METRIC_SEEN = {"name": "metric_seen", "expr": "divergence != last(divergence, 0.02s)", "cooldown_s": 0.0,
               "max_per_hour": 3600}
"""Fires at each tick where the divergence metric a tick reads has changed since the tick
before, with the value in its causes: a trace of exactly what the ticks saw."""


@pytest.fixture(scope="module")
def vehicle20(rav4_topics):
    v = rav4_topics[0]["vehicle"]
    return v[:2000]  # 20 s at 100 Hz, human part and the handover


@pytest.mark.parametrize("native", NATIVE_TRIGGERS)
@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(1, 1999), max_size=25))
def test_events_do_not_depend_on_chunking(vehicle20, native, cuts):
    whole = _key(_drive(_core(native_triggers=native), vehicle20, []))
    chunked = _key(_drive(_core(native_triggers=native), vehicle20, cuts))
    assert chunked == whole
    assert any(k[0] == "div" for k in whole) and any(k[0] == "trig" for k in whole)


def test_settling_after_the_trigger_pass_gives_the_same_events(vehicle20):
    # the service's split (ticks first, scoring after the requests were answered) changes
    # when the work runs, never what it finds
    whole = _key(_drive(_core(), vehicle20, list(range(20, 2000, 20))))
    split = _key(_drive(_core(), vehicle20, list(range(20, 2000, 20)), split=True))
    assert split == whole
    assert any(k[0] == "div" for k in whole) and any(k[0] == "trig" for k in whole)


@pytest.mark.skipif(len(NATIVE_TRIGGERS) < 2, reason="the native build has no trigger evaluator")
def test_the_c_trigger_evaluator_sees_and_fires_what_the_python_one_does(vehicle20):
    """Read from the buffers in place, the C evaluator's ticks see the same signal holds and
    metric values (``METRIC_SEEN``) and fire the same events, a wake-up's few ticks at a time
    and a replay step's hundreds."""
    triggers = [*TRIGGERS, METRIC_SEEN]
    for cuts in (list(range(10, 2000, 10)), list(range(500, 2000, 500))):
        python = _key(_drive(_core(triggers, native_triggers=False), vehicle20, cuts))
        c = _key(_drive(_core(triggers, native_triggers=True), vehicle20, cuts))
        assert c == python
        assert sum(k[0] == "trig" and k[2] == "metric_seen" for k in python) > 10


def _drive_async(core, vehicle, seed: int, max_delay_steps: int):
    """As a service with a pool of model workers: push 10 frames (0.1 s) a step, advance, and
    answer each request after a delay of 0..``max_delay_steps`` steps drawn from ``seed``,
    those due at a step in a shuffled order; then settle. At the end, answer what is left."""
    import random

    rng = random.Random(seed)
    events, pending = [], []  # pending: (step due, request)
    for step, a in enumerate(range(0, len(vehicle), 10)):
        core.push_frames("vehicle", vehicle[a:a + 10])
        now = int(vehicle["t_ns"][min(a + 9, len(vehicle) - 1)])
        out = core.advance(now, settle=False)
        pending += [(step + rng.randint(0, max_delay_steps), e) for e in out if isinstance(e, InferenceRequest)]
        events += [e for e in out if not isinstance(e, InferenceRequest)]
        due = [r for d, r in pending if d <= step]
        pending = [(d, r) for d, r in pending if d > step]
        rng.shuffle(due)
        for r in due:
            core.submit(r, _numpy_model(r))
        events += core.settle(now)
    rest = [r for _, r in pending]  # the drive ended before these were due: answer them now
    rng.shuffle(rest)
    for r in rest:
        core.submit(r, _numpy_model(r))
    return events + core.advance(now)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 14))
def test_answers_late_and_out_of_order_give_the_events_of_answers_at_once(vehicle20, seed, max_delay_steps):
    """Answers that come back late and out of order, up to 1.4 s after their request (past
    their 1 s horizon, so newer ones may be scored first; within the 0.5 s the ticks wait
    for them), give the same divergences and trigger events as answers at once: their
    metrics reach the ticks by the time they become visible (``METRIC_SEEN`` traces the value
    every tick read)."""
    triggers = [*TRIGGERS, METRIC_SEEN]
    at_once = _key(_drive(_core(triggers), vehicle20, list(range(10, 2000, 10))))
    late = _key(_drive_async(_core(triggers), vehicle20, seed, max_delay_steps))
    assert late == [k for k in at_once if k[0] != "req"]
    assert any(k[0] == "trig" and k[2] == "big_divergence" for k in at_once)
    assert sum(k[0] == "trig" and k[2] == "metric_seen" for k in at_once) > 50


def test_requests_come_at_the_model_rate_once_the_window_is_full(vehicle20):
    core = _core()
    reqs = [e[1] for e in _drive(core, vehicle20, list(range(100, 2000, 100))) if isinstance(e, tuple)]
    t0 = int(vehicle20["t_ns"][0])
    assert reqs[0] - t0 >= 450_000_000  # a 0.5 s window must be available first
    assert set(np.diff(reqs)) == {100_000_000}  # run_hz = 10


def test_each_prediction_is_scored_only_after_its_horizon(vehicle20):
    core = _core()
    core.push_frames("vehicle", vehicle20[:300])
    reqs = [e for e in core.advance(int(vehicle20["t_ns"][299])) if isinstance(e, InferenceRequest)]
    for r in reqs:
        core.submit(r, _numpy_model(r))
    divs = _divs(core.advance(int(vehicle20["t_ns"][299])))
    last = int(vehicle20["t_ns"][299])
    assert divs and all(d.t_ns + 1_000_000_000 <= last for d in divs)
    # scored in 0.2 s bins of absolute time: a horizon ending in the bin still open waits
    open_bin_ns = last // 200_000_000 * 200_000_000
    ticks = _ticks(reqs)
    assert core.stats()["predictions_unscored"] == sum(1 for t in ticks if t + 1_000_000_000 >= open_bin_ns)
    assert core.stats()["predictions_unscored"] > sum(1 for t in ticks if t + 1_000_000_000 > last)
    assert len(divs) + core.stats()["predictions_unscored"] == len(ticks)


def test_out_of_order_frames_are_counted_and_dropped(vehicle20):
    core = _core()
    core.push_frames("vehicle", vehicle20[:100])
    core.push_frames("vehicle", vehicle20[50:60])  # all older than the newest
    shuffled = vehicle20[100:110][[0, 2, 1, 3, 4, 5, 6, 7, 8, 9]]
    core.push_frames("vehicle", shuffled)
    core.push_frames("no_such_topic", vehicle20[:3])
    s = core.stats()
    assert s["frames_out_of_order"] == 11 and s["frames_in"] == 109 and s["frames_unknown_topic"] == 3


def test_windows_with_unknown_samples_are_skipped_and_counted(vehicle20):
    v = vehicle20[:400].copy()
    v["speed_mps"][200:210] = np.nan
    core = _core()
    _drive(core, v, [])
    assert core.stats()["windows_incomplete"] > 0


def test_memory_stays_bounded_over_a_long_drive(rav4_topics):
    v = rav4_topics[0]["vehicle"]
    core = _core()
    sizes = []
    for k in range(0, len(v), 100):
        _drive(core, v[k:k + 100], [])
        sizes.append(core.stats()["buffered_frames"]["vehicle"])
    assert max(sizes[10:]) < 250  # window 0.5 s + horizon 1 s + slack, at 100 Hz


def test_unanswered_requests_are_given_up_and_triggers_go_on(vehicle20):
    core = _core()
    core.push_frames("vehicle", vehicle20[:300])
    reqs = [e for e in core.advance(int(vehicle20["t_ns"][299])) if isinstance(e, InferenceRequest)]
    assert reqs  # never answered
    core.push_frames("vehicle", vehicle20[300:1000])
    out = core.advance(int(vehicle20["t_ns"][999]))
    out += core.advance(int(vehicle20["t_ns"][999]))  # the caller had its chance: stop waiting
    s = core.stats()
    assert s["predictions_late"] >= len(_ticks(reqs)) - 10
    assert s["trigger_ticks"] > 400
    assert any(isinstance(e, TriggerFired) and e.trigger == "fast" for e in out)


def test_no_contract_runs_triggers_only(vehicle20):
    core = ShadowCore(None, compile_triggers(TRIGGERS[1:]), tick_hz=50.0)
    core.push_frames("vehicle", vehicle20)
    out = core.advance(int(vehicle20["t_ns"][-1]))
    assert {e.trigger for e in out} == {"engaged", "fast"}
    assert VEHICLE.name in core.stats()["buffered_frames"]


def test_an_answer_after_its_history_is_gone_is_counted_not_scored(vehicle20):
    core = _core()
    core.push_frames("vehicle", vehicle20[:300])
    reqs = [e for e in core.advance(int(vehicle20["t_ns"][299])) if isinstance(e, InferenceRequest)]
    core.advance(int(vehicle20["t_ns"][299]))
    for k in range(300, 2000, 100):  # 17 s later, the request's window is long trimmed
        core.push_frames("vehicle", vehicle20[k:k + 100])
        core.advance(int(vehicle20["t_ns"][k + 99]))
    assert len(reqs) == 1 and len(reqs[0]) > 1
    core.submit(reqs[0], _numpy_model(reqs[0]))
    out = core.advance(int(vehicle20["t_ns"][-1]))
    assert not set(d.t_ns for d in _divs(out)) & set(_ticks(reqs))
    assert core.stats()["predictions_unscorable"] == len(reqs[0])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.integers(1, 40), min_size=1, max_size=60), min_size=1, max_size=12),
       st.lists(st.floats(-0.1, 1.1), min_size=1, max_size=20), st.booleans(), st.booleans())
def test_a_buffers_tuple_reads_match_a_search_over_its_frames(pushes, queries, native, strided):
    """``_Buffer.row_at`` (the tick path: the newest rows kept as tuples, a search behind them)
    gives the zero-order hold a search over all the frames gives, whatever the push sizes; the
    buffer holds the very frames pushed, copied by numpy or (``native``) by one memmove, from
    contiguous or strided arrays (which the memmove leaves to numpy)."""
    from shadowd.core.pipeline import _Buffer

    ffi = P._window_plan([], 1)[0] if native else None
    if native and ffi is None:
        return  # no native build here: the numpy path is the one tested
    buf = _Buffer(VEHICLE.dtype, ffi)
    t = 0
    pushed = []
    for sizes in pushes:
        steps = np.cumsum(sizes)
        frames = np.zeros(2 * len(steps), VEHICLE.dtype)[::2] if strided else np.zeros(len(steps), VEHICLE.dtype)
        frames["t_ns"] = t + steps
        frames["speed_mps"] = (t + steps) * 0.5
        frames["steer_angle_deg"] = -(t + steps) * 0.25
        t = int(frames["t_ns"][-1])
        buf.append(frames, frames.tolist() if len(frames) <= 8 else None)
        pushed.append(frames.copy())
        if len(buf) > 50:
            buf.trim_before(int(buf.t[len(buf) // 2]))
        held = np.concatenate(pushed)[-len(buf):]
        assert buf.frames.tobytes() == held.tobytes() and buf.t.tolist() == held["t_ns"].tolist()
        all_t = buf.t
        for frac in queries:  # anywhere from before the oldest held frame to after the newest
            q = int(all_t[0] + frac * (t - all_t[0])) - 1
            i = int(np.searchsorted(all_t, q, side="right")) - 1
            want = None if i < 0 else buf.frames[i].item()
            assert buf.row_at(q) == want
        assert buf.last_t == int(all_t[-1])
