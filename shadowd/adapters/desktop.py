"""Desktop replay/development: log files and python-can's virtual bus.

Everything platform-specific is data in platforms/desktop.toml; this class only overrides what
cannot be data.
"""

from __future__ import annotations

from .base import Adapter


class DesktopAdapter(Adapter):
    can_interface = "virtual"
