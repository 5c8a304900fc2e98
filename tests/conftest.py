"""Suite-wide test settings. Area fixtures live in tests/fixtures/ (real servers on loopback)."""

import os

from hypothesis import settings

settings.register_profile("default", deadline=None, max_examples=100)
settings.register_profile("slow", deadline=None, max_examples=2000)
settings.load_profile("slow" if os.environ.get("SHADOWD_SLOW_TESTS") else "default")
