"""The canonical signal schema: every name a model, a trigger or a clip may use.

Rules of this file:
1. Every canonical signal and every topic layout lives here and nowhere else. Platform
   profiles (platforms/*.toml) map bus signals *onto* these names; models and triggers see
   only these names.
2. Names carry their SI unit (``speed_mps``, ``steer_angle_deg``); flags and enums are
   unitless integers with their meaning in ``Signal.doc``.
3. A topic's ring frame is a numpy structured dtype whose first field is ``t_ns``: the
   monotonic timestamp of the sample in nanoseconds (never wall-clock time). The dtypes are
   packed (no padding) so a C producer can write them with the struct in docs/ring.md.
4. Changing a field is a schema change: bump ``SCHEMA_VERSION``. Clips carry the version they
   were written with; keep the decoder able to read older ones.

This module is pure: it imports only the standard library and numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Signal:
    """One canonical signal.

    Attributes:
        name: canonical name with unit suffix.
        dtype: numpy dtype string of the ring field (``"<f4"``, ``"u1"``, ``"i1"``).
        precision: the quantum a clip stores it at, losslessly (0.01 means 0.01 of the unit);
            1 for integer/flag signals.
        interp: how the aligner resamples it across rates: ``"linear"`` or ``"zoh"``.
        doc: meaning, sign convention, enum values.
    """

    name: str
    dtype: str
    precision: float
    interp: str
    doc: str


@dataclass(frozen=True, slots=True)
class Topic:
    """A ring topic: a named stream of fixed-size frames at a nominal rate."""

    name: str
    signals: tuple[Signal, ...]
    nominal_rate_hz: float
    doc: str

    @property
    def dtype(self) -> np.dtype:
        return topic_dtype(self)

    def signal(self, name: str) -> Signal:
        for s in self.signals:
            if s.name == name:
                return s
        raise KeyError(name)


def _f(name: str, precision: float, doc: str, interp: str = "linear") -> Signal:
    return Signal(name, "<f4", precision, interp, doc)


def _u8(name: str, doc: str) -> Signal:
    return Signal(name, "u1", 1.0, "zoh", doc)


def _i8(name: str, doc: str) -> Signal:
    return Signal(name, "i1", 1.0, "zoh", doc)


VEHICLE = Topic(
    "vehicle",
    (
        _f("speed_mps", 0.001, "vehicle speed over ground, m/s, >= 0"),
        _f("steer_angle_deg", 0.01, "steering-wheel angle, deg, positive = left (counter-clockwise)"),
        _f("steer_rate_dps", 0.01, "steering-wheel rate, deg/s, positive = turning left"),
        _f("steer_torque_driver_nm", 0.01, "driver torque on the wheel, N*m (or bus units scaled to N*m), positive = left"),
        _f("yaw_rate_rps", 0.0001, "yaw rate, rad/s, positive = turning left"),
        _f("accel_long_mps2", 0.001, "longitudinal acceleration, m/s^2, positive = speeding up"),
        _f("accel_lat_mps2", 0.001, "lateral acceleration, m/s^2, positive = to the left"),
        _f("accel_pedal", 0.001, "accelerator pedal position, 0..1"),
        _u8("brake_pressed", "1 while the driver presses the brake pedal"),
        _f("brake_pressure", 0.01, "brake pressure, bus units (bar on most platforms)"),
        _i8("gear", "0 = drive, 1 = park, 2 = reverse, 3 = neutral, -1 = unknown"),
        _i8("turn_signal", "0 = none, 1 = left, 2 = right, 3 = hazard"),
        _u8("driver_override", "1 while the driver overrides an engaged ADAS (torque or pedal)"),
        _u8("adas_engaged", "1 while an ADAS function (ACC/LKA) is engaged"),
        _u8("adas_steering", "1 while the ADAS commands steering (openpilot STEER_REQUEST)"),
    ),
    100.0,
    "decoded vehicle bus signals in canonical units",
)

IMU = Topic(
    "imu",
    (
        _f("accel_x_mps2", 0.001, "IMU acceleration, forward, m/s^2"),
        _f("accel_y_mps2", 0.001, "IMU acceleration, left, m/s^2"),
        _f("accel_z_mps2", 0.001, "IMU acceleration, up, m/s^2"),
        _f("gyro_x_rps", 0.0001, "IMU angular rate about forward axis, rad/s"),
        _f("gyro_y_rps", 0.0001, "IMU angular rate about left axis, rad/s"),
        _f("gyro_z_rps", 0.0001, "IMU angular rate about up axis, rad/s, positive = turning left"),
    ),
    200.0,
    "inertial measurement unit, vehicle frame (x forward, y left, z up)",
)

PERCEPTION = Topic(
    "perception",
    (
        _u8("lead_valid", "1 when a lead vehicle is tracked"),
        _f("lead_distance_m", 0.01, "distance to the lead vehicle, m", interp="zoh"),
        _f("lead_rel_speed_mps", 0.01, "lead speed minus ego speed, m/s", interp="zoh"),
        _f("lead_lat_m", 0.01, "lateral offset of the lead vehicle, m, positive = left", interp="zoh"),
    ),
    20.0,
    "perception features (radar/camera tracks) as the platform provides them",
)

CAN_DATA_BYTES = 64

CAN_RAW_DTYPE = np.dtype(
    [
        ("t_ns", "<i8"),
        ("bus", "u1"),
        ("dlc", "u1"),
        ("flags", "<u2"),  # bit 0: extended id, bit 1: CAN-FD, bit 2: error frame
        ("can_id", "<u4"),
        ("data", "u1", (CAN_DATA_BYTES,)),
    ]
)
"""Raw CAN frames as received, so a clip can be re-decoded later with a newer DBC."""

TOPICS: dict[str, Topic] = {t.name: t for t in (VEHICLE, IMU, PERCEPTION)}
"""Decoded topics by name. ``can_raw`` is a topic too, with CAN_RAW_DTYPE as its frame."""

RAW_TOPIC = "can_raw"


def topic_dtype(topic: Topic) -> np.dtype:
    """The packed ring-frame dtype of a decoded topic: ``t_ns`` then each signal in order."""
    return np.dtype([("t_ns", "<i8")] + [(s.name, s.dtype) for s in topic.signals])


def frame_dtype(topic_name: str) -> np.dtype:
    """The ring-frame dtype of any topic, raw CAN included. Raises KeyError for unknown names."""
    if topic_name == RAW_TOPIC:
        return CAN_RAW_DTYPE
    return TOPICS[topic_name].dtype


SIGNALS: dict[str, tuple[Topic, Signal]] = {
    s.name: (t, s) for t in TOPICS.values() for s in t.signals
}
"""Every canonical signal name -> (its topic, its definition). Names are unique across topics."""

assert len(SIGNALS) == sum(len(t.signals) for t in TOPICS.values()), "signal names must be unique"
