"""Bad segments give a clear, typed error and never crash the process.

Truncated files, a wrong magic, another layout version, a frame size that disagrees with the
reader's dtype, a header that does not add up, and random corruption of a live segment.
"""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shadowd.core.signals import frame_dtype
from shadowd.errors import RingCorruptError, RingError, RingVersionError
from shadowd.ring import LAYOUT_VERSION, RingReader, RingWriter, ring_memory_bytes

VEHICLE = frame_dtype("vehicle")


def _segment(tmp_path, frames: int = 5, capacity: int = 16) -> str:
    path = str(tmp_path / "seg")
    with RingWriter.create(path, VEHICLE, capacity) as w:
        batch = np.zeros(frames, VEHICLE)
        batch["t_ns"] = np.arange(frames) * 10
        w.write(batch)
    return path


def _patch(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_truncated_segment_is_refused_with_both_sizes(tmp_path):
    path = _segment(tmp_path)
    full = ring_memory_bytes(VEHICLE, 16)
    os.truncate(path, full - 10)
    with pytest.raises(RingCorruptError) as err:
        RingReader.open(path, VEHICLE)
    assert "truncated" in str(err.value)
    assert str(full - 10) in str(err.value) and str(full) in str(err.value)
    assert f"rm {path}" in str(err.value)


def test_segment_shorter_than_a_header_is_refused(tmp_path):
    path = _segment(tmp_path)
    os.truncate(path, 17)
    with pytest.raises(RingCorruptError, match="truncated: the file has 17 bytes"):
        RingReader.open(path, VEHICLE)


def test_empty_file_is_refused(tmp_path):
    path = str(tmp_path / "empty")
    open(path, "wb").close()
    with pytest.raises(RingCorruptError):
        RingReader.open(path, VEHICLE)


def test_wrong_magic_is_named_not_a_ring(tmp_path):
    path = _segment(tmp_path)
    _patch(path, 0, b"GARBAGE!")
    with pytest.raises(RingCorruptError, match=r"not a shadowd ring \(magic 0x2145474142524147"):
        RingReader.open(path, VEHICLE)


def test_other_layout_version_is_refused_with_both_versions(tmp_path):
    path = _segment(tmp_path)
    _patch(path, 8, struct.pack("<I", 9))
    with pytest.raises(RingVersionError) as err:
        RingReader.open(path, VEHICLE)
    assert f"layout v9, this build reads v{LAYOUT_VERSION}" in str(err.value)
    assert err.value.errno > 0


def test_frame_size_mismatch_names_both_sizes(tmp_path):
    path = _segment(tmp_path)
    imu = frame_dtype("imu")
    with pytest.raises(RingVersionError) as err:
        RingReader.open(path, imu)
    assert f"{VEHICLE.itemsize}-byte frames" in str(err.value)
    assert f"{imu.itemsize}-byte frames" in str(err.value)


def test_header_that_does_not_add_up_is_refused(tmp_path):
    path = _segment(tmp_path)
    _patch(path, 24, struct.pack("<Q", 12))  # capacity not a power of two
    with pytest.raises(RingCorruptError, match="does not add up"):
        RingReader.open(path, VEHICLE)


def test_creating_over_a_foreign_file_is_refused(tmp_path):
    path = str(tmp_path / "foreign")
    with open(path, "wb") as f:
        f.write(b"precious data" * 100)
    with pytest.raises(RingError, match="other frame size or capacity exists"):
        RingWriter.create(path, VEHICLE, 16)
    with open(path, "rb") as f:
        assert f.read(13) == b"precious data"


def test_missing_segment_says_to_start_the_producer(tmp_path):
    with pytest.raises(RingError, match="start its producer first"):
        RingReader.open(str(tmp_path / "nothing"), VEHICLE)


def test_scribbled_slot_length_raises_and_keeps_earlier_frames(tmp_path):
    path = _segment(tmp_path, frames=5)
    reader = RingReader.open(path, VEHICLE, start="oldest")
    slot = (24 + VEHICLE.itemsize + 63) // 64 * 64
    _patch(path, 384 + 3 * slot + 16, struct.pack("<I", 10**9))
    out = np.zeros(10, VEHICLE)
    n, dropped = reader.read_into(out)
    assert (n, dropped) == (3, 0)  # the good frames before the bad slot are delivered
    assert list(out["t_ns"][:3]) == [0, 10, 20]
    with pytest.raises(RingCorruptError):
        reader.read_into(out)
    reader.close()


@given(
    edits=st.lists(
        st.tuples(st.integers(0, 384 + 16 * 128 - 1), st.binary(min_size=1, max_size=8)), min_size=1, max_size=6
    ),
    shrink_to=st.one_of(st.none(), st.integers(0, 384 + 16 * 128)),
)
def test_random_corruption_never_crashes(tmp_path_factory, edits, shrink_to):
    """Whatever bytes a peer scribbles over the header or slots: a RingError or valid-looking
    frames, never a crash (ASan-less: we rely on the C side validating before copying)."""
    path = _segment(tmp_path_factory.mktemp("c"), frames=20)
    for offset, data in edits:
        _patch(path, offset, data)
    if shrink_to is not None:
        os.truncate(path, shrink_to)
    try:
        reader = RingReader.open(path, VEHICLE, start="oldest")
    except RingError:
        return
    try:
        out = np.zeros(32, VEHICLE)
        for _ in range(3):
            n, _dropped = reader.read_into(out)
            assert 0 <= n <= len(out)
        got = reader.frames(-(2**62), 2**62)
        assert len(got) <= 16
        reader.poll()
        reader.wait(0)
        reader.writer_alive
    except RingError:
        pass
    finally:
        reader.close()
