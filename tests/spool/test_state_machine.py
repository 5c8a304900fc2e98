"""The spool as a state machine (Hypothesis): any sequence of put/lease/release/ack/restart
keeps the quota, never loses an accepted clip except by counted eviction, never evicts a
leased or higher-priority clip, and rebuilds the same queue after a restart."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from shadowd.edges.spool import Spool
from shadowd.errors import SpoolError

QUOTA = 1000


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        # logic, not durability, is under test here: tmpfs keeps the fsyncs cheap
        shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
        self.dir = Path(tempfile.mkdtemp(prefix="shadowd-spool-sm-", dir=shm))
        self.spool = Spool(self.dir, QUOTA)
        self.model: dict[str, tuple[int, int, int]] = {}  # id -> (size, priority, t_ns)
        self.leased: set[str] = set()
        self.evicted = 0
        self.n = 0

    def teardown(self):
        self.spool.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(size=st.integers(1, 400), priority=st.integers(0, 3))
    def put(self, size, priority):
        self.n += 1
        data = (f"{self.n}:".encode() * size)[:size]
        before = dict(self.model)
        try:
            c = self.spool.put(data, priority=priority, t_ns=self.n)
        except SpoolError:
            # refused: nothing changed, and it really did not fit without touching protected clips
            evictable = sum(s for i, (s, p, _) in self.model.items() if i not in self.leased and p <= priority)
            assert sum(s for s, _, _ in self.model.values()) - evictable + size > QUOTA
            return
        assert c.clip_id == hashlib.sha256(data).hexdigest()
        if c.clip_id in before:  # same bytes again: the clip already there, nothing changes
            assert (c.size_bytes, c.priority, c.t_ns) == before[c.clip_id]
            return
        gone = set(before) - {x.clip_id for x in self.spool.clips()}
        for g in gone:
            assert g not in self.leased and before[g][1] <= priority
        self.evicted += len(gone)
        for g in gone:
            del self.model[g]
        self.model[c.clip_id] = (size, priority, self.n)

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def lease(self, data):
        free = sorted(set(self.model) - self.leased)
        if free:
            cid = data.draw(st.sampled_from(free))
            self.spool.lease(cid)
            self.leased.add(cid)

    @precondition(lambda self: self.leased)
    @rule(data=st.data(), ok=st.booleans())
    def finish_upload(self, data, ok):
        cid = data.draw(st.sampled_from(sorted(self.leased)))
        self.leased.discard(cid)
        if ok:
            self.spool.ack(cid)
            del self.model[cid]
        else:
            self.spool.release(cid)

    @rule()
    def restart(self):
        self.spool.close()
        self.spool = Spool(self.dir, QUOTA)
        self.leased.clear()  # leases do not survive a restart
        self.evicted = 0  # counters are per process
        assert self.spool.stats()["quarantined"] == 0

    @invariant()
    def matches_model_and_quota(self):
        clips = self.spool.clips()
        assert {c.clip_id: (c.size_bytes, c.priority, c.t_ns) for c in clips} == self.model
        assert sum(c.size_bytes for c in clips) <= QUOTA
        pend = self.spool.pending()
        assert {c.clip_id for c in pend} == set(self.model) - self.leased
        keys = [(-c.priority, c.t_ns) for c in pend]
        assert keys == sorted(keys)
        assert self.spool.stats()["evicted"].get("quota", 0) == self.evicted


SpoolMachine.TestCase.settings = settings(
    max_examples=400 if os.environ.get("SHADOWD_SLOW_TESTS") else 60, stateful_step_count=30, deadline=None)
test_spool_state_machine = SpoolMachine.TestCase
