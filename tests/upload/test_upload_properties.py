"""Property: under any schedule of server faults, link faults and uploader crashes, every clip
ends up on the (real, loopback) nginx exactly once and verified, and none is ever lost.

Hypothesis draws the clip sizes (single PUT and multipart) and, for each uploader step, the
fault in force: an HTTP error from nginx, the link down, a TCP reset mid-request, or the
uploader process "crashing" (the object is dropped unclosed, the spool reopened from disk).
Each example uses its own spool and its own key prefix on one nginx.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowd.edges.spool import Spool
from tests.fixtures.faultproxy import FaultProxy
from tests.fixtures.nginx import nginx_plain, server_objects  # noqa: F401
from tests.upload._helpers import Clock, config, drain, make_uploader

FAULTS = ("none", "none", "http_503", "http_403", "http_507", "reset", "down", "crash")
_example = itertools.count()


# each example runs real requests (~0.2 s): a dozen by default, 200 with SHADOWD_SLOW_TESTS=1
@settings(max_examples=200 if os.environ.get("SHADOWD_SLOW_TESTS") else 12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(1, 300_000), min_size=1, max_size=4),
       schedule=st.lists(st.sampled_from(FAULTS), min_size=1, max_size=20))
def test_any_fault_schedule_delivers_every_clip_exactly_once(tmp_path, nginx_plain, sizes, schedule):
    vehicle = f"V{next(_example):04d}"
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    spool = Spool(root / "spool", quota_bytes=1 << 32)
    ids = {spool.put(os.urandom(n), priority=n % 3, t_ns=i).clip_id for i, n in enumerate(sizes)}
    with FaultProxy("127.0.0.1", nginx_plain.port) as proxy:
        cfg = config(f"http://{proxy.url_host}", vehicle_id=vehicle, part_size_bytes=64 * 1024,
                     multipart_threshold_bytes=128 * 1024, timeout_s=2.0)
        clock = Clock(time.time() + 1)  # real wall time: a "crashed" uploader's clips predate the restart
        up = make_uploader(spool, cfg, clock)
        for fault in schedule:
            if fault.startswith("http_"):
                nginx_plain.set_fault(int(fault[5:]))
            elif fault == "down":
                proxy.down = True
                proxy.cut_all()
            elif fault == "reset":
                proxy.cut_all()
                proxy.reset_next(after_bytes=20_000)
            elif fault == "crash":
                spool.close()  # the process dies: no close(), queued acks lost
                spool = Spool(root / "spool", quota_bytes=1 << 32)
                up = make_uploader(spool, cfg, clock)
            r = up.run_once()
            nginx_plain.clear_faults()
            proxy.down = False
            proxy.reset_next(after_bytes=0, connections=0)
            clock.t_s += max(r.wait_s, 0.0) if r.action in ("failed", "waiting") else 0.0
            held = server_objects(nginx_plain.root / vehicle) if (nginx_plain.root / vehicle).exists() else None
            if held is not None:  # invariants hold after every single step, not just at the end
                assert not held.problems, held.problems
                assert not held.duplicates(), held.duplicates()
            in_spool = {c.clip_id for c in spool.clips()}
            on_server = held.clip_ids if held is not None else set()
            assert ids <= in_spool | on_server, ids - in_spool - on_server
        drain(up, clock)
        up.close()
    held = server_objects(nginx_plain.root / vehicle)
    assert held.clip_ids == ids and not held.duplicates() and not held.problems
    assert spool.clips() == []
    spool.close()
