"""The NT2.5 profile on the Honda bus: frames encoded with cantools from the real DBC go
through a python-can virtual bus and CanIngest, and come out in canonical units."""

from __future__ import annotations

import cantools
import can
import numpy as np
import pytest

from shadowd.adapters import create_adapter
from shadowd.edges.can_ingest import CanIngest
from shadowd.edges.platforms import dbc_path, load_platform

SIGNALS = {
    "ENGINE_DATA": {"XMISSION_SPEED": 72.0},
    "STEERING_SENSORS": {"STEER_ANGLE": -12.3, "STEER_ANGLE_RATE": 40.0},
    "STEER_STATUS": {"STEER_TORQUE_SENSOR": -150},
    "VEHICLE_DYNAMICS": {"LAT_ACCEL": 0.75, "LONG_ACCEL": -1.5},
    "SCM_FEEDBACK": {"LEFT_BLINKER": 1, "RIGHT_BLINKER": 1},
    "GEARBOX_AUTO": {"GEAR_SHIFTER": 4},
    "POWERTRAIN_DATA": {"PEDAL_GAS": 51, "BRAKE_PRESSED": 1, "ACC_STATUS": 1},
    "VSA_STATUS": {"USER_BRAKE": 10.0},
    "STEERING_CONTROL": {"DRIVER_OVERRIDE": 1, "STEER_TORQUE_REQUEST": 0},
}


def _encode(db, name, values):
    msg = db.get_message_by_name(name)
    full = {s.name: 0 for s in msg.signals}
    full.update(values)
    return msg.frame_id, msg.encode(full, scaling=True, strict=False)


def test_honda_frames_decode_to_canonical_units_through_a_virtual_bus():
    platform = load_platform("nt2_5")
    db = cantools.database.load_file(str(dbc_path(platform.bus("car").dbc)), strict=False)
    ingest = CanIngest(platform)
    out = []
    sender = can.Bus(interface="virtual", channel="shadowd-honda", receive_own_messages=False)
    receiver = can.Bus(interface="virtual", channel="shadowd-honda")
    try:
        t = 100.0
        for step in range(30):  # 30 rounds of every message, 10 ms apart
            for name, values in SIGNALS.items():
                fid, payload = _encode(db, name, values)
                sender.send(can.Message(arbitration_id=fid, data=payload, is_extended_id=False))
                msg = receiver.recv(timeout=1.0)
                msg.timestamp, msg.channel = t, "can0"
                out.append(ingest.feed(msg)["vehicle"])
            t += 0.01
    finally:
        sender.shutdown()
        receiver.shutdown()
    v = np.concatenate(out)
    assert len(v) > 20 and ingest.stats.unknown_id == 0 and ingest.stats.wrong_length == 0
    last = v[-1]
    assert last["speed_mps"] == pytest.approx(20.0, abs=0.01)  # 72 kph
    assert last["steer_angle_deg"] == pytest.approx(-12.3, abs=0.01)
    assert last["steer_rate_dps"] == pytest.approx(40.0, abs=0.01)
    assert last["steer_torque_driver_nm"] == pytest.approx(-1.5, abs=0.01)
    assert last["accel_long_mps2"] == pytest.approx(-1.5, abs=0.002)
    assert last["accel_lat_mps2"] == pytest.approx(0.75, abs=0.002)
    assert last["turn_signal"] == 3  # both blinkers: hazard
    assert last["gear"] == 0  # D
    assert last["accel_pedal"] == pytest.approx(0.2, abs=0.001)
    assert (last["brake_pressed"], last["adas_engaged"], last["driver_override"], last["adas_steering"]) == (1, 1, 1, 0)
    assert np.isnan(last["yaw_rate_rps"])  # this bus has no yaw-rate sensor


def test_cpu_affinity_pins_only_to_cpus_that_exist():
    import os

    adapter = create_adapter(load_platform("nt2"))  # wants CPUs 4 and 5
    before = os.sched_getaffinity(0)
    try:
        pinned = adapter.apply_cpu_affinity()
        assert set(pinned) <= before
        assert set(pinned) == {4, 5} & before
    finally:
        os.sched_setaffinity(0, before)
