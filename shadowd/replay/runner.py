"""Replay one input through the shared Session on a simulated clock.

Owns the replay loop: read an input, feed its frames chunk by chunk of simulated time into a
``shadowd.session.Session`` (inline batched inference), collect the events and the clips the
vehicle would have uploaded, and return a plain, picklable result that ``report`` aggregates.

Rules:
- The simulated clock is the data's own ``t_ns``; the chunk length is fixed, so the same
  inputs, model and config give the same result in any process. Wall-clock time appears only
  under ``result["timing"]`` (and, with ``speed``, as sleeps that pace the loop).
- A bad input never raises out of ``replay_input``: its result has ``status: "error"`` and the
  reason, and the caller goes on with the others.
- Models are loaded once per process and path (``_MODELS``), trigger configs compiled once
  per process, file version and sweep overrides (``_TRIGGERS``), not once per input.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..clip import ArrayHistory
from ..core.types import ClipSpec, DivergenceBatch, TriggerFired
from ..edges.model_runner import default_model_path
from ..errors import ConfigError, ReplayError, ShadowdError
from ..session import Session, make_provenance
from .inputs import Drive, read_input

NS = 1_000_000_000
DEFAULT_CHUNK_S = 10.0
"""The replay clock's grid: ``Session.advance`` runs at ``t0 + k * chunk_s`` and at the end."""
BULK_CHUNKS = 6
"""Away from the end of an input, this many grid chunks are fed and advanced at once (bigger
inference / scoring / trigger batches: ~12% less Session time than one advance per chunk;
``ReplayOptions.bulk_chunks``).
The last ``TAIL_CHUNKS`` chunks advance at every grid point, so the end of an input (where
scoring waits for whole 0.2 s batches and clips are cut) sees the very advance calls it sees
with one advance per chunk: the results are the same either way (tests/replayperf)."""
TAIL_CHUNKS = 2


@dataclass(frozen=True)
class ReplayOptions:
    """Everything a worker needs to replay inputs; picklable, so it travels to processes and Ray."""

    model_path: str | None = None  # None: the bundled reference model
    platform: str = "desktop"
    config_path: str | None = None  # None: the built-in default triggers
    chunk_s: float = DEFAULT_CHUNK_S
    bulk_chunks: int = BULK_CHUNKS  # 1: one advance per chunk (same results, slower)
    speed: float | None = None  # None: as fast as possible; X: X times real time
    vehicle_id: str = "replay"
    trigger_overrides: tuple[tuple[str, str, float], ...] = ()  # (trigger, param, value) for sweeps
    keep_clip_bytes: bool = True
    labels_dir: str | None = None  # None: labels files beside each input


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- config

@dataclass
class TriggerConfig:
    """Trigger definitions and clip windows from ``--config`` (or the built-in defaults)."""

    defs: list[dict[str, Any]]
    version: int | str
    windows: Any = None  # shadowd.core.config.ClipWindowConfig or None
    source: str = "builtin"


def load_trigger_config(path: str | None) -> TriggerConfig:
    """Read ``--config``: a full service config (what a bundle carries), an object with
    ``triggers`` (and optional ``windows``), or a bare list of trigger definitions."""
    if path is None:
        from ..core.triggers import builtin_triggers

        return TriggerConfig([dict(d) for d in builtin_triggers()], "builtin")
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"--config {path}: not readable JSON ({err}); give a service config or a "
                          f"list of trigger definitions") from err
    if isinstance(raw, list):
        return TriggerConfig(raw, "local", source=str(path))
    if isinstance(raw, dict) and "version" in raw and "model" in raw:
        from ..core.config import parse_config

        cfg = parse_config(raw)
        return TriggerConfig([dict(t) for t in cfg.triggers], cfg.version, cfg.windows, str(path))
    if isinstance(raw, dict) and isinstance(raw.get("triggers"), list):
        windows = None
        if "windows" in raw:
            from ..core.config import _parse_windows

            windows = _parse_windows(raw["windows"])
        return TriggerConfig(raw["triggers"], raw.get("version", "local"), windows, str(path))
    raise ConfigError(f"--config {path}: expected a service config, {{\"triggers\": [...]}} or a list "
                      f"of trigger definitions, got {type(raw).__name__}")


_SWEEPABLE = ("priority", "pre_s", "post_s", "cooldown_s", "max_per_hour")
"""Numeric trigger definition keys (shadowd.core.triggers) a sweep may set besides thresholds."""


def apply_overrides(defs: list[dict[str, Any]], overrides: tuple[tuple[str, str, float], ...]) -> list[dict[str, Any]]:
    """Trigger definitions with ``(trigger, param, value)`` overrides applied (sweeps).

    ``param`` is a key of the definition (``cooldown_s``, ``pre_s``) or ``threshold:N``: the
    N-th numeric literal of the trigger's expression (see ``labels.expression_literals``).
    """
    from .labels import set_expression_literal

    by_name = {d.get("name"): dict(d) for d in defs}
    for trig, param, value in overrides:
        if trig not in by_name:
            raise ConfigError(f"--sweep names trigger {trig!r} but the config has {sorted(by_name)}; "
                              f"check the trigger name")
        d = by_name[trig]
        if param.startswith("threshold:"):
            from ..core.triggers import BUILTINS

            expr = d.get("expr") or BUILTINS.get(d.get("builtin"), {}).get("expr", "")  # {"builtin": ...}
            d["expr"] = set_expression_literal(str(expr), int(param.split(":", 1)[1]), value)
        else:
            if param not in d and param not in _SWEEPABLE:
                raise ConfigError(f"--sweep: trigger {trig!r} has no parameter {param!r}; "
                                  f"it has {sorted(d)} or threshold:N")
            d[param] = int(value) if param in ("priority", "max_per_hour") else value
    return [by_name[d.get("name")] for d in defs]


# ----------------------------------------------------------------------------- per-process caches

_MODELS: dict[tuple[str, str], Any] = {}
_PLATFORMS: dict[str, Any] = {}
_TRIGGERS: dict[tuple, tuple[Any, Any]] = {}


def load_platform(name: str) -> Any:
    if name not in _PLATFORMS:
        from ..edges.platforms import load_platform as _load

        _PLATFORMS[name] = _load(name)
    return _PLATFORMS[name]


def load_model(path: str, platform: Any) -> Any:
    key = (path, getattr(platform, "name", str(platform)))
    if key not in _MODELS:
        from ..edges.model_runner import ModelRunner

        if not Path(path).is_file():
            raise ReplayError(f"model {path!r} does not exist; give --model PATH.onnx (default: the "
                              f"bundled reference model)")
        _MODELS[key] = ModelRunner(path, platform)
    return _MODELS[key]


def required_signals(model: Any) -> list[str]:
    """Signals an input must carry: the model's inputs and the controls it is scored on."""
    c = getattr(model, "contract", None)
    return sorted(set(getattr(c, "signals", ())) | set(getattr(c, "control_signals", ())))


# ----------------------------------------------------------------------------- history

# ----------------------------------------------------------------------------- the loop

def replay_input(index: int, path: str, opts: ReplayOptions) -> dict[str, Any]:
    """Replay one input; never raises for a bad input (see the module rules)."""
    t_start = time.perf_counter()
    result: dict[str, Any] = {"index": index, "input": str(path), "status": "ok"}
    try:
        platform = load_platform(opts.platform)
        model = load_model(opts.model_path or str(default_model_path()), platform)
        drive = read_input(path, platform, required_signals(model), opts.labels_dir)
        t_read = time.perf_counter()
        result.update(run_drive(index, drive, model, platform, opts))
        result["timing"]["read_s"] = t_read - t_start
    except ShadowdError as err:
        result.update(status="error", error=str(err), kind=_kind_or_none(path))
        result.setdefault("timing", {})
    result["timing"]["wall_s"] = time.perf_counter() - t_start
    return result


def _kind_or_none(path: str) -> str | None:
    from .inputs import input_kind

    try:
        return input_kind(Path(path))
    except ReplayError:
        return None


def build_session(model: Any, platform: Any, opts: ReplayOptions, sink: Any, history: Any,
                  executor: Any = None) -> Session:
    """The Session replay runs: triggers from the config (with sweep overrides applied).

    ``history`` None keeps a bounded in-memory history; ``executor`` None runs inference inline.
    """
    tc, triggers = compiled_triggers(opts.config_path, opts.trigger_overrides)
    prov = make_provenance(
        opts.vehicle_id, getattr(platform, "name", str(opts.platform)), model, tc.version, triggers,
        {"config": Path(tc.source).name if tc.source != "builtin" else "builtin", "producer": "replay"},
    )
    return Session(platform, model, triggers, sink=sink, provenance=prov,
                   history=history, executor=executor, windows=tc.windows)


def compiled_triggers(config_path: str | None, overrides: tuple[tuple[str, str, float], ...] = ()) -> tuple[TriggerConfig, Any]:
    """``--config`` read and its triggers compiled, once per process and (file version,
    overrides) (``_TRIGGERS``): a TriggerSet is immutable and shared by every Session."""
    from ..core.triggers import compile_triggers

    version = None
    if config_path is not None:
        try:
            st = os.stat(config_path)
            version = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            version = None  # load_trigger_config says what is wrong
    key = (config_path, version, overrides)
    if key not in _TRIGGERS or version is None and config_path is not None:
        tc = load_trigger_config(config_path)
        if len(_TRIGGERS) >= 256:  # a long sweep: bounded, not a leak
            _TRIGGERS.clear()
        _TRIGGERS[key] = (tc, compile_triggers(apply_overrides(tc.defs, overrides)))
    return _TRIGGERS[key]


def run_drive(index: int, drive: Drive, model: Any, platform: Any, opts: ReplayOptions) -> dict[str, Any]:
    """Feed a drive through a fresh Session; returns the per-input result (see module doc)."""
    clips: list[tuple[ClipSpec, bytes]] = []
    session = build_session(model, platform, opts, lambda spec, data: clips.append((spec, data)),
                            ArrayHistory(drive.topics))
    t0_ns, t1_ns = drive.t0_ns, drive.t1_ns
    chunk_ns = max(1, int(opts.chunk_s * NS))
    bulk = 1 if opts.speed else max(1, opts.bulk_chunks)  # paced runs keep one advance per chunk
    tail_ns = t1_ns - TAIL_CHUNKS * chunk_ns
    names = sorted(drive.topics)
    pos = {k: 0 for k in names}
    events: list[Any] = []
    wall0 = time.perf_counter()
    now_ns = t0_ns
    step = 0
    while now_ns < t1_ns:
        step += 1
        now_ns = min(t0_ns + step * chunk_ns, t1_ns)
        if step % bulk and now_ns < tail_ns:
            continue  # fed with the next advance
        for topic in names:
            arr = drive.topics[topic]
            end = int(np.searchsorted(arr["t_ns"], now_ns, "right"))
            if end > pos[topic]:
                session.feed(topic, arr[pos[topic]:end])
                pos[topic] = end
        events.extend(session.advance(now_ns))
        if opts.speed:
            lag = (now_ns - t0_ns) / NS / opts.speed - (time.perf_counter() - wall0)
            if lag > 0:
                time.sleep(lag)
    events.extend(session.close(t1_ns))
    run_s = time.perf_counter() - wall0
    return _summarise(index, drive, session, events, clips, model, opts, run_s)


def _rel_s(t_ns: int, t0_ns: int) -> float:
    return round((t_ns - t0_ns) / NS, 6)


def clip_file_name(index: int, drive_name: str, clip_index: int) -> str:
    stem = Path(drive_name).name
    for suffix in (".log", ".asc", ".blf", ".trc", ".csv", ".mcap", ".clip"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:80]
    return f"{index:04d}-{safe}-{clip_index:03d}.clip"


def _summarise(index, drive, session, events, clips, model, opts, run_s) -> dict[str, Any]:
    t0 = drive.t0_ns
    divs = [e for e in events if isinstance(e, DivergenceBatch)]
    fired = [e for e in events if isinstance(e, TriggerFired)]
    div_t_ns = np.concatenate([d.t_ns for d in divs]) if divs else np.empty(0, np.int64)
    div_t = np.array([round(x, 6) for x in ((div_t_ns - t0) / NS).tolist()])  # = _rel_s (Python's round)
    div_score = np.concatenate([d.score for d in divs]) if divs else np.empty(0)
    clip_rows, clip_bytes = [], []
    for i, (spec, data) in enumerate(clips):
        name = clip_file_name(index, drive.name, i)
        clip_rows.append({
            "file": name,
            "t0_s": _rel_s(spec.t0_ns, t0),
            "t1_s": _rel_s(spec.t1_ns, t0),
            "duration_s": round((spec.t1_ns - spec.t0_ns) / NS, 6),
            "size_bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "priority": spec.priority,
            "truncated": spec.truncated,
            "triggers": sorted({c.trigger for c in spec.causes}),
            "causes": [{"trigger": c.trigger, "t_s": _rel_s(c.t_ns, t0), "score": round(float(c.score), 6)}
                       for c in sorted(spec.causes, key=lambda c: (c.t_ns, c.trigger))],
        })
        clip_bytes.append(data if opts.keep_clip_bytes else b"")
    controls = _control_traces(drive, session, clips, t0)
    stats = session.stats()
    return {
        "name": drive.name,
        "kind": drive.kind,
        "duration_s": round(drive.duration_s, 6),
        "t0_ns": t0,
        "frames": {k: int(len(a)) for k, a in sorted(drive.topics.items())},
        "notes": drive.notes,
        "labels": [{"kind": l.kind, "start_s": l.start_s, "end_s": l.end_s} for l in drive.labels],
        "origin": drive.origin,
        "triggers": [{"trigger": e.trigger, "t_s": _rel_s(e.t_ns, t0), "priority": e.priority,
                      "score": round(float(e.score), 6)} for e in fired],
        "clips": clip_rows,
        "clip_bytes": clip_bytes,
        "divergence": {"t_s": div_t, "score": div_score},
        "control_traces": controls,
        "counters": _jsonable(stats),
        "timing": {"run_s": run_s, "latency": _latency(model)},
    }


def _control_traces(drive: Drive, session: Session, clips, t0: int) -> list[dict[str, Any]]:
    """Signal vs first-step prediction for each clip window, for the report plots."""
    out = []
    vehicle = drive.topics.get("vehicle")
    vehicle_names = (vehicle.dtype.names or ()) if vehicle is not None else ()
    for spec, _ in clips:
        preds = session.predictions_between(spec.t0_ns, spec.t1_ns)
        entry: dict[str, Any] = {"t0_s": _rel_s(spec.t0_ns, t0), "signals": {}}
        if preds is None:
            out.append(entry)
            continue
        names = sorted(preds.controls)
        lead_s = float(preds.horizon_s[0])
        pred_t = [round(x, 6) + lead_s for x in ((preds.t_ns - t0) / NS).tolist()]  # = _rel_s + lead
        window = t_window = None
        if vehicle is not None and any(n in vehicle_names for n in names):
            lo = int(np.searchsorted(vehicle["t_ns"], spec.t0_ns, side="left"))
            hi = int(np.searchsorted(vehicle["t_ns"], spec.t1_ns, side="right"))
            window = vehicle[lo:hi]  # t0 <= t_ns <= t1: drive frames are time-sorted (inputs)
            step = max(1, len(window) // 600)
            window = window[::step]
            t_window = [(int(x) - t0) / NS for x in window["t_ns"]]
        for name in names:
            first = preds.controls[name]
            sig = {"pred_t_s": pred_t if first.shape[1] else [],
                   "pred": first[:, 0].tolist() if first.shape[1] else []}
            if window is not None and name in vehicle_names:
                sig["t_s"] = list(t_window)
                sig["actual"] = window[name].astype(np.float64).tolist()
            entry["signals"][name] = sig
        out.append(entry)
    return out


def _latency(model: Any) -> dict[str, Any]:
    for attr in ("latency_percentiles", "latency_stats"):
        v = getattr(model, attr, None)
        if callable(v):
            v = v()
        if v is not None:
            return _jsonable(v)
    return {}


def _jsonable(obj: Any) -> Any:
    from .inputs import _plain

    return _plain(obj)
