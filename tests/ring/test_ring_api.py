"""The typed Python ring API: dtype checks, single records, batches, waits, history look-up,
sizing helpers, handle lifecycle, and the ring.h <-> ring.py handshake staying in sync."""

from __future__ import annotations

import pathlib
import re
import threading
import time

import numpy as np
import pytest

from shadowd import ring
from shadowd.core.signals import frame_dtype
from shadowd.errors import RingError
from shadowd.ring import RingHistory, RingReader, RingWriter, capacity_for, ring_memory_bytes, segment_path

ROOT = pathlib.Path(__file__).resolve().parents[2]
VEHICLE = frame_dtype("vehicle")
IMU = frame_dtype("imu")


def _frames(dtype, t_ns) -> np.ndarray:
    out = np.zeros(len(t_ns), dtype)
    out["t_ns"] = t_ns
    return out


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "seg")


def test_header_constants_match_the_python_handshake():
    header = (ROOT / "native/include/shadowd/ring.h").read_text()
    source = (ROOT / "native/src/ring.c").read_text()
    defines = dict(re.findall(r"#define (SHADOWD_RING_\w+) (\d+)", header))
    assert int(defines["SHADOWD_RING_LAYOUT_VERSION"]) == ring.LAYOUT_VERSION
    assert int(defines["SHADOWD_RING_ABI_VERSION"]) == ring._ABI_VERSION
    magic = re.search(r"#define RING_MAGIC (0x[0-9a-fA-F]+)ULL", source).group(1)
    assert int(magic, 16) == ring._MAGIC
    assert ring._MAGIC.to_bytes(8, "little") == b"SHDWRING"


def test_batch_write_and_read_keep_every_field(path):
    rng = np.random.default_rng(1)
    frames = np.zeros(100, VEHICLE)
    for name in VEHICLE.names:
        frames[name] = rng.integers(-100, 100, 100).astype(VEHICLE[name])
    frames["t_ns"] = np.arange(100) * 10_000_000
    with RingWriter.create(path, VEHICLE, 128) as w, RingReader.open(path, VEHICLE) as r:
        assert w.write(frames) == 100
        out = np.zeros(256, VEHICLE)
        n, dropped = r.read_into(out)
        assert (n, dropped) == (100, 0)
        assert out[:n].tobytes() == frames.tobytes()


def test_single_record_write_and_read_one(path):
    with RingWriter.create(path, IMU, 8) as w, RingReader.open(path, IMU) as r:
        assert r.read_one() is None
        rec = _frames(IMU, [42])[0]
        rec["gyro_z_rps"] = 0.5
        w.write(rec)
        got = r.read_one()
        assert got["t_ns"] == 42 and got["gyro_z_rps"] == np.float32(0.5)
        assert r.read_one() is None


def test_reader_lapped_reports_drops_and_resumes_at_oldest(path):
    with RingWriter.create(path, IMU, 16) as w, RingReader.open(path, IMU) as r:
        w.write(_frames(IMU, np.arange(50)))
        got = r.read(100)
        assert list(got["t_ns"]) == list(range(34, 50))
        assert r.dropped_total == 34
        assert r.stats.frames == 16


def test_wrong_dtype_write_is_refused_with_the_expected_dtype(path):
    with RingWriter.create(path, VEHICLE, 8) as w:
        with pytest.raises(RingError, match="frame_dtype"):
            w.write(_frames(IMU, [1]))
        assert w.info.head_seq == 0


def test_read_into_refuses_wrong_buffers(path):
    with RingWriter.create(path, IMU, 8), RingReader.open(path, IMU) as r:
        with pytest.raises(RingError, match="1-D numpy array of dtype"):
            r.read_into(np.zeros(4, VEHICLE))
        with pytest.raises(RingError, match="contiguous"):
            r.read_into(np.zeros(8, IMU)[::2])


def test_reusing_the_same_output_array_sees_new_frames(path):
    with RingWriter.create(path, IMU, 64) as w, RingReader.open(path, IMU) as r:
        out = np.zeros(4, IMU)
        for k in range(5):
            w.write(_frames(IMU, [k * 10, k * 10 + 1]))
            n, _ = r.read_into(out)
            assert list(out["t_ns"][:n]) == [k * 10, k * 10 + 1]


def test_wait_times_out_then_wakes_on_write(path):
    with RingWriter.create(path, IMU, 8) as w, RingReader.open(path, IMU) as r:
        t0 = time.monotonic()
        assert r.wait(0.05) is False
        assert time.monotonic() - t0 >= 0.05
        timer = threading.Timer(0.05, lambda: w.write(_frames(IMU, [7])))
        timer.start()
        try:
            t0 = time.monotonic()
            assert r.wait(10.0) is True
            assert time.monotonic() - t0 < 5.0
        finally:
            timer.join()
        assert r.poll() is True
        assert r.read(4)["t_ns"].tolist() == [7]
        assert r.poll() is False


def test_frames_in_window_leave_cursors_alone(path):
    with RingWriter.create(path, IMU, 32) as w, RingReader.open(path, IMU, start="oldest") as r:
        w.write(_frames(IMU, np.arange(40) * 5))  # the ring keeps t = 40..195
        assert list(r.frames(100, 120)["t_ns"]) == [100, 105, 110, 115, 120]
        assert list(w.frames(0, 42)["t_ns"]) == [40]
        assert len(r.frames(300, 400)) == 0
        assert len(r.frames(-(2**70), 2**70)) == 32  # open-ended windows are clamped
        history = RingHistory({"imu": r})
        assert list(history.frames("imu", 190, 10**9)["t_ns"]) == [190, 195]
        with pytest.raises(RingError, match="no ring for topic 'vehicle'"):
            history.frames("vehicle", 0, 1)
        assert r.read(1)["t_ns"].tolist() == [40]  # the cursor did not move


def test_eight_readers_each_see_every_frame(path):
    with RingWriter.create(path, IMU, 1024) as w:
        readers = [RingReader.open(path, IMU) for _ in range(8)]
        w.write(_frames(IMU, np.arange(500)))
        for r in readers:
            got = r.read(1000)
            assert list(got["t_ns"]) == list(range(500))
            r.close()


def test_second_writer_is_refused_while_the_first_lives(path):
    with RingWriter.create(path, IMU, 8):
        with pytest.raises(RingError, match="another writer"):
            RingWriter.create(path, IMU, 8)
    with RingWriter.create(path, IMU, 8) as again:  # after close it can be re-attached
        assert again.info.writer_generation == 2


def test_reattaching_writer_resumes_at_the_head(path):
    with RingWriter.create(path, IMU, 8) as w:
        w.write(_frames(IMU, [1, 2, 3]))
    with RingWriter.create(path, IMU, 8) as w, RingReader.open(path, IMU, start="oldest") as r:
        w.write(_frames(IMU, [4]))
        assert list(r.read(10)["t_ns"]) == [1, 2, 3, 4]
    with RingWriter.create(path, IMU, 8, replace=True) as w:  # compatible: still re-attached
        assert w.info.head_seq == 4
    with RingWriter.create(path, IMU, 16, replace=True) as w:  # other capacity: a new ring
        assert w.info.head_seq == 0 and w.capacity == 16


def test_reader_learns_that_its_ring_was_replaced(path):
    with RingWriter.create(path, IMU, 8):
        pass
    with RingReader.open(path, IMU) as r:
        with RingWriter.create(path, IMU, 8):  # a restart re-attaches: same segment
            assert r.replaced is False
        with RingWriter.create(path, IMU, 16, replace=True) as w:
            assert r.replaced is True
            assert r.writer_alive is False  # the old segment has no writer any more
            w.write(_frames(IMU, [5]))
        with RingReader.open(path, IMU, start="oldest") as again:
            assert again.replaced is False
            assert again.read(4)["t_ns"].tolist() == [5]


def test_closed_handle_raises_a_clear_error(path):
    w = RingWriter.create(path, IMU, 8)
    w.close()
    w.close()  # idempotent
    with pytest.raises(RingError, match="handle is closed"):
        w.write(_frames(IMU, [1]))


def test_writer_alive_follows_the_writer(path):
    w = RingWriter.create(path, IMU, 8)
    r = RingReader.open(path, IMU)
    assert r.writer_alive is True
    w.close()
    assert r.writer_alive is False
    r.close()


def test_sizing_helpers():
    assert ring_memory_bytes(VEHICLE, 1024) == 384 + 1024 * 128  # 24 + 50 B in 64 B lines
    assert ring_memory_bytes(50, 1024) == ring_memory_bytes(VEHICLE, 1024)
    with pytest.raises(RingError, match="power of two"):
        ring_memory_bytes(VEHICLE, 1000)
    assert capacity_for(10.0, 100.0) == 2048  # 1250 frames with the 25 % margin
    assert capacity_for(0.01, 100.0) == 2
    with pytest.raises(RingError, match="above the ring maximum"):
        capacity_for(1e6, 1e6)
    with pytest.raises(RingError):
        capacity_for(-1, 100)


def test_segment_path_maps_topics_to_dev_shm():
    assert segment_path("vehicle") == "/dev/shm/shadowd.vehicle"
    assert segment_path("/tmp/x/seg") == "/tmp/x/seg"
    with pytest.raises(RingError, match="not valid"):
        segment_path("bad name!")


def test_invalid_dtype_and_start_are_refused(path):
    with pytest.raises(RingError):
        RingWriter.create(path, np.dtype([("t_ns", "<i8"), ("o", "O")]), 8)
    with pytest.raises(RingError, match="t_ns is"):
        RingWriter.create(path, np.dtype([("t_ns", "<f8")]), 8)
    with RingWriter.create(path, IMU, 8):
        with pytest.raises(RingError, match='use "latest" or "oldest"'):
            RingReader.open(path, IMU, start="middle")


def test_open_with_timeout_waits_for_the_producer(path):
    writers = []
    timer = threading.Timer(0.1, lambda: writers.append(RingWriter.create(path, IMU, 8)))
    timer.start()
    try:
        with RingReader.open(path, IMU, timeout_s=10.0) as r:
            assert r.capacity == 8
    finally:
        timer.join()
        for w in writers:
            w.close()
    with pytest.raises(RingError, match="no such segment"):
        RingReader.open(path + ".missing", IMU, timeout_s=0.05)
