"""Replay advances the Session over several clock chunks at once away from the end of an
input (``ReplayOptions.bulk_chunks``, a throughput knob): on the real RAV4 minute cut to
various lengths, with the built-in and with busier triggers, the whole per-input result
(divergence scores bit for bit, trigger events, clip bytes, every counter) is the same as
with one advance per chunk."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import shadowd
from shadowd.replay.inputs import Drive, read_input
from shadowd.replay.runner import ReplayOptions, default_model_path, load_model, load_platform, run_drive

LOG = Path(shadowd.__file__).parent / "data" / "rav4" / "c2k19_rav4_seg40.candump.log"

# fire often on the real minute, so the comparison covers many clips, cooldowns and metrics
TRIGGERS = [
    {"name": "slowing", "expr": "speed_mps < 15", "priority": 3, "pre_s": 3.0, "post_s": 2.0, "cooldown_s": 10.0},
    {"name": "diverging", "expr": "divergence > 0.3", "priority": 2, "pre_s": 2.0, "post_s": 2.0,
     "cooldown_s": 5.0},
    {"name": "steer", "expr": "steer_err_norm > 0.5", "priority": 1, "pre_s": 1.0, "post_s": 1.0,
     "cooldown_s": 3.0},
]


@pytest.fixture(scope="module")
def setup():
    platform = load_platform("desktop")
    return read_input(LOG, platform), load_model(str(default_model_path()), platform), platform


def _cut(drive: Drive, length_s: float) -> Drive:
    end = drive.t0_ns + int(length_s * 1e9)
    return Drive(drive.name, drive.kind, {k: a[a["t_ns"] <= end] for k, a in drive.topics.items()})


def _comparable(result: dict) -> dict:
    out = {k: v for k, v in result.items() if k != "timing"}  # wall-clock only
    out["divergence"] = {k: np.asarray(v).tobytes() for k, v in result["divergence"].items()}
    return out


@pytest.mark.parametrize("busy", [False, True], ids=["builtin-triggers", "busy-triggers"])
def test_bulk_advances_give_the_same_result_as_one_advance_per_chunk(setup, tmp_path, busy):
    drive, model, platform = setup
    opts = ReplayOptions(model_path=str(default_model_path()))
    if busy:
        (tmp_path / "t.json").write_text(json.dumps(TRIGGERS))
        opts = dataclasses.replace(opts, config_path=str(tmp_path / "t.json"))
    assert opts.bulk_chunks > 1
    clips = 0
    for length_s in (21.0, 37.7, 51.9, 61.0):
        d = _cut(drive, length_s)
        bulk = run_drive(0, d, model, platform, opts)
        one = run_drive(0, d, model, platform, dataclasses.replace(opts, bulk_chunks=1))
        assert len(bulk["divergence"]["score"]) > 300
        assert _comparable(bulk) == _comparable(one), f"{length_s} s of driving"
        clips += len(bulk["clips"])
    assert clips >= (12 if busy else 4)
