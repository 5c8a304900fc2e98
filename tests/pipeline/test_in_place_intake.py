"""Frames read from a ring straight into ShadowCore's buffers (``RingDrain`` into
``ShadowCore.intake`` / ``commit``, the service's path) end as frames fed the usual way
(late ones dropped by the reader, then ``push_frames``): the same buffered frames, the same
counters, the same events, with late, repeated and out-of-order stamps in any batching."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.core.divergence import METRIC_NAMES
from shadowd.core.pipeline import ShadowCore
from shadowd.core.signals import frame_dtype
from shadowd.core.triggers import compile_triggers
from shadowd.ring import DRAIN_FIELDS, RingDrain, RingReader, RingWriter, drain_available

from .test_shadow_core import NATIVE_TRIGGERS, TRIGGERS

pytestmark = pytest.mark.skipif(not drain_available() or len(NATIVE_TRIGGERS) < 2,
                                reason="the native build has no ring drain or trigger evaluator")

VEHICLE = frame_dtype("vehicle")
MS = 1_000_000


def _core():
    return ShadowCore(None, compile_triggers(TRIGGERS, metric_names=METRIC_NAMES), tick_hz=50.0)


def _stats(core) -> dict:
    """Counters, with an empty buffer counted as none (``intake`` makes the buffer before the
    first frame arrives, ``push_frames`` with the first frame)."""
    out = core.stats()
    out["buffered_frames"] = {k: v for k, v in out["buffered_frames"].items() if v}
    return out


def _buffered(core) -> bytes:
    buf = core._buffers.get("vehicle")
    return b"" if buf is None else buf.frames.tobytes()


@st.composite
def batches(draw):
    """Wake-ups: (frames, lateness of the clock behind the newest, in ms) with steps that go
    back, repeat and jump."""
    out, t = [], 1_000 * MS
    for _ in range(draw(st.integers(1, 12))):
        n = draw(st.integers(0, 20))
        steps = draw(st.lists(st.sampled_from((10, 10, 10, 0, -5, -30, 40)), min_size=n, max_size=n))
        f = np.zeros(n, VEHICLE)
        for i, s in enumerate(steps):
            t += s * MS
            f[i]["t_ns"] = t
            f[i]["speed_mps"] = 10 + (t // MS) % 13
            f[i]["adas_steering"] = (t // (100 * MS)) % 2
        out.append((f, draw(st.sampled_from((0, 15, 60)))))
    return out


@settings(max_examples=40, deadline=None)
@given(batches(), st.sampled_from((4, 16, 1024)))
def test_frames_drained_in_place_equal_frames_fed(tmp_path_factory, wakeups, room):
    path = str(tmp_path_factory.mktemp("ring") / "vehicle")
    writer = RingWriter.create(path, VEHICLE, 4096)
    reader = RingReader.open(path, VEHICLE, start="oldest")
    drain = RingDrain([reader], room)
    fed, placed = _core(), _core()
    assert placed.takes_frames_in_place
    want, got, late_fed, late_placed = [], [], 0, 0
    now_ns = newest = 0
    generation, intakes = -1, 0
    try:
        for frames, behind_ms in wakeups:
            # the usual path: the reader drops late frames, the core the out-of-order ones
            keep = frames[frames["t_ns"] > now_ns]
            late_fed += len(frames) - len(keep)
            fed.push_frames("vehicle", keep)
            # in place: the same frames through a real ring, as many reads as the room needs
            if len(frames):
                writer.write(frames)
            full = False
            while True:
                # as the service does: ask again only when the core's memory moved or filled up
                if full or placed.intake_generation != generation:
                    drain.into(0, *placed.intake("vehicle", room))
                    generation = placed.intake_generation
                    intakes += 1
                r = dict(zip(DRAIN_FIELDS, drain.run(now_ns)))
                full = bool(r["full"])
                late_placed += r["late"]
                placed.commit("vehicle", r["n"], r["out_of_order"])
                if not full:
                    break
            if len(frames):
                newest = max(newest, int(frames["t_ns"].max()))
            now_ns = max(now_ns, newest - behind_ms * MS)
            want += fed.advance(now_ns)
            got += placed.advance(now_ns)
    finally:
        reader.close()
        writer.unlink()
        writer.close()
    assert intakes <= 1 + sum(len(f) for f, _ in wakeups) // room + 4  # the memory handed out is reused
    assert late_placed == late_fed
    assert _stats(placed) == _stats(fed)
    assert _buffered(placed) == _buffered(fed)
    assert got == want


def test_a_topic_the_core_does_not_keep_is_only_counted(tmp_path):
    writer = RingWriter.create(str(tmp_path / "perception"), frame_dtype("perception"), 64)
    reader = RingReader.open(str(tmp_path / "perception"), frame_dtype("perception"), start="oldest")
    drain = RingDrain([reader], 16)
    core = _core()
    frames = np.zeros(5, frame_dtype("perception"))
    frames["t_ns"] = np.arange(1, 6) * 10 * MS
    writer.write(frames)
    assert core.intake("perception", 16) is None
    drain.discard(0)
    r = dict(zip(DRAIN_FIELDS, drain.run(0)))
    core.commit("perception", r["n"], r["out_of_order"])
    assert (r["read"], r["n"], r["last_ns"]) == (5, 5, 50 * MS)
    assert core.stats()["frames_not_needed"] == 5 and "perception" not in core.stats()["buffered_frames"]
    reader.close()
    writer.close()
