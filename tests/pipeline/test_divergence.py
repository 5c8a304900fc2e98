"""Divergence scoring: exactness on known motion, speed-dependent tolerance, batch independence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from shadowd.core.divergence import ScorerConfig, realized_path, score_predictions, steer_tolerance_deg
from shadowd.core.types import Prediction

OFFSETS = np.arange(1, 16) / 10.0


def _history(seconds=10.0, speed=20.0, yaw=0.0, steer=None, accel=0.0):
    t = np.arange(0, int(seconds * 100)) * 10_000_000
    n = len(t)
    return t, {"speed_mps": np.full(n, speed), "yaw_rate_rps": np.full(n, yaw),
               "steer_angle_deg": np.zeros(n) if steer is None else steer, "accel_long_mps2": np.full(n, accel)}


def _pred(t_ns, steer=0.0, accel=0.0, traj=None):
    return Prediction(t_ns, OFFSETS, {"steer_angle_deg": np.full(15, steer), "accel_long_mps2": np.full(15, accel)}, traj)


def test_realized_path_of_constant_speed_is_a_straight_line():
    t, h = _history(speed=20.0)
    xy = realized_path(t, h["speed_mps"], h["yaw_rate_rps"], np.array([1_000_000_000]), OFFSETS)[0]
    np.testing.assert_allclose(xy[:, 0], 20.0 * OFFSETS, atol=1e-9)
    np.testing.assert_allclose(xy[:, 1], 0.0, atol=1e-12)


def test_realized_path_of_constant_yaw_rate_is_a_left_circle():
    t, h = _history(speed=10.0, yaw=0.2)
    xy = realized_path(t, h["speed_mps"], h["yaw_rate_rps"], np.array([2_000_000_000]), OFFSETS)[0]
    r = 10.0 / 0.2
    th = 0.2 * OFFSETS
    np.testing.assert_allclose(xy[:, 0], r * np.sin(th), atol=2e-3)
    np.testing.assert_allclose(xy[:, 1], r * (1 - np.cos(th)), atol=2e-3)


def test_a_prediction_equal_to_the_human_scores_zero():
    t, h = _history(speed=20.0, accel=0.0)
    truth = np.stack([20.0 * OFFSETS, np.zeros(15)], axis=1)
    d = score_predictions([_pred(2_000_000_000, traj=truth)], t, h)[0]
    assert d.score == pytest.approx(0.0, abs=1e-6)
    assert d.metrics["ade_m"] == pytest.approx(0.0, abs=1e-6)


def test_one_degree_weighs_more_at_highway_speed_than_in_town():
    assert steer_tolerance_deg(120 / 3.6) < steer_tolerance_deg(10 / 3.6) / 30
    fast = score_predictions([_pred(2_000_000_000, steer=1.0)], *_history(speed=120 / 3.6))[0]
    slow = score_predictions([_pred(2_000_000_000, steer=1.0)], *_history(speed=10 / 3.6))[0]
    assert fast.metrics["steer_err_deg"] == pytest.approx(slow.metrics["steer_err_deg"]) == pytest.approx(1.0)
    assert fast.score > 10 * slow.score


def test_score_is_rms_of_the_normalized_terms():
    cfg = ScorerConfig()
    t, h = _history(speed=20.0)
    d = score_predictions([_pred(2_000_000_000, steer=2.0, accel=0.5)], t, h, cfg)[0]
    expect = np.sqrt((d.metrics["steer_err_norm"] ** 2 + (0.5 / cfg.accel_tol_mps2) ** 2) / 2)
    assert d.score == pytest.approx(expect)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 79), min_size=1, max_size=30, unique=True), st.integers(1, 8), st.integers(0, 2**31))
def test_scores_do_not_depend_on_batch_boundaries(ticks, batch, seed):
    rng = np.random.default_rng(seed)
    n = 1000
    t = np.arange(n) * 10_000_000
    h = {"speed_mps": 15 + np.cumsum(rng.normal(0, 0.02, n)), "yaw_rate_rps": np.cumsum(rng.normal(0, 0.001, n)),
         "steer_angle_deg": np.cumsum(rng.normal(0, 0.1, n)), "accel_long_mps2": rng.normal(0, 0.3, n)}
    preds = [_pred(k * 100_000_000, steer=rng.normal(), accel=rng.normal(), traj=rng.normal(size=(15, 2)))
             for k in sorted(ticks)]
    whole = score_predictions(preds, t, h)
    parts = [d for i in range(0, len(preds), batch) for d in score_predictions(preds[i:i + batch], t, h)]
    assert [(d.t_ns, d.score, d.metrics) for d in whole] == [(d.t_ns, d.score, d.metrics) for d in parts]
