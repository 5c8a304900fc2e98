"""NT3 (in-house NPU): SocketCAN buses, the vendor NPU provider where present, CPU otherwise.

Everything platform-specific is data in platforms/nt3.toml; this class only overrides what
cannot be data.
"""

from __future__ import annotations

from .base import Adapter


class NT3Adapter(Adapter):
    can_interface = "socketcan"
