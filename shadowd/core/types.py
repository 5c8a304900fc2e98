"""Values that flow between pipeline stages. Frozen, validated, no behaviour.

Rules: time is always monotonic nanoseconds (``t_ns``) handed in by the caller; nothing here
reads a clock. Events are past-tense nouns. Arrays inside events are never mutated after
construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the candidate model predicted at ``t_ns`` for the next horizon.

    ``horizon_s`` are the offsets (seconds after ``t_ns``) of each predicted step. Each
    output the model declares is an array of ``len(horizon_s)`` values: controls such as
    ``steer_angle_deg`` / ``accel_long_mps2`` in ``controls``; an ego trajectory (x forward,
    y left, metres, in the vehicle frame at ``t_ns``) in ``trajectory_xy_m`` of shape (N, 2).
    """

    t_ns: int
    horizon_s: np.ndarray
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    trajectory_xy_m: np.ndarray | None = None
    latency_ns: int = 0


@dataclass(frozen=True, slots=True, eq=False)
class PredictionBatch:
    """Predictions of one model call as columns: row ``i`` is the prediction made at ``t_ns[i]``.

    The pipeline carries predictions this way from the model to the scorer and the clips: one
    object per inference call, not per prediction (replay makes ~1200 a minute). Rows are in
    time order. ``controls`` maps each control to float64 (rows, len(horizon_s));
    ``trajectory_xy_m`` is float64 (rows, len(horizon_s), 2) or None; a row lacking an output
    holds NaN there. ``row(i)`` is one ``Prediction`` (views, no copy).
    """

    t_ns: np.ndarray  # int64 (rows,)
    horizon_s: np.ndarray
    controls: dict[str, np.ndarray] = field(default_factory=dict)
    trajectory_xy_m: np.ndarray | None = None
    latency_ns: int = 0  # wall-clock inference time per prediction (never written to clips)

    def __len__(self) -> int:
        return len(self.t_ns)

    def row(self, i: int) -> Prediction:
        traj = self.trajectory_xy_m
        return Prediction(int(self.t_ns[i]), self.horizon_s, {k: v[i] for k, v in self.controls.items()},
                          traj[i] if traj is not None else None, self.latency_ns)

    def rows(self) -> list[Prediction]:
        return [self.row(i) for i in range(len(self))]

    def take(self, index) -> "PredictionBatch":
        """The rows ``index`` selects (a slice, a boolean mask or row numbers), in that order."""
        traj = self.trajectory_xy_m
        return PredictionBatch(self.t_ns[index], self.horizon_s, {k: v[index] for k, v in self.controls.items()},
                               traj[index] if traj is not None else None, self.latency_ns)

    @staticmethod
    def of(predictions: "list[Prediction]") -> "PredictionBatch":
        """Predictions sharing one horizon as a batch (a control or trajectory some lack: NaN)."""
        if not predictions:
            return PredictionBatch(np.empty(0, np.int64), np.empty(0))
        p0 = predictions[0]
        k = len(p0.horizon_s)
        nan = np.full(k, np.nan)
        names = sorted({n for p in predictions for n in p.controls})
        controls = {n: np.array([p.controls.get(n, nan) for p in predictions], np.float64).reshape(-1, k)
                    for n in names}
        traj = None
        if any(p.trajectory_xy_m is not None for p in predictions):
            no_traj = np.full((k, 2), np.nan)
            traj = np.array([p.trajectory_xy_m if p.trajectory_xy_m is not None else no_traj for p in predictions],
                            np.float64)
        return PredictionBatch(np.array([p.t_ns for p in predictions], np.int64), np.asarray(p0.horizon_s),
                               controls, traj, p0.latency_ns)

    @staticmethod
    def concat(batches: "list[PredictionBatch]") -> "PredictionBatch":
        """The rows of ``batches`` (one model: the same horizon and outputs), one after another."""
        if len(batches) == 1:
            return batches[0]
        b0 = batches[0]
        trajs = [b.trajectory_xy_m for b in batches]
        return PredictionBatch(np.concatenate([b.t_ns for b in batches]), b0.horizon_s,
                               {k: np.concatenate([b.controls[k] for b in batches]) for k in b0.controls},
                               np.concatenate(trajs) if trajs[0] is not None else None, b0.latency_ns)


@dataclass(frozen=True, slots=True)
class Divergence:
    """A prediction scored against what the human really did over its horizon."""

    t_ns: int  # the prediction's time, not the scoring time
    score: float  # combined divergence score, documented in docs/divergence.md
    metrics: dict[str, float]  # e.g. steer_err_deg, accel_err_mps2, ade_m, fde_m


@dataclass(frozen=True, slots=True, eq=False)
class DivergenceBatch:
    """Scored predictions as columns: row ``i`` scores the prediction made at ``t_ns[i]``.

    ``metrics`` maps each metric name (``shadowd.core.divergence``: the combined ``divergence``,
    its terms and ``realized_speed_mps``) to float64 (rows,); ``score`` is the ``divergence``
    column. ``row(i)`` / ``rows()`` give ``Divergence`` objects.
    """

    t_ns: np.ndarray  # int64 (rows,)
    metrics: dict[str, np.ndarray]

    @property
    def score(self) -> np.ndarray:
        return self.metrics["divergence"]

    def __len__(self) -> int:
        return len(self.t_ns)

    def row(self, i: int) -> Divergence:
        m = {k: float(v[i]) for k, v in self.metrics.items()}
        return Divergence(int(self.t_ns[i]), m["divergence"], m)

    def rows(self) -> list[Divergence]:
        names = list(self.metrics)
        out = []
        for t, values in zip(self.t_ns.tolist(), zip(*(v.tolist() for v in self.metrics.values()))):
            m = dict(zip(names, values))
            out.append(Divergence(t, m["divergence"], m))
        return out

    def take(self, index) -> "DivergenceBatch":
        return DivergenceBatch(self.t_ns[index], {k: v[index] for k, v in self.metrics.items()})

    @staticmethod
    def concat(batches: "list[DivergenceBatch]") -> "DivergenceBatch":
        if len(batches) == 1:
            return batches[0]
        return DivergenceBatch(np.concatenate([b.t_ns for b in batches]),
                               {k: np.concatenate([b.metrics[k] for b in batches]) for k in batches[0].metrics})


@dataclass(frozen=True, slots=True)
class TriggerFired:
    """A trigger fired: the clip builder will cut [t_ns - pre_s, t_ns + post_s]."""

    t_ns: int
    trigger: str
    priority: int  # higher is more important (uploaded first, evicted last)
    score: float
    pre_s: float
    post_s: float
    causes: dict[str, float] = field(default_factory=dict)  # the values that made it fire


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """A sealed clip window: every trigger inside it, merged."""

    t0_ns: int
    t1_ns: int
    causes: tuple[TriggerFired, ...]
    priority: int
    truncated: bool = False  # the service stopped before the post-window had passed


class History(Protocol):
    """Read access to recent frames by time: the ring on a vehicle, arrays in replay."""

    def frames(self, topic: str, t0_ns: int, t1_ns: int) -> np.ndarray:
        """Frames of ``topic`` with t0_ns <= t_ns <= t1_ns, in time order (structured array)."""
        ...
