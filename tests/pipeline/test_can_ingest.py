"""CAN ingest on the real RAV4 minute: decoded values, the vectorized decoder, bad input."""

from __future__ import annotations

import cantools
import can
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from shadowd.core.align import sample
from shadowd.edges.can_ingest import CanIngest, decode_raw_log, read_can_log
from shadowd.edges.dbc_decode import CompiledDbc
from shadowd.edges.imu_ingest import load_phone_imu
from shadowd.edges.platforms import dbc_path, load_platform

from .conftest import DATA


def test_rav4_decode_reproduces_documented_physical_ranges(rav4_topics):
    topics, stats = rav4_topics
    v = topics["vehicle"]
    assert len(v) == pytest.approx(6000, abs=5)  # 60 s at 100 Hz
    assert (v["steer_angle_deg"].min(), v["steer_angle_deg"].max()) == pytest.approx((-4.6, 2.5), abs=1e-5)
    assert v["speed_mps"].min() * 3.6 == pytest.approx(29.4, abs=0.05)
    assert v["speed_mps"].max() * 3.6 == pytest.approx(73.1, abs=0.06)  # README rounds 73.05
    assert np.degrees(v["yaw_rate_rps"].min()) == pytest.approx(-2.27, abs=0.01)
    assert np.degrees(v["yaw_rate_rps"].max()) == pytest.approx(0.42, abs=0.01)
    assert (v["brake_pressed"] == 0).all()  # no braking in this minute
    assert (v["turn_signal"] == 0).all()  # TURN_SIGNALS = 3 (none) maps to 0
    assert 0.80 < v["adas_engaged"].mean() < 0.90  # stock ACC active ~85 %
    assert stats.out_of_order == 0 and stats.malformed_lines == 0 and stats.wrong_length == 0


def test_rav4_steer_speed_yaw_equal_the_20hz_reference_csv(rav4_topics):
    v = rav4_topics[0]["vehicle"]
    ref = np.genfromtxt(DATA / "rav4" / "c2k19_rav4_seg40_decoded_20hz.csv", delimiter=",", names=True)
    t = np.round(ref["t_boot_s"] * 1e9).astype(np.int64)
    at = lambda name: sample(v["t_ns"], v[name].astype(np.float64), t, "zoh")  # noqa: E731
    np.testing.assert_allclose(at("steer_angle_deg"), ref["steer_angle_deg"], atol=1e-5)
    np.testing.assert_allclose(at("speed_mps"), ref["speed_mps"], atol=0.006)  # CSV rounds to 3 decimals
    np.testing.assert_allclose(np.degrees(at("yaw_rate_rps")), ref["yaw_rate_dps"], atol=1e-4)
    np.testing.assert_allclose(at("accel_long_mps2"), -ref["accel_x_mps2"], atol=1e-3)
    np.testing.assert_array_equal(at("adas_steering"), ref["op_steer_request"])


def test_rav4_accel_long_speeds_up_positive(rav4_topics):
    v = rav4_topics[0]["vehicle"]
    dv = np.gradient(v["speed_mps"].astype(float), v["t_ns"] / 1e9)
    k = np.ones(50) / 50
    assert np.corrcoef(np.convolve(dv, k, "same"), np.convolve(v["accel_long_mps2"], k, "same"))[0, 1] > 0.5


def test_rav4_handover_to_openpilot_at_about_nine_seconds(rav4_topics):
    v = rav4_topics[0]["vehicle"]
    first = np.flatnonzero(v["adas_steering"] == 1)[0]
    assert 8.5 < (v["t_ns"][first] - v["t_ns"][0]) / 1e9 < 9.5


def test_rav4_radar_gives_a_lead_vehicle(rav4_topics):
    p = rav4_topics[0]["perception"]
    assert len(p) == pytest.approx(1200, abs=3)
    lead = p[p["lead_valid"] == 1]
    assert len(lead) > 0.5 * len(p)
    assert (lead["lead_distance_m"] > 0).all() and (np.abs(lead["lead_lat_m"]) <= 1.8).all()


@pytest.mark.parametrize("dbc", ["toyota_new_mc_pt_generated.dbc", "toyota_adas.dbc"])
def test_vectorized_decoder_equals_cantools_on_the_real_log(rav4_raw, dbc):
    db = cantools.database.load_file(str(dbc_path(dbc)), strict=False)
    comp = CompiledDbc(db)
    channel = "can0" if "pt" in dbc else "can1"
    on_bus = rav4_raw.channel == rav4_raw.channels.index(channel)
    checked = 0
    for fid, msg in comp.by_id.items():
        rows = np.flatnonzero(on_bus & (rav4_raw.can_id == fid))[:300]
        if len(rows) == 0:
            continue
        data = rav4_raw.data[rows]
        ours = msg.decode(data)
        for k, r in enumerate(rows):
            ref = db.decode_message(fid, bytes(data[k, : msg.length]), decode_choices=False)
            for name, value in ref.items():
                assert ours[name][k] == pytest.approx(value, abs=1e-9), (msg.name, name)
        checked += 1
    assert checked >= 10


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_vectorized_decoder_equals_cantools_on_honda_frames(data):
    db = cantools.database.load_file(str(dbc_path("honda_civic_hatchback_ex_2017_can_generated.cantools.dbc")), strict=False)
    comp = CompiledDbc(db)
    msg = data.draw(st.sampled_from([m for m in db.messages if m.length <= 8]))
    payloads = data.draw(st.lists(st.binary(min_size=msg.length, max_size=msg.length), min_size=1, max_size=8))
    arr = np.frombuffer(b"".join(payloads), np.uint8).reshape(len(payloads), msg.length)
    ours = comp.by_id[msg.frame_id].decode(arr)
    for k, p in enumerate(payloads):
        for name, value in msg.decode(p, decode_choices=False, scaling=True).items():
            assert ours[name][k] == pytest.approx(float(value), rel=1e-12, abs=1e-9), (msg.name, name)


def _feed_in_chunks(raw, platform, cuts):
    ing = CanIngest(platform)
    bus = np.array([ing.channel_bus(c) for c in raw.channels], np.uint8)[raw.channel]
    edges = [0, *sorted(set(cuts)), len(raw.t_ns)]
    parts = {"vehicle": [], "perception": [], "can_raw": []}
    for a, b in zip(edges[:-1], edges[1:]):
        out = ing.feed_arrays(raw.t_ns[a:b], bus[a:b], raw.can_id[a:b], raw.dlc[a:b], raw.data[a:b], raw.flags[a:b])
        for k in parts:
            parts[k].append(out[k])
    for k, v in ing.flush().items():
        parts[k].append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 135_468), max_size=12))
def test_streaming_in_any_chunks_equals_the_whole_file(rav4_raw, rav4_topics, cuts):
    whole = rav4_topics[0]
    streamed = _feed_in_chunks(rav4_raw, load_platform("nt2"), cuts)
    for topic in ("vehicle", "perception", "can_raw"):
        assert streamed[topic].tobytes() == whole[topic].tobytes(), topic


def test_malformed_input_is_counted_and_survived(rav4_raw):
    p = load_platform("nt2")
    ing = CanIngest(p)
    n = 20_000
    bus = np.array([ing.channel_bus(c) for c in rav4_raw.channels], np.uint8)[rav4_raw.channel][:n]
    t = rav4_raw.t_ns[:n].copy()
    dlc = rav4_raw.dlc[:n].copy()
    flags = rav4_raw.flags[:n].copy()
    ids = rav4_raw.can_id[:n].copy()
    t[5000:5010] -= 10**9  # 10 frames from the past
    steer_rows = np.flatnonzero((ids == 0x25) & (bus == 0))[:7]
    dlc[steer_rows] = 3  # truncated payloads
    flags[100:104] |= 4  # error frames
    ids[200:205] = 0x7FF  # unknown id
    bus[300:302] = 255  # unknown channel
    t[15000:] += 2 * 10**9  # a 2 s gap on every bus
    dropped = np.zeros(n, bool)
    dropped[5000:5010] = dropped[100:104] = True
    unmapped = int(((bus == 255) & ~dropped).sum())  # can129 is not in the profile, plus our 2
    out = ing.feed_arrays(t, bus, ids, dlc, rav4_raw.data[:n], flags)
    s = ing.stats
    assert s.out_of_order == 10 and s.error_frames == 4 and s.unknown_channel == unmapped
    assert s.wrong_length == 7 and s.unknown_id >= 5 and s.gaps >= 3
    assert len(out["vehicle"]) > 400 and np.isfinite(out["vehicle"]["steer_angle_deg"]).all()
    assert (np.diff(out["can_raw"]["t_ns"]) >= 0).all()


def test_malformed_candump_lines_are_counted(tmp_path):
    f = tmp_path / "x.log"
    f.write_text("(1.000000) can0 025#00001000C00000FD\n"
                 "garbage line\n"
                 "(1.010000) can0 025#0000100\n"  # odd number of hex digits
                 "(1.020000) can0 0B4#000000001D0B7A5E\n")
    raw = read_can_log(f)
    assert raw.malformed_lines == 2 and len(raw.t_ns) == 2
    topics, stats = decode_raw_log(raw, load_platform("nt2"))
    assert stats.malformed_lines == 2 and stats.frames_total == 2


def test_python_can_virtual_bus_messages_stream_through_feed(rav4_raw):
    p = load_platform("desktop")
    rows = np.flatnonzero(rav4_raw.channel == rav4_raw.channels.index("can0"))[:3000]
    with can.Bus(interface="virtual", channel="shadowd-test", receive_own_messages=True) as bus:
        ing = CanIngest(p)
        got = []
        for r in rows:
            bus.send(can.Message(timestamp=rav4_raw.t_ns[r] / 1e9, arbitration_id=int(rav4_raw.can_id[r]),
                                 data=bytes(rav4_raw.data[r, : rav4_raw.dlc[r]]), is_extended_id=False, channel="can0"))
            msg = bus.recv(timeout=1.0)
            msg.timestamp = rav4_raw.t_ns[r] / 1e9  # keep the log's clock
            msg.channel = "can0"
            got.append(ing.feed(msg)["vehicle"])
    v = np.concatenate(got)
    assert len(v) > 100 and ing.stats.frames_total == len(rows)
    assert np.isfinite(v["speed_mps"]).all() and 8 < v["speed_mps"].mean() < 21


def test_phone_imu_becomes_vehicle_frame():
    imu = load_phone_imu(DATA / "rav4" / "imu")
    assert len(imu) > 6000 and (np.diff(imu["t_ns"]) > 0).all()
    assert imu["accel_z_mps2"].mean() == pytest.approx(9.8, abs=0.5)  # up is +g at rest/cruise
    ref = np.genfromtxt(DATA / "rav4" / "c2k19_rav4_seg40_decoded_20hz.csv", delimiter=",", names=True)
    t = np.round(ref["t_boot_s"] * 1e9).astype(np.int64)
    gz = sample(imu["t_ns"], imu["gyro_z_rps"], t, "linear")
    ok = ~np.isnan(gz)
    assert np.corrcoef(gz[ok], np.radians(ref["yaw_rate_dps"][ok]))[0, 1] > 0.6  # CAN yaw vs IMU yaw agree


def test_vectorized_candump_parser_equals_the_line_parser(monkeypatch):
    from shadowd.edges import can_ingest

    text = (DATA / "rav4" / "c2k19_rav4_seg40.candump.log").read_bytes()[:400_000]
    text = text[: text.rindex(b"\n") + 1]
    fast = can_ingest._read_candump_fast(text)
    assert fast is not None
    monkeypatch.setattr(can_ingest, "_read_candump_fast", lambda _text: None)
    slow = can_ingest._read_candump(text)
    assert fast.channels == slow.channels
    for k in ("t_ns", "channel", "can_id", "dlc", "flags"):
        np.testing.assert_array_equal(getattr(fast, k), getattr(slow, k))
    np.testing.assert_array_equal(fast.data, slow.data[:, : fast.data.shape[1]])


def test_candump_can_fd_and_extended_ids_take_the_careful_path(tmp_path):
    f = tmp_path / "fd.log"
    f.write_text("(2.000000) can0 18FEF100#0102\n(2.000100) can0 123##1" + "11" * 12 + "\n")
    raw = read_can_log(f)
    assert raw.can_id.tolist() == [0x18FEF100, 0x123] and raw.dlc.tolist() == [2, 12]
    assert raw.flags.tolist() == [1, 2] and raw.data[1, :12].tolist() == [0x11] * 12
