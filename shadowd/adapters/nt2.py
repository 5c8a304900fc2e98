"""NT2 (Orin-class): SocketCAN buses, TensorRT then CUDA then CPU.

Everything platform-specific is data in platforms/nt2.toml; this class only overrides what
cannot be data.
"""

from __future__ import annotations

from .base import Adapter


class NT2Adapter(Adapter):
    can_interface = "socketcan"
