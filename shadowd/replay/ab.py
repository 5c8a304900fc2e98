"""A/B: where a candidate model and a baseline model disagree on the same inputs.

Owns the comparison of two replays of the same inputs (same triggers, same platform, two
models). Reports triggers only one of the models fired (matched by name within
``match_window_s``), how the divergence statistics moved, and for clip inputs (earlier
corner cases) whether the new model fixed the case: the triggers that produced the clip no
longer fire with the candidate, and its divergence over the clip went down.

Rules: pure functions over result dicts; deterministic order (input index, then time).
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_MATCH_WINDOW_S = 1.0


def _unmatched(a: list[dict[str, Any]], b: list[dict[str, Any]], window_s: float) -> list[dict[str, Any]]:
    """Trigger events of ``a`` with no event of the same trigger in ``b`` within ``window_s``."""
    by_name: dict[str, np.ndarray] = {}
    for e in b:
        by_name.setdefault(e["trigger"], []).append(e["t_s"])  # type: ignore[arg-type]
    times = {k: np.sort(np.asarray(v)) for k, v in by_name.items()}
    out = []
    for e in a:
        t = times.get(e["trigger"])
        if t is None or not len(t):
            out.append(e)
            continue
        i = int(np.searchsorted(t, e["t_s"]))
        near = min(abs(t[j] - e["t_s"]) for j in (i - 1, i) if 0 <= j < len(t))
        if near > window_s:
            out.append(e)
    return out


def _div_stats(r: dict[str, Any]) -> dict[str, float | None]:
    s = np.asarray(r["divergence"]["score"], dtype=np.float64)
    s = s[np.isfinite(s)]
    if not len(s):
        return {"mean": None, "p90": None, "max": None}
    return {"mean": round(float(s.mean()), 6), "p90": round(float(np.percentile(s, 90)), 6),
            "max": round(float(s.max()), 6)}


def _delta(new: float | None, old: float | None) -> float | None:
    return None if new is None or old is None else round(new - old, 6)


def compare(candidate: list[dict[str, Any]], baseline: list[dict[str, Any]], *,
            match_window_s: float = DEFAULT_MATCH_WINDOW_S) -> dict[str, Any]:
    """The A/B section of the report (inputs in the same order in both lists)."""
    inputs = []
    only_c_total = only_b_total = 0
    fixed = regressed = clip_inputs = 0
    for c, b in zip(candidate, baseline):
        if c.get("status") != "ok" or b.get("status") != "ok":
            inputs.append({"input": c["input"], "status": "error",
                           "error": c.get("error") or b.get("error")})
            continue
        only_c = _unmatched(c["triggers"], b["triggers"], match_window_s)
        only_b = _unmatched(b["triggers"], c["triggers"], match_window_s)
        only_c_total += len(only_c)
        only_b_total += len(only_b)
        dc, db = _div_stats(c), _div_stats(b)
        row: dict[str, Any] = {
            "input": c["input"],
            "only_candidate": only_c,
            "only_baseline": only_b,
            "divergence": {"candidate": dc, "baseline": db,
                           "mean_delta": _delta(dc["mean"], db["mean"]),
                           "max_delta": _delta(dc["max"], db["max"])},
        }
        if c.get("kind") == "clip":
            clip_inputs += 1
            origin = c.get("origin") or {}
            causes = set(origin.get("triggers") or [])
            still = sorted({e["trigger"] for e in c["triggers"]} & causes) if causes else \
                sorted({e["trigger"] for e in c["triggers"]})
            improved = (dc["mean"] is not None and db["mean"] is not None and dc["mean"] < db["mean"])
            is_fixed = not still and improved
            is_regressed = dc["mean"] is not None and db["mean"] is not None and dc["mean"] > db["mean"] \
                and bool(still)
            fixed += is_fixed
            regressed += is_regressed
            row["corner_case"] = {
                "original_triggers": sorted(causes),
                "still_firing": still,
                "divergence_improved": improved,
                "verdict": "fixed" if is_fixed else ("regressed" if is_regressed else
                                                     ("improved" if improved else "not fixed")),
            }
        inputs.append(row)
    return {
        "match_window_s": match_window_s,
        "triggers_only_candidate": only_c_total,
        "triggers_only_baseline": only_b_total,
        "corner_cases": {"clips": clip_inputs, "fixed": fixed, "regressed": regressed},
        "inputs": inputs,
    }
