"""The columnar stage values and the Session's batch traces, against plain per-row references:
``PredictionBatch`` / ``DivergenceBatch`` rows, ``take`` and ``concat``; ``_BatchTrace.between``
and ``trim`` over batches that arrive in any order (Hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from shadowd.core.types import DivergenceBatch, Prediction, PredictionBatch
from shadowd.session import _BatchTrace, divergences_array, predictions_array

HORIZON = np.array([0.1, 0.2, 0.3])


def _batch(t_ns: list[int], seed: int, traj: bool = True) -> PredictionBatch:
    rng = np.random.default_rng(seed)
    n = len(t_ns)
    return PredictionBatch(np.array(t_ns, np.int64), HORIZON,
                           {"steer_angle_deg": rng.normal(size=(n, 3)), "accel_long_mps2": rng.normal(size=(n, 3))},
                           rng.normal(size=(n, 3, 2)) if traj else None)


def test_a_prediction_batch_is_its_rows():
    b = _batch([10, 20, 30, 40], seed=1)
    rows = b.rows()
    assert [p.t_ns for p in rows] == [10, 20, 30, 40] and all(type(p.t_ns) is int for p in rows)
    np.testing.assert_array_equal(rows[2].controls["accel_long_mps2"], b.controls["accel_long_mps2"][2])
    np.testing.assert_array_equal(rows[3].trajectory_xy_m, b.trajectory_xy_m[3])
    again = PredictionBatch.of(rows)  # back to columns: the same values
    np.testing.assert_array_equal(again.t_ns, b.t_ns)
    for name in b.controls:
        np.testing.assert_array_equal(again.controls[name], b.controls[name])
    np.testing.assert_array_equal(again.trajectory_xy_m, b.trajectory_xy_m)
    picked = PredictionBatch.concat([b.take(slice(3, 4)), b.take(np.array([True, False, True, False]))])
    assert picked.t_ns.tolist() == [40, 10, 30]
    np.testing.assert_array_equal(picked.controls["steer_angle_deg"][1], b.controls["steer_angle_deg"][0])


def test_predictions_without_a_control_or_trajectory_become_nan_rows():
    rows = [Prediction(1, HORIZON, {"steer_angle_deg": np.ones(3)}, np.zeros((3, 2))),
            Prediction(2, HORIZON, {"accel_long_mps2": np.full(3, 2.0)}, None)]
    b = PredictionBatch.of(rows)
    assert np.isnan(b.controls["steer_angle_deg"][1]).all() and np.isnan(b.controls["accel_long_mps2"][0]).all()
    assert np.isnan(b.trajectory_xy_m[1]).all() and (b.trajectory_xy_m[0] == 0).all()


def test_a_divergence_batch_is_its_rows():
    d = DivergenceBatch(np.array([5, 6], np.int64), {"divergence": np.array([0.5, np.nan]),
                                                      "steer_err_deg": np.array([1.0, 2.0])})
    rows = d.rows()
    assert [r.t_ns for r in rows] == [5, 6] and rows[0].score == 0.5 and np.isnan(rows[1].score)
    assert rows[1].metrics == {"divergence": rows[1].metrics["divergence"], "steer_err_deg": 2.0}
    assert d.row(0) == rows[0]
    both = DivergenceBatch.concat([d.take(slice(1, 2)), d.take(slice(0, 1))])
    assert both.t_ns.tolist() == [6, 5] and both.metrics["steer_err_deg"].tolist() == [2.0, 1.0]


def test_clip_streams_of_no_rows_keep_their_columns():
    assert predictions_array(None).dtype.names == ("t_ns",)
    assert divergences_array(None).dtype.names == ("t_ns", "score")
    stream = predictions_array(_batch([1, 2], seed=3))
    assert stream.dtype.names[:4] == ("t_ns", "accel_long_mps2_h0", "accel_long_mps2_h1", "accel_long_mps2_h2")
    assert "traj_y_m_h2" in stream.dtype.names and stream["t_ns"].tolist() == [1, 2]


@st.composite
def _arrivals(draw):
    """Batches of ascending rows, disjoint in time, arriving mostly in order (some late)."""
    starts = sorted(draw(st.sets(st.integers(0, 400), min_size=1, max_size=12)))
    batches = []
    for i, s in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else s + 30
        n = draw(st.integers(1, max(1, min(5, end - s))))
        t = sorted(draw(st.sets(st.integers(s, end - 1), min_size=n, max_size=n)))
        batches.append(t)
    order = list(range(len(batches)))
    for _ in range(draw(st.integers(0, 3))):  # a few answers come back late
        i, j = draw(st.integers(0, len(order) - 1)), draw(st.integers(0, len(order) - 1))
        order[i], order[j] = order[j], order[i]
    return [batches[k] for k in order]


@settings(max_examples=200, deadline=None)
@given(_arrivals(), st.lists(st.tuples(st.integers(-10, 450), st.integers(0, 120)), min_size=1, max_size=8),
       st.integers(0, 500))
def test_a_trace_gives_the_rows_of_a_window_in_time_order(arrivals, windows, trim_at):
    trace = _BatchTrace(100, PredictionBatch.concat)
    rows = []  # (t, the batch's seed, row in batch): the reference
    for seed, t in enumerate(arrivals):
        trace.add(_batch(t, seed))
        rows += [(x, seed, i) for i, x in enumerate(t)]
    trace.trim(trim_at)
    for t0, width in windows:
        t1 = t0 + width
        if t0 < trim_at - 100:
            continue  # before the retention window: trimming may have dropped it
        want = sorted((r for r in rows if t0 <= r[0] <= t1), key=lambda r: r[0])
        got = trace.between(t0, t1)
        if not want:
            assert got is None
            continue
        assert got.t_ns.tolist() == [r[0] for r in want]
        for k, (_, seed, i) in enumerate(want):
            np.testing.assert_array_equal(got.controls["steer_angle_deg"][k],
                                          _batch(arrivals[seed], seed).controls["steer_angle_deg"][i])


def test_trimming_drops_old_batches_in_blocks_and_keeps_the_retention_window():
    trace = _BatchTrace(1_000, PredictionBatch.concat)
    for k in range(300):  # one answer every 10: a vehicle's batches of one row
        trace.add(_batch([10 * k], seed=k, traj=False))
    trace.trim(2_990)  # keep t >= 1990
    held = len(trace._batches)
    assert 101 <= held < 300 - 64 + 1  # dropped a block, never inside the window
    assert trace.between(1_990, 2_990).t_ns.tolist() == list(range(1_990, 2_991, 10))
    trace.trim(2_991)  # one more batch out of the window: not worth a trim yet
    assert len(trace._batches) == held
