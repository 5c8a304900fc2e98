"""The pipeline benchmark's plumbing works end to end: a producer process, real rings, the
core. (Figures are the benchmark's business; this only checks that frames flow.)"""

from __future__ import annotations

import argparse

from shadowd.bench import pipeline


def test_bench_moves_frames_from_a_producer_process_through_rings_into_the_core():
    out = pipeline.run(argparse.Namespace(seconds=1.5, modes="core"))
    core = out["core"]
    assert core["frames_read"] > 0.3 * 320 * 1.5, out  # vehicle 100 + IMU 200 + perception 20 per second
    assert core["core"]["requests"] > 5 and core["core"]["trigger_ticks"] > 15, out
    assert core["core"]["frames_out_of_order"] == 0, out
    assert core["frame_to_trigger_ms"]["samples"] > 15, out
    # the latency splits into the OS wake-up and this code's processing, sample by sample
    assert core["wake_ms"]["samples"] == core["processing_ms"]["samples"] == core["frame_to_trigger_ms"]["samples"]
    assert core["processing_ms"]["max"] <= core["frame_to_trigger_ms"]["max"] + 1e-9, out
    assert out["targets"]["processing_p99_ms"] == core["processing_ms"]["p99"]


def test_bench_measures_the_whole_service_beside_the_core_loop():
    out = pipeline.run(argparse.Namespace(seconds=1.5, service_seconds=3.0, modes="core,service"))
    svc, t = out["service"], out["targets"]
    assert svc["rate_hz"]["vehicle"] > 80 and svc["model_inferences_per_s"] > 15, svc  # real time, real model
    assert t["service_cpu_pct_besides_model"] == svc["cpu_pct_of_one_core"]["besides_model"]
    assert t["service_met"] == (t["service_cpu_pct_besides_model"] < t["cpu_pct_besides_model"])
    assert t["met"] == (t["core_loop_met"] and t["service_met"])
