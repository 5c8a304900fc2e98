"""Spool behaviour on a real directory: durability, quota, eviction, leases, recovery."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from shadowd.edges.spool import Spool
from shadowd.errors import SpoolError


def _blob(i: int, size: int = 100) -> bytes:
    return (f"clip-{i}-".encode() * size)[:size]


def test_put_returns_durable_clip_named_by_its_sha256(tmp_path):
    with Spool(tmp_path, 10_000) as sp:
        c = sp.put(_blob(1), priority=2, t_ns=5, meta={"vehicle": "v1"})
        assert c.clip_id == hashlib.sha256(_blob(1)).hexdigest()
        assert sp.path(c.clip_id).read_bytes() == _blob(1)
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_pending_is_priority_then_age_order_and_excludes_leased(tmp_path):
    with Spool(tmp_path, 10_000) as sp:
        a = sp.put(_blob(1), priority=1, t_ns=10)
        b = sp.put(_blob(2), priority=5, t_ns=30)
        c = sp.put(_blob(3), priority=5, t_ns=20)
        assert [x.clip_id for x in sp.pending()] == [c.clip_id, b.clip_id, a.clip_id]
        sp.lease(c.clip_id)
        assert [x.clip_id for x in sp.pending()] == [b.clip_id, a.clip_id]
        sp.release(c.clip_id)
        assert sp.pending()[0].clip_id == c.clip_id


def test_full_spool_evicts_lowest_priority_oldest_first_and_counts_it(tmp_path):
    with Spool(tmp_path, 300) as sp:
        low_old = sp.put(_blob(1), priority=0, t_ns=1)
        low_new = sp.put(_blob(2), priority=0, t_ns=2)
        high = sp.put(_blob(3), priority=3, t_ns=0)
        sp.put(_blob(4), priority=1, t_ns=3)
        ids = {c.clip_id for c in sp.clips()}
        assert low_old.clip_id not in ids and {low_new.clip_id, high.clip_id} <= ids
        assert sp.stats()["evicted"] == {"quota": 1}
        assert sp.path(high.clip_id).with_suffix(".json").exists()
        assert not (tmp_path / f"{low_old.clip_id}.json").exists()


def test_leased_clip_is_never_evicted(tmp_path):
    with Spool(tmp_path, 200) as sp:
        a = sp.put(_blob(1), priority=0, t_ns=1)
        b = sp.put(_blob(2), priority=0, t_ns=2)
        sp.lease(a.clip_id)
        sp.put(_blob(3), priority=0, t_ns=3)
        assert a.clip_id in sp and b.clip_id not in sp


def test_higher_priority_clip_is_not_evicted_for_a_lower_one_the_new_one_is_refused(tmp_path):
    with Spool(tmp_path, 200) as sp:
        sp.put(_blob(1), priority=5, t_ns=1)
        sp.put(_blob(2), priority=5, t_ns=2)
        with pytest.raises(SpoolError, match="higher priority"):
            sp.put(_blob(3), priority=1, t_ns=3)
        with pytest.raises(SpoolError, match="larger than the whole spool quota"):
            sp.put(_blob(4, 500), priority=9, t_ns=4)
        assert sp.stats()["refused"] == {"protected": 1, "larger_than_quota": 1}
        assert sp.stats()["count"] == 2


def test_ack_deletes_the_clip_and_its_sidecar(tmp_path):
    with Spool(tmp_path, 10_000) as sp:
        c = sp.put(_blob(1), priority=0, t_ns=1)
        sp.lease(c.clip_id)
        sp.ack(c.clip_id)
        assert c.clip_id not in sp and not list(tmp_path.glob(f"{c.clip_id}*"))
        with pytest.raises(SpoolError, match="no clip"):
            sp.ack(c.clip_id)


def test_metadata_and_queue_survive_a_restart(tmp_path):
    with Spool(tmp_path, 10_000) as sp:
        a = sp.put(_blob(1), priority=1, t_ns=10, meta={"k": "v"})
        b = sp.put(_blob(2), priority=4, t_ns=20)
        sp.lease(b.clip_id)  # leases do not survive: an interrupted upload is retried
    with Spool(tmp_path, 10_000) as sp:
        got = sp.pending()
        assert [c.clip_id for c in got] == [b.clip_id, a.clip_id]
        assert (got[1].priority, got[1].t_ns, got[1].meta) == (1, 10, {"k": "v"})


def test_recovery_removes_temp_leftovers_and_quarantines_corrupt_clips(tmp_path):
    with Spool(tmp_path, 10_000) as sp:
        good = sp.put(_blob(1), priority=1, t_ns=1)
        bad = sp.put(_blob(2), priority=1, t_ns=2)
    (tmp_path / ".tmp-deadbeef.clip.1.2").write_bytes(b"half a clip")
    (tmp_path / ("ab" * 32 + ".json")).write_text("{}")  # orphan sidecar
    p = tmp_path / f"{bad.clip_id}.clip"
    p.write_bytes(b"X" + p.read_bytes()[1:])
    with Spool(tmp_path, 10_000) as sp:
        assert [c.clip_id for c in sp.pending()] == [good.clip_id]
        st = sp.stats()
        assert st["quarantined"] == 1 and st["counters"]["recovered_tmp_removed"] == 1
        assert st["counters"]["recovered_orphan_meta_removed"] == 1
    assert (tmp_path / "quarantine" / f"{bad.clip_id}.clip").exists()
    assert json.loads((tmp_path / "quarantine" / f"{bad.clip_id}.json").read_text())["t_ns"] == 2


def test_second_process_on_the_same_spool_is_refused(tmp_path):
    import subprocess
    import sys

    with Spool(tmp_path, 10_000):
        code = f"from shadowd.edges.spool import Spool; Spool({str(tmp_path)!r}, 100)"
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "in use by another process" in r.stderr


def test_duplicate_put_returns_the_existing_clip(tmp_path):
    with Spool(tmp_path, 10_000) as sp:
        a = sp.put(_blob(1), priority=1, t_ns=1)
        assert sp.put(_blob(1), priority=9, t_ns=2) == a
        assert sp.stats()["count"] == 1 and sp.stats()["counters"]["duplicate"] == 1


def test_stats_reports_counts_and_bytes_by_priority(tmp_path):
    with Spool(tmp_path, 10_000) as sp:
        sp.put(_blob(1, 10), priority=1, t_ns=1)
        sp.put(_blob(2, 20), priority=1, t_ns=2)
        sp.put(_blob(3, 30), priority=7, t_ns=3)
        st = sp.stats()
        assert st["by_priority"] == {"7": {"count": 1, "bytes": 30}, "1": {"count": 2, "bytes": 30}}
        assert (st["count"], st["bytes"], st["quota_bytes"]) == (3, 60, 10_000)
        json.dumps(st)
        assert os.path.exists(tmp_path / ".lock")
