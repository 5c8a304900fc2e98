"""CSV dump of clip streams for a quick look (``shadowd clip dump``).

One CSV per stream: a header row of field names (sub-array fields as ``field[i]``), one row per
frame. Raw CAN ``data`` is written as hex of the dlc bytes. Floats are written with repr
precision of their own width (round-trippable). Rules: writes only the text stream it is given.
"""

from __future__ import annotations

import csv
from typing import TextIO

import numpy as np

from shadowd.core.signals import RAW_TOPIC


def _text(col: np.ndarray) -> list:
    if col.dtype.kind == "b":
        return col.astype(np.uint8).tolist()
    if col.dtype.kind == "f":
        return col.astype(str).tolist()  # shortest repr that round-trips at the column's width
    return col.tolist()


def write_csv(stream: str, a: np.ndarray, out: TextIO) -> int:
    """Write one stream as CSV to ``out``; returns the number of rows."""
    header: list[str] = []
    cols: list[list] = []
    for field in a.dtype.names:
        fdt = a.dtype[field]
        if stream == RAW_TOPIC and field == "data":
            header.append("data_hex")
            cols.append([bytes(row[:d]).hex() for row, d in zip(a["data"], a["dlc"].tolist())])
        elif fdt.subdtype:
            flat = a[field].reshape(len(a), -1)
            for i in range(flat.shape[1]):
                header.append(f"{field}[{i}]")
                cols.append(_text(flat[:, i]))
        else:
            header.append(field)
            cols.append(_text(a[field]))
    w = csv.writer(out, lineterminator="\n")
    w.writerow(header)
    w.writerows(zip(*cols))
    return len(a)
