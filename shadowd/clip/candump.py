"""Read a ``candump -L`` log into raw CAN frames (CAN_RAW_DTYPE) for clips, tests and benches.

Rules: reads one file it is given; no decoding with a DBC (that is the PIPELINE's
edges/can_ingest.py). Timestamps in the log are seconds with microsecond digits; t_ns is
exact to the microsecond. The bus number is the digits of the interface name (can0 -> 0,
can128 -> 128). Malformed lines raise DecodeError naming the line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shadowd.core.signals import CAN_DATA_BYTES, CAN_RAW_DTYPE
from shadowd.errors import DecodeError


def load_candump(path: str | Path) -> np.ndarray:
    """Frames of a ``candump -L`` log as a CAN_RAW_DTYPE array in file order."""
    lines = Path(path).read_text().splitlines()
    out = np.zeros(len(lines), dtype=CAN_RAW_DTYPE)
    payload = bytearray(len(lines) * CAN_DATA_BYTES)
    n = 0
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            ts, iface, frame = line.split()
            can_id, _, data = frame.partition("#")
            sec, _, frac = ts.strip("()").partition(".")
            t_ns = int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])
            raw = bytes.fromhex(data)
            bus = int("".join(ch for ch in iface if ch.isdigit()) or 0)
            if len(raw) > CAN_DATA_BYTES or bus > 255:
                raise ValueError("payload or bus number out of range")
        except ValueError as err:
            raise DecodeError(f"{path}:{lineno}: not a candump -L line ({err}): {line[:60]!r}") from err
        rec = out[n]
        rec["t_ns"], rec["bus"], rec["dlc"], rec["can_id"] = t_ns, bus, len(raw), int(can_id, 16)
        rec["flags"] = 1 if len(can_id) > 3 else 0
        payload[n * CAN_DATA_BYTES : n * CAN_DATA_BYTES + len(raw)] = raw
        n += 1
    out = out[:n]
    out["data"] = np.frombuffer(bytes(payload[: n * CAN_DATA_BYTES]), dtype=np.uint8).reshape(n, CAN_DATA_BYTES)
    return out
