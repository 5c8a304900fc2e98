"""The C model-window sampler (native/src/window.c) against numpy (``align.sample_many``, what
ShadowCore's batched path runs): bit-identical windows on the real RAV4 drive request by
request, and on generated frames (equal times, NaN values, every field type, zero-order hold
and linear, queries before, on and after the frames, overlapping windows that go back)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from shadowd.core import pipeline as P
from shadowd.core.align import sample_many
from shadowd.core.pipeline import InferenceRequest, ShadowCore

import json

from shadowd.core.model_contract import TensorSpec, parse_contract

from ._onnx_models import contract as make_contract

_plan_probe = P._window_plan([], 1)
pytestmark = pytest.mark.skipif(_plan_probe is None, reason="shadowd._native has no model-window sampler")

DTYPE = np.dtype([("t_ns", "<i8"), ("a", "<f4"), ("b", "<f8"), ("c", "u1"), ("d", "i1"), ("e", "<u2"),
                  ("f", "<i2"), ("g", "<u4"), ("h", "<i4"), ("k", "?")])
CODES = {"a": 0, "b": 1, "c": 2, "d": 3, "e": 4, "f": 5, "g": 6, "h": 7, "k": 2}


def _native(frames, fields, interps, queries, base_ns=0):
    """The C sampler at ``base_ns + queries``; it says how many values it left unknown."""
    ffi, lib, _ = _plan_probe
    out = np.full((len(queries), len(fields)), -7.0, np.float32)
    t = np.ascontiguousarray(frames["t_ns"])
    rc = lib.shadowd_window_sample(
        len(frames), ffi.from_buffer("int64_t[]", t), ffi.from_buffer("uint8_t[]", frames.view(np.uint8)),
        DTYPE.itemsize, len(fields), ffi.new("size_t[]", [DTYPE.fields[f][1] for f in fields]),
        ffi.new("int[]", [CODES[f] for f in fields]), ffi.new("int[]", [i == "linear" for i in interps]),
        len(queries), base_ns, ffi.from_buffer("int64_t[]", np.ascontiguousarray(queries, np.int64)),
        ffi.from_buffer("float[]", out), len(fields), ffi.new("size_t[]", list(range(len(fields)))))
    assert rc == np.isnan(out).sum()
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=0, max_size=40),
       st.lists(st.one_of(st.floats(-1e6, 1e6, width=32), st.just(float("nan"))), min_size=40, max_size=40),
       st.lists(st.sampled_from(list(CODES)), min_size=1, max_size=6),
       st.lists(st.sampled_from(["linear", "zoh"]), min_size=6, max_size=6),
       st.lists(st.integers(-20, 700), min_size=1, max_size=30))
def test_the_c_sampler_gives_numpys_values_bit_for_bit(gaps, values, fields, interps, queries):
    frames = np.zeros(len(gaps), DTYPE)
    frames["t_ns"] = 1_000 + np.cumsum(gaps)  # equal times where a gap is 0
    for i, name in enumerate(DTYPE.names[1:]):
        v = np.asarray(values[: len(gaps)], np.float64) * (i + 1)
        frames[name] = np.nan_to_num(v, nan=0.0).astype(DTYPE[name]) if DTYPE[name].kind in "uib" else v
    q = 1_000 + np.asarray(queries, np.int64)  # any order: windows overlap and go back
    interps = interps[: len(fields)]
    got = _native(frames, fields, interps, q - 1_000, base_ns=1_000)  # a request: its tick + the offsets
    want = sample_many(frames["t_ns"], [(frames[f], i) for f, i in zip(fields, interps)], q)
    np.testing.assert_array_equal(got, np.stack(want, axis=1).astype(np.float32))


def test_service_requests_on_the_real_drive_match_the_numpy_windows(rav4_topics):
    veh = rav4_topics[0]["vehicle"]
    c = make_contract(signals=("speed_mps", "steer_angle_deg", "accel_long_mps2", "gear"), window_steps=20,
                      rate_hz=20.0)
    c["inputs"]["interp"] = {"gear": "zoh"}
    contract = parse_contract({"shadowd.contract": json.dumps(c)},
                              [TensorSpec("window", ("batch", 20, 4), "float32")],
                              [TensorSpec("controls", ("batch", 5, 1), "float32")])

    def requests(native: bool) -> list[InferenceRequest]:
        core = ShadowCore(contract, None)
        assert core._window_native is not None  # built here (the module is skipped otherwise)
        if not native:
            core._window_native = None
        out = []
        for i in range(0, len(veh), 2):  # a service's wake-ups: two frames at a time, one request each
            core.push_frames("vehicle", veh[i:i + 2])
            out += [e for e in core.advance(int(veh["t_ns"][min(i + 2, len(veh)) - 1])) if isinstance(e, InferenceRequest)]
        return out

    a, b = requests(True), requests(False)
    assert len(a) == len(b) > 500  # run_hz 10 over the minute
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.t_ns, y.t_ns)
        np.testing.assert_array_equal(x.inputs[contract.input_tensor], y.inputs[contract.input_tensor])
