"""The C divergence kernel (native/src/score.c) against the numpy reference
(``divergence._score_numpy``): the same metrics to 1e-9 with NaN in the same places, on
the real RAV4 drive through the pipeline and on generated histories and predictions (NaN,
missing controls and trajectories, predictions at the history's edges); batches the kernel
does not take fall back to the reference."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from shadowd.core import divergence as dv
from shadowd.core.divergence import METRIC_NAMES, ScorerConfig, score_batch
from shadowd.core.types import DivergenceBatch, Prediction, PredictionBatch
from shadowd.edges.model_runner import ModelRunner, default_model_path
from shadowd.edges.platforms import load_platform

from .test_end_to_end import _run

KEYS = (*METRIC_NAMES, "realized_speed_mps")
SIGNALS = ("speed_mps", "steer_angle_deg", "accel_long_mps2", "yaw_rate_rps")

pytestmark = pytest.mark.skipif(dv._native_scorer() is None, reason="shadowd._native has no divergence kernel")


def _assert_same(native: DivergenceBatch, reference: DivergenceBatch):
    """Same rows (times), metrics (names in order, float64 columns, values to rel/abs 1e-9, NaN
    in the same places); the rows as Divergence objects carry the very column values."""
    np.testing.assert_array_equal(native.t_ns, reference.t_ns)
    assert tuple(native.metrics) == tuple(reference.metrics) == KEYS
    for name in KEYS:
        col, ref = native.metrics[name], reference.metrics[name]
        assert col.dtype == ref.dtype == np.float64 and col.shape == ref.shape == native.t_ns.shape
        _assert_close(col, ref)
    rows = native.rows()
    assert [d.t_ns for d in rows] == native.t_ns.tolist()
    for name in KEYS:
        np.testing.assert_array_equal([d.metrics[name] for d in rows], native.metrics[name])
    np.testing.assert_array_equal([d.score for d in rows], native.score)


def _assert_close(got, want):
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    known = ~np.isnan(want)
    np.testing.assert_allclose(got[known], want[known], rtol=1e-9, atol=1e-9)


def _both(preds, t, hist, cfg=ScorerConfig()):
    """Score ``preds`` (a PredictionBatch or Prediction objects) in C and in numpy; the C result."""
    batch = preds if isinstance(preds, PredictionBatch) else PredictionBatch.of(preds)
    native = score_batch(batch, t, hist, cfg)
    with np.errstate(all="ignore"):
        reference = dv._score_numpy(batch, t, hist, cfg)
    _assert_same(native, reference)
    return native


# --- the real drive -------------------------------------------------------------------------


class _Recording:
    """The reference model's runner, keeping every prediction it makes."""

    def __init__(self):
        self.runner = ModelRunner(default_model_path(), load_platform("nt2"), providers=["CPUExecutionProvider"])
        self.contract = self.runner.contract
        self.predictions = []

    def infer(self, request):
        out = self.runner.infer(request)
        if out is not None:
            self.predictions.append(out)
        return out


def _divergences(topics):
    """The RAV4 minute through the pipeline: its divergences and every prediction, as batches."""
    runner = _Recording()
    _, events = _run(topics, runner, [])
    return (DivergenceBatch.concat([e for e in events if isinstance(e, DivergenceBatch)]),
            PredictionBatch.concat(runner.predictions))


@pytest.fixture(scope="module")
def rav4_predictions(rav4_topics):
    """Every prediction the reference model makes on the RAV4 minute, and the vehicle history."""
    topics = rav4_topics[0]
    _, preds = _divergences(topics)
    veh = topics["vehicle"]
    preds = preds.take(np.argsort(preds.t_ns, kind="stable"))
    return topics, preds, veh["t_ns"], {s: veh[s].astype(np.float64) for s in SIGNALS}


def test_rav4_drive_scores_the_same_in_c_and_numpy(rav4_predictions):
    topics, preds, t, hist = rav4_predictions
    assert len(preds) > 1100
    # one pass over the minute, the replay's batches (~240), the vehicle service's (~4)
    for batch in (len(preds), 240, 4):
        scores = np.concatenate([_both(preds.take(slice(i, i + batch)), t, hist).score
                                 for i in range(0, len(preds), batch)])
        assert (~np.isnan(scores)).sum() > 1100
    # the history as the service has it: float32 columns and only the frames a batch needs
    veh = topics["vehicle"]
    due = preds.take(slice(400, 404))
    lo = int(np.searchsorted(t, due.t_ns[0], side="right")) - 1
    hi = int(np.searchsorted(t, due.t_ns[-1] + 1_500_000_000, side="left")) + 1
    _both(due, t[lo:hi], {s: veh[s][lo:hi] for s in SIGNALS})


def test_pipeline_events_are_the_same_with_and_without_the_kernel(rav4_topics, monkeypatch):
    native, _ = _divergences(rav4_topics[0])
    monkeypatch.setattr(dv, "_native_scorer", lambda: None)  # as on a build without the kernel
    reference, _ = _divergences(rav4_topics[0])
    assert len(native) == len(reference) > 1100
    np.testing.assert_array_equal(native.t_ns, reference.t_ns)
    for k in KEYS:
        _assert_close(native.metrics[k], reference.metrics[k])


# --- generated batches ----------------------------------------------------------------------


@st.composite
def _batch(draw):
    """A history (possibly empty, with equal times and NaN samples, some columns absent) and
    predictions mostly inside it, some at its edges (before its start, across its end, on its
    samples), some without a control or a trajectory, with NaN in their values."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.sampled_from([0, 1, 7, 150, 300, 500, 500, 500]))
    step_ns = draw(st.sampled_from([10_000_000, 10_000_000, 3_000_000, 25_000_000]))
    steps = rng.choice([step_ns, 0, 1, 7_000_000], n, p=[0.94, 0.02, 0.02, 0.02])  # equal times too
    base = draw(st.sampled_from([0, 1_234_567_891, 1_700_000_000_000_000_000]))
    t = base + np.cumsum(steps.astype(np.int64))
    nan_rate = draw(st.sampled_from([0.0, 0.0, 0.0, 0.002, 0.02, 1.0]))

    def column(scale):
        col = rng.normal(0, scale, n)
        col[rng.random(n) < nan_rate] = np.nan
        return col

    hist = {"speed_mps": np.abs(column(15.0))}
    for name, scale in (("steer_angle_deg", 30.0), ("accel_long_mps2", 1.0), ("yaw_rate_rps", 0.3)):
        if draw(st.integers(0, 3)) > 0:
            hist[name] = column(scale)
    k = draw(st.integers(1, 16))
    offsets = np.arange(1, k + 1) * draw(st.sampled_from([0.01, 0.05, 0.1, 0.1, 0.137]))
    first, last = (int(t[0]), int(t[-1])) if n else (0, 0)
    horizon_ns = int(offsets[-1] * 1e9)
    inside = st.integers(first, max(first, last - horizon_ns))
    edge = st.one_of(st.integers(first - horizon_ns, first), st.integers(last - horizon_ns, last + 10_000_000),
                     st.sampled_from(t.tolist() or [0]))
    t0s = draw(st.lists(st.one_of(inside, inside, inside, edge), min_size=1, max_size=8))
    preds = []
    for t0 in sorted(t0s):
        controls = {}
        for name, scale in (("steer_angle_deg", 30.0), ("accel_long_mps2", 1.0)):
            if draw(st.integers(0, 3)) > 0:
                v = rng.normal(0, scale, k)
                v[rng.random(k) < draw(st.sampled_from([0.0, 0.0, 0.1, 1.0]))] = np.nan
                controls[name] = v
        traj = rng.normal(0, 10.0, (k, 2)) if draw(st.integers(0, 3)) > 0 else None
        if traj is not None and draw(st.integers(0, 5)) == 0:
            traj[rng.integers(k)] = np.nan
        preds.append(Prediction(int(t0), offsets, controls, traj))
    return preds, t, hist


@settings(max_examples=300, deadline=None)
@given(_batch())
def test_generated_batches_score_the_same_in_c_and_numpy(batch):
    _both(*batch)


@settings(max_examples=30, deadline=None)
@given(_batch(), st.floats(0.5, 30), st.floats(0.1, 5))
def test_scorer_config_reaches_the_kernel(batch, steer_ratio, accel_tol):
    _both(*batch, ScorerConfig(steer_ratio=steer_ratio, accel_tol_mps2=accel_tol, pos_tol_frac=0.2))


def _smooth_history(seconds=20.0):
    rng = np.random.default_rng(7)
    n = int(seconds * 100)
    t = 1_000_000_000 + np.arange(n, dtype=np.int64) * 10_000_000
    return t, {"speed_mps": 15 + np.cumsum(rng.normal(0, 0.02, n)), "yaw_rate_rps": np.cumsum(rng.normal(0, 0.001, n)),
               "steer_angle_deg": np.cumsum(rng.normal(0, 0.1, n)), "accel_long_mps2": rng.normal(0, 0.3, n)}


def _preds(offsets, count=6, traj=True):
    rng = np.random.default_rng(3)
    k = len(offsets)
    return [Prediction(2_000_000_000 + i * 50_000_000, offsets,
                       {"steer_angle_deg": rng.normal(size=k), "accel_long_mps2": rng.normal(size=k)},
                       rng.normal(size=(k, 2)) if traj else None) for i in range(count)]


def test_long_horizons_sum_as_numpy_does():
    # more than 128 offsets: numpy's pairwise summation splits the sum; the realized speed
    # (no trigonometry in it) is bit-identical
    t, hist = _smooth_history()
    offsets = np.arange(1, 301) / 100.0
    native, reference = _both(_preds(offsets), t, hist), dv._score_numpy(PredictionBatch.of(_preds(offsets)), t, hist)
    np.testing.assert_array_equal(native.metrics["realized_speed_mps"], reference.metrics["realized_speed_mps"])
    np.testing.assert_array_equal(native.metrics["steer_err_deg"], reference.metrics["steer_err_deg"])


def test_batches_the_kernel_does_not_take_fall_back_to_numpy(monkeypatch):
    t, hist = _smooth_history()
    calls = []
    reference = dv._score_numpy
    monkeypatch.setattr(dv, "_score_numpy", lambda *a: calls.append(1) or reference(*a))
    # offsets that do not ascend (the kernel integrates the path in order) ...
    _both(_preds(np.array([0.5, 0.1, 0.3, 1.5, 1.0])), t, hist)
    assert len(calls) == 2  # the fallback, then _both's own reference call
    # ... but without a trajectory the kernel takes them
    _both(_preds(np.array([0.5, 0.1, 0.3, 1.5, 1.0]), traj=False), t, hist)
    assert len(calls) == 3
    # more offsets than the kernel's stack arrays hold
    _both(_preds(np.arange(1, 1100) / 500.0, count=2), t, hist)
    assert len(calls) == 5
    # a control of the wrong length: the reference's error
    good = PredictionBatch.of(_preds(np.arange(1, 16) / 10.0))
    bad = PredictionBatch(good.t_ns, good.horizon_s, {**good.controls, "steer_angle_deg": np.zeros((len(good), 3))},
                          good.trajectory_xy_m)
    with pytest.raises(ValueError):
        score_batch(bad, t, hist)
    assert len(calls) == 6


def test_without_the_kernel_the_reference_scores(monkeypatch):
    t, hist = _smooth_history()
    preds = PredictionBatch.of(_preds(np.arange(1, 16) / 10.0))
    monkeypatch.setattr(dv, "_native_scorer", lambda: None)
    got, want = score_batch(preds, t, hist).rows(), dv._score_numpy(preds, t, hist).rows()
    assert [(d.t_ns, d.score, d.metrics) for d in got] == [(d.t_ns, d.score, d.metrics) for d in want]


def test_a_stale_build_is_said_and_left_to_numpy(caplog):
    from shadowd.native import kernel

    with caplog.at_level(logging.WARNING, logger="shadowd.native"):
        assert kernel("shadowd_no_such_abi_version", 1, "test part") is None
        assert kernel("shadowd_score_abi_version", 99, "divergence kernel") is None
        assert kernel("shadowd_score_abi_version", 99, "divergence kernel") is None  # said once
    assert "no test part of ABI v1 (stale build)" in caplog.text
    assert caplog.text.count("no divergence kernel of ABI v99") == 1


def test_empty_batch():
    out = score_batch(PredictionBatch.of([]), *_smooth_history())
    assert len(out) == 0 and out.rows() == [] and tuple(out.metrics) == KEYS
    assert all(len(c) == 0 for c in out.metrics.values())
