"""Trigger tuning: score uploaded clips against labelled events, and sweep trigger thresholds.

Owns the calibration maths. Given replay results whose inputs carry labelled events
(``inputs.Label``), it says per trigger which share of the labelled events ended up inside an
uploaded clip (capture), how many clips per hour of driving cover no labelled event (noise),
and how much of the drive was uploaded (upload share). A sweep replays the inputs once per
point of a parameter grid and picks the point that meets the target upload share with the
highest capture.

Rules: an event counts as captured by a trigger when it overlaps a clip the trigger caused;
times are seconds from each input's first frame. Pure functions over result dicts (no I/O);
the sweep's replays are run by the caller-supplied ``replay`` callable.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError

_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])(\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![A-Za-z0-9_.])")
_UNARY_BEFORE = re.compile(r"(^|[(<>=,*/+!-]|\band|\bor|\bnot)\s*-\s*$")


def _literals(expr: str) -> list[tuple[int, int, float]]:
    """(start, end, value) of each numeric literal; a unary minus belongs to its literal.

    Durations (``0.2s``) and digits inside names are not literals.
    """
    out = []
    for m in _NUMBER.finditer(expr):
        start, value = m.start(), float(m.group(0))
        u = _UNARY_BEFORE.search(expr[: m.start()])
        if u is not None:
            start = expr.rindex("-", 0, m.start())
            value = -value
        out.append((start, m.end(), value))
    return out


def expression_literals(expr: str) -> list[float]:
    """The numeric literals of a trigger expression, in order: ``threshold:N`` indexes them."""
    return [v for _, _, v in _literals(expr)]


def set_expression_literal(expr: str, n: int, value: float) -> str:
    """``expr`` with its N-th numeric literal replaced by ``value`` (ConfigError if none)."""
    lits = _literals(expr)
    if not 0 <= n < len(lits):
        raise ConfigError(f"--sweep threshold:{n}: expression {expr!r} has {len(lits)} numeric "
                          f"literal(s) {[v for _, _, v in lits]}; use threshold:0..{max(len(lits) - 1, 0)}")
    start, end, _ = lits[n]
    return expr[:start] + repr(float(value)) + expr[end:]


@dataclass(frozen=True)
class SweepAxis:
    """One ``--sweep TRIGGER:PARAM=v1,v2,...`` axis."""

    trigger: str
    param: str
    values: tuple[float, ...]


def parse_sweep(spec: str) -> SweepAxis:
    """Parse ``TRIGGER:PARAM=v1,v2``; PARAM is a definition key or ``threshold[:N]``."""
    try:
        head, vals = spec.split("=", 1)
        trigger, param = head.split(":", 1)
        values = tuple(float(v) for v in vals.split(",") if v.strip())
    except ValueError as err:
        raise ConfigError(f"--sweep {spec!r}: expected TRIGGER:PARAM=v1,v2,... (e.g. "
                          f"hard_brake:threshold=2.5,3,3.5 or hard_brake:cooldown_s=5,10)") from err
    if param == "threshold":
        param = "threshold:0"
    if not values or not trigger:
        raise ConfigError(f"--sweep {spec!r}: give a trigger name and at least one value")
    return SweepAxis(trigger, param, values)


def _overlap(a0: float, a1: float, b0: float, b1: float) -> bool:
    return a0 <= b1 and b0 <= a1


def label_metrics(results: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Capture, noise and upload share per trigger (and for all clips); None without labels."""
    ok = [r for r in results if r.get("status") == "ok"]
    if not any(r.get("labels") for r in ok):
        return None
    driven_s = sum(r["duration_s"] for r in ok)
    n_events = sum(len(r["labels"]) for r in ok)
    triggers = sorted({t for r in ok for c in r["clips"] for t in c["triggers"]})
    out: dict[str, Any] = {"labelled_events": n_events, "driven_s": round(driven_s, 3),
                           "by_kind": _count_kinds(ok), "triggers": {}}
    for name in [None, *triggers]:
        captured = 0
        noise = 0
        uploaded_s = 0.0
        for r in ok:
            clips = [c for c in r["clips"] if name is None or name in c["triggers"]]
            uploaded_s += sum(c["duration_s"] for c in clips)
            captured += sum(1 for lab in r["labels"]
                            if any(_overlap(lab["start_s"], lab["end_s"], c["t0_s"], c["t1_s"]) for c in clips))
            noise += sum(1 for c in clips
                         if not any(_overlap(l["start_s"], l["end_s"], c["t0_s"], c["t1_s"]) for l in r["labels"]))
        row = {
            "capture_share": round(captured / n_events, 6) if n_events else None,
            "captured_events": captured,
            "clips_without_event_per_h": round(noise / (driven_s / 3600.0), 3) if driven_s else None,
            "uploaded_s": round(uploaded_s, 3),
            "upload_share": round(uploaded_s / driven_s, 6) if driven_s else None,
        }
        if name is None:
            out["all"] = row
        else:
            out["triggers"][name] = row
    return out


def _count_kinds(results: list[dict[str, Any]]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for r in results:
        for lab in r["labels"]:
            kinds[lab["kind"]] = kinds.get(lab["kind"], 0) + 1
    return dict(sorted(kinds.items()))


def run_sweep(axes: list[SweepAxis], target_upload_share: float,
              replay: Callable[[tuple[tuple[str, str, float], ...]], list[dict[str, Any]]]) -> dict[str, Any]:
    """Replay every grid point (``replay(overrides) -> results``) and pick the best one.

    Best: the highest capture among points whose upload share is at most the target, ties
    broken by the lower upload share, then by grid order (without labels every capture is
    0, so the lowest upload share wins).
    """
    if not 0 < target_upload_share <= 1:
        raise ConfigError(f"--target-upload-share {target_upload_share}: must be in (0, 1], e.g. 0.05")
    points = []
    for combo in itertools.product(*[a.values for a in axes]):
        overrides = tuple((a.trigger, a.param, v) for a, v in zip(axes, combo))
        results = replay(overrides)
        metrics = label_metrics(results)
        ok = [r for r in results if r.get("status") == "ok"]
        driven_s = sum(r["duration_s"] for r in ok)
        uploaded_s = sum(c["duration_s"] for r in ok for c in r["clips"])
        point = {
            "params": {f"{t}:{p}": v for t, p, v in overrides},
            "upload_share": round(uploaded_s / driven_s, 6) if driven_s else None,
            "capture_share": metrics["all"]["capture_share"] if metrics else None,
            "clips": sum(len(r["clips"]) for r in ok),
            "clips_without_event_per_h": metrics["all"]["clips_without_event_per_h"] if metrics else None,
        }
        point["meets_target"] = point["upload_share"] is not None and point["upload_share"] <= target_upload_share
        points.append(point)
    candidates = [(i, p) for i, p in enumerate(points) if p["meets_target"]]
    best = None
    if candidates:
        best = max(candidates, key=lambda ip: (ip[1]["capture_share"] or 0.0,
                                               -(ip[1]["upload_share"] or 0.0), -ip[0]))[1]
    return {
        "axes": [{"trigger": a.trigger, "param": a.param, "values": list(a.values)} for a in axes],
        "target_upload_share": target_upload_share,
        "points": points,
        "best": best,
        "verdict": ("no grid point meets the target upload share; widen the grid towards stricter values"
                    if best is None else "best meets the target with the highest capture"),
    }
