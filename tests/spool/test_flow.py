"""End to end: real triggers on the real RAV4 minute -> clips (replay's Session) -> spool -> restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import shadowd
from shadowd.clip import decode_clip
from shadowd.edges.spool import Spool

LOG = Path(shadowd.__file__).parent / "data" / "rav4" / "c2k19_rav4_seg40.candump.log"
TRIGGERS = [
    {"name": "steer_rate", "priority": 5, "pre_s": 3.0, "post_s": 2.0, "cooldown_s": 15.0, "max_per_hour": 600,
     "expr": "abs(steer_rate_dps) > 10"},
    {"name": "diverged", "priority": 7, "pre_s": 2.0, "post_s": 2.0, "cooldown_s": 20.0, "max_per_hour": 600,
     "expr": "held(divergence > 0.2, 0.3s)"},
]


def test_clips_from_real_triggers_land_in_the_spool_and_survive_a_restart(tmp_path):
    runner = pytest.importorskip("shadowd.replay.runner", reason="replay runner (REPLAY's part) is not in this tree")
    cfg = tmp_path / "triggers.json"
    cfg.write_text(json.dumps(TRIGGERS))
    r = runner.replay_input(0, str(LOG), runner.ReplayOptions(config_path=str(cfg), vehicle_id="rav4-e2e"))
    assert r["status"] == "ok", r.get("error")
    assert r["clips"], "the triggers fired nothing on the RAV4 minute"
    with Spool(tmp_path / "spool", 50_000_000) as sp:
        for row, data in zip(r["clips"], r["clip_bytes"]):
            c = sp.put(data, priority=row["priority"], t_ns=r["t0_ns"] + int(row["t0_s"] * 1e9), meta={"file": row["file"]})
            assert c.clip_id == row["sha256"]
    with Spool(tmp_path / "spool", 50_000_000) as sp:
        pending = sp.pending()
        assert len(pending) == len(r["clips"]) and sp.stats()["quarantined"] == 0
        keys = [(-c.priority, c.t_ns) for c in pending]
        assert keys == sorted(keys)
        for c in pending:
            clip = decode_clip(sp.path(c.clip_id).read_bytes())
            assert clip.provenance.vehicle_id == "rav4-e2e" and clip.provenance.model_sha256
            assert {t.name for t in clip.provenance.triggers} >= {x.trigger for x in clip.causes}
            assert {"can_raw", "vehicle"} <= set(clip.streams) and len(clip.streams["can_raw"]) > 1000
            assert clip.priority == c.priority
