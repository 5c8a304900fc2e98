"""The in-memory clip: provenance, window, causes and streams of frames.

Rules: plain values only (no I/O, no codec logic). ``streams`` maps a name to a numpy
structured array whose first field is ``t_ns`` (int64, monotonic ns) in time order. Decoded
topics use ``shadowd.core.signals.frame_dtype``; ``can_raw`` uses ``CAN_RAW_DTYPE``; model
predictions and the divergence trace are any structured arrays of int/uint/float/bool fields.
After a round trip through the codec, stream ``t_ns`` values are microseconds * 1000 and float
fields equal the original to within their channel precision (bit-exact when lossless).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from shadowd import __version__
from shadowd.core.signals import SCHEMA_VERSION
from shadowd.core.types import TriggerFired


@dataclass(frozen=True, slots=True)
class TriggerDef:
    """A trigger definition as configured: its name, expression and numeric parameters."""

    name: str
    expr: str = ""
    params: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Provenance:
    """Who produced a clip: vehicle, platform, model, config and software versions."""

    vehicle_id: str
    platform: str
    model_sha256: str = ""
    config_version: int = 0
    software_version: str = __version__
    schema_version: int = SCHEMA_VERSION
    triggers: tuple[TriggerDef, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Clip:
    """One corner-case clip.

    Attributes:
        provenance: see Provenance.
        t0_ns, t1_ns: the window, monotonic ns (exact).
        truncated: the service stopped before the post-window passed.
        priority: max priority of the causes (higher = uploaded first, evicted last).
        causes: every trigger that fired inside the window.
        streams: name -> structured array (``t_ns`` first).
        precisions: stream -> field -> quantum the writer chose for non-canonical float fields
            (0 = lossless). Filled in by the decoder from the file.
    """

    provenance: Provenance
    t0_ns: int
    t1_ns: int
    causes: tuple[TriggerFired, ...] = ()
    streams: dict[str, np.ndarray] = field(default_factory=dict)
    priority: int = 0
    truncated: bool = False
    precisions: dict[str, dict[str, float]] = field(default_factory=dict)

    def frame_counts(self) -> dict[str, int]:
        return {name: int(len(a)) for name, a in self.streams.items()}

    def raw_size_bytes(self) -> int:
        """Bytes of the streams as packed records (the 'raw' size compression is measured on)."""
        return int(sum(a.nbytes for a in self.streams.values()))
