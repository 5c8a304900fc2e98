"""Clip codec: round trips (Hypothesis), precision, containers, errors and corruption fuzz."""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from shadowd.clip import Clip, Provenance, decode_clip, encode_clip, read_header, verify_clip
from shadowd.clip.codec import FORMAT_VERSION, HEADER_SIZE
from shadowd.core.signals import CAN_RAW_DTYPE, frame_dtype
from shadowd.errors import ClipError
from tests.clip.helpers import assert_clips_equal, real_clip

DATA = Path(__file__).parent / "data"
PROV = Provenance("veh", "nt2")

# ---------------------------------------------------------------- round trips

_scalar = st.sampled_from(["<i1", "<i2", "<i4", "<i8", "<u1", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8", "?"])


@st.composite
def structured_arrays(draw):
    n_fields = draw(st.integers(1, 5))
    fields = [("t_ns", "<i8")]
    for i in range(n_fields):
        fmt = draw(_scalar)
        shape = draw(st.sampled_from([(), (), (3,), (2, 2)]))
        fields.append((f"f{i}", fmt, shape) if shape else (f"f{i}", fmt))
    dtype = np.dtype(fields)
    n = draw(st.integers(0, 40))
    a = draw(hnp.arrays(dtype, n, elements=None))
    a["t_ns"] = draw(hnp.arrays(np.int64, n, elements=st.integers(-(2**62), 2**62)))  # order not required
    return a


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(structured_arrays())
def test_any_structured_array_round_trips_bit_exact_except_microsecond_time(a):
    clip = Clip(PROV, 0, 1, streams={"s": a})
    back = decode_clip(encode_clip(clip)).streams["s"]
    assert back.dtype == a.dtype
    assert np.array_equal(back["t_ns"], (a["t_ns"] // 1000) * 1000)
    for f in a.dtype.names[1:]:
        assert a[f].tobytes() == back[f].tobytes(), f


@given(
    hnp.arrays(np.float32, st.integers(0, 50), elements=st.floats(-1e5, 1e5, width=32)),
    st.sampled_from([0.001, 0.01, 0.5]),
)
def test_float_with_writer_precision_comes_back_within_half_a_quantum(x, p):
    a = np.zeros(len(x), [("t_ns", "<i8"), ("v", "<f4")])
    a["t_ns"] = np.arange(len(x)) * 1000
    a["v"] = x
    back = decode_clip(encode_clip(Clip(PROV, 0, 1, streams={"s": a}), precisions={"s": {"v": p}}))
    err = np.abs(back.streams["s"]["v"].astype(np.float64) - x)
    assert (err <= p / 2 * (1 + 1e-6) + np.abs(x) * 2e-7).all()
    assert back.precisions == {"s": {"v": p}}


@st.composite
def can_frames(draw):
    n = draw(st.integers(0, 60))
    a = np.zeros(n, CAN_RAW_DTYPE)
    t = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 10**12)))
    a["t_ns"] = np.sort(t) if draw(st.booleans()) else t  # a log may be out of order
    a["bus"] = draw(hnp.arrays(np.uint8, n, elements=st.integers(0, 3)))
    a["can_id"] = draw(hnp.arrays(np.uint32, n, elements=st.sampled_from([0x25, 0x2E4, 0x1FFFFFFF, 7])))
    a["flags"] = draw(hnp.arrays(np.uint16, n, elements=st.integers(0, 7)))
    a["dlc"] = draw(hnp.arrays(np.uint8, n, elements=st.sampled_from([0, 1, 5, 8, 64])))
    data = draw(hnp.arrays(np.uint8, (n, 64)))
    data[np.arange(64)[None, :] >= a["dlc"][:, None]] = 0
    a["data"] = data
    return a


@given(can_frames())
def test_raw_can_frames_round_trip_in_original_order(a):
    back = decode_clip(encode_clip(Clip(PROV, 0, 1, streams={"can_raw": a}))).streams["can_raw"]
    expect = a.copy()
    expect["t_ns"] = expect["t_ns"] // 1000 * 1000
    assert back.tobytes() == expect.tobytes()


@given(can_frames(), st.data())
def test_can_payload_bytes_past_the_dlc_do_not_change_the_encoding(a, data):
    """The encoder keeps only the dlc bytes of each frame (dlc past 64: all 64)."""
    a["dlc"] = data.draw(hnp.arrays(np.uint8, len(a), elements=st.sampled_from([0, 3, 8, 12, 64, 65, 255])))
    noisy = a.copy()
    noisy["data"] = data.draw(hnp.arrays(np.uint8, (len(a), 64)))
    noisy["data"][np.arange(64)[None, :] < a["dlc"][:, None]] = a["data"][np.arange(64)[None, :] < a["dlc"][:, None]]
    assert encode_clip(Clip(PROV, 0, 1, streams={"can_raw": noisy})) == encode_clip(Clip(PROV, 0, 1, streams={"can_raw": a}))


def test_canonical_topics_are_stored_at_their_signal_precision():
    v = np.zeros(3, frame_dtype("vehicle"))
    v["t_ns"] = [1_000, 2_000, 3_000]
    v["steer_angle_deg"] = [1.2345, -7.891, 0.004]  # precision 0.01
    back = decode_clip(encode_clip(Clip(PROV, 0, 1, streams={"vehicle": v}))).streams["vehicle"]
    assert np.allclose(back["steer_angle_deg"], [1.23, -7.89, 0.0], atol=1e-6)


def test_column_with_nan_is_stored_bit_exact_even_with_a_precision():
    p = np.zeros(3, frame_dtype("perception"))
    p["t_ns"] = [0, 1000, 2000]
    p["lead_distance_m"] = [np.nan, 12.3456, np.inf]
    back = decode_clip(encode_clip(Clip(PROV, 0, 1, streams={"perception": p}))).streams["perception"]
    assert back["lead_distance_m"].tobytes() == p["lead_distance_m"].tobytes()


def test_real_clip_round_trips_with_provenance_causes_and_precision():
    clip = real_clip()
    assert_clips_equal(clip, decode_clip(encode_clip(clip)))


def test_stream_without_t_ns_first_is_refused_with_a_clear_error():
    a = np.zeros(2, [("x", "<f4"), ("t_ns", "<i8")])
    with pytest.raises(ClipError, match="first field must be an integer t_ns"):
        encode_clip(Clip(PROV, 0, 1, streams={"bad": a}))


def test_string_field_is_refused_naming_the_field():
    a = np.zeros(2, [("t_ns", "<i8"), ("label", "S4")])
    with pytest.raises(ClipError, match="field 'label'"):
        encode_clip(Clip(PROV, 0, 1, streams={"bad": a}))


# ---------------------------------------------------------------- dictionaries


def _train(n: int = 40) -> zstandard.ZstdCompressionDict:
    from shadowd.clip.dictionary import train_dictionary

    samples = [encode_clip(real_clip(seconds=0.3, start_s=s)) for s in np.linspace(1, 50, n)]
    return train_dictionary(samples, size_bytes=16_384)


def test_clip_written_with_a_dictionary_needs_it_and_names_its_id():
    d = _train()
    clip = real_clip(seconds=0.3, start_s=55)
    data = encode_clip(clip, dictionary=d)
    assert read_header(data).dictionary_id == d.dict_id()
    with pytest.raises(ClipError, match=f"dictionary id {d.dict_id()}"):
        decode_clip(data)
    assert_clips_equal(clip, decode_clip(data, dictionaries=[d]))


# ---------------------------------------------------------------- container errors


def test_foreign_file_is_reported_as_bad_magic():
    with pytest.raises(ClipError, match="bad magic"):
        decode_clip(b"PK\x03\x04" + b"\0" * 100)


def test_newer_format_version_is_refused_naming_both_versions():
    data = bytearray(encode_clip(real_clip(0.2)))
    struct.pack_into("<H", data, 4, FORMAT_VERSION + 1)
    with pytest.raises(ClipError, match=rf"version {FORMAT_VERSION + 1} \(this build reads 1..{FORMAT_VERSION}\)"):
        decode_clip(bytes(data))


def test_truncated_file_names_the_byte_it_ends_at():
    data = encode_clip(real_clip(0.2))
    with pytest.raises(ClipError, match=f"truncated at byte {len(data) - 5}"):
        decode_clip(data[:-5])
    with pytest.raises(ClipError, match="truncated at byte 7"):
        decode_clip(data[:7])


def test_flipped_bit_in_the_body_is_a_checksum_mismatch():
    data = bytearray(encode_clip(real_clip(0.2)))
    data[HEADER_SIZE + 10] ^= 0x10
    with pytest.raises(ClipError, match="checksum mismatch"):
        verify_clip(bytes(data))


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    return encode_clip(real_clip(0.5))


@given(st.data())
def test_random_corruption_of_a_real_clip_is_an_error_or_an_identical_decode(real_bytes, data):
    buf = bytearray(real_bytes)
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert", "overwrite"]))
    pos = data.draw(st.integers(0, len(buf) - 1))
    if kind == "flip":
        buf[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del buf[pos:]
    elif kind == "insert":
        buf[pos:pos] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        chunk = data.draw(st.binary(min_size=1, max_size=16))
        buf[pos:pos + len(chunk)] = chunk
    try:
        got = decode_clip(bytes(buf))
    except ClipError:
        return
    assert bytes(buf) == real_bytes  # only an unchanged file may decode
    assert got is not None


# ---------------------------------------------------------------- old versions stay readable

FIXTURE = DATA / "v1_rav4_0p5s.clip"
FIXTURE_EXPECT = DATA / "v1_rav4_0p5s.json"


def _summary(clip: Clip) -> dict:
    import hashlib

    return {
        "provenance": {k: v for k, v in dataclasses.asdict(clip.provenance).items() if k != "triggers"},
        "triggers": [t.name for t in clip.provenance.triggers],
        "t0_ns": clip.t0_ns, "t1_ns": clip.t1_ns, "priority": clip.priority,
        "causes": [c.trigger for c in clip.causes],
        "streams": {k: {"frames": len(a), "sha256": hashlib.sha256(a.tobytes()).hexdigest()} for k, a in clip.streams.items()},
    }


def test_committed_v1_clip_still_decodes_to_the_same_content():
    if os.environ.get("SHADOWD_REGEN_CLIP_FIXTURE"):  # run once when a v1 fixture is (re)made
        data = encode_clip(real_clip(0.5, start_s=20))
        FIXTURE.write_bytes(data)
        FIXTURE_EXPECT.write_text(json.dumps(_summary(decode_clip(data)), indent=1, sort_keys=True) + "\n")
    clip = decode_clip(FIXTURE.read_bytes())
    assert read_header(FIXTURE.read_bytes()).format_version == 1
    assert _summary(clip) == json.loads(FIXTURE_EXPECT.read_text())


def test_committed_v1_clip_content_encodes_to_the_same_protobuf_body():
    """Pins the column encoders' bytes (the zstd frame around them may differ between zstd
    versions and tunings, the body may not)."""
    from shadowd.clip.codec import clip_to_proto, decode_proto

    data = FIXTURE.read_bytes()
    assert clip_to_proto(decode_clip(data)) == decode_proto(data)[1]


def test_same_clip_encodes_to_the_same_bytes_in_every_process():
    import subprocess
    import sys

    code = (
        "import hashlib, dataclasses; from tests.clip.helpers import real_clip; from shadowd.clip import encode_clip\n"
        "c = real_clip(0.2); c.provenance = dataclasses.replace(c.provenance, extra={f'k{i}': str(i) for i in range(30)})\n"
        "print(hashlib.sha256(encode_clip(c)).hexdigest())"
    )
    root = Path(__file__).resolve().parents[2]
    digests = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root,
                       env={**os.environ, "PYTHONHASHSEED": str(seed)}, timeout=120).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert len(digests) == 1


def _rewrap(body: bytes) -> bytes:
    """A container with a valid checksum around an arbitrary body (what a buggy or hostile writer makes)."""
    import hashlib

    from shadowd.clip.codec import _HEADER, FLAG_ZSTD, MAGIC

    z = zstandard.ZstdCompressor(level=1).compress(body)
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_ZSTD, 0, len(z), len(body))
    return header + z + hashlib.sha256(header + z).digest()


@pytest.fixture(scope="module")
def real_body(real_bytes) -> bytes:
    from shadowd.clip.codec import decode_proto

    return decode_proto(real_bytes)[1].SerializeToString(deterministic=True)


@given(st.data())
def test_checksummed_but_inconsistent_content_is_a_clip_error_never_a_crash(real_body, data):
    buf = bytearray(real_body)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(buf) - 1))
        if data.draw(st.booleans()):
            buf[pos] ^= 1 << data.draw(st.integers(0, 7))
        else:
            buf[pos] = data.draw(st.integers(0, 255))
    try:
        decode_clip(_rewrap(bytes(buf)))
    except ClipError:
        pass


def test_stream_claiming_absurd_frame_count_is_refused_before_allocating(real_body):
    from shadowd.clip import clip_pb2 as pb

    m = pb.Clip()
    m.ParseFromString(real_body)
    m.streams[1].frame_count = 1 << 40
    with pytest.raises(ClipError, match="over the .*-byte limit"):
        decode_clip(_rewrap(m.SerializeToString()))
