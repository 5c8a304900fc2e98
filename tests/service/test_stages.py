"""A stage that fails is restarted, not the whole service."""

import threading

from shadowd.edges.stages import Stage


def test_crashing_stage_is_restarted_and_counted():
    runs = []
    done = threading.Event()

    def body(stage):
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError("boom")
        stage.progress()
        done.set()
        while not stage.sleep(0.01):
            pass

    crashes = []
    st = Stage("flaky", body, on_crash=lambda name, err: crashes.append((name, str(err))))
    st.start()
    assert done.wait(5)
    assert st.restarts == 2 and st.progress_count == 1
    assert crashes == [("flaky", "boom"), ("flaky", "boom")]
    assert st.alive
    assert st.stop(2)
    assert not st.alive


def test_crash_loop_is_detected():
    crashed = threading.Event()

    def body(stage):
        if stage.restarts >= 3:
            crashed.set()
            stage.sleep(10)
            return
        raise ValueError("bad config")

    st = Stage("loop", body, max_backoff_s=0.05, crash_loop_count=3, crash_loop_window_s=60)
    st.start()
    assert crashed.wait(5)
    assert st.crash_looping
    assert st.status()["last_error"] == "ValueError: bad config"
    st.stop(2)


def test_stop_interrupts_a_sleeping_stage_promptly():
    st = Stage("sleepy", lambda s: s.sleep(60))
    st.start()
    assert st.stop(1.0)
