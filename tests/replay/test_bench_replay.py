"""``shadowd bench replay`` runs end to end: one worker and a warm pool of two replay the same
real minutes to the same results; the figures are the measured ones, not targets."""

from __future__ import annotations

import argparse

import pytest

from shadowd.bench import replay as bench


def test_bench_replay_measures_one_worker_and_a_warm_pool():
    out = bench.run(argparse.Namespace(copies=2, workers="2", model=None, repeat=1))
    one, two = out["one_worker"], out["workers_2"]
    for r in (one, two):
        assert r["inputs"] == 2 and r["driven_s"] > 110
        assert r["x_realtime"] == pytest.approx(r["driven_s"] / r["wall_s"], rel=0.01) and r["x_realtime"] > 0
        assert r["first_pass_wall_s"] > 0 and len(r["runs_wall_s"]) == 1
    assert (one["clips"], one["predictions"]) == (two["clips"], two["predictions"]) and one["predictions"] > 2000
    assert out["meets_target"] == (one["x_realtime"] >= out["target_x_realtime_per_core"])
    assert two["scaling"] == round(two["x_realtime"] / one["x_realtime"], 2)
