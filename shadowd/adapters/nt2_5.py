"""NT2.5: SocketCAN buses, CUDA then CPU.

Everything platform-specific is data in platforms/nt2_5.toml; this class only overrides what
cannot be data.
"""

from __future__ import annotations

from .base import Adapter


class NT25Adapter(Adapter):
    can_interface = "socketcan"
