"""The C trigger evaluator (native/src/trig.c) read from frames in place (``evaluate_held``,
ShadowCore's path): the values are the frames' zero-order holds, and the events those of the
Python engine given them. (Its values and events given per tick or per chunk, against the
Python evaluators: tests/triggers/test_batch_equivalence.py.)"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core.triggers import TriggerEngine, compile_triggers, native_available

from .reference import ALL_NAMES, ticks
from .test_batch_equivalence import trigger_defs

pytestmark = pytest.mark.skipif(not native_available(),
                                reason="the native build has no trigger evaluator")


def _frames(t: np.ndarray, cols: dict[str, np.ndarray]) -> np.ndarray:
    """The columns as frames of mixed field types (float32, uint8 flags), strictly ascending."""
    dtype = np.dtype([("t_ns", "<i8"), ("speed_mps", "<f4"), ("accel_long_mps2", "<f8"), ("divergence", "<f4"),
                      ("brake_pressed", "u1"), ("adas_engaged", "u1")])
    keep = np.concatenate(([True], t[1:] > t[:-1]))
    out = np.zeros(int(keep.sum()), dtype)
    out["t_ns"] = t[keep]
    for name in ALL_NAMES:
        x = cols[name][keep]
        out[name] = np.where(np.isnan(x), 0, x) if dtype[name].kind == "u" else x
    return out


@settings(max_examples=60)
@given(trigger_defs(), ticks(min_size=2, max_size=80), st.integers(1, 9), st.integers(-30_000_000, 30_000_000))
def test_held_from_frames_equals_the_engine_given_the_holds(defs, tk, chunk, shift_ns):
    """``evaluate_held`` reads each value as the newest frame at or before the tick (NaN before
    the first): the events of ``evaluate`` given exactly those values, in chunks of any size."""
    t, cols = tk
    frames = _frames(t, cols)
    ticks_ns = np.unique(t + shift_ns)  # ticks between, on and before frames
    ts = compile_triggers(defs)
    ref = TriggerEngine(ts, native=False)
    want = []
    for tick in ticks_ns.tolist():
        i = int(np.searchsorted(frames["t_ns"], tick, "right")) - 1
        values = {n: float(frames[n][i]) for n in ALL_NAMES} if i >= 0 else {}
        want += ref.evaluate(tick, values)
    eng = TriggerEngine(ts, native=True)
    sources = eng.hold_sources([(frames.dtype, [(n, n) for n in ALL_NAMES])])
    tcol = np.ascontiguousarray(frames["t_ns"])
    ffi = eng.native.ffi
    sources.set(0, len(frames), ffi.from_buffer("int64_t[]", tcol), ffi.from_buffer("uint8_t[]", frames))
    got = []
    for lo in range(0, len(ticks_ns), chunk):
        part = ticks_ns[lo:lo + chunk]
        got += eng.evaluate_held(part.tolist() if len(part) <= 8 else part, sources)
    assert got == want
    assert eng.stats() == ref.stats()


def test_a_chunk_with_more_edges_than_one_call_holds_gives_them_all():
    # 200 ticks, a trigger that toggles every tick: 100 edges, more than the 64 per call
    ts = compile_triggers([{"name": "toggle", "expr": "speed_mps > 0", "cooldown_s": 0, "max_per_hour": 3600}])
    t = np.arange(200, dtype=np.int64) * 20_000_000
    speed = np.where(np.arange(200) % 2 == 0, 1.0, -1.0)
    got = TriggerEngine(ts, native=True).evaluate_batch(t, {"speed_mps": speed})
    want = TriggerEngine(ts, native=False).evaluate_batch(t, {"speed_mps": speed})
    assert len(got) == 100 and got == want
