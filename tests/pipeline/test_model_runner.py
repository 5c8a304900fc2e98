"""Model contract refusals, the runner's failure containment, budget shedding and async mode."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from onnx import TensorProto

from shadowd.core.pipeline import InferenceRequest
from shadowd.edges.model_runner import ModelRunner, default_model_path
from shadowd.edges.platforms import load_platform
from shadowd.errors import ModelError

from ._onnx_models import contract, hold_last_model


def _write(tmp_path, blob: bytes, name="m.onnx"):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def _request(runner, t_ns=0, value=1.0, rows=1):
    """A request for ``rows`` ticks from ``t_ns`` on (100 ms apart), every window ``value``."""
    c = runner.contract
    return InferenceRequest(t_ns + np.arange(rows, dtype=np.int64) * 100_000_000,
                            {c.input_tensor: np.full((rows, c.window_steps, len(c.signals)), value, np.float32)})


def test_valid_model_loads_and_predicts_its_declared_controls(tmp_path):
    r = ModelRunner(_write(tmp_path, hold_last_model()), load_platform("desktop"))
    win = np.zeros((3, 10, 2), np.float32)
    win[:, -1] = [[20.0, 3.5], [20.0, -1.0], [10.0, 0.25]]
    preds = r.infer(InferenceRequest(np.array([7, 8, 9]), {"window": win}))
    assert preds.t_ns.tolist() == [7, 8, 9] and list(preds.controls) == ["steer_angle_deg"]
    steer = preds.controls["steer_angle_deg"]
    assert steer.shape == (3, 5) and steer.dtype == np.float64 and steer.flags.c_contiguous
    np.testing.assert_allclose(steer, [[3.5] * 5, [-1.0] * 5, [0.25] * 5])
    np.testing.assert_allclose(preds.horizon_s, [0.2, 0.4, 0.6, 0.8, 1.0])
    row = preds.row(1)  # one prediction, as the clip and report code reads it
    assert row.t_ns == 8 and row.controls["steer_angle_deg"].tolist() == [-1.0] * 5


def test_wrong_input_shape_is_refused_naming_the_tensor(tmp_path):
    blob = hold_last_model(in_shape=["batch", 12, 2])
    with pytest.raises(ModelError, match=r"input tensor 'window' has shape \['batch', 12, 2\].*\['batch', 10, 2\]"):
        ModelRunner(_write(tmp_path, blob), load_platform("desktop"))


def test_fixed_batch_dimension_is_refused(tmp_path):
    with pytest.raises(ModelError, match="input tensor 'window'.*dynamic batch"):
        ModelRunner(_write(tmp_path, hold_last_model(in_shape=[1, 10, 2])), load_platform("desktop"))


def test_wrong_output_shape_is_refused_naming_the_tensor(tmp_path):
    declared = json.dumps(contract(horizon_steps=6))  # the graph predicts 5 steps
    with pytest.raises(ModelError, match=r"output tensor 'controls' has shape \['batch', 5, 1\].*\['batch', 6, 1\]"):
        ModelRunner(_write(tmp_path, hold_last_model(metadata=declared)), load_platform("desktop"))


def test_wrong_dtype_is_refused_naming_the_tensor(tmp_path):
    with pytest.raises(ModelError, match="input tensor 'window' has dtype float64"):
        ModelRunner(_write(tmp_path, hold_last_model(in_dtype=TensorProto.DOUBLE)), load_platform("desktop"))


def test_signal_the_platform_does_not_provide_is_refused_naming_it(tmp_path):
    c = contract(signals=("speed_mps", "yaw_rate_rps"))
    path = _write(tmp_path, hold_last_model(c))
    ModelRunner(path, load_platform("nt2"))  # the RAV4 bus has yaw rate
    with pytest.raises(ModelError, match="'yaw_rate_rps' is not provided by this platform"):
        ModelRunner(path, load_platform("nt2_5"))  # the Honda bus has none


def test_unknown_signal_and_missing_contract_are_refused(tmp_path):
    with pytest.raises(ModelError, match="'sped_mps' is not a canonical signal"):
        ModelRunner(_write(tmp_path, hold_last_model(contract(signals=("sped_mps", "steer_angle_deg")))), None)
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelRunner(_write(tmp_path, hold_last_model(metadata="{nope")), None)
    with pytest.raises(ModelError, match="outputs.controls.signals"):
        c = contract()
        c["outputs"]["controls"]["signals"] = []
        ModelRunner(_write(tmp_path, hold_last_model(c, metadata=json.dumps(c))), None)


def test_corrupt_and_missing_files_are_refused(tmp_path):
    good = default_model_path().read_bytes()
    with pytest.raises(ModelError, match="cannot load model .*valid ONNX"):
        ModelRunner(_write(tmp_path, good[: len(good) // 2]), None)
    with pytest.raises(ModelError, match="cannot read model"):
        ModelRunner(tmp_path / "absent.onnx", None)


def test_model_exception_is_counted_and_returns_none(tmp_path):
    r = ModelRunner(_write(tmp_path, hold_last_model()), None, warmup=1)
    wrong = np.zeros((2, 12, 2), np.float32)  # a window of the wrong length: refused before the model
    assert r.infer(InferenceRequest(np.array([1, 2]), {"window": wrong})) is None and r.counters["errors"] == 2
    # past that check, onnxruntime itself raises on the shape at run time
    assert r._infer(wrong, np.array([1, 2])) is None and r.counters["errors"] == 4
    assert len(r.infer(_request(r, 3))) == 1  # and it keeps working


def test_bad_request_batch_is_counted_not_raised(tmp_path):
    r = ModelRunner(_write(tmp_path, hold_last_model()), None)
    assert r.infer(InferenceRequest(np.array([1]), {"wrong": np.zeros((1, 10, 2), np.float32)})) is None
    assert r.counters["errors"] == 1


def test_budget_overrun_sheds_rate_and_recovers(tmp_path):
    r = ModelRunner(_write(tmp_path, hold_last_model()), None, budget_ms=1e-6)
    answered = [r.predict(_request(r, i)) is not None for i in range(40)]
    assert r.shed_factor == 8 and r.counters["overruns"] >= 3 and r.counters["shed"] > 20
    assert sum(answered) < 15
    r.budget_ms = 1e6
    for i in range(40 * 8 * 3):
        r.predict(_request(r, i))
    assert r.shed_factor == 1 and r.counters["rate_changes"] >= 6


def test_latency_histogram_reports_percentiles():
    r = ModelRunner(default_model_path(), load_platform("desktop"))
    for i in range(50):
        r.predict(_request(r, i))
    p = r.latency_percentiles()
    assert 0 < p["p50_ms"] <= p["p90_ms"] <= p["p99_ms"]


def test_async_mode_never_blocks_and_answers_newest_wins():
    r = ModelRunner(default_model_path(), load_platform("desktop"))
    try:
        t0 = time.perf_counter()
        done = r.run([_request(r, i) for i in range(5)])  # 4 superseded at once
        assert time.perf_counter() - t0 < 0.05
        assert [p for _, p in done] == [None] * 4
        got = []
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            got = r.run([])
            time.sleep(0.001)
        assert [(req.t_ns.tolist(), p is not None) for req, p in got] == [([4], True)]
    finally:
        r.close()
