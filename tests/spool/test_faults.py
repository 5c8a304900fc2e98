"""Spool fault tests: kill -9 a writer at random moments; a full disk (small tmpfs)."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shadowd.edges.spool import Spool
from shadowd.errors import SpoolError

ROOT = Path(__file__).resolve().parents[2]

_WRITER = r"""
import os, sys
from shadowd.edges.spool import Spool
sp = Spool(sys.argv[1], 1 << 34)
seed = int(sys.argv[2])
print("ready", flush=True)
i = 0
while True:
    size = 1000 + (seed * 7919 + i * 104729) % 300_000
    data = os.urandom(size)
    c = sp.put(data, priority=i % 4, t_ns=i)
    print(c.clip_id, flush=True)
    i += 1
"""

KILLS = int(os.environ.get("SHADOWD_SPOOL_KILLS", "200" if os.environ.get("SHADOWD_SLOW_TESTS") else "50"))


def test_writer_killed_at_random_moments_loses_no_acknowledged_clip_and_leaves_none_corrupt(tmp_path):
    rng = random.Random(1234)
    acknowledged: set[str] = set()
    for k in range(KILLS):
        p = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(k)], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        try:
            assert p.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            p.kill()  # SIGKILL
            out, _ = p.communicate(timeout=30)
        acknowledged.update(line for line in out.split() if len(line) == 64)
    with Spool(tmp_path, 1 << 34) as sp:
        visible = {c.clip_id for c in sp.clips()}
        st = sp.stats()
        assert st["quarantined"] == 0
        for cid in visible:
            assert hashlib.sha256(sp.path(cid).read_bytes()).hexdigest() == cid
    assert acknowledged <= visible, f"{len(acknowledged - visible)} acknowledged clips lost"
    assert len(acknowledged) > KILLS // 2  # the writer really got clips in between kills
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs (or a loop-mounted ext4 file) that really fills up."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CAP_SYS_ADMIN); this test runs as an unprivileged user")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "shadowd-spool-test", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        img = tmp_path / "fs.img"
        with open(img, "wb") as f:
            f.truncate(4 << 20)
        mk = subprocess.run(["mkfs.ext4", "-q", str(img)], capture_output=True, text=True)
        r2 = subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], capture_output=True, text=True)
        if mk.returncode or r2.returncode:
            pytest.skip(f"cannot mount a small file system here (tmpfs: {r.stderr.strip()}; loop: "
                        f"{(mk.stderr or r2.stderr).strip()}); run as root with CAP_SYS_ADMIN to test disk-full")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_full_disk_is_reported_nothing_half_written_and_spool_resumes_when_space_returns(small_fs):
    sp = Spool(small_fs / "spool", 1 << 30)  # the quota is far above the disk: the disk fills first
    try:
        stored = []
        with pytest.raises(SpoolError, match="disk full"):
            for i in range(100):
                stored.append(sp.put(os.urandom(300_000), priority=1, t_ns=i))
        assert 2 <= len(stored) < 10
        assert sp.stats()["disk_full"] == 1
        names = os.listdir(small_fs / "spool")
        assert not [n for n in names if n.startswith(".tmp-")]
        assert sorted(n for n in names if n.endswith(".clip")) == sorted(f"{c.clip_id}.clip" for c in stored)
        # still running: reads and leases work while full
        assert len(sp.pending()) == len(stored)
        sp.lease(stored[0].clip_id)
        sp.ack(stored[0].clip_id)
        sp.ack(stored[1].clip_id)
        c = sp.put(os.urandom(300_000), priority=1, t_ns=1000)  # space is back
        assert hashlib.sha256(sp.path(c.clip_id).read_bytes()).hexdigest() == c.clip_id
    finally:
        sp.close()
    with Spool(small_fs / "spool", 1 << 30) as sp2:
        assert sp2.stats()["quarantined"] == 0 and c.clip_id in sp2
