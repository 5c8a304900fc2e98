"""A crashing stage is restarted on its own; the service, its other stages and the clip in
hand survive.

The service runs in this process (``Service`` as ``shadowd run`` builds it, fed by a real
``shadowd produce`` process) so that one crash can be injected into a stage: the pipeline's
swap check and the spool's write each raise once. Nothing else is replaced.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from shadowd.bench.soak import start_producer, stop_process, wait_for, write_settings
from shadowd.daemon import Service, load_settings

pytestmark = pytest.mark.timeout(90)


class _CrashOnce:
    """Wraps a callable: the first call raises RuntimeError (the injected fault), later calls pass."""

    def __init__(self, fn, what: str):
        self.fn, self.what, self.crashed = fn, what, threading.Event()

    def __call__(self, *args, **kwargs):
        if not self.crashed.is_set():
            self.crashed.set()
            raise RuntimeError(f"injected crash in {self.what}")
        return self.fn(*args, **kwargs)


def test_crashing_stages_are_restarted_alone_and_the_clip_in_hand_still_lands(tmp_path):
    tag = f"c{os.getpid()}x{time.monotonic_ns() % 100000}"
    service = Service("desktop", load_settings(write_settings(tmp_path, tag)))
    service._refresh_readers = _CrashOnce(service._refresh_readers, "pipeline")
    service.spool.put = _CrashOnce(service.spool.put, "spool")
    service.start()
    main = threading.Thread(target=service.wait, name="test-service-main")
    main.start()
    prod = None
    try:
        wait_for(lambda: service.stages["pipeline"].restarts == 1, 10, "the pipeline stage crash and restart")
        prod = start_producer(tag, speed=4.0)
        wait_for(lambda: service.status()["pipeline"].get("triggers_fired", {}).get("divergence"), 40,
                 "the divergence trigger after the pipeline restart")
        service.request_flush()  # seal the clip now: the spool's first write of it crashes
        status = wait_for(lambda: (s := service.status())["clips"]["clips_spooled"] >= 1 and s, 20,
                          "the clip spooled by the restarted spool stage")
    finally:
        stop_process(prod)
        service.stop()
        main.join(30)
    assert not main.is_alive()
    stages = status["stages"]
    assert stages["pipeline"]["restarts"] == 1 and "injected crash in pipeline" in stages["pipeline"]["last_error"]
    assert stages["spool"]["restarts"] == 1 and "injected crash in spool" in stages["spool"]["last_error"]
    assert stages["config"]["restarts"] == 0 and stages["config"]["alive"]
    assert status["clips"]["clips_lost_queue_full"] == 0 and status["clips"]["held_for_spool"] == 0
    assert status["ingest"]["frames"]["vehicle"] > 500
    # model latency is one quantile map (Prometheus-style), not repeated as p50_ms/... keys
    latency = status["model"]["latency_ms"]
    assert set(latency) == {"__label__", "0.5", "0.9", "0.99"} and latency["0.5"] > 0
    assert not {"p50_ms", "p90_ms", "p99_ms"} & set(status["model"])
