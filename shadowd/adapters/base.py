"""Adapter base: what differs between platforms at run time, behind one interface.

Public methods live here; subclasses override only the ``_`` hooks. The pipeline talks to an
adapter, never to a platform name: execution-provider resolution (what the profile prefers
intersected with what ONNX Runtime really offers, logged), ONNX Runtime session options
(threads), CPU affinity, and opening the CAN buses.
"""

from __future__ import annotations

import logging
import os
from typing import Sequence

from ..core.platform import Platform
from ..errors import AdapterNotAvailableError

log = logging.getLogger(__name__)


class Adapter:
    """Base adapter; ``platform`` is the validated profile."""

    #: python-can interface used for live buses on this platform
    can_interface = "socketcan"

    def __init__(self, platform: Platform):
        self.platform = platform
        self.chosen_providers: list[str] | None = None

    # -- execution providers -------------------------------------------------------------
    def resolve_providers(self, available: Sequence[str] | None = None) -> list[str]:
        """Preferred providers that ONNX Runtime offers here, in profile order, CPU last.

        ``available`` defaults to ``onnxruntime.get_available_providers()``. The choice and
        every skipped provider are logged once.
        """
        if available is None:
            import onnxruntime

            available = onnxruntime.get_available_providers()
        avail = set(available)
        chosen = [p for p in self.platform.inference.providers if p in avail]
        if "CPUExecutionProvider" not in chosen:
            chosen.append("CPUExecutionProvider")
        skipped = [p for p in self.platform.inference.providers if p not in avail]
        log.info("platform %s: execution providers %s (not available here: %s)",
                 self.platform.name, chosen, skipped or "none")
        self.chosen_providers = chosen
        return chosen

    def session_options(self):
        """onnxruntime.SessionOptions with the profile's thread counts."""
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = self.platform.inference.intra_op_threads
        opts.inter_op_num_threads = self.platform.inference.inter_op_threads
        opts.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        return opts

    def apply_cpu_affinity(self, pid: int = 0) -> list[int]:
        """Pin ``pid`` (0 = this process) to the profile's CPUs that exist here; returns them."""
        wanted = set(self.platform.inference.cpu_affinity)
        if not wanted or not hasattr(os, "sched_setaffinity"):
            return []
        usable = sorted(wanted & os.sched_getaffinity(0))
        if not usable:
            log.warning("platform %s: cpu_affinity %s not present on this machine (have %s); not pinning",
                        self.platform.name, sorted(wanted), sorted(os.sched_getaffinity(0)))
            return []
        os.sched_setaffinity(pid, usable)
        return usable

    # -- CAN buses -----------------------------------------------------------------------
    def open_bus(self, bus_name: str, **kwargs):
        """A python-can bus for the profile bus ``bus_name`` (live interface of this platform)."""
        try:
            spec = self.platform.bus(bus_name)
        except KeyError:
            raise AdapterNotAvailableError(
                f"platform {self.platform.name} has no bus {bus_name!r}; buses: {[b.name for b in self.platform.buses]}") from None
        return self._open_bus(spec.channel, **kwargs)

    def _open_bus(self, channel: str, **kwargs):
        import can

        try:
            return can.Bus(interface=self.can_interface, channel=channel, **kwargs)
        except Exception as err:  # noqa: BLE001
            raise AdapterNotAvailableError(
                f"cannot open CAN channel {channel!r} with interface {self.can_interface!r}: {err}; "
                f"check the interface is up (ip link) or use the desktop platform for logs") from err
