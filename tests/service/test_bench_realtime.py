"""``shadowd bench soak --mode realtime`` end to end, briefly: a real ``shadowd run`` fed at real
time by a real producer process. The figures are the measured ones; what is checked is that
they describe that run (frames at the drive's rates, one wake-up per trigger tick, the CPU
split adding up) and that the wake-up peer measured something."""

from __future__ import annotations

import pytest

from shadowd.bench.soak import WAKEUPS_HZ, run_realtime


def test_realtime_bench_measures_the_service_at_real_time(tmp_path):
    r = run_realtime(tmp_path, seconds=4.0, warmup_s=3.0)
    assert r["seconds"] >= 4.0
    assert 80 < r["rate_hz"]["vehicle"] < 120  # the drive's 100 Hz, at real-time pace
    assert WAKEUPS_HZ * 0.8 < r["wakeups_per_s"] < WAKEUPS_HZ * 1.2  # one per 20 ms trigger tick
    assert 15 < r["model_inferences_per_s"] < 25  # the reference model's 20 Hz
    cpu = r["cpu_pct_of_one_core"]
    assert cpu["besides_model"] == pytest.approx(cpu["process"] - cpu["model_thread"], abs=0.002)
    assert cpu["by_thread"]["shadowd-pipeline"] > 0 and r["wake_floor_pct"] > 0
    assert r["met"] == (cpu["besides_model"] < r["target_besides_model_pct"])
    assert r["dropped"]["ring_dropped"] == 0  # the rings hold seconds; the service keeps up
