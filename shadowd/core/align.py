"""Alignment: resample a signal's samples onto query times (zero-order hold or linear).

Pure numpy. Used by ShadowCore to build model windows and trigger columns from topics of
different rates, and by the divergence scorer (``sample_lattice``: many windows at once). Rules: a query before the first sample is unknown (NaN); ``zoh`` holds the
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


def sample_many(t_ns: np.ndarray, columns: list[tuple[np.ndarray, str]], t_query_ns: np.ndarray) -> list[np.ndarray]:
    """``sample(t_ns, values, t_query_ns, interp)`` for each ``(values, interp)`` of one
    topic: the same values, with the times converted once for all of them (a model window
    samples several signals of a topic at the same instants)."""
    q = np.asarray(t_query_ns, np.int64)
    if len(t_ns) == 0 or not any(interp == "linear" for _, interp in columns):
        return [sample(t_ns, values, q, interp) for values, interp in columns]
    base = t_ns[0]
    q_rel = (q - base).astype(np.float64)
    t_rel = (np.asarray(t_ns) - base).astype(np.float64)
    return [np.interp(q_rel, t_rel, np.asarray(values, np.float64), left=np.nan, right=np.nan)
            if interp == "linear" else sample(t_ns, values, q, interp) for values, interp in columns]


def lattice(t0_ns: np.ndarray, offsets_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The query instants of ``t0_ns[:, None] + offsets_ns[None, :]`` (shape (P, K)), each
    distinct instant once: ``(instants, gather)`` with ``instants[gather]`` the full grid, or
    ``(grid, None)`` when sharing would not pay (one row, or no common step).

    Model windows and scoring horizons put P rows of K offsets on one time lattice (requests
    every 50 ms, offsets on a 10-50 ms step), so the P*K query times are mostly the same few
    instants. Compute it once and sample every signal of a topic on it (``sample(...)[gather]``).
    """
    t0_ns = np.asarray(t0_ns, np.int64)
    offsets_ns = np.asarray(offsets_ns, np.int64)
    grid = t0_ns[:, None] + offsets_ns[None, :]
    if t0_ns.size <= 1 or offsets_ns.size == 0:
        return grid, None
    t0_min, off_min = int(t0_ns.min()), int(offsets_ns.min())
    rel_t0 = t0_ns - t0_min
    rel_off = offsets_ns - off_min
    step = int(np.gcd.reduce(np.concatenate([rel_t0, rel_off])))
    span = (int(rel_t0.max() + rel_off.max()) // step + 1) if step > 0 else 0
    if step <= 0 or span >= rel_t0.size * rel_off.size:
        return grid, None
    instants = (t0_min + off_min) + step * np.arange(span, dtype=np.int64)
    return instants, (rel_t0 // step)[:, None] + (rel_off // step)[None, :]


def sample_lattice(t_ns: np.ndarray, values: np.ndarray, t0_ns: np.ndarray, offsets_ns: np.ndarray,
                   interp: str, grid: tuple[np.ndarray, np.ndarray | None] | None = None) -> np.ndarray:
    """``sample`` at ``t0_ns[:, None] + offsets_ns[None, :]`` (shape (P, K)), each distinct
    instant computed once (``lattice``; pass ``grid=lattice(t0_ns, offsets_ns)`` to share it
    between signals). The queries are the same integers, so the result is bit-identical to
    ``sample`` on the full grid.
    """
    instants, gather = grid if grid is not None else lattice(t0_ns, offsets_ns)
    out = sample(t_ns, values, instants, interp)
    return out if gather is None else out[gather]
