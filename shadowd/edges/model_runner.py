"""Model runner: the candidate ONNX model under ONNX Runtime, validated, budgeted, never fatal.

Owns: loading the model with the adapter's execution providers and thread counts, validating
its declared contract (shadowd.core.model_contract) against the graph and the platform,
warm-up, the latency histogram, the compute budget with rate shedding, and three ways to run:

* ``infer(request)``: one ONNX call for all the ticks of a request (replay asks for hundreds at
  once); no shedding, so replay is deterministic;
* ``predict(request)``: the same, with the budget: when an inference overruns
  ``budget_ms`` the runner halves its rate (answers every 2nd, 4th, ... 8th request, the rest
  return None and count as ``shed``), logs it, and doubles back after 50 inferences in budget;
* async (the daemon): ``run(requests)`` hands the newest request to a worker thread (queue
  depth 1, newest wins; superseded requests come back as ``(request, None)``) and returns the
  ``(request, predictions | None)`` pairs finished since the last call. It never blocks.

Answers are ``PredictionBatch`` columns (no object per prediction). A model exception never
propagates: it is counted (``errors``), logged once per kind, and the request gets None; a row
with a non-finite output is left out of its batch and counted. Load-time problems (unreadable file, contract mismatch) raise ModelError:
a model that cannot run is refused before the service relies on it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.model_contract import ModelContract, TensorSpec, parse_contract
from ..core.types import PredictionBatch
from ..errors import ModelError

log = logging.getLogger(__name__)

_ORT_DTYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(float16)": "float16",
               "tensor(int64)": "int64", "tensor(int32)": "int32", "tensor(uint8)": "uint8", "tensor(bool)": "bool"}
MAX_SHED_FACTOR = 8
RECOVER_AFTER = 50
LATENCY_SAMPLES = 4096


def default_model_path() -> Path:
    """The bundled reference model."""
    return Path(__file__).resolve().parents[1] / "data" / "models" / "reference.onnx"


class ModelRunner:
    """One loaded candidate model. ``predict``/``infer`` from one thread at a time; the
    async worker is the only other thread and owns the session while it runs."""

    def __init__(self, model_path: str | Path, platform: Any = None, *, adapter: Any = None,
                 providers: Sequence[str] | None = None, budget_ms: float | None = None, warmup: int = 3):
        import onnxruntime

        self.path = Path(model_path)
        try:
            blob = self.path.read_bytes()
        except OSError as err:
            raise ModelError(f"cannot read model {self.path}: {err.strerror or err}; check the path") from err
        self.sha256 = hashlib.sha256(blob).hexdigest()
        if adapter is None and platform is not None:
            from ..adapters import create_adapter

            adapter = create_adapter(platform)
        if providers is None:
            providers = adapter.resolve_providers() if adapter is not None else ["CPUExecutionProvider"]
        self.providers = list(providers)
        opts = adapter.session_options() if adapter is not None else onnxruntime.SessionOptions()
        if adapter is None:
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(blob, sess_options=opts, providers=self.providers)
        except Exception as err:  # noqa: BLE001 - ORT raises its own exception types
            raise ModelError(f"cannot load model {self.path}: {str(err).splitlines()[0][:300]}; "
                             f"is it a valid ONNX file?") from err
        meta = self._session.get_modelmeta().custom_metadata_map
        ins = [_spec(t) for t in self._session.get_inputs()]
        outs = [_spec(t) for t in self._session.get_outputs()]
        try:
            self.contract: ModelContract = parse_contract(meta, ins, outs)
            if platform is not None:
                self.contract.check_platform(platform.provides)
        except ModelError as err:
            raise ModelError(f"model {self.path.name}: {err}") from None
        self.budget_ms = float(budget_ms if budget_ms is not None else
                               (platform.inference.budget_ms if platform is not None else 50.0))
        c = self.contract
        self._output_names = [n for n in (c.controls_tensor, c.trajectory_tensor) if n is not None]
        self._horizon = c.horizon_offsets_s()
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.counters = {"inferences": 0, "batches": 0, "errors": 0, "shed": 0, "overruns": 0,
                         "superseded": 0, "rate_changes": 0}
        self.shed_factor = 1
        self._in_budget = 0
        self._shed_phase = 0
        self._error_kinds: set[str] = set()
        self._worker: threading.Thread | None = None
        self._cv = threading.Condition()
        self._slot: Any = None
        self._done: list[tuple[Any, PredictionBatch | None]] = []
        self._stop = False
        dummy = np.zeros((1, c.window_steps, len(c.signals)), np.float32)
        for _ in range(max(0, warmup)):
            self._session.run(self._output_names, {c.input_tensor: dummy})

    # -- inference -------------------------------------------------------------------------
    def _infer(self, batch: np.ndarray, t_ns: np.ndarray) -> PredictionBatch | None:
        c = self.contract
        n = len(t_ns)
        t0 = time.perf_counter_ns()
        try:
            outs = self._session.run(self._output_names, {c.input_tensor: batch})
        except Exception as err:  # noqa: BLE001 - a model failure must never stop the service
            self.counters["errors"] += n
            kind = type(err).__name__
            if kind not in self._error_kinds:
                self._error_kinds.add(kind)
                log.warning("model %s failed at inference (%s: %s); counting, the service goes on",
                            self.path.name, kind, str(err).splitlines()[0][:200])
            return None
        elapsed = time.perf_counter_ns() - t0
        self.latency_ms.append(elapsed / 1e6)
        self.counters["inferences"] += n
        self.counters["batches"] += 1
        res = dict(zip(self._output_names, outs))
        ok = np.ones(n, bool)
        controls = {}
        traj = None
        if c.controls_tensor is not None:
            out = res[c.controls_tensor][:n]
            for j, name in enumerate(c.control_signals):  # each control contiguous (rows, steps)
                controls[name] = np.ascontiguousarray(out[:, :, j], np.float64)
                ok &= np.isfinite(controls[name]).all(axis=1)
        if c.trajectory_tensor is not None:
            traj = res[c.trajectory_tensor][:n].astype(np.float64)
            ok &= np.isfinite(traj).all(axis=tuple(range(1, traj.ndim)))
        preds = PredictionBatch(np.asarray(t_ns, np.int64), self._horizon, controls, traj, elapsed // max(1, n))
        bad = n - int(ok.sum())
        if bad:
            self.counters["errors"] += bad
            preds = preds.take(ok)
        return preds

    def infer(self, request: Any) -> PredictionBatch | None:
        """Predictions for every tick of ``request`` (``t_ns`` (rows,) and ``inputs``: tensor ->
        (rows, steps, signals)) in one ONNX call, rows with a non-finite output left out; None
        when the model could not run it (counted)."""
        name = self.contract.input_tensor
        rows = len(request.t_ns)
        if not rows:
            return None
        shape = (rows, self.contract.window_steps, len(self.contract.signals))
        try:
            batch = np.ascontiguousarray(request.inputs[name], np.float32)
            if batch.shape != shape:
                raise ValueError(f"got shape {batch.shape}")
        except (KeyError, ValueError, TypeError) as err:
            self.counters["errors"] += rows
            log.warning("bad inference request (%s); expected inputs[%r] of shape %s", err, name, shape)
            return None
        return self._infer(batch, request.t_ns)

    def predict(self, request: Any) -> PredictionBatch | None:
        """``infer`` under the compute budget (may shed the request: returns None, counted)."""
        if self.shed_factor > 1:
            self._shed_phase = (self._shed_phase + 1) % self.shed_factor
            if self._shed_phase != 0:
                self.counters["shed"] += len(request.t_ns)
                return None
        pred = self.infer(request)
        if self.latency_ms:
            self._account(self.latency_ms[-1])
        return pred

    def _account(self, latency_ms: float) -> None:
        if latency_ms > self.budget_ms:
            self.counters["overruns"] += 1
            self._in_budget = 0
            if self.shed_factor < MAX_SHED_FACTOR:
                self.shed_factor *= 2
                self.counters["rate_changes"] += 1
                log.warning("model %s: inference took %.2f ms > budget %.2f ms; running every %d. request",
                            self.path.name, latency_ms, self.budget_ms, self.shed_factor)
        else:
            self._in_budget += 1
            if self.shed_factor > 1 and self._in_budget >= RECOVER_AFTER:
                self.shed_factor //= 2
                self._in_budget = 0
                self.counters["rate_changes"] += 1
                log.info("model %s: back within budget; running every %d. request", self.path.name, self.shed_factor)

    # -- async mode (daemon) ---------------------------------------------------------------
    def run(self, requests: Sequence[Any]) -> list[tuple[Any, PredictionBatch | None]]:
        """Executor protocol for the daemon: queue the newest of ``requests``, return what finished.

        Never blocks on inference. Older queued requests are superseded (returned with None).
        """
        if self._worker is None:
            self._start()
        if not requests and not self._done:
            # most wake-ups: nothing to hand over, nothing finished; no lock (an answer the
            # worker appends just now is taken at the next call)
            return []
        out: list[tuple[Any, PredictionBatch | None]] = []
        with self._cv:
            for r in requests:
                if self._slot is not None:
                    out.append((self._slot, None))
                    self.counters["superseded"] += len(self._slot.t_ns)
                self._slot = r
            if requests:
                self._cv.notify()
            out.extend(self._done)
            self._done = []
        return out

    def _start(self) -> None:
        self._stop = False
        self._worker = threading.Thread(target=self._loop, name="shadowd-model", daemon=True)
        self._worker.start()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._slot is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                req, self._slot = self._slot, None
            pred = self.predict(req)
            with self._cv:
                self._done.append((req, pred))

    def close(self) -> None:
        """Stop the async worker (if any); pending requests are dropped."""
        if self._worker is not None:
            with self._cv:
                self._stop = True
                self._cv.notify()
            self._worker.join(timeout=5)
            self._worker = None

    # -- introspection ---------------------------------------------------------------------
    def latency_percentiles(self) -> dict[str, float]:
        if not self.latency_ms:
            return {"p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan")}
        a = np.fromiter(self.latency_ms, float)
        p50, p90, p99 = np.percentile(a, [50, 90, 99])
        return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99)}

    def stats(self) -> dict:
        return {**self.counters, "shed_factor": self.shed_factor, "providers": self.providers,
                "budget_ms": self.budget_ms, "sha256": self.sha256, **self.latency_percentiles()}


def _spec(t) -> TensorSpec:
    return TensorSpec(t.name, tuple(t.shape), _ORT_DTYPES.get(t.type, t.type))
