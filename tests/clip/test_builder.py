"""build_clip: cutting a ClipSpec out of history plus the pipeline's traces."""

from __future__ import annotations

import numpy as np
import pytest

from shadowd.clip import ArrayHistory, Provenance, build_clip, decode_clip, encode_clip
from shadowd.core.types import ClipSpec, TriggerFired
from shadowd.errors import ClipError
from tests.clip.helpers import rav4_can, rav4_imu


def test_clip_holds_exactly_the_history_frames_inside_its_window():
    can, imu = rav4_can(), rav4_imu()
    t0 = int(can["t_ns"][0]) + 5_000_000_000
    t1 = t0 + 2_000_000_000
    ev = TriggerFired(t_ns=t0 + 1_000_000_000, trigger="x", priority=2, score=1.0, pre_s=1.0, post_s=1.0)
    spec = ClipSpec(t0, t1, (ev,), priority=2)
    pred = np.zeros(100, [("t_ns", "<i8"), ("score", "<f4")])
    pred["t_ns"] = np.linspace(t0 - 10**9, t1 + 10**9, 100).astype(np.int64)
    clip = build_clip(spec, ArrayHistory({"can_raw": can, "imu": imu}), extra_streams={"predictions": pred},
                      provenance=Provenance("v", "nt2"))
    inside = (can["t_ns"] >= t0) & (can["t_ns"] <= t1)
    assert len(clip.streams["can_raw"]) == inside.sum() > 1000
    assert np.array_equal(clip.streams["can_raw"], can[inside])
    assert clip.streams["predictions"]["t_ns"].min() >= t0 and clip.streams["predictions"]["t_ns"].max() <= t1
    assert set(clip.streams) == {"can_raw", "imu", "predictions"}  # history has no vehicle/perception
    assert clip.causes == (ev,) and clip.priority == 2
    assert len(decode_clip(encode_clip(clip)).streams["imu"]) == len(clip.streams["imu"])


def test_built_clip_is_a_copy_that_later_history_writes_cannot_change():
    can = rav4_can()[:1000].copy()
    spec = ClipSpec(int(can["t_ns"][0]), int(can["t_ns"][-1]), (), priority=0)
    clip = build_clip(spec, ArrayHistory({"can_raw": can}), provenance=Provenance("v", "p"))
    can["can_id"] = 0
    assert clip.streams["can_raw"]["can_id"].any()


def test_can_payload_bytes_past_the_dlc_are_zeroed():
    can = rav4_can()[:10].copy()
    can["data"][:, 60] = 0xAA
    spec = ClipSpec(int(can["t_ns"][0]), int(can["t_ns"][-1]), (), priority=0)
    clip = build_clip(spec, ArrayHistory({"can_raw": can}), provenance=Provenance("v", "p"))
    assert not clip.streams["can_raw"]["data"][:, 8:].any()


def test_can_payload_bytes_past_every_dlc_are_zeroed_and_the_rest_kept():
    rng = np.random.default_rng(7)
    can = rav4_can()[:300].copy()
    can["dlc"] = rng.choice([0, 1, 7, 8, 9, 15, 16, 33, 63, 64, 65, 255], len(can))
    can["data"] = rng.integers(1, 256, can["data"].shape, dtype=np.uint8)
    spec = ClipSpec(int(can["t_ns"][0]), int(can["t_ns"][-1]), (), priority=0)
    got = build_clip(spec, ArrayHistory({"can_raw": can}), provenance=Provenance("v", "p")).streams["can_raw"]
    kept = np.arange(64)[None, :] < can["dlc"][:, None]
    assert np.array_equal(got["data"], np.where(kept, can["data"], 0))
    assert np.array_equal(got[["t_ns", "bus", "dlc", "flags", "can_id"]], can[["t_ns", "bus", "dlc", "flags", "can_id"]])


def test_unsorted_history_is_refused():
    a = np.zeros(3, [("t_ns", "<i8")])
    a["t_ns"] = [3, 1, 2]
    with pytest.raises(ClipError, match="not sorted"):
        ArrayHistory({"x": a})
