"""Stage supervision: each long-running part of the service is a Stage on its own thread.

A stage that raises is logged, counted and restarted after a backoff (doubling up to
``max_backoff_s``); the rest of the service keeps running. Progress is a counter the stage
bumps (``stage.progress()``); the daemon pings the systemd watchdog only while the stages that
must make progress really do. A stage that crashes ``crash_loop_count`` times within
``crash_loop_window_s`` is reported as crash-looping (fleet config probation listens).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)


class Stage:
    """A named loop ``body(stage)`` run on a thread until ``stop`` is set.

    ``body`` should return when ``stage.stopping`` is true; raising means a crash.
    """

    def __init__(
        self,
        name: str,
        body: Callable[["Stage"], None],
        *,
        max_backoff_s: float = 10.0,
        crash_loop_count: int = 3,
        crash_loop_window_s: float = 60.0,
        on_crash: Callable[[str, BaseException], None] | None = None,
    ):
        self.name = name
        self._body = body
        self._max_backoff_s = max_backoff_s
        self._crash_loop_count = crash_loop_count
        self._crash_loop_window_s = crash_loop_window_s
        self._on_crash = on_crash
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = 0
        self.restarts = 0
        self.last_error: str = ""
        self._crash_times: deque[float] = deque(maxlen=crash_loop_count)

    # -- called from the stage's own thread -------------------------------------------------
    def progress(self, n: int = 1) -> None:
        """Record that the stage did useful work (read frames, sent bytes, ...)."""
        self._progress += n

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep unless asked to stop; returns True when stopping."""
        return self._stop.wait(seconds)

    # -- called by the daemon ------------------------------------------------------------------
    @property
    def progress_count(self) -> int:
        return self._progress

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def crash_looping(self) -> bool:
        if len(self._crash_times) < self._crash_loop_count:
            return False
        return self._crash_times[-1] - self._crash_times[0] <= self._crash_loop_window_s

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"shadowd-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the stage to stop and wait; returns False if it did not stop in time."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        backoff_s = 0.1
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._body(self)
                return  # a clean return ends the stage
            except Exception as err:  # noqa: BLE001 - any crash is counted and restarted
                self.restarts += 1
                self.last_error = f"{type(err).__name__}: {err}"
                self._crash_times.append(time.monotonic())
                log.exception("stage %s crashed (restart %d)", self.name, self.restarts)
                if self._on_crash is not None:
                    try:
                        self._on_crash(self.name, err)
                    except Exception:  # noqa: BLE001
                        log.exception("crash callback of stage %s failed", self.name)
                if time.monotonic() - started > 30:
                    backoff_s = 0.1  # it ran a good while: not a tight loop
                if self._stop.wait(backoff_s):
                    return
                backoff_s = min(backoff_s * 2, self._max_backoff_s)

    def status(self) -> dict:
        return {
            "alive": self.alive,
            "restarts": self.restarts,
            "progress": self._progress,
            "crash_looping": self.crash_looping,
            "last_error": self.last_error,
        }
