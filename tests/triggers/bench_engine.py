"""Micro-benchmark of the trigger engine (not a test; run it by hand):

    .venv/bin/python -m tests.triggers.bench_engine [--minutes 10] [--hz 50]

Feeds the built-in trigger set with the real RAV4 minute (tiled to ``--minutes`` at ``--hz``,
with a few injected events so the gate runs too) through the one-tick path and through the
chunk path at several chunk sizes, on the Python evaluators and on the C one (peers in one
run), checks all give the same events, and prints ticks/s and CPU per one-tick call. ``shadowd bench pipeline`` measures the
engine inside the whole pipeline.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from shadowd.core.triggers import TriggerEngine, builtin_triggers, compile_triggers

from .test_builtins import rav4_minute


def workload(minutes: float, hz: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    t_src, cols_src = rav4_minute()
    rel_s = (t_src - t_src[0]) / 1e9
    n = int(minutes * 60 * hz)
    t_s = np.arange(n) / hz
    src_idx = np.minimum(np.searchsorted(rel_s, t_s % rel_s[-1]), len(rel_s) - 1)
    cols = {k: v[src_idx].copy() for k, v in cols_src.items()}
    for k in range(0, n, int(45 * hz)):  # an event of each kind every 45 s
        cols["accel_long_mps2"][k:k + int(hz)] = -6.0
        cols["divergence"][k:k + int(hz)] = 2.0
        cols["adas_engaged"][k + int(hz):k + int(3 * hz)] = 0.0
    t = (t_src[0] + np.round(t_s * 1e9)).astype(np.int64)
    return t, cols


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--hz", type=float, default=50.0)
    args = ap.parse_args()
    t, cols = workload(args.minutes, args.hz)
    w0 = time.perf_counter()
    for _ in range(100):
        ts = compile_triggers(builtin_triggers())
    compile_us = (time.perf_counter() - w0) / 100 * 1e6
    w0 = time.perf_counter()
    for _ in range(1000):
        TriggerEngine(ts)
    build_us = (time.perf_counter() - w0) / 1000 * 1e6
    out: dict = {"ticks": len(t), "triggers": len(ts.enabled), "compile_us": round(compile_us),
                 "engine_build_us": round(build_us, 1)}

    rows = [{k: float(v[i]) for k, v in cols.items()} for i in range(len(t))]
    tl = t.tolist()
    reference = None
    for native in (False, True):
        eng = TriggerEngine(ts, native=native or None)
        if native and eng.native is None:
            break  # no C evaluator in this build
        key = "c_" if native else "python_"
        c0 = time.process_time()
        w0 = time.perf_counter()
        scalar_events = []
        for i in range(len(tl)):
            scalar_events += eng.evaluate(tl[i], rows[i])
        cpu = time.process_time() - c0
        out[key + "scalar_ticks_per_s"] = round(len(t) / (time.perf_counter() - w0))
        out[key + "scalar_us_per_tick"] = round(cpu / len(t) * 1e6, 2)
        out[key + "events"] = len(scalar_events)
        reference = reference or scalar_events
        assert scalar_events == reference, "the C evaluator's events differ from Python's"
        for chunk in (50, 500, 5000):
            eng = TriggerEngine(ts, native=native or None)
            w0 = time.perf_counter()
            events = []
            for lo in range(0, len(t), chunk):
                events += eng.evaluate_batch(t[lo:lo + chunk], {k: v[lo:lo + chunk] for k, v in cols.items()})
            out[f"{key}batch{chunk}_ticks_per_s"] = round(len(t) / (time.perf_counter() - w0))
            assert events == reference, f"chunk {chunk}: batch events differ from the one-tick path"
    if "c_scalar_ticks_per_s" in out:
        out["c_vs_python_batch5000"] = round(out["c_batch5000_ticks_per_s"] / out["python_batch5000_ticks_per_s"], 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
