"""Real clips for clip/spool tests: windows of the bundled RAV4 minute (shadowd/data/rav4)."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

import shadowd
from shadowd.clip import Clip, Provenance, TriggerDef
from shadowd.clip.candump import load_candump
from shadowd.core.types import TriggerFired

DATA = Path(shadowd.__file__).parent / "data" / "rav4"


@functools.cache
def rav4_can() -> np.ndarray:
    return load_candump(DATA / "c2k19_rav4_seg40.candump.log")


@functools.cache
def rav4_imu() -> np.ndarray:
    """The phone IMU of the same drive as the canonical imu topic (PIPELINE's imu ingest)."""
    from shadowd.edges.imu_ingest import load_phone_imu

    return load_phone_imu(DATA / "imu")


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


def assert_clips_equal(a: Clip, b: Clip) -> None:
    """b is a decode of a: metadata identical, streams equal at their stored precision."""
    from shadowd.clip.codec import clip_differences

    assert clip_differences(a, b) == []
