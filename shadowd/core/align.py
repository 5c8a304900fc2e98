"""Alignment: resample a signal's samples onto query times (zero-order hold or linear).

Pure numpy. Used by ShadowCore to build model windows and trigger columns from topics of
different rates. Rules: a query before the first sample is unknown (NaN); ``zoh`` holds the
latest sample at or before the query; ``linear`` interpolates between the samples around the
query and is NaN after the last sample (the future is not known yet).
"""

from __future__ import annotations

import numpy as np

INTERP_MODES = ("zoh", "linear")


def sample(t_ns: np.ndarray, values: np.ndarray, t_query_ns: np.ndarray, interp: str) -> np.ndarray:
    """Values of a signal (samples ``(t_ns, values)``, ``t_ns`` ascending) at ``t_query_ns``.

    Returns float64 of ``t_query_ns``'s shape. Raises ValueError for an unknown ``interp``.
    """
    q = np.asarray(t_query_ns, np.int64)
    n = len(t_ns)
    if n == 0:
        return np.full(q.shape, np.nan)
    vals = np.asarray(values, np.float64)
    if interp == "zoh":
        idx = np.searchsorted(t_ns, q, side="right") - 1
        out = vals[np.maximum(idx, 0)]
        out[idx < 0] = np.nan
        return out
    if interp != "linear":
        raise ValueError(f"unknown interpolation {interp!r}; use one of {INTERP_MODES}")
    # Times relative to the first sample are exact integers in float64 (spans below 104 days),
    # so the result does not depend on which samples a caller still buffers.
    base = t_ns[0]
    return np.interp((q - base).astype(np.float64), (np.asarray(t_ns) - base).astype(np.float64), vals,
                     left=np.nan, right=np.nan)
