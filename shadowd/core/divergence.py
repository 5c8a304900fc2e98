"""Divergence scoring: a prediction against what the human really did over its horizon.

docs/divergence.md is the reference (keep in sync). ``_score_numpy`` (pure numpy) is the
reference implementation; ``score_batch`` runs the C kernel
(native/src/score.c: the same operations in the same order, one call per batch) when
``shadowd._native`` has it, and the numpy code otherwise (tests/pipeline/test_divergence_native.py
compares them). A prediction made at ``t0`` is scored only once the vehicle history reaches
``t0 + horizon``; its score depends only on the prediction and that history, never on how frames
or predictions were batched.

Metrics (``METRIC_NAMES``; the trigger language sees them by these names):

* ``steer_err_deg``: mean |predicted - realized| steering-wheel angle over the horizon steps.
* ``accel_err_mps2``: mean |predicted - realized| longitudinal acceleration.
* ``ade_m`` / ``fde_m``: average / final displacement between the predicted trajectory and
  the realized path, obtained by integrating the human's speed and yaw rate from ``t0``
  (ego motion, vehicle frame at ``t0``: x forward, y left).
* normalized terms (dimensionless, 1.0 = at tolerance):
  ``steer_err_norm = steer_err_deg / steer_tol_deg(v)`` where the tolerance is the wheel
  angle that produces ``lat_accel_tol_mps2`` of lateral acceleration at the mean realized speed
  v (bicycle model: a_lat = v^2 * delta_road / wheelbase, delta_road = wheel / steer_ratio),
  clipped to [steer_tol_min_deg, steer_tol_max_deg] -- so 1 deg at 120 km/h weighs ~40x
  more than at 10 km/h; ``accel_err_norm = accel_err_mps2 / accel_tol_mps2``;
  ``traj_err_norm = ade_m / (pos_tol_m + pos_tol_frac * distance travelled)``.
* ``divergence``: root mean square of the normalized terms the model provides.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .align import lattice, sample, sample_lattice
from .types import Divergence, DivergenceBatch, Prediction, PredictionBatch

METRIC_NAMES = ("divergence", "steer_err_deg", "steer_err_norm", "accel_err_mps2",
                "accel_err_norm", "ade_m", "fde_m", "traj_err_norm")

_INTEGRATION_STEP_S = 0.01
_ROW_KEYS = (*METRIC_NAMES, "realized_speed_mps")  # a Divergence's metrics, in order



@dataclass(frozen=True, slots=True)
class ScorerConfig:
    steer_ratio: float = 16.0
    wheelbase_m: float = 2.7
    lat_accel_tol_mps2: float = 0.5
    steer_tol_min_deg: float = 0.5
    steer_tol_max_deg: float = 45.0
    accel_tol_mps2: float = 1.0
    pos_tol_m: float = 0.5
    pos_tol_frac: float = 0.05


def steer_tolerance_deg(speed_mps, cfg: ScorerConfig = ScorerConfig()):
    """Wheel-angle error that makes ``lat_accel_tol_mps2`` of lateral acceleration at ``speed_mps``."""
    v2 = np.maximum(np.asarray(speed_mps, np.float64), 0.1) ** 2
    tol = cfg.lat_accel_tol_mps2 * cfg.wheelbase_m * cfg.steer_ratio / v2 * (180.0 / math.pi)
    return np.clip(tol, cfg.steer_tol_min_deg, cfg.steer_tol_max_deg)


def _at(t_hist_ns: np.ndarray, values: np.ndarray, t_query_ns: np.ndarray) -> np.ndarray:
    """Linear interpolation on integer nanoseconds, so results do not depend on which frames a
    caller still buffers (no float time base)."""
    return sample(t_hist_ns, values, t_query_ns, "linear")


def _at_grid(t_hist_ns: np.ndarray, values: np.ndarray, t0_ns: np.ndarray, offsets_ns: np.ndarray,
             grid=None) -> np.ndarray:
    """``_at`` at ``t0_ns[:, None] + offsets_ns[None, :]`` (P, K), each distinct instant once
    (bit-identical, see ``align.sample_lattice``; ``grid``: a shared ``align.lattice``)."""
    return sample_lattice(t_hist_ns, values, t0_ns, offsets_ns, "linear", grid)


@lru_cache(maxsize=16)
def _integration_grid(horizon: float, offsets: tuple[float, ...]):
    """The uniform integration grid of a horizon and where the offsets fall on it (cached:
    every batch of one model has the same horizon; the arrays are read-only)."""
    n = int(math.ceil(horizon / _INTEGRATION_STEP_S))
    tau = np.linspace(0.0, horizon, n + 1)
    tau_ns = np.round(tau * 1e9).astype(np.int64)
    half_dt = (np.diff(tau) * 0.5)[None, :]  # (a + b) * 0.5 * dt, exactly: 0.5 is a power of two
    pos = np.clip(np.asarray(offsets, np.float64) / horizon * n, 0, n)
    lo = np.minimum(np.floor(pos).astype(np.int64), n - 1)
    frac = (pos - lo)[None, :]
    for a in (tau_ns, half_dt, lo, frac):
        a.flags.writeable = False
    return n, tau_ns, half_dt, lo, frac


def _cumtrapz(values: np.ndarray, half_dt: np.ndarray) -> np.ndarray:
    """Trapezoid running integral along axis 1, starting at 0 (P, n+1)."""
    out = np.empty(values.shape)
    out[:, 0] = 0.0
    step = np.add(values[:, 1:], values[:, :-1])
    step *= half_dt  # in place: (a + b) * half_dt, the same operations without temporaries
    np.cumsum(step, axis=1, out=out[:, 1:])
    return out


def realized_path(t_hist_ns: np.ndarray, speed_mps: np.ndarray, yaw_rate_rps: np.ndarray,
                  t0_ns: np.ndarray, offsets_s: np.ndarray) -> np.ndarray:
    """The human's path after each ``t0`` (rows) at ``offsets_s`` (cols): shape (P, K, 2).

    Integrates speed and yaw rate (trapezoid, 10 ms steps) in the vehicle frame at t0.
    """
    horizon = float(offsets_s[-1])
    n, tau_ns, half_dt, lo, frac = _integration_grid(horizon, tuple(np.asarray(offsets_s, np.float64).tolist()))
    t0_ns = np.asarray(t0_ns, np.int64)
    grid = lattice(t0_ns, tau_ns)
    v = _at_grid(t_hist_ns, speed_mps, t0_ns, tau_ns, grid)
    w = _at_grid(t_hist_ns, yaw_rate_rps, t0_ns, tau_ns, grid)
    heading = _cumtrapz(w, half_dt)
    vx = np.cos(heading)
    vx *= v
    x = _cumtrapz(vx, half_dt)
    vy = np.sin(heading, out=vx)  # reuse the buffer: x no longer needs it
    vy *= v
    y = _cumtrapz(vy, half_dt)
    # sample the uniform tau grid at the offsets: linear between the two neighbouring columns
    xs = x[:, lo] * (1 - frac) + x[:, lo + 1] * frac
    ys = y[:, lo] * (1 - frac) + y[:, lo + 1] * frac
    return np.stack([xs, ys], axis=-1)


def score_batch(batch: PredictionBatch, t_hist_ns: np.ndarray, history: dict[str, np.ndarray],
                cfg: ScorerConfig = ScorerConfig()) -> DivergenceBatch:
    """Score a batch of predictions (one horizon) against vehicle history columns.

    ``history`` holds float arrays aligned with ``t_hist_ns`` for ``speed_mps`` (required),
    and, as the predictions need them, ``steer_angle_deg``, ``accel_long_mps2``,
    ``yaw_rate_rps``. The history must reach each prediction's ``t0 + horizon``. Row i of the
    result scores row i of ``batch``; its metrics are ``METRIC_NAMES`` then
    ``realized_speed_mps`` (the mean realized speed over the horizon).

    Runs the C kernel when it is built and takes the batch (see ``_score_native``), else the
    numpy reference ``_score_numpy``: the same values to rounding, NaN in the same places.
    """
    if len(batch):
        native = _native_scorer()
        if native is not None:
            scored = _score_native(native, batch, t_hist_ns, history, cfg)
            if scored is not None:
                return scored
    return _score_numpy(batch, t_hist_ns, history, cfg)


def score_predictions(predictions: list[Prediction], t_hist_ns: np.ndarray, history: dict[str, np.ndarray],
                      cfg: ScorerConfig = ScorerConfig()) -> list[Divergence]:
    """``score_batch`` for Prediction objects (one horizon), one Divergence each."""
    return score_batch(PredictionBatch.of(predictions), t_hist_ns, history, cfg).rows()


_NATIVE_SCORE_ABI = 1
def _native_scorer():
    """``(ffi, lib)`` of the C divergence kernel (native/src/score.c), or None: the numpy
    reference scores then, same results (``shadowd.native.kernel``, imported lazily so this
    module stays pure without a build)."""
    from ..native import kernel

    return kernel("shadowd_score_abi_version", _NATIVE_SCORE_ABI, "divergence kernel")


@lru_cache(maxsize=16)
def _native_grid(native, offsets_bytes: bytes):
    """What the kernel needs of a batch's horizon offsets (float64 bytes), as read-only arrays
    and their cffi pointers (cached: one model, one horizon), or None when the kernel does not
    take them (no offsets, non-finite ones, more than SHADOWD_SCORE_MAX_OFFSETS).

    Returns ``(k, offsets_ns, traj)``: ``traj`` is the
    integration grid ``(n, tau_ns, half_dt, lo, frac)`` of the reference's
    ``_integration_grid``, or None when the kernel cannot integrate it (a horizon that is not
    positive, offsets that do not ascend): such batches score their trajectories in numpy.
    """
    ffi, lib = native
    offsets = np.frombuffer(offsets_bytes, np.float64)
    k = len(offsets)
    if k == 0 or k > lib.SHADOWD_SCORE_MAX_OFFSETS or not np.isfinite(offsets).all():
        return None
    offsets_ns = np.round(offsets * 1e9).astype(np.int64)
    traj = None
    horizon = float(offsets[-1])
    if horizon > 0:
        n, tau_ns, half_dt, lo, frac = _integration_grid(horizon, tuple(offsets.tolist()))
        if n >= 1 and (np.diff(lo) >= 0).all():
            traj = (n, ffi.from_buffer("int64_t[]", tau_ns), ffi.from_buffer("double[]", half_dt.ravel()),
                    ffi.from_buffer("int64_t[]", lo), ffi.from_buffer("double[]", frac.ravel()))
    offsets_ns.flags.writeable = False
    return k, ffi.from_buffer("int64_t[]", offsets_ns), traj


_native_cfg = (None, None)  # (the last ScorerConfig, its struct): one identity test per call


def _native_config(ffi, cfg: ScorerConfig):
    """The kernel's ``struct shadowd_score_config`` of a ScorerConfig (read-only to C)."""
    global _native_cfg
    last, struct = _native_cfg
    if cfg is not last:
        struct = ffi.new("struct shadowd_score_config *",
                         {name: float(getattr(cfg, name)) for name in ScorerConfig.__slots__})
        _native_cfg = (cfg, struct)
    return struct


def _history_column(history, name, n):
    """A history column as the kernel reads it (contiguous float64, no copy when it already is),
    or None when its length is not the history's (the reference raises for it)."""
    col = np.ascontiguousarray(history[name], np.float64)
    return col if col.shape == (n,) or n == 0 else None


def _score_native(native, batch: PredictionBatch, t_hist_ns, history, cfg) -> DivergenceBatch | None:
    """``score_batch`` through the C kernel, or None when the batch is one the reference must
    take: inputs it would reject or convert otherwise (its errors are the caller's), a grid the
    kernel does not integrate.

    The terms are chosen per batch as in the reference, except that a term is computed even when
    every predicted value or every realized yaw rate is NaN: the reference skips it, leaving its
    columns NaN and the term out of ``divergence``, which is what computing it gives (a NaN in a
    mean makes it NaN), so the outputs are the same without scanning the arrays. Inputs are
    converted as the reference converts them (float64 values, int64 times); arrays already
    contiguous and of that type (the model runner's) are passed without a copy. Called ~5 times
    a second with ~4 predictions by the vehicle service: keep the numpy calls around the kernel few.
    """
    ffi, lib = native
    null = ffi.NULL
    try:
        grid = _native_grid(native, np.asarray(batch.horizon_s, np.float64).tobytes())
        t_hist = np.asarray(t_hist_ns)
        if grid is None or t_hist.dtype.kind not in "iu" or t_hist.ndim != 1:
            return None
        k, offsets_ns, traj = grid
        t_hist = np.ascontiguousarray(t_hist, np.int64)
        n = len(t_hist)
        p_count = len(batch)
        speed = _history_column(history, "speed_mps", n)
        if speed is None:
            return None
        flags = 0
        keep = []  # converted arrays stay alive until the kernel has run
        ptrs = []  # (history column, predictions) of steer and accel
        for name, flag in (("steer_angle_deg", lib.SHADOWD_SCORE_STEER), ("accel_long_mps2", lib.SHADOWD_SCORE_ACCEL)):
            if name not in history:
                ptrs += [null, null]
                continue
            col = _history_column(history, name, n)
            pred = batch.controls.get(name)
            pred = np.full((p_count, k), np.nan) if pred is None else np.ascontiguousarray(pred, np.float64)
            if col is None or pred.shape != (p_count, k):
                return None
            keep.append(pred)
            ptrs += [ffi.from_buffer("double[]", col), ffi.from_buffer("double[]", pred)]
            flags |= flag
        steer, pred_steer, accel, pred_accel = ptrs
        yaw = xy = null
        n_steps, tau_ns, half_dt, lo, frac = 0, null, null, null, null
        if "yaw_rate_rps" in history and batch.trajectory_xy_m is not None:
            col = _history_column(history, "yaw_rate_rps", n)
            pred = np.ascontiguousarray(batch.trajectory_xy_m, np.float64)
            if traj is None or col is None or pred.shape != (p_count, k, 2):
                return None
            keep.append(pred)
            yaw, xy = ffi.from_buffer("double[]", col), ffi.from_buffer("double[]", pred)
            n_steps, tau_ns, half_dt, lo, frac = traj
            flags |= lib.SHADOWD_SCORE_TRAJ
        t0_ns = np.ascontiguousarray(batch.t_ns, np.int64)
    except (TypeError, ValueError, OverflowError):
        return None
    out = np.empty((lib.SHADOWD_SCORE_COLUMNS, p_count))
    rc = lib.shadowd_score_batch(n, ffi.from_buffer("int64_t[]", t_hist), ffi.from_buffer("double[]", speed), steer,
                                 accel, yaw, p_count, ffi.from_buffer("int64_t[]", t0_ns), k, offsets_ns, pred_steer,
                                 pred_accel, xy, flags, n_steps, tau_ns, half_dt, lo, frac, _native_config(ffi, cfg),
                                 ffi.from_buffer("double[]", out))
    if rc != 0:
        return None  # arguments the checks above let through: the reference decides
    return DivergenceBatch(t0_ns, dict(zip(_ROW_KEYS, out)))


def _score_numpy(batch: PredictionBatch, t_hist_ns: np.ndarray, history: dict[str, np.ndarray],
                 cfg: ScorerConfig = ScorerConfig()) -> DivergenceBatch:
    """The reference implementation of ``score_batch`` (numpy), and its fallback when the C
    kernel is not built or does not take a batch."""
    t0_ns = np.asarray(batch.t_ns, np.int64)
    p_count = len(t0_ns)
    if not p_count:
        return DivergenceBatch(t0_ns, {name: np.empty(0) for name in _ROW_KEYS})
    offsets = np.asarray(batch.horizon_s, np.float64)
    offsets_ns = np.round(offsets * 1e9).astype(np.int64)
    grid = lattice(t0_ns, offsets_ns)  # shared by every realized signal
    speed = _at_grid(t_hist_ns, history["speed_mps"], t0_ns, offsets_ns, grid)
    v_mean = speed.mean(axis=1)
    metrics = {name: np.full(p_count, np.nan) for name in METRIC_NAMES}
    norms = []
    missing = np.full((p_count, len(offsets)), np.nan)  # a batch without this control
    steer = np.asarray(batch.controls.get("steer_angle_deg", missing), np.float64)
    if "steer_angle_deg" in history and not np.isnan(steer).all():
        real = _at_grid(t_hist_ns, history["steer_angle_deg"], t0_ns, offsets_ns, grid)
        err = np.abs(steer - real).mean(axis=1)
        metrics["steer_err_deg"] = err
        metrics["steer_err_norm"] = err / steer_tolerance_deg(v_mean, cfg)
        norms.append(metrics["steer_err_norm"])
    accel = np.asarray(batch.controls.get("accel_long_mps2", missing), np.float64)
    if "accel_long_mps2" in history and not np.isnan(accel).all():
        real = _at_grid(t_hist_ns, history["accel_long_mps2"], t0_ns, offsets_ns, grid)
        err = np.abs(accel - real).mean(axis=1)
        metrics["accel_err_mps2"] = err
        metrics["accel_err_norm"] = err / cfg.accel_tol_mps2
        norms.append(metrics["accel_err_norm"])
    if batch.trajectory_xy_m is not None and "yaw_rate_rps" in history and not np.isnan(history["yaw_rate_rps"]).all():
        real = realized_path(t_hist_ns, history["speed_mps"], history["yaw_rate_rps"], t0_ns, offsets)
        pred = np.asarray(batch.trajectory_xy_m, np.float64)
        d = np.linalg.norm(pred - real, axis=-1)
        metrics["ade_m"] = d.mean(axis=1)
        metrics["fde_m"] = d[:, -1]
        travelled = np.linalg.norm(real[:, -1, :], axis=-1)
        metrics["traj_err_norm"] = metrics["ade_m"] / (cfg.pos_tol_m + cfg.pos_tol_frac * travelled)
        norms.append(metrics["traj_err_norm"])
    if norms:
        stacked = np.stack(norms)
        known = ~np.isnan(stacked)
        count = known.sum(axis=0)
        total = np.where(known, stacked ** 2, 0.0).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            metrics["divergence"] = np.where(count > 0, np.sqrt(total / np.maximum(count, 1)), np.nan)
    metrics["realized_speed_mps"] = v_mean
    return DivergenceBatch(t0_ns, metrics)
