"""Shared helpers of the upload tests: a spool with clips, a settable clock, the exactly-once check."""

from __future__ import annotations

import os
import random
from pathlib import Path

from shadowd.core.upload_policy import UploadConfig
from shadowd.edges.uploader import Uploader
from tests.fixtures.nginx import server_objects
from shadowd.edges.spool import Spool

T0_S = 1_764_000_000.0  # a fixed wall-clock start (2025-11-24) so keys and budgets are reproducible


class Clock:
    """Wall-clock seconds that a test moves by hand (backoff waits cost no real time)."""

    def __init__(self, t_s: float = T0_S):
        self.t_s = t_s

    def __call__(self) -> float:
        return self.t_s


def fill_spool(root: Path, sizes: list[int], priorities: list[int] | None = None) -> tuple[Spool, list[str]]:
    spool = Spool(root, quota_bytes=1 << 32)
    ids = []
    for i, size in enumerate(sizes):
        prio = priorities[i] if priorities else 0
        ids.append(spool.put(os.urandom(size), priority=prio, t_ns=i).clip_id)
    return spool, ids


def config(base_url: str, **kw) -> UploadConfig:
    d = {"endpoint_url_template": base_url + "/{vehicle_id}/{date}/{clip_id}.shdc", "vehicle_id": "VTEST1",
         "backoff_base_s": 1.0, "backoff_max_s": 60.0, "timeout_s": 5.0}
    d.update(kw)
    return UploadConfig.from_dict(d)


def make_uploader(spool, cfg, clock: Clock | None = None, **kw) -> Uploader:
    return Uploader(spool, cfg, clock=clock or Clock(), rng=random.Random(7), **kw)


def drain(up: Uploader, clock: Clock, max_steps: int = 500) -> list:
    """Run steps until the spool is empty, jumping the clock over backoff waits."""
    results = []
    for _ in range(max_steps):
        r = up.run_once()
        results.append(r)
        if r.action == "idle":
            return results
        if r.action in ("waiting", "failed", "gated"):
            clock.t_s += max(r.wait_s, 0.001)
    raise AssertionError(f"spool not drained after {max_steps} steps; last: {results[-5:]}")


def assert_exactly_once(spool: Spool, server_root: Path, spooled_ids: list[str]) -> None:
    """Every clip on the server verifies, none is there twice, none is missing from both places."""
    held = server_objects(server_root)
    assert not held.problems, held.problems
    assert not held.duplicates(), held.duplicates()
    in_spool = {c.clip_id for c in spool.clips()}
    missing = [cid for cid in spooled_ids if cid not in in_spool and cid not in held.clip_ids]
    assert not missing, f"lost clips: {missing}"
    assert held.clip_ids <= set(spooled_ids), held.clip_ids - set(spooled_ids)
