"""Fleet push to real services: one retained MQTT bundle reaches several ``shadowd run``
processes (each fed by its own producer) over TLS, every one applies it live, none loses a frame.

Runs the real-services part of ``shadowd bench fleet`` with two services (the benchmark's
default is four).
"""

from __future__ import annotations

import pytest

from shadowd.bench.fleet import run_real_services
from tests.fixtures.mosquitto import require_mosquitto

pytestmark = pytest.mark.timeout(120)


def test_one_retained_push_is_applied_live_by_every_service_without_dropping_frames(tmp_path):
    require_mosquitto()
    res = run_real_services(tmp_path, 2, timeout_s=60, settle_s=1.0)
    assert res["all_applied"] and res["sources"] == ["mqtt"]
    assert res["ring_dropped_across_swap"] == 0
    assert res["frames_late_across_swap"] == 0
    assert res["vehicle_frames_across_swap_min"] > 50  # frames kept flowing through the swap
    assert res["pipeline_restarts"] == 0 and res["tracebacks_in_logs"] == 0
    assert res["exit_codes"] == [0, 0]
