"""Divergence scoring: a prediction against what the human really did over its horizon.

Pure numpy; docs/divergence.md is the reference (keep in sync). A prediction made at ``t0``
is scored only once the vehicle history reaches ``t0 + horizon``; its score depends only on
the prediction and that history, never on how frames or predictions were batched.

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
from .types import Divergence, Prediction

METRIC_NAMES = ("divergence", "steer_err_deg", "steer_err_norm", "accel_err_mps2",
                "accel_err_norm", "ade_m", "fde_m", "traj_err_norm")

_INTEGRATION_STEP_S = 0.01


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


def score_predictions(predictions: list[Prediction], t_hist_ns: np.ndarray, history: dict[str, np.ndarray],
                      cfg: ScorerConfig = ScorerConfig()) -> list[Divergence]:
    """Score predictions that share one horizon against vehicle history columns.

    ``history`` holds float arrays aligned with ``t_hist_ns`` for ``speed_mps`` (required),
    and, as the predictions need them, ``steer_angle_deg``, ``accel_long_mps2``,
    ``yaw_rate_rps``. The history must reach each prediction's ``t0 + horizon``.
    """
    return score_predictions_columns(predictions, t_hist_ns, history, cfg)[0]


def score_predictions_columns(predictions: list[Prediction], t_hist_ns: np.ndarray, history: dict[str, np.ndarray],
                              cfg: ScorerConfig = ScorerConfig()) -> tuple[list[Divergence], dict[str, np.ndarray]]:
    """``score_predictions`` plus each metric of ``METRIC_NAMES`` as a float64 column (row i =
    prediction i, the very values of the Divergence metrics), for callers that keep columns."""
    if not predictions:
        return [], {name: np.empty(0) for name in METRIC_NAMES}
    offsets = np.asarray(predictions[0].horizon_s, np.float64)
    t0_ns = np.array([p.t_ns for p in predictions], np.int64)
    offsets_ns = np.round(offsets * 1e9).astype(np.int64)
    grid = lattice(t0_ns, offsets_ns)  # shared by every realized signal
    speed = _at_grid(t_hist_ns, history["speed_mps"], t0_ns, offsets_ns, grid)
    v_mean = speed.mean(axis=1)
    p_count = len(predictions)
    metrics = {name: np.full(p_count, np.nan) for name in METRIC_NAMES}
    norms = []
    missing = np.full(len(offsets), np.nan)  # a prediction without this control
    steer = np.array([p.controls.get("steer_angle_deg", missing) for p in predictions], np.float64)
    if "steer_angle_deg" in history and not np.isnan(steer).all():
        real = _at_grid(t_hist_ns, history["steer_angle_deg"], t0_ns, offsets_ns, grid)
        err = np.abs(steer - real).mean(axis=1)
        metrics["steer_err_deg"] = err
        metrics["steer_err_norm"] = err / steer_tolerance_deg(v_mean, cfg)
        norms.append(metrics["steer_err_norm"])
    accel = np.array([p.controls.get("accel_long_mps2", missing) for p in predictions], np.float64)
    if "accel_long_mps2" in history and not np.isnan(accel).all():
        real = _at_grid(t_hist_ns, history["accel_long_mps2"], t0_ns, offsets_ns, grid)
        err = np.abs(accel - real).mean(axis=1)
        metrics["accel_err_mps2"] = err
        metrics["accel_err_norm"] = err / cfg.accel_tol_mps2
        norms.append(metrics["accel_err_norm"])
    has_traj = [p.trajectory_xy_m is not None for p in predictions]
    if any(has_traj) and "yaw_rate_rps" in history and not np.isnan(history["yaw_rate_rps"]).all():
        real = realized_path(t_hist_ns, history["speed_mps"], history["yaw_rate_rps"], t0_ns, offsets)
        no_traj = np.full((len(offsets), 2), np.nan)
        pred = np.stack([p.trajectory_xy_m if p.trajectory_xy_m is not None else no_traj
                         for p in predictions]).astype(np.float64)
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
    keys = (*metrics, "realized_speed_mps")
    rows = zip(*(v.tolist() for v in metrics.values()), v_mean.tolist())  # Python floats, column-wise
    out = []
    for p, row in zip(predictions, rows):
        m = dict(zip(keys, row))
        out.append(Divergence(t_ns=p.t_ns, score=m["divergence"], metrics=m))
    return out, metrics
