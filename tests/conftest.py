"""Suite-wide test settings. Area fixtures live in tests/fixtures/ (real servers on loopback)."""

import os

from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=100)
settings.register_profile("slow", deadline=None, max_examples=2000)
settings.load_profile("slow" if os.environ.get("SHADOWD_SLOW_TESTS") else "default")


import pytest

_SHM = "/dev/shm"


@pytest.fixture(autouse=True)
def _remove_this_runs_ring_segments():
    """Ring segments outlive their producers by design, so the service tests and benchmarks
    that start producers leave them in /dev/shm (~2-36 MB each, RAM). After each test, remove
    the new ``shadowd.*`` segments named after this test process (every such tag carries its
    pid), never anyone else's."""
    before = set(os.listdir(_SHM)) if os.path.isdir(_SHM) else set()
    yield
    if not before and not os.path.isdir(_SHM):
        return
    mark = str(os.getpid())
    for name in set(os.listdir(_SHM)) - before:
        if name.startswith("shadowd.") and mark in name:
            try:
                os.unlink(os.path.join(_SHM, name))
            except OSError:
                pass
