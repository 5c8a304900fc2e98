"""A ring producer that plays a recorded drive into the topic rings, paced like the vehicle.

Used to exercise the service end to end on a desktop (``shadowd produce``), by the service
tests, and by the soak and fleet benchmarks: it reads any replay input (CAN log + IMU
sidecar, CSV, MCAP, clip) through ``shadowd.replay.inputs`` and writes every topic's frames
into its ring (``shadowd.<topic>`` unless named), restamped onto this machine's
CLOCK_MONOTONIC so the frames look live. ``speed`` > 1 writes faster than real time while the
frame timestamps keep the recorded spacing (they run ahead of the clock, as the service only
follows frame time). ``loops`` repeats the drive, shifting time so it stays monotonic.

It is a separate process from the service on purpose: that is how producers run on a vehicle.
A restarted producer re-attaches to its rings (readers keep reading); one restarted with other
ring parameters (capacity, frame size) recreates them, and the service reopens them by name.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping

import numpy as np

from .core.signals import frame_dtype


def _create_or_replace(name: str, dtype, capacity: int):
    """Attach to the ring ``name`` (a restart with the same parameters keeps its readers), or
    recreate it when it exists with other parameters or is corrupt (readers reopen it by name).
    A ring held by another live writer still raises RingError (busy)."""
    import errno

    from .errors import RingCorruptError, RingError, RingVersionError
    from .ring import RingWriter

    try:
        return RingWriter.create(name, dtype, capacity)
    except (RingCorruptError, RingVersionError):
        pass
    except RingError as err:
        if err.errno != errno.EEXIST:
            raise
    return RingWriter.create(name, dtype, capacity, replace=True)


def play(
    drive_topics: Mapping[str, np.ndarray],
    ring_names: Mapping[str, str],
    *,
    speed: float = 1.0,
    loops: int = 1,
    capacity: Mapping[str, int] | None = None,
    chunk_s: float = 0.01,
    stop=None,
) -> dict[str, int]:
    """Write the drive into the rings; returns frames written per topic.

    Args:
        drive_topics: topic -> structured frames (``t_ns`` first), each sorted by time.
        ring_names: topic -> ring segment name; topics not named are skipped.
        speed: pace relative to real time (0 = as fast as possible).
        loops: how many times to play the drive.
        capacity: frames per ring (default: 60 s at the topic's rate, at least 4096).
        chunk_s: drive seconds written per batch (10 ms: vehicle-like latency).
        stop: optional threading/multiprocessing Event to end early.
    """
    topics = [t for t in drive_topics if t in ring_names and len(drive_topics[t])]
    if not topics:
        return {}
    t_first = min(int(drive_topics[t]["t_ns"][0]) for t in topics)
    t_last = max(int(drive_topics[t]["t_ns"][-1]) for t in topics)
    span_ns = t_last - t_first + 10_000_000
    writers = {}
    for t in topics:
        arr = drive_topics[t]
        rate_hz = len(arr) / max(1e-9, (int(arr["t_ns"][-1]) - int(arr["t_ns"][0])) / 1e9)
        cap = (capacity or {}).get(t) or max(4096, int(rate_hz * 60))
        cap = 1 << (cap - 1).bit_length()
        writers[t] = _create_or_replace(ring_names[t], frame_dtype(t), cap)
    written = {t: 0 for t in topics}
    chunk_ns = int(chunk_s * 1e9)
    wall0 = time.monotonic_ns()
    base = wall0 - t_first  # recorded time + base = live monotonic time
    try:
        for loop in range(loops):
            shift = base + loop * span_ns
            pos = {t: 0 for t in topics}
            edge = t_first
            while edge <= t_last:
                edge += chunk_ns
                for t in topics:
                    arr = drive_topics[t]
                    end = int(np.searchsorted(arr["t_ns"], edge, "left"))
                    if end > pos[t]:
                        out = arr[pos[t]:end].copy()
                        out["t_ns"] += shift
                        writers[t].write(out)
                        written[t] += end - pos[t]
                        pos[t] = end
                if stop is not None and stop.is_set():
                    return written
                if speed > 0:
                    due = wall0 + int(((loop * span_ns) + (edge - t_first)) / speed)
                    delay = due - time.monotonic_ns()
                    if delay > 0:
                        time.sleep(delay / 1e9)
    finally:
        for w in writers.values():
            w.close()
    return written
