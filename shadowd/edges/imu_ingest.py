"""IMU ingest: recorded IMU samples -> ``imu`` topic frames in the vehicle frame.

Owns the axis conventions of IMU sources. The canonical frame is x forward, y left, z up
(shadowd.core.signals.IMU). The comma2k19 phone IMU bundled with the RAV4 minute
(shadowd/data/rav4/imu) reports [forward, right, down]; it becomes x = forward, y = -right,
z = -down for both the accelerometer and the gyro (so gyro z is positive turning left, and a
car at rest reads about +9.8 m/s^2 on z).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.signals import IMU
from ..errors import DecodeError

#: axis maps: canonical axis i = sign[i] * source column index[i]
FRD_TO_FLU = ((0, 1.0), (1, -1.0), (2, -1.0))


def imu_frames(t_s: np.ndarray, accel: np.ndarray, gyro: np.ndarray, axes=FRD_TO_FLU) -> np.ndarray:
    """``imu`` frames from sample times (s, monotonic) and (N, 3) accel/gyro in source axes."""
    t_s = np.asarray(t_s, np.float64)
    accel = np.asarray(accel, np.float64)
    gyro = np.asarray(gyro, np.float64)
    if accel.shape != (len(t_s), 3) or gyro.shape != (len(t_s), 3):
        raise DecodeError(f"IMU arrays disagree: {len(t_s)} times, accel {accel.shape}, gyro {gyro.shape}; "
                          f"each needs (N, 3) with N samples")
    frames = np.zeros(len(t_s), IMU.dtype)
    frames["t_ns"] = np.round(t_s * 1e9).astype(np.int64)
    for axis, (col, sign) in zip("xyz", axes):
        frames[f"accel_{axis}_mps2"] = sign * accel[:, col]
        frames[f"gyro_{axis}_rps"] = sign * gyro[:, col]
    order = np.argsort(frames["t_ns"], kind="stable")
    frames = frames[order]
    keep = np.concatenate(([True], np.diff(frames["t_ns"]) > 0))  # duplicate stamps: keep the first
    return frames[keep]


def load_phone_imu(directory: str | os.PathLike) -> np.ndarray:
    """Load a comma2k19-style IMU folder (``{accelerometer,gyro}_{t,value}.npy``, axes FRD)."""
    d = Path(directory)
    try:
        at, av = np.load(d / "accelerometer_t.npy"), np.load(d / "accelerometer_value.npy")
        gt, gv = np.load(d / "gyro_t.npy"), np.load(d / "gyro_value.npy")
    except (OSError, ValueError) as err:
        raise DecodeError(f"cannot read IMU folder {d}: {err}; it needs accelerometer_t.npy, "
                          f"accelerometer_value.npy, gyro_t.npy, gyro_value.npy") from err
    if len(gt) != len(at) or not np.array_equal(gt, at):
        # different clocks: resample the gyro onto the accelerometer's times
        gv = np.stack([np.interp(at, gt, gv[:, i]) for i in range(3)], axis=1)
    return imu_frames(at, av, gv)
