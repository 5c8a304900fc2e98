"""Clip files: encode a Clip to bytes and decode (any supported format version) back.

Container (all integers little-endian; see docs/clip-format.md):

    offset 0   4 bytes  magic b"SHDC"
           4   u16      format version (this build writes FORMAT_VERSION, reads 1..FORMAT_VERSION)
           6   u16      flags (bit 0: body is zstd-compressed; other bits must be 0)
           8   u32      zstd dictionary id (0 = none)
          12   u32      body length in bytes (compressed)
          16   u32      body length uncompressed (bounds decompression)
          20   ...      body: zstd(protobuf shadowd.clip.v1.Clip)
    20 + len   32 bytes sha256 over header + body (the content checksum)

Rules: every failure to read a file is a ClipError naming what is wrong (bad magic,
unsupported version, truncated at byte N, checksum mismatch, unknown dictionary, corrupt
channel). Nothing in a corrupt file can crash the decoder or come back as silent garbage:
the checksum is checked before anything is parsed, and every length is validated after.
Keep in sync with proto/shadowd/clip/v1/clip.proto and shadowd/clip/columnar.py.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

from shadowd.clip import clip_pb2 as pb
from shadowd.clip import columnar as col
from shadowd.clip.model import Clip, Provenance, TriggerDef
from shadowd.core.signals import SIGNALS
from shadowd.core.types import TriggerFired
from shadowd.errors import ClipError

MAGIC = b"SHDC"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHIII")
HEADER_SIZE = _HEADER.size  # 20
CHECKSUM_SIZE = 32
FLAG_ZSTD = 1
ZSTD_LEVEL = 9
ZSTD_TUNING = {"strategy": 4, "search_log": 4, "min_match": 4, "chain_log": 16, "hash_log": 17}
"""zstd parameters over level 9's (for the body's size) that clip bodies are written with.
Byte-transposed columns are runs of short matches: lazy matching with 4-byte minimum matches
and 128K/64K-entry tables is ~0.6 % smaller on 20 s clips of the real RAV4 drive (+0.7 % on a
60 s one) in ~60 % of level 9's time, and needs ~0.8 MB of match tables instead of ~12 MB
(measured 2026-12-07; docs/clip-format.md). The decoder needs nothing of it: any zstd frame."""
MAX_BODY_BYTES = 1 << 31  # refuse to inflate anything claiming more than 2 GiB
MAX_DECODED_STREAM_BYTES = 1 << 32  # and to allocate a stream larger than 4 GiB

Dictionaries = Mapping[int, zstandard.ZstdCompressionDict] | Iterable[zstandard.ZstdCompressionDict] | None


@dataclass(frozen=True, slots=True)
class ClipHeader:
    """The fixed header of a clip file, plus its content checksum (hex sha256)."""

    format_version: int
    flags: int
    dictionary_id: int
    body_size_bytes: int
    raw_body_size_bytes: int
    checksum: str
    size_bytes: int


# ---------------------------------------------------------------- dictionaries


def load_dictionary(path: str | Path) -> zstandard.ZstdCompressionDict:
    """Read a zstd dictionary written by ``shadowd clip train-dict``."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ClipError(f"cannot read zstd dictionary {str(path)!r}: {err.strerror}; check the path") from err
    d = zstandard.ZstdCompressionDict(data)
    if d.dict_id() == 0:
        raise ClipError(f"{str(path)!r} is not a trained zstd dictionary (no dictionary id); train one with `shadowd clip train-dict`")
    return d


def _dict_map(dictionaries: Dictionaries) -> dict[int, zstandard.ZstdCompressionDict]:
    if dictionaries is None:
        return {}
    if isinstance(dictionaries, Mapping):
        return dict(dictionaries)
    return {d.dict_id(): d for d in dictionaries}


# ---------------------------------------------------------------- encode


def _precision_for(stream: str, field: str, dtype: np.dtype, precisions: Mapping[str, Mapping[str, float]]) -> float:
    """Writer's choice first, then the canonical signal's precision, else lossless (0)."""
    if dtype.kind != "f":
        return 0.0
    given = precisions.get(stream, {})
    if field in given:
        p = float(given[field])
        if not (p >= 0 and math.isfinite(p)):
            raise ClipError(f"stream {stream!r} field {field!r}: precision {given[field]!r} must be a finite number >= 0 (0 = lossless)")
        return p
    if field in SIGNALS:
        return float(SIGNALS[field][1].precision)
    return 0.0


def _layout_json(dtype: np.dtype) -> str:
    return json.dumps(
        {
            "names": list(dtype.names),
            "offsets": [dtype.fields[n][1] for n in dtype.names],
            "itemsize": dtype.itemsize,
        },
        separators=(",", ":"),
    )


def _encode_stream(name: str, a: np.ndarray, precisions: Mapping[str, Mapping[str, float]]) -> pb.Stream:
    if not isinstance(a, np.ndarray) or a.dtype.names is None or a.ndim != 1:
        raise ClipError(f"stream {name!r} must be a 1-D numpy structured array, got {type(a).__name__} {getattr(a, 'dtype', '')}")
    if a.dtype.names[0] != "t_ns" or a.dtype["t_ns"].kind != "i":
        raise ClipError(f"stream {name!r}: first field must be an integer t_ns, got fields {a.dtype.names[:3]}; put t_ns (int64) first")
    s = pb.Stream(name=name, frame_count=len(a), dtype_descr=_layout_json(a.dtype))
    if col.is_can_dtype(a.dtype):
        s.can.CopyFrom(pb.CanFrames(**col.encode_can(a)))
        return s
    for field in a.dtype.names:
        fdt = a.dtype[field]
        base, shape = (fdt.subdtype if fdt.subdtype else (fdt, ()))
        if base.kind not in "iubf":
            raise ClipError(f"stream {name!r} field {field!r}: dtype {base} is not int/uint/float/bool; clips store only those")
        ch = pb.Channel(field=field, dtype=base.str, shape=list(shape))
        values = a[field]
        if field == "t_ns":
            ch.codec = pb.CODEC_TIME_US
            ch.data, ch.width, ch.delta_order = col.encode_time_us(values)
        elif base.kind == "f":
            p = _precision_for(name, field, base, precisions)
            q = col.quantize(values, p) if p > 0 else None
            if q is not None:
                ch.codec, ch.precision = pb.CODEC_FLOAT_QUANT, p
                ch.data, ch.width, ch.delta_order = col.encode_ints(q)
            else:  # lossless, or a column with NaN/inf that cannot be quantized
                ch.codec = pb.CODEC_FLOAT_XOR
                ch.data, ch.width = col.encode_float_xor(values)
                ch.delta_order = 1
        else:
            ch.codec = pb.CODEC_INT_DELTA
            ch.data, ch.width, ch.delta_order = col.encode_ints(values)
        s.channels.append(ch)
    return s


def clip_to_proto(clip: Clip, precisions: Mapping[str, Mapping[str, float]] | None = None) -> pb.Clip:
    """The protobuf body of a clip (before compression)."""
    prec = {k: dict(v) for k, v in clip.precisions.items()}
    for k, v in (precisions or {}).items():
        prec.setdefault(k, {}).update(v)
    p = clip.provenance
    m = pb.Clip(
        format_version=FORMAT_VERSION,
        t0_ns=int(clip.t0_ns),
        t1_ns=int(clip.t1_ns),
        truncated=bool(clip.truncated),
        priority=int(clip.priority),
        provenance=pb.Provenance(
            vehicle_id=p.vehicle_id,
            platform=p.platform,
            model_sha256=p.model_sha256,
            config_version=int(p.config_version),
            software_version=p.software_version,
            schema_version=int(p.schema_version),
            triggers=[pb.TriggerDef(name=t.name, expr=t.expr, params=dict(t.params)) for t in p.triggers],
            extra=dict(p.extra),
        ),
    )
    for c in clip.causes:
        m.causes.append(
            pb.Cause(
                t_ns=int(c.t_ns), trigger=c.trigger, priority=int(c.priority), score=float(c.score),
                pre_s=float(c.pre_s), post_s=float(c.post_s), values={k: float(v) for k, v in c.causes.items()},
            )
        )
    for name, a in clip.streams.items():
        m.streams.append(_encode_stream(name, a, prec))
    return m


def encode_clip(
    clip: Clip,
    *,
    dictionary: zstandard.ZstdCompressionDict | None = None,
    precisions: Mapping[str, Mapping[str, float]] | None = None,
    level: int | None = None,
) -> bytes:
    """Encode a clip into the container format (see module docstring).

    Args:
        clip: the clip; stream t_ns are stored to the microsecond (floored).
        dictionary: optional trained zstd dictionary; its id goes into the header and the
            reader must be given the same dictionary.
        precisions: stream -> field -> quantum for non-canonical float fields (added to
            ``clip.precisions``); fields without one are stored bit-exact.
        level: zstd level of the body; None (the default): level 9 with ``ZSTD_TUNING``.
    Raises:
        ClipError for a stream the format cannot hold (not structured, no t_ns first, a
        field that is not int/uint/float/bool, a negative precision).
    """
    # deterministic: map fields (params, values, extra) in key order, so the same clip gives
    # the same bytes (and the same clip_id) in every process (replay relies on it).
    body = clip_to_proto(clip, precisions).SerializeToString(deterministic=True)
    if len(body) >= MAX_BODY_BYTES:
        raise ClipError(f"clip body is {len(body)} bytes, over the {MAX_BODY_BYTES}-byte limit; cut shorter clips")
    if level is None:
        params = zstandard.ZstdCompressionParameters.from_level(
            ZSTD_LEVEL, source_size=len(body), write_content_size=True, **ZSTD_TUNING)
        cctx = zstandard.ZstdCompressor(dict_data=dictionary, compression_params=params)
    else:
        cctx = zstandard.ZstdCompressor(level=level, dict_data=dictionary, write_content_size=True)
    z = cctx.compress(body)
    dict_id = dictionary.dict_id() if dictionary is not None else 0
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, FLAG_ZSTD, dict_id, len(z), len(body))
    return header + z + hashlib.sha256(header + z).digest()


# ---------------------------------------------------------------- decode


def read_header(data: bytes) -> ClipHeader:
    """Check magic, version, flags, lengths and checksum; no decompression. Raises ClipError."""
    data = memoryview(data)
    if len(data) < HEADER_SIZE:
        if bytes(data[: min(len(data), 4)]) != MAGIC[: min(len(data), 4)]:
            raise ClipError(f"not a shadowd clip: bad magic {bytes(data[:4])!r} (expected {MAGIC!r})")
        raise ClipError(f"clip truncated at byte {len(data)}: the header alone needs {HEADER_SIZE} bytes")
    magic, version, flags, dict_id, body_len, raw_len = _HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ClipError(f"not a shadowd clip: bad magic {magic!r} (expected {MAGIC!r})")
    if not 1 <= version <= FORMAT_VERSION:
        raise ClipError(
            f"unsupported clip format version {version} (this build reads 1..{FORMAT_VERSION}); upgrade shadowd to read it"
        )
    if flags & ~FLAG_ZSTD:
        raise ClipError(f"clip header has unknown flags 0x{flags:04x}; it was written by a newer shadowd or is corrupt")
    expected = HEADER_SIZE + body_len + CHECKSUM_SIZE
    if len(data) < expected:
        raise ClipError(f"clip truncated at byte {len(data)}: the header announces {expected} bytes")
    if len(data) > expected:
        raise ClipError(f"clip has {len(data) - expected} trailing bytes after its checksum (size {len(data)}, expected {expected}); the file is corrupt")
    digest = hashlib.sha256(data[: HEADER_SIZE + body_len]).digest()
    if digest != bytes(data[HEADER_SIZE + body_len :]):
        raise ClipError(
            f"clip checksum mismatch: content sha256 {digest.hex()[:16]}... does not match the stored "
            f"{bytes(data[HEADER_SIZE + body_len:]).hex()[:16]}...; the file is corrupt"
        )
    if raw_len > MAX_BODY_BYTES:
        raise ClipError(f"clip body claims {raw_len} bytes uncompressed, over the {MAX_BODY_BYTES}-byte limit; the file is corrupt")
    return ClipHeader(version, flags, dict_id, body_len, raw_len, digest.hex(), len(data))


def _decompress_body(data: bytes, h: ClipHeader, dictionaries: Dictionaries) -> bytes:
    body = bytes(memoryview(data)[HEADER_SIZE : HEADER_SIZE + h.body_size_bytes])
    if not h.flags & FLAG_ZSTD:
        return body
    d = None
    if h.dictionary_id:
        d = _dict_map(dictionaries).get(h.dictionary_id)
        if d is None:
            raise ClipError(
                f"clip needs zstd dictionary id {h.dictionary_id}, which was not given; "
                f"pass the dictionary it was written with (--dict FILE)"
            )
    try:
        raw = zstandard.ZstdDecompressor(dict_data=d).decompress(body, max_output_size=h.raw_body_size_bytes)
    except zstandard.ZstdError as err:
        raise ClipError(f"clip body does not decompress ({err}); the file is corrupt or the dictionary is wrong") from err
    if len(raw) != h.raw_body_size_bytes:
        raise ClipError(f"clip body inflates to {len(raw)} bytes, the header says {h.raw_body_size_bytes}; the file is corrupt")
    return raw


def _stream_dtype(s: pb.Stream) -> np.dtype:
    try:
        layout = json.loads(s.dtype_descr)
        names = layout["names"]
        if s.HasField("can"):
            from shadowd.core.signals import CAN_RAW_DTYPE

            return CAN_RAW_DTYPE
        if len(names) != len(s.channels) or [c.field for c in s.channels] != names:
            raise ValueError("channel fields do not match the layout")
        formats = [np.dtype((np.dtype(c.dtype), tuple(c.shape))) if c.shape else np.dtype(c.dtype) for c in s.channels]
        return np.dtype({"names": names, "formats": formats, "offsets": layout["offsets"], "itemsize": layout["itemsize"]})
    except (ValueError, TypeError, KeyError) as err:
        raise ClipError(f"stream {s.name!r}: record layout is invalid ({err}); the clip is corrupt") from err


def _decode_stream_v1(s: pb.Stream) -> np.ndarray:
    n = int(s.frame_count)
    dtype = _stream_dtype(s)
    if n * dtype.itemsize > MAX_DECODED_STREAM_BYTES:
        raise ClipError(f"stream {s.name!r} claims {n} frames ({n * dtype.itemsize} bytes decoded), over the "
                        f"{MAX_DECODED_STREAM_BYTES}-byte limit; the clip is corrupt")
    if s.HasField("can"):
        return col.decode_can(s.can, n, dtype)
    out = np.zeros(n, dtype=dtype)
    for ch in s.channels:
        what = f"stream {s.name!r} field {ch.field!r}"
        base = np.dtype(ch.dtype)
        shape = tuple(ch.shape)
        if ch.codec == pb.CODEC_TIME_US:
            vals = col.decode_time_us(ch.data, n, ch.width, ch.delta_order)
        elif ch.codec == pb.CODEC_INT_DELTA:
            vals = col.decode_ints(ch.data, n, shape, ch.width, ch.delta_order, base, what)
        elif ch.codec == pb.CODEC_FLOAT_QUANT:
            if not (ch.precision > 0 and math.isfinite(ch.precision)):
                raise ClipError(f"{what}: precision {ch.precision} is invalid; the clip is corrupt")
            q = col.decode_ints(ch.data, n, shape, ch.width, ch.delta_order, np.dtype(np.int64), what)
            vals = col.dequantize(q, ch.precision, base)
        elif ch.codec == pb.CODEC_FLOAT_XOR:
            vals = col.decode_float_xor(ch.data, n, shape, ch.width, base, what)
        else:
            raise ClipError(f"{what}: unknown codec {ch.codec}; written by a newer shadowd? upgrade to read it")
        out[ch.field] = vals
    return out


def _proto_to_clip_v1(m: pb.Clip) -> Clip:
    p = m.provenance
    prov = Provenance(
        vehicle_id=p.vehicle_id,
        platform=p.platform,
        model_sha256=p.model_sha256,
        config_version=int(p.config_version),
        software_version=p.software_version,
        schema_version=int(p.schema_version),
        triggers=tuple(TriggerDef(t.name, t.expr, dict(t.params)) for t in p.triggers),
        extra=dict(p.extra),
    )
    causes = tuple(
        TriggerFired(
            t_ns=int(c.t_ns), trigger=c.trigger, priority=int(c.priority), score=float(c.score),
            pre_s=float(c.pre_s), post_s=float(c.post_s), causes=dict(c.values),
        )
        for c in m.causes
    )
    streams: dict[str, np.ndarray] = {}
    precisions: dict[str, dict[str, float]] = {}
    for s in m.streams:
        if s.name in streams:
            raise ClipError(f"stream {s.name!r} appears twice; the clip is corrupt")
        streams[s.name] = _decode_stream_v1(s)
        for ch in s.channels:
            if ch.codec == pb.CODEC_FLOAT_QUANT and ch.field not in SIGNALS:
                precisions.setdefault(s.name, {})[ch.field] = ch.precision
    return Clip(
        provenance=prov, t0_ns=int(m.t0_ns), t1_ns=int(m.t1_ns), causes=causes, streams=streams,
        priority=int(m.priority), truncated=bool(m.truncated), precisions=precisions,
    )


# One decoder per container format version; every version ever written stays here.
_DECODERS = {1: _proto_to_clip_v1}


def decode_proto(data: bytes, *, dictionaries: Dictionaries = None) -> tuple[ClipHeader, pb.Clip]:
    """Checked header and the parsed protobuf body (no stream decoding)."""
    h = read_header(data)
    raw = _decompress_body(data, h, dictionaries)
    m = pb.Clip()
    try:
        m.ParseFromString(raw)
    except Exception as err:  # protobuf raises DecodeError (not exported uniformly)
        raise ClipError(f"clip body is not a valid protobuf Clip message ({err}); the file is corrupt") from err
    if m.format_version != h.format_version:
        raise ClipError(f"clip body says format version {m.format_version}, its header {h.format_version}; the file is corrupt")
    return h, m


def decode_clip(data: bytes, *, dictionaries: Dictionaries = None) -> Clip:
    """Decode clip bytes of any supported format version into a Clip.

    Args:
        data: the whole file.
        dictionaries: zstd dictionaries (a list, or a dict by id) for clips written with one.
    Raises:
        ClipError: bad magic, unsupported version, truncated, checksum mismatch, unknown
        dictionary or a corrupt channel; the message names which.
    """
    h, m = decode_proto(data, dictionaries=dictionaries)
    try:
        return _DECODERS[h.format_version](m)
    except ClipError:
        raise
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError) as err:
        raise ClipError(f"clip content is inconsistent ({type(err).__name__}: {err}); the file is corrupt") from err


def verify_clip(data: bytes, *, dictionaries: Dictionaries = None) -> ClipHeader:
    """Full check: container, checksum, and that every stream decodes. Returns the header."""
    h = read_header(data)
    decode_clip(data, dictionaries=dictionaries)
    return h


def clip_differences(original: Clip, decoded: Clip) -> list[str]:
    """How ``decoded`` differs from ``original`` beyond what the format allows (empty = lossless).

    Allowed: stream t_ns floored to the microsecond; float fields within half a quantum of
    their channel precision (plus float rounding); nothing else. Used by tests and the bench.
    """
    diffs: list[str] = []
    meta = ("provenance", "t0_ns", "t1_ns", "causes", "priority", "truncated")
    diffs += [f"clip {m} differs" for m in meta if getattr(original, m) != getattr(decoded, m)]
    if list(original.streams) != list(decoded.streams):
        return diffs + [f"streams {list(original.streams)} != {list(decoded.streams)}"]
    for name, a in original.streams.items():
        b = decoded.streams[name]
        if a.dtype != b.dtype or len(a) != len(b):
            diffs.append(f"stream {name!r}: dtype/length {a.dtype}/{len(a)} != {b.dtype}/{len(b)}")
            continue
        for f in a.dtype.names:
            x, y = a[f], b[f]
            if f == "t_ns":
                x = x // 1000 * 1000
            if x.dtype.kind != "f":
                if not np.array_equal(x, y):
                    diffs.append(f"stream {name!r} field {f!r}: values differ")
                continue
            base = x.dtype.subdtype[0] if x.dtype.subdtype else x.dtype
            p = _precision_for(name, f, base, original.precisions)
            if p > 0 and np.isfinite(x).all():
                x64 = x.astype(np.float64)
                tol = p / 2 * (1 + 1e-6) + np.abs(x64) * np.finfo(base).eps
                if (np.abs(x64 - y) > tol).any():
                    diffs.append(f"stream {name!r} field {f!r}: error {np.abs(x64 - y).max():g} > half of precision {p:g}")
            elif x.tobytes() != y.tobytes():
                diffs.append(f"stream {name!r} field {f!r}: not bit-exact")
    return diffs
