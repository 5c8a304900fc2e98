"""Run ``shadowd`` (argv as for ``python -m shadowd``) with a wall clock that jumps.

The machine clock must not be changed by a test (and needs CAP_SYS_TIME), so this launcher
shifts what the process reads as wall time instead: ``time.time`` / ``time.time_ns`` step
through ``_OFFSETS_S`` (a day forward, two days back, ...) every ``_STEP_S`` seconds of
monotonic time. CLOCK_MONOTONIC is untouched, as on a vehicle whose wall clock is corrected
by NTP/GNSS. ``datetime.now()`` reads the C clock directly and does not jump; the service's
wall-clock users (config validity, upload budget and ageing, spool timestamps) read
``time.time``. Used by tests/service/test_faults.py.
"""

from __future__ import annotations

import runpy
import sys
import time

_OFFSETS_S = (0.0, 86400.0, -86400.0, 5 * 3600.0, -600.0)
_STEP_S = 1.5
_real_time, _real_time_ns, _t0 = time.time, time.time_ns, time.monotonic()


def _offset_s() -> float:
    return _OFFSETS_S[int((time.monotonic() - _t0) / _STEP_S) % len(_OFFSETS_S)]


time.time = lambda: _real_time() + _offset_s()
time.time_ns = lambda: _real_time_ns() + int(_offset_s() * 1e9)

if __name__ == "__main__":
    sys.argv = ["shadowd", *sys.argv[1:]]
    runpy.run_module("shadowd", run_name="__main__", alter_sys=True)
