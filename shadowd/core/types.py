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


@dataclass(frozen=True, slots=True)
class Divergence:
    """A prediction scored against what the human really did over its horizon."""

    t_ns: int  # the prediction's time, not the scoring time
    score: float  # combined divergence score, documented in docs/divergence.md
    metrics: dict[str, float]  # e.g. steer_err_deg, accel_err_mps2, ade_m, fde_m


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
