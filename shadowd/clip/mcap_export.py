"""Export a Clip to MCAP with protobuf schemas, so Foxglove opens it.

One channel per stream (topic ``/<stream>``), one protobuf message per frame; the message
type is generated from the stream's structured dtype (``shadowd.clip.export.<Stream>``:
``t_ns`` int64 then one field per dtype field; sub-arrays become repeated fields; raw CAN
``data`` becomes ``bytes`` holding the dlc bytes). The causes go to ``/causes``; provenance
and the window go into an MCAP metadata record named ``shadowd.clip``. Message log_time and
publish_time are the frame's t_ns (monotonic, as recorded).

Rules: writes only the file (or stream) it is given; reads no clip files itself.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import IO

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message_factory import GetMessageClass

from shadowd.clip.model import Clip
from shadowd.core.signals import RAW_TOPIC

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {
    ("f", 2): _F.TYPE_FLOAT, ("f", 4): _F.TYPE_FLOAT, ("f", 8): _F.TYPE_DOUBLE,
    ("i", 1): _F.TYPE_SINT32, ("i", 2): _F.TYPE_SINT32, ("i", 4): _F.TYPE_SINT32, ("i", 8): _F.TYPE_SINT64,
    ("u", 1): _F.TYPE_UINT32, ("u", 2): _F.TYPE_UINT32, ("u", 4): _F.TYPE_UINT32, ("u", 8): _F.TYPE_UINT64,
    ("b", 1): _F.TYPE_BOOL,
}
PACKAGE = "shadowd.clip.export"


def _message_name(stream: str) -> str:
    return "".join(part.capitalize() for part in stream.replace("-", "_").split("_") if part) or "Stream"


def message_classes(streams: dict[str, np.dtype]) -> dict[str, type]:
    """Protobuf message classes for each stream dtype, plus ``causes`` (one private pool)."""
    fd = descriptor_pb2.FileDescriptorProto(name=f"{PACKAGE.replace('.', '/')}/clip_streams.proto",
                                            package=PACKAGE, syntax="proto3")
    names = {}
    for stream, dtype in streams.items():
        m = fd.message_type.add(name=_message_name(stream))
        names[stream] = m.name
        for i, field in enumerate(dtype.names, 1):
            fdt = dtype[field]
            base, shape = fdt.subdtype if fdt.subdtype else (fdt, ())
            if stream == RAW_TOPIC and field == "data":
                m.field.add(name=field, number=i, type=_F.TYPE_BYTES, label=_F.LABEL_OPTIONAL)
                continue
            m.field.add(name=field, number=i, type=_TYPES[(base.kind, base.itemsize)],
                        label=_F.LABEL_REPEATED if shape else _F.LABEL_OPTIONAL)
    c = fd.message_type.add(name="TriggerCause")
    for i, (name, typ) in enumerate([("t_ns", _F.TYPE_SINT64), ("trigger", _F.TYPE_STRING), ("priority", _F.TYPE_SINT32),
                                     ("score", _F.TYPE_DOUBLE), ("pre_s", _F.TYPE_DOUBLE), ("post_s", _F.TYPE_DOUBLE)], 1):
        c.field.add(name=name, number=i, type=typ, label=_F.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fd)
    out = {s: GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{n}")) for s, n in names.items()}
    out["causes"] = GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.TriggerCause"))
    return out


def _rows(stream: str, a: np.ndarray):
    """Per-frame dicts of python values (columns converted once, not per element)."""
    cols = {}
    for field in a.dtype.names:
        if stream == RAW_TOPIC and field == "data":
            dlc = a["dlc"].tolist()
            cols[field] = [bytes(row[:d]) for row, d in zip(a["data"], dlc)]
        else:
            cols[field] = a[field].tolist()
    names = list(cols)
    for values in zip(*cols.values()):
        yield dict(zip(names, values))


def write_mcap(clip: Clip, out: str | Path | IO[bytes], *, chunk_size: int = 1 << 20) -> int:
    """Write ``clip`` as MCAP (zstd chunks) to a path or binary stream; returns messages written."""
    from mcap_protobuf.writer import Writer

    classes = message_classes({k: a.dtype for k, a in clip.streams.items()})
    n = 0
    with Writer(str(out) if isinstance(out, Path) else out, chunk_size=chunk_size) as w:
        meta = {
            "provenance": json.dumps(dataclasses.asdict(clip.provenance), sort_keys=True),
            "t0_ns": str(clip.t0_ns), "t1_ns": str(clip.t1_ns),
            "priority": str(clip.priority), "truncated": str(clip.truncated).lower(),
        }
        w.add_metadata("shadowd.clip", meta)
        for c in clip.causes:
            msg = classes["causes"](t_ns=c.t_ns, trigger=c.trigger, priority=c.priority, score=c.score,
                                    pre_s=c.pre_s, post_s=c.post_s)
            w.write_message("/causes", msg, log_time=max(c.t_ns, 0), publish_time=max(c.t_ns, 0))
            n += 1
        for stream, a in clip.streams.items():
            cls = classes[stream]
            topic = f"/{stream}"
            for seq, row in enumerate(_rows(stream, a)):
                t = max(int(row["t_ns"]), 0)
                w.write_message(topic, cls(**row), log_time=t, publish_time=t, sequence=seq)
                n += 1
    return n
