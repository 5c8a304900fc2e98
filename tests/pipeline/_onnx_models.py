"""Small ONNX models built with the onnx helper API, for contract and runner tests."""

from __future__ import annotations

import json

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from shadowd.core.model_contract import CONTRACT_KEY


def contract(signals=("speed_mps", "steer_angle_deg"), window_steps=10, rate_hz=10.0, horizon_steps=5,
             out_rate_hz=5.0, controls=("steer_angle_deg",), trajectory=False, **extra) -> dict:
    c = {"version": 1, "run_hz": 10.0,
         "inputs": {"tensor": "window", "signals": list(signals), "window_s": window_steps / rate_hz, "rate_hz": rate_hz},
         "outputs": {"horizon_s": horizon_steps / out_rate_hz, "rate_hz": out_rate_hz}}
    if controls:
        c["outputs"]["controls"] = {"tensor": "controls", "signals": list(controls)}
    if trajectory:
        c["outputs"]["trajectory"] = {"tensor": "trajectory_xy_m"}
    c.update(extra)
    return c


def hold_last_model(c: dict | None = None, *, in_shape=None, in_dtype=TensorProto.FLOAT, out_shape=None,
                    metadata: str | None = None) -> bytes:
    """Predicts "every control stays at its last input value" (a linear map), with knobs to
    make the declared graph disagree with the contract."""
    c = c or contract()
    sig = c["inputs"]["signals"]
    w = int(round(c["inputs"]["window_s"] * c["inputs"]["rate_hz"]))
    h = int(round(c["outputs"]["horizon_s"] * c["outputs"]["rate_hz"]))
    ctrl = c["outputs"].get("controls", {}).get("signals", [])
    n_out = max(1, len(ctrl))
    sel = np.zeros((w * len(sig), h * n_out), np.float32)
    for j, s in enumerate(ctrl):
        if s in sig:
            sel[(w - 1) * len(sig) + sig.index(s), j::n_out] = 1.0
    inits = [numpy_helper.from_array(sel, "sel"),
             numpy_helper.from_array(np.array([-1, w * len(sig)], np.int64), "flat"),
             numpy_helper.from_array(np.array([-1, h, n_out], np.int64), "out_shape")]
    nodes = [helper.make_node("Cast", ["window"], ["wf"], to=TensorProto.FLOAT),
             helper.make_node("Reshape", ["wf", "flat"], ["x"]),
             helper.make_node("MatMul", ["x", "sel"], ["y"]),
             helper.make_node("Reshape", ["y", "out_shape"], ["controls"])]
    graph = helper.make_graph(
        nodes, "hold_last",
        [helper.make_tensor_value_info("window", in_dtype, in_shape or ["batch", w, len(sig)])],
        [helper.make_tensor_value_info("controls", TensorProto.FLOAT, out_shape or ["batch", h, n_out])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, {CONTRACT_KEY: metadata if metadata is not None else json.dumps(c)})
    return model.SerializeToString()
