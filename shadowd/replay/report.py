"""The replay report: clips, report.json, timing.json and a self-contained report.html.

Owns what a replay writes into ``--out DIR``:

- ``clips/``: the clips the vehicle would have uploaded, byte for byte what the Session built;
- ``report.json``: deterministic (sorted keys, rounded floats, no wall-clock values): per
  trigger count, rate per hour of driving and clip durations; divergence statistics; upload
  bytes per hour; per-input results and errors; A/B, labels and sweep sections when asked;
- ``timing.json``: everything that depends on the machine: wall time, throughput (hours of
  driving per second, x real time), model latency per input;
- ``report.html``: one file, plots embedded as SVG (matplotlib Agg): divergence score over time
  with trigger markers, signal vs prediction around each clip, distribution of scores.

Rules: the same results give byte-identical ``report.json`` and clips whatever the worker
count; only ``timing.json`` and the HTML's timing table vary between runs.
"""

from __future__ import annotations

import html
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

REPORT_SCHEMA = "shadowd.replay.report/1"
HIST_BINS = 40


def _r(x: float | None, nd: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def _quantiles(values: np.ndarray) -> dict[str, float | None]:
    v = values[np.isfinite(values)]
    if not len(v):
        return {"count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "max": None}
    return {"count": int(len(v)), "mean": _r(v.mean()), "p50": _r(np.percentile(v, 50)),
            "p90": _r(np.percentile(v, 90)), "p99": _r(np.percentile(v, 99)), "max": _r(v.max())}


def build_report(results: list[dict[str, Any]], provenance: dict[str, Any], *,
                 ab: dict[str, Any] | None = None, labels: dict[str, Any] | None = None,
                 sweep: dict[str, Any] | None = None) -> dict[str, Any]:
    """The deterministic report.json content (see the module rules)."""
    ok = [r for r in results if r["status"] == "ok"]
    driven_s = sum(r["duration_s"] for r in ok)
    driven_h = driven_s / 3600.0
    per_h = (lambda n: _r(n / driven_h, 3)) if driven_h > 0 else (lambda n: None)
    trig: dict[str, dict[str, Any]] = {}
    for r in ok:
        for e in r["triggers"]:
            trig.setdefault(e["trigger"], {"count": 0, "clip_durations": []})["count"] += 1
        for c in r["clips"]:
            for t in c["triggers"]:
                trig.setdefault(t, {"count": 0, "clip_durations": []})["clip_durations"].append(c["duration_s"])
    triggers = {}
    for name in sorted(trig):
        d = np.asarray(trig[name]["clip_durations"], dtype=np.float64)
        triggers[name] = {
            "count": trig[name]["count"],
            "rate_per_h": per_h(trig[name]["count"]),
            "clips": int(len(d)),
            "clip_duration_s": {"mean": _r(d.mean()) if len(d) else None,
                                "max": _r(d.max()) if len(d) else None,
                                "total": _r(d.sum(), 3)},
        }
    scores = np.concatenate([np.asarray(r["divergence"]["score"], np.float64) for r in ok]) if ok else np.zeros(0)
    clips = [c for r in ok for c in r["clips"]]
    clip_bytes = sum(c["size_bytes"] for c in clips)
    uploaded_s = sum(c["duration_s"] for c in clips)
    counters: dict[str, int] = {}
    for r in ok:
        for k, v in r["counters"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                counters[k] = counters.get(k, 0) + v
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "provenance": provenance,
        "totals": {
            "inputs": len(results),
            "inputs_ok": len(ok),
            "inputs_failed": len(results) - len(ok),
            "driven_s": _r(driven_s, 3),
            "driven_h": _r(driven_h, 6),
            "clips": len(clips),
            "truncated_clips": sum(1 for c in clips if c["truncated"]),
        },
        "triggers": triggers,
        "divergence": {**_quantiles(scores), "histogram": _histogram(scores)},
        "upload": {
            "clips": len(clips),
            "bytes": clip_bytes,
            "bytes_per_h": per_h(clip_bytes),
            "clips_per_h": per_h(len(clips)),
            "uploaded_s": _r(uploaded_s, 3),
            "upload_share": _r(uploaded_s / driven_s) if driven_s else None,
        },
        "model": {
            "sha256": provenance.get("model_sha256"),
            "inference_requests": counters.get("inference_requests", 0),
            "predictions": counters.get("predictions", 0),
            "predictions_missing": counters.get("predictions_missing", 0),
            "latency": "wall-clock figures are in timing.json (not deterministic)",
        },
        "inputs": [_input_row(r) for r in results],
    }
    if ab is not None:
        report["ab"] = ab
    if labels is not None:
        report["labels"] = labels
    if sweep is not None:
        report["sweep"] = sweep
    return report


def _histogram(scores: np.ndarray) -> dict[str, Any]:
    v = scores[np.isfinite(scores)]
    if not len(v):
        return {"edges": [], "counts": []}
    hi = float(np.percentile(v, 99.5)) if len(v) > 10 else float(v.max())
    hi = hi if hi > 0 else 1.0
    counts, edges = np.histogram(np.clip(v, 0, hi), bins=HIST_BINS, range=(0.0, hi))
    return {"edges": [_r(e) for e in edges], "counts": [int(c) for c in counts]}


def _input_row(r: dict[str, Any]) -> dict[str, Any]:
    if r["status"] != "ok":
        return {"input": r["input"], "kind": r.get("kind"), "status": "error", "error": r["error"]}
    s = np.asarray(r["divergence"]["score"], np.float64)
    row = {
        "input": r["input"],
        "kind": r["kind"],
        "status": "ok",
        "duration_s": r["duration_s"],
        "frames": r["frames"],
        "notes": r["notes"],
        "origin": r["origin"],
        "labels": len(r["labels"]),
        "divergence": _quantiles(s),
        "triggers": r["triggers"],
        "clips": r["clips"],
        "counters": r["counters"],
    }
    if r["kind"] == "clip":
        row["corner_case"] = corner_case(r)
    return row


def corner_case(r: dict[str, Any]) -> dict[str, Any]:
    """A clip input against what the clip itself recorded: which of the triggers that produced
    it fire again, and how the divergence moved from the recorded model's to this one's."""
    origin = r.get("origin") or {}
    causes = set(origin.get("triggers") or [])
    s = np.asarray(r["divergence"]["score"], np.float64)
    s = s[np.isfinite(s)]
    now = _r(s.mean()) if len(s) else None
    was = origin.get("divergence_mean")
    return {
        "original_triggers": sorted(causes),
        "still_firing": sorted({e["trigger"] for e in r["triggers"]} & causes),
        "recorded_model_sha256": (origin.get("provenance") or {}).get("model_sha256"),
        "recorded_divergence_mean": was,
        "replayed_divergence_mean": now,
        "divergence_delta": None if now is None or was is None else _r(now - was),
    }


def build_timing(results: list[dict[str, Any]], wall_s: float, workers: int, ray: str | None,
                 baseline: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Machine-dependent figures (timing.json): throughput and model latency."""
    ok = [r for r in results if r["status"] == "ok"]
    driven_s = sum(r["duration_s"] for r in ok)
    return {
        "wall_s": round(wall_s, 4),
        "workers": workers,
        "ray": ray,
        "driven_s": round(driven_s, 3),
        "x_realtime": round(driven_s / wall_s, 2) if wall_s > 0 else None,
        "driven_h_per_wall_s": round(driven_s / 3600.0 / wall_s, 6) if wall_s > 0 else None,
        "inputs": [{"input": r["input"], **r.get("timing", {})} for r in results],
        **({"baseline_inputs": [{"input": r["input"], **r.get("timing", {})} for r in baseline]}
           if baseline else {}),
    }


def dumps_json(obj: Any) -> str:
    """Canonical JSON for report files: sorted keys, no NaN, one trailing newline."""
    return json.dumps(_clean(obj), indent=1, sort_keys=True, allow_nan=False) + "\n"


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_clean(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_outputs(out_dir: Path, results: list[dict[str, Any]], report: dict[str, Any],
                  timing: dict[str, Any], *, html_report: bool = True) -> dict[str, Path]:
    """Write clips, report.json, timing.json and report.html; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    clip_dir = out_dir / "clips"
    clip_dir.mkdir(exist_ok=True)
    for stale in clip_dir.glob("*.clip"):  # an earlier run into the same --out: its clips would mislead
        stale.unlink()
    for r in results:
        if r["status"] != "ok":
            continue
        for row, data in zip(r["clips"], r["clip_bytes"]):
            _atomic_write(clip_dir / row["file"], data)
    paths = {"report.json": out_dir / "report.json", "timing.json": out_dir / "timing.json",
             "clips": clip_dir}
    _atomic_write(paths["report.json"], dumps_json(report).encode())
    _atomic_write(paths["timing.json"], dumps_json(timing).encode())
    if html_report:
        paths["report.html"] = out_dir / "report.html"
        _atomic_write(paths["report.html"], render_html(results, report, timing).encode())
    return paths


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


# ----------------------------------------------------------------------------- HTML

def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.find("<svg"):]


def _plots(results: list[dict[str, Any]], report: dict[str, Any]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "shadowd"
    out: list[tuple[str, str]] = []
    for r in results:
        if r["status"] != "ok":
            continue
        t = np.asarray(r["divergence"]["t_s"], np.float64)
        s = np.asarray(r["divergence"]["score"], np.float64)
        step = max(1, len(t) // 4000)
        fig, ax = plt.subplots(figsize=(10, 2.8))
        ax.plot(t[::step], s[::step], lw=0.8, color="#2c6fbb", label="divergence score")
        for c in r["clips"]:
            ax.axvspan(c["t0_s"], c["t1_s"], color="#f4a259", alpha=0.25, lw=0)
        names = sorted({e["trigger"] for e in r["triggers"]})
        for i, name in enumerate(names):
            ts = [e["t_s"] for e in r["triggers"] if e["trigger"] == name]
            y = float(np.nanmax(s)) if len(s) and np.isfinite(s).any() else 1.0
            ax.scatter(ts, [y * (1.02 + 0.04 * i)] * len(ts), marker="v", s=28, label=name, zorder=3)
        ax.set_xlabel("time in drive [s]")
        ax.set_ylabel("score")
        ax.set_title(f"{r['input']}: divergence over time (shaded: uploaded clips)")
        ax.legend(loc="upper right", fontsize=7)
        out.append((f"Divergence over time — {r['input']}", _svg(fig)))
        for k, trace in enumerate(r.get("control_traces", [])[:12]):
            sigs = trace["signals"]
            if not sigs:
                continue
            fig, axes = plt.subplots(len(sigs), 1, figsize=(10, 2.2 * len(sigs)), squeeze=False)
            for ax, (name, sig) in zip(axes[:, 0], sorted(sigs.items())):
                if sig.get("t_s"):
                    ax.plot(sig["t_s"], sig["actual"], lw=1.0, color="#333", label=f"{name} (driver)")
                ax.plot(sig["pred_t_s"], sig["pred"], lw=1.0, color="#d1495b", label=f"{name} (model)")
                ax.set_ylabel(name, fontsize=8)
                ax.legend(loc="upper right", fontsize=7)
            axes[-1, 0].set_xlabel("time in drive [s]")
            clip = r["clips"][k]
            fig.suptitle(f"clip {clip['file']} ({', '.join(clip['triggers'])})", fontsize=9)
            out.append((f"Signal vs prediction — {clip['file']}", _svg(fig)))
    hist = report["divergence"]["histogram"]
    if hist["counts"]:
        fig, ax = plt.subplots(figsize=(6, 2.8))
        edges = np.asarray(hist["edges"], np.float64)
        ax.bar(edges[:-1], hist["counts"], width=np.diff(edges), align="edge", color="#2c6fbb")
        ax.set_xlabel("divergence score")
        ax.set_ylabel("predictions")
        ax.set_yscale("log")
        out.append(("Distribution of divergence scores", _svg(fig)))
    return out


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(results: list[dict[str, Any]], report: dict[str, Any], timing: dict[str, Any]) -> str:
    """One self-contained HTML page (no external resources)."""
    tot, up, div = report["totals"], report["upload"], report["divergence"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>shadowd replay report</title><style>",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "font-size:13px;text-align:left}th{background:#f2f2f2}.err{color:#b00}figure{margin:1em 0}",
        "</style></head><body><h1>shadowd replay report</h1>",
        _table([[k, v] for k, v in sorted(report["provenance"].items())], ["provenance", ""]),
        "<h2>Summary</h2>",
        _table([["inputs", f"{tot['inputs_ok']} ok / {tot['inputs_failed']} failed"],
                ["driven", f"{tot['driven_s']} s"],
                ["clips", f"{tot['clips']} ({tot['truncated_clips']} truncated)"],
                ["upload", f"{up['bytes']} bytes, {up['bytes_per_h']} bytes/h, share {up['upload_share']}"],
                ["divergence", f"mean {div['mean']}, p90 {div['p90']}, p99 {div['p99']}, max {div['max']}"],
                ["throughput", f"{timing.get('x_realtime')} x real time on {timing.get('workers')} worker(s), "
                               f"{timing.get('wall_s')} s wall"]], ["", ""]),
        "<h2>Triggers</h2>",
        _table([[n, t["count"], t["rate_per_h"], t["clips"], t["clip_duration_s"]["mean"]]
                for n, t in report["triggers"].items()],
               ["trigger", "count", "per hour", "clips", "mean clip s"]),
        "<h2>Inputs</h2>",
        _table([[r["input"], r.get("kind"), r["status"], r.get("duration_s"), len(r.get("clips", [])),
                 r.get("error", "")] for r in report["inputs"]],
               ["input", "kind", "status", "driven s", "clips", "error"]),
    ]
    cases = [r for r in report["inputs"] if "corner_case" in r]
    if cases:
        parts += ["<h2>Corner-case clips replayed</h2>",
                  _table([[r["input"], ", ".join(r["corner_case"]["original_triggers"]),
                           ", ".join(r["corner_case"]["still_firing"]) or "none",
                           r["corner_case"]["recorded_divergence_mean"], r["corner_case"]["replayed_divergence_mean"]]
                          for r in cases],
                         ["clip", "produced by", "still firing", "recorded divergence", "replayed divergence"])]
    if "labels" in report:
        lab = report["labels"]
        parts += ["<h2>Labelled events</h2>",
                  _table([[n, row["capture_share"], row["clips_without_event_per_h"], row["upload_share"]]
                          for n, row in [("all clips", lab["all"]), *lab["triggers"].items()]],
                         ["trigger", "capture share", "clips w/o event per h", "upload share"])]
    if "sweep" in report:
        sw = report["sweep"]
        parts += ["<h2>Sweep</h2>", f"<p>target upload share {sw['target_upload_share']}: {html.escape(sw['verdict'])}</p>",
                  _table([[json.dumps(p["params"]), p["upload_share"], p["capture_share"], p["meets_target"]]
                          for p in sw["points"]], ["params", "upload share", "capture", "meets target"])]
    if "ab" in report:
        ab = report["ab"]
        parts += ["<h2>A/B against the baseline</h2>",
                  f"<p>triggers only the candidate fires: {ab['triggers_only_candidate']}; only the baseline: "
                  f"{ab['triggers_only_baseline']}; corner-case clips fixed {ab['corner_cases']['fixed']} of "
                  f"{ab['corner_cases']['clips']}</p>",
                  _table([[row["input"], len(row.get("only_candidate", [])), len(row.get("only_baseline", [])),
                           (row.get("divergence") or {}).get("mean_delta"),
                           (row.get("corner_case") or {}).get("verdict", "")] for row in ab["inputs"]],
                         ["input", "only candidate", "only baseline", "mean divergence delta", "corner case"])]
    parts.append("<h2>Plots</h2>")
    for title, svg in _plots(results, report):
        parts.append(f"<figure><figcaption>{html.escape(title)}</figcaption>{svg}</figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
