"""Real clips for clip/spool tests: windows of the bundled RAV4 minute (shadowd/data/rav4)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

import shadowd
from shadowd.clip import Clip, Provenance, TriggerDef
from shadowd.clip.candump import load_candump
from shadowd.core.signals import frame_dtype
from shadowd.core.types import TriggerFired

DATA = Path(shadowd.__file__).parent / "data" / "rav4"


@functools.cache
def rav4_can() -> np.ndarray:
    return load_candump(DATA / "c2k19_rav4_seg40.candump.log")


@functools.cache
def rav4_imu() -> np.ndarray:
    """The phone IMU of the same drive as the canonical imu topic (axes turned to x fwd, y left, z up)."""
    at, av = np.load(DATA / "imu" / "accelerometer_t.npy"), np.load(DATA / "imu" / "accelerometer_value.npy")
    gt, gv = np.load(DATA / "imu" / "gyro_t.npy"), np.load(DATA / "imu" / "gyro_value.npy")
    n = min(len(at), len(gt))
    a = np.zeros(n, frame_dtype("imu"))
    a["t_ns"] = np.round(at[:n] * 1e9).astype(np.int64)
    a["accel_x_mps2"], a["accel_y_mps2"], a["accel_z_mps2"] = av[:n, 0], -av[:n, 1], -av[:n, 2]
    a["gyro_x_rps"], a["gyro_y_rps"], a["gyro_z_rps"] = gv[:n, 0], -gv[:n, 1], -gv[:n, 2]
    return a


def real_clip(seconds: float = 2.0, start_s: float = 10.0) -> Clip:
    """A clip cut from the RAV4 minute: raw CAN, IMU, and a prediction/divergence trace."""
    can = rav4_can()
    t0 = int(can["t_ns"][0] + start_s * 1e9)
    t1 = int(t0 + seconds * 1e9)
    can = can[(can["t_ns"] >= t0) & (can["t_ns"] <= t1)]
    imu = rav4_imu()
    imu = imu[(imu["t_ns"] >= t0) & (imu["t_ns"] <= t1)]
    t = np.arange(t0, t1, 50_000_000, dtype=np.int64)
    pred = np.zeros(len(t), [("t_ns", "<i8"), ("steer_angle_deg", "<f4", (10,)), ("latency_ns", "<i8")])
    pred["t_ns"] = t
    pred["steer_angle_deg"] = np.sin(np.arange(len(t))[:, None] / 7.0 + np.arange(10)[None, :] / 10.0) * 3
    pred["latency_ns"] = 4_000_000 + (np.arange(len(t)) * 7919) % 100_000
    div = np.zeros(len(t), [("t_ns", "<i8"), ("score", "<f8"), ("steer_err_deg", "<f4"), ("scored", "?")])
    div["t_ns"] = t
    div["score"] = np.abs(np.cos(np.arange(len(t)) / 3.0))
    div["steer_err_deg"] = np.arange(len(t), dtype=np.float32) * 0.37
    div["scored"] = np.arange(len(t)) % 3 != 0
    ev = TriggerFired(t_ns=t0 + int(seconds * 0.5e9), trigger="steer_gap", priority=3, score=2.5, pre_s=1.0, post_s=1.0,
                      causes={"steer_err_deg": 7.25})
    prov = Provenance(
        vehicle_id="rav4-test", platform="nt2", model_sha256="ab" * 32, config_version=7,
        triggers=(TriggerDef("steer_gap", "steer_err_deg > 5", {"pre_s": 1.0, "post_s": 1.0, "priority": 3}),),
    )
    return Clip(prov, t0, t1, causes=(ev,), streams={"can_raw": can, "imu": imu, "predictions": pred, "divergence": div},
                priority=3, precisions={"divergence": {"steer_err_deg": 0.01}})


def assert_clips_equal(a: Clip, b: Clip, *, exact_time: bool = False) -> None:
    """b is a decode of a: metadata identical, streams equal at their stored precision."""
    from shadowd.clip.codec import _precision_for

    assert (a.provenance, a.t0_ns, a.t1_ns, a.causes, a.priority, a.truncated) == (
        b.provenance, b.t0_ns, b.t1_ns, b.causes, b.priority, b.truncated)
    assert list(a.streams) == list(b.streams)
    for name, x in a.streams.items():
        y = b.streams[name]
        assert x.dtype == y.dtype and len(x) == len(y), name
        for f in x.dtype.names:
            xv, yv = x[f], y[f]
            if f == "t_ns" and not exact_time:
                xv = (xv // 1000) * 1000
            if xv.dtype.kind == "f":
                base = xv.dtype.base if xv.dtype.subdtype is None else xv.dtype.subdtype[0]
                p = _precision_for(name, f, base, a.precisions)
                if p > 0 and np.isfinite(xv).all():
                    tol = p / 2 * (1 + 1e-6) + np.abs(xv.astype(np.float64)) * np.finfo(base).eps
                    assert (np.abs(xv.astype(np.float64) - yv) <= tol).all(), (name, f)
                    continue
                assert xv.tobytes() == yv.tobytes(), (name, f)  # bit-exact, NaN payloads included
            else:
                assert np.array_equal(xv, yv), (name, f)
