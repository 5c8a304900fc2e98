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
    out = np.full(q.shape, np.nan)
    n = len(t_ns)
    if n == 0:
        return out
    vals = np.asarray(values, np.float64)
    if interp == "zoh":
        idx = np.searchsorted(t_ns, q, side="right") - 1
        ok = idx >= 0
        out[ok] = vals[idx[ok]]
        return out
    if interp != "linear":
        raise ValueError(f"unknown interpolation {interp!r}; use one of {INTERP_MODES}")
    hi = np.searchsorted(t_ns, q, side="left")
    inside = (q >= t_ns[0]) & (q <= t_ns[-1])
    hi_c = np.clip(hi, 1, n - 1) if n > 1 else np.zeros_like(hi)
    if n == 1:
        out[inside] = vals[0]
        return out
    lo_c = hi_c - 1
    t0 = t_ns[lo_c]
    t1 = t_ns[hi_c]
    span = (t1 - t0).astype(np.float64)
    frac = np.where(span > 0, (q - t0) / np.where(span > 0, span, 1.0), 1.0)
    res = vals[lo_c] + (vals[hi_c] - vals[lo_c]) * frac
    exact = t_ns[np.clip(hi, 0, n - 1)] == q  # exact hits take the sample itself (no 0*inf)
    res = np.where(exact, vals[np.clip(hi, 0, n - 1)], res)
    out[inside] = res[inside]
    return out
