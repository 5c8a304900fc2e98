"""The candidate model's I/O contract: parse the declaration, check it against the graph.

A model declares its contract as JSON in the ONNX metadata property ``shadowd.contract``
(docs/model-contract.md is the user reference; keep the two in sync):

    {"version": 1,
     "run_hz": 20,                                   # how often shadowd runs it
     "inputs": {"tensor": "window",                  # float32 [batch, steps, len(signals)]
                "signals": ["speed_mps", ...],
                "window_s": 1.0, "rate_hz": 20,      # steps = round(window_s * rate_hz)
                "interp": {"speed_mps": "linear"}},  # optional per-signal override
     "outputs": {"horizon_s": 1.5, "rate_hz": 10,    # steps = round(horizon_s * rate_hz)
                 "controls": {"tensor": "controls",  # float32 [batch, steps, len(signals)]
                              "signals": ["steer_angle_deg", "accel_long_mps2"]},
                 "trajectory": {"tensor": "trajectory_xy_m"}}}  # float32 [batch, steps, 2]

At least one of ``controls`` / ``trajectory``. The window's last sample is at the request
time; the first predicted step is 1/rate_hz after it. The batch dimension must be dynamic
(a name or -1/None) so replay can batch.

Pure: the edge hands in the metadata text and the graph's tensor specs (name, shape, dtype);
every refusal is a ModelError naming the tensor or signal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from ..errors import ModelError
from .signals import SIGNALS

CONTRACT_KEY = "shadowd.contract"
CONTRACT_VERSION = 1
CONTROL_SIGNALS = ("steer_angle_deg", "accel_long_mps2", "speed_mps", "yaw_rate_rps")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A graph input/output as the runtime reports it. ``shape`` entries: int, or str/None for dynamic."""

    name: str
    shape: tuple
    dtype: str  # numpy dtype name, e.g. "float32"


@dataclass(frozen=True, slots=True)
class ModelContract:
    run_hz: float
    input_tensor: str
    signals: tuple[str, ...]
    window_s: float
    input_rate_hz: float
    interp: Mapping[str, str]  # per input signal: "linear" | "zoh"
    horizon_s: float
    output_rate_hz: float
    controls_tensor: str | None
    control_signals: tuple[str, ...]
    trajectory_tensor: str | None

    @property
    def window_steps(self) -> int:
        return int(round(self.window_s * self.input_rate_hz))

    @property
    def horizon_steps(self) -> int:
        return int(round(self.horizon_s * self.output_rate_hz))

    def window_offsets_ns(self) -> np.ndarray:
        """Offsets of the window samples relative to the request time (last one is 0)."""
        n = self.window_steps
        return -np.round((n - 1 - np.arange(n)) * 1e9 / self.input_rate_hz).astype(np.int64)

    def horizon_offsets_s(self) -> np.ndarray:
        return (np.arange(1, self.horizon_steps + 1) / self.output_rate_hz).astype(np.float64)

    def check_platform(self, provides) -> None:
        """Refuse the model if the platform lacks an input signal. ``provides(name) -> bool``."""
        for s in self.signals:
            if not provides(s):
                raise ModelError(f"model input signal {s!r} is not provided by this platform; "
                                 f"run the model on a platform that maps it or drop it from the contract")


def _need(d: Mapping, key: str, where: str):
    if key not in d:
        raise ModelError(f"model contract: {where}{key} is missing; declare it in the '{CONTRACT_KEY}' metadata")
    return d[key]


def _positive(value, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1e4:
        raise ModelError(f"model contract: {where} must be a positive number, got {value!r}")
    return float(value)


def _is_dynamic(dim) -> bool:
    return dim is None or isinstance(dim, str) or (isinstance(dim, int) and dim < 0)


def _check_tensor(spec: TensorSpec | None, name: str, role: str, expected: tuple[int, int]) -> None:
    if spec is None:
        raise ModelError(f"model contract names {role} tensor {name!r} but the graph has no such tensor")
    if spec.dtype != "float32":
        raise ModelError(f"{role} tensor {name!r} has dtype {spec.dtype}, the contract needs float32; "
                         f"cast it in the graph")
    want = ("batch", *expected)
    if len(spec.shape) != 3 or not _is_dynamic(spec.shape[0]) or tuple(spec.shape[1:]) != expected:
        raise ModelError(f"{role} tensor {name!r} has shape {list(spec.shape)}, the contract declares "
                         f"{list(want)} (dynamic batch first); fix the graph or the declaration")


def parse_contract(metadata: Mapping[str, str], inputs: Sequence[TensorSpec],
                   outputs: Sequence[TensorSpec]) -> ModelContract:
    """Parse ``metadata[CONTRACT_KEY]`` and validate it against the graph's tensors.

    Raises:
        ModelError: missing/invalid declaration, unknown signal, or a tensor whose name,
            shape or dtype disagrees (the message names it).
    """
    text = metadata.get(CONTRACT_KEY)
    if text is None:
        raise ModelError(f"model has no '{CONTRACT_KEY}' metadata property; add the contract JSON "
                         f"(docs/model-contract.md)")
    try:
        d = json.loads(text)
    except (TypeError, ValueError) as err:
        raise ModelError(f"model contract is not valid JSON: {err}") from err
    if not isinstance(d, dict):
        raise ModelError(f"model contract must be a JSON object, got {type(d).__name__}")
    version = d.get("version", CONTRACT_VERSION)
    if version != CONTRACT_VERSION:
        raise ModelError(f"model contract version {version!r}, this build reads {CONTRACT_VERSION}; upgrade shadowd")
    inp = _need(d, "inputs", "")
    out = _need(d, "outputs", "")
    if not isinstance(inp, dict) or not isinstance(out, dict):
        raise ModelError("model contract: inputs and outputs must be JSON objects")
    signals = _need(inp, "signals", "inputs.")
    if not isinstance(signals, list) or not signals or not all(isinstance(s, str) for s in signals):
        raise ModelError(f"model contract: inputs.signals must be a non-empty list of names, got {signals!r}")
    for s in signals:
        if s not in SIGNALS:
            raise ModelError(f"model input signal {s!r} is not a canonical signal; known: {sorted(SIGNALS)}")
    if len(set(signals)) != len(signals):
        raise ModelError(f"model contract: inputs.signals has duplicates: {signals}")
    interp = {s: SIGNALS[s][1].interp for s in signals}
    for s, mode in (inp.get("interp") or {}).items():
        if s not in interp:
            raise ModelError(f"model contract: inputs.interp names {s!r}, which is not an input signal")
        if mode not in ("linear", "zoh"):
            raise ModelError(f"model contract: inputs.interp[{s!r}] = {mode!r}; use 'linear' or 'zoh'")
        interp[s] = mode
    c = ModelContract(
        run_hz=_positive(d.get("run_hz", 20.0), "run_hz"),
        input_tensor=str(_need(inp, "tensor", "inputs.")),
        signals=tuple(signals),
        window_s=_positive(_need(inp, "window_s", "inputs."), "inputs.window_s"),
        input_rate_hz=_positive(_need(inp, "rate_hz", "inputs."), "inputs.rate_hz"),
        interp=interp,
        horizon_s=_positive(_need(out, "horizon_s", "outputs."), "outputs.horizon_s"),
        output_rate_hz=_positive(_need(out, "rate_hz", "outputs."), "outputs.rate_hz"),
        controls_tensor=(out.get("controls") or {}).get("tensor"),
        control_signals=tuple((out.get("controls") or {}).get("signals") or ()),
        trajectory_tensor=(out.get("trajectory") or {}).get("tensor"),
    )
    if c.window_steps < 1 or c.horizon_steps < 1:
        raise ModelError(f"model contract: window ({c.window_s} s at {c.input_rate_hz} Hz) and horizon "
                         f"({c.horizon_s} s at {c.output_rate_hz} Hz) must each hold at least one step")
    if c.controls_tensor is None and c.trajectory_tensor is None:
        raise ModelError("model contract: outputs must declare 'controls' and/or 'trajectory'")
    for s in c.control_signals:
        if s not in CONTROL_SIGNALS:
            raise ModelError(f"model output control {s!r} is not scorable; use some of {list(CONTROL_SIGNALS)}")
    if c.controls_tensor is not None and not c.control_signals:
        raise ModelError("model contract: outputs.controls.signals must list at least one control")
    ins = {t.name: t for t in inputs}
    outs = {t.name: t for t in outputs}
    if len(ins) != 1:
        raise ModelError(f"model must have exactly one input tensor (the window), has {sorted(ins)}")
    _check_tensor(ins.get(c.input_tensor), c.input_tensor, "input", (c.window_steps, len(c.signals)))
    if c.controls_tensor is not None:
        _check_tensor(outs.get(c.controls_tensor), c.controls_tensor, "output", (c.horizon_steps, len(c.control_signals)))
    if c.trajectory_tensor is not None:
        _check_tensor(outs.get(c.trajectory_tensor), c.trajectory_tensor, "output", (c.horizon_steps, 2))
    return c
