"""Columnar channel codecs: numpy arrays <-> the byte planes stored in a clip's channels.

Owns every per-column transform of the clip format (see docs/clip-format.md and the Codec
enum in proto/shadowd/clip/v1/clip.proto; keep the three in sync):
  - timestamps: t_ns floored to microseconds, delta (or delta of delta), zigzag;
  - integers and bools: wrapping delta along time, zigzag;
  - floats with a precision: round(x / precision), then as integers;
  - floats without one: XOR of the IEEE bits with the previous value (Gorilla-style);
  - raw CAN frames: split into (bus, flags, id) sub-channels; timestamps in frame order with
    each frame's sub-channel index, dlc and payload XOR against the previous frame of the
    same id.
Every integer result is "byte-transposed": little-endian values of the narrowest width that
holds the column, all byte 0s first, then all byte 1s, ... so zstd sees long runs of zeros.

Rules: vectorized numpy only, no per-frame Python loops (the bench holds encode to >= 50 MB/s).
Decoders validate every length they are given and raise ClipError, never IndexError.
"""

from __future__ import annotations

import numpy as np

from shadowd.errors import ClipError

_U8 = np.uint64


# ---------------------------------------------------------------- integer primitives


def zigzag(x: np.ndarray) -> np.ndarray:
    """int64 -> uint64 with small magnitudes small: 0,-1,1,-2 -> 0,1,2,3."""
    x = x.astype(np.int64, copy=False)
    return ((x << np.int64(1)) ^ (x >> np.int64(63))).view(_U8)


def unzigzag(z: np.ndarray) -> np.ndarray:
    z = z.astype(_U8, copy=False)
    return ((z >> _U8(1)) ^ (np.uint64(0) - (z & _U8(1)))).view(np.int64)


def width_for(z: np.ndarray) -> int:
    """Bytes needed for the largest uint64 in ``z`` (0 for an empty or all-zero array)."""
    if z.size == 0:
        return 0
    m = int(z.max())
    return (m.bit_length() + 7) // 8


def transpose(z: np.ndarray, width: int) -> bytes:
    """uint64 values (1-D) -> ``width`` byte planes of len(z) bytes each."""
    if width == 0 or z.size == 0:
        return b""
    b = np.ascontiguousarray(z, dtype="<u8").view(np.uint8).reshape(-1, 8)[:, :width]
    return np.ascontiguousarray(b.T).tobytes()


def untranspose(data: bytes, count: int, width: int, what: str) -> np.ndarray:
    """Inverse of ``transpose``; raises ClipError when the length does not add up."""
    if not 0 <= width <= 8:
        raise ClipError(f"{what}: value width {width} bytes is out of range 0..8; the clip is corrupt")
    if len(data) != count * width:
        raise ClipError(f"{what}: {len(data)} bytes stored, expected {count} values x {width} bytes; the clip is corrupt")
    out = np.zeros((count, 8), dtype=np.uint8)
    if width and count:
        out[:, :width] = np.frombuffer(data, dtype=np.uint8).reshape(width, count).T
    return out.view("<u8").reshape(count)


def pack_ints(z: np.ndarray) -> tuple[bytes, int]:
    """uint64 values -> (transposed bytes, width)."""
    w = width_for(z)
    return transpose(z, w), w


def _delta(x: np.ndarray, order: int) -> np.ndarray:
    """Wrapping delta of uint64 values along axis 0, applied ``order`` times."""
    for _ in range(order):
        d = x.copy()
        d[1:] -= x[:-1]
        x = d
    return x


def _undelta(d: np.ndarray, order: int) -> np.ndarray:
    for _ in range(order):
        d = np.cumsum(d, axis=0, dtype=_U8)
    return d


_BYTE_THRESHOLDS = np.array([1 << (8 * k) for k in range(8)], _U8)


def _size_estimate(z: np.ndarray) -> int:
    """Rough count of significant bytes: how zstd will see a transposed zigzag column (the
    sum over values of how many of 1, 2^8, ..., 2^56 each reaches; one search, not eight passes)."""
    return int(np.searchsorted(_BYTE_THRESHOLDS, z.reshape(-1), side="right").sum())


def _to_u64(col: np.ndarray) -> np.ndarray:
    """Any int/uint/bool column -> uint64 (two's complement for signed values)."""
    if col.dtype.kind == "b":
        col = col.view(np.uint8)
    if col.dtype.kind == "i":
        return col.astype(np.int64).view(_U8)
    return col.astype(_U8)


# ---------------------------------------------------------------- column codecs


def encode_ints(col: np.ndarray, *, order: int | None = None) -> tuple[bytes, int, int]:
    """Integer column of shape (n,) or (n, k) -> (bytes, width, delta_order).

    Sub-array columns are stored column after column. With ``order=None`` the delta order
    (1 or 2) that leaves fewer significant bytes is chosen.
    """
    u = _to_u64(col)
    if order is None:
        z1 = zigzag(_delta(u, 1).view(np.int64))
        z2 = zigzag(_delta(u, 2).view(np.int64))
        order, z = (1, z1) if _size_estimate(z1) <= _size_estimate(z2) else (2, z2)
    else:
        z = zigzag(_delta(u, order).view(np.int64))
    z = np.ascontiguousarray(z.reshape(len(u), max(1, z[:1].size)).T).reshape(-1)
    data, width = pack_ints(z)
    return data, width, order


def decode_ints(data: bytes, n: int, shape: tuple[int, ...], width: int, order: int, dtype: np.dtype, what: str) -> np.ndarray:
    if order not in (1, 2):
        raise ClipError(f"{what}: delta order {order} is not 1 or 2; the clip is corrupt")
    k = int(np.prod(shape)) if shape else 1
    z = untranspose(data, n * k, width, what)
    d = unzigzag(z).view(_U8).reshape(k, n).T
    u = _undelta(d, order)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        vals = (u != 0).astype(np.uint8).view(np.bool_)
    elif dtype.kind == "i":
        vals = u.view(np.int64).astype(dtype)
    else:
        vals = u.astype(dtype)
    return vals.reshape((n,) + tuple(shape))


def encode_time_us(t_ns: np.ndarray) -> tuple[bytes, int, int]:
    """t_ns (int64) -> microseconds (floor) -> best of delta / delta of delta."""
    t_us = np.floor_divide(t_ns.astype(np.int64, copy=False), 1000)
    return encode_ints(t_us)


def decode_time_us(data: bytes, n: int, width: int, order: int) -> np.ndarray:
    return decode_ints(data, n, (), width, order, np.dtype(np.int64), "t_ns") * np.int64(1000)


def quantize(col: np.ndarray, precision: float) -> np.ndarray | None:
    """Float column -> int64 quanta, or None when it cannot be quantized (NaN, inf, overflow)."""
    if not (precision > 0 and np.isfinite(precision)):
        return None
    q = np.rint(col.astype(np.float64) / precision)
    if q.size and not (np.isfinite(q).all() and np.abs(q).max() < 2.0**62):
        return None
    return q.astype(np.int64)


def dequantize(q: np.ndarray, precision: float, dtype: np.dtype) -> np.ndarray:
    return (q.astype(np.float64) * precision).astype(dtype)


def encode_float_xor(col: np.ndarray) -> tuple[bytes, int]:
    """Float column (n,) or (n, k) -> XOR of bits with the previous value, all bytes kept."""
    size = col.dtype.itemsize
    bits = np.ascontiguousarray(col.astype(col.dtype.newbyteorder("<"))).view(f"<u{size}").astype(_U8)
    x = bits.copy()
    x[1:] ^= bits[:-1]
    z = np.ascontiguousarray(x.reshape(len(col), max(1, x[:1].size)).T).reshape(-1)
    return transpose(z, size), size


def decode_float_xor(data: bytes, n: int, shape: tuple[int, ...], width: int, dtype: np.dtype, what: str) -> np.ndarray:
    dtype = np.dtype(dtype)
    if width != dtype.itemsize:
        raise ClipError(f"{what}: XOR float width {width} does not match dtype {dtype.str}; the clip is corrupt")
    k = int(np.prod(shape)) if shape else 1
    x = untranspose(data, n * k, width, what).reshape(k, n).T
    bits = np.bitwise_xor.accumulate(x, axis=0) if n else x
    vals = bits.astype(f"<u{width}").view(dtype.newbyteorder("<")).astype(dtype)
    return vals.reshape((n,) + tuple(shape))


# ---------------------------------------------------------------- raw CAN frames


def encode_can(a: np.ndarray) -> dict:
    """CAN_RAW_DTYPE frames -> the fields of the CanFrames message (see clip.proto)."""
    n = len(a)
    key = (a["bus"].astype(_U8) << _U8(48)) | (a["flags"].astype(_U8) << _U8(32)) | a["can_id"].astype(_U8)
    gkey, gi = np.unique(key, return_inverse=True)
    gi = gi.reshape(-1).astype(_U8)
    order = np.argsort(gi, kind="stable")

    dlc = np.minimum(a["dlc"], a["data"].shape[1]).astype(np.uint8)
    width = int(dlc.max()) if n else 0
    payload = a["data"][:, :width].copy()
    payload[np.arange(width)[None, :] >= dlc[:, None]] = 0
    payload = payload[order]
    dlc = dlc[order]
    payload[1:] ^= payload[:-1].copy()
    dlc[1:] ^= dlc[:-1].copy()

    t_bytes, t_w, t_order = encode_time_us(a["t_ns"])
    gi_bytes, gi_w = pack_ints(gi)
    id_bytes, _, _ = encode_ints((gkey & _U8(0xFFFFFFFF)).astype(np.uint32), order=1)
    return {
        "group_bus": (gkey >> _U8(48)).astype(np.uint8).tobytes(),
        "group_flags": transpose((gkey >> _U8(32)) & _U8(0xFFFF), 2),
        "group_id": id_bytes,
        "group_index": gi_bytes,
        "group_index_width": gi_w,
        "t": t_bytes,
        "t_width": t_w,
        "t_delta_order": t_order,
        "dlc": dlc.tobytes(),
        "payload_width": width,
        "payload": np.ascontiguousarray(payload.T).tobytes(),
    }


def decode_can(m, n: int, dtype: np.dtype) -> np.ndarray:
    """The CanFrames message (protobuf or any object with its fields) -> frames of ``dtype``."""
    what = "can_raw"
    g = len(m.group_bus)
    bus = np.frombuffer(m.group_bus, dtype=np.uint8)
    flags = untranspose(m.group_flags, g, 2, f"{what}.group_flags")
    if (g == 0 and m.group_id) or (g and len(m.group_id) % g):
        raise ClipError(f"{what}.group_id: {len(m.group_id)} bytes for {g} groups; the clip is corrupt")
    id_w = len(m.group_id) // g if g else 0
    can_id = decode_ints(m.group_id, g, (), id_w, 1, np.dtype(np.uint64), f"{what}.group_id")
    gi = untranspose(m.group_index, n, m.group_index_width, f"{what}.group_index")
    if n and int(gi.max()) >= g:
        raise ClipError(f"{what}.group_index: index {int(gi.max())} but only {g} groups; the clip is corrupt")
    gi = gi.astype(np.int64)
    t_ns = decode_time_us(m.t, n, m.t_width, m.t_delta_order)
    if len(m.dlc) != n:
        raise ClipError(f"{what}.dlc: {len(m.dlc)} bytes for {n} frames; the clip is corrupt")
    width = m.payload_width
    if width > dtype["data"].shape[0] or len(m.payload) != width * n:
        raise ClipError(f"{what}.payload: {len(m.payload)} bytes, width {width}, for {n} frames; the clip is corrupt")
    out = np.zeros(n, dtype=dtype)
    if not n:
        return out
    order = np.argsort(gi, kind="stable")
    dlc = np.bitwise_xor.accumulate(np.frombuffer(m.dlc, dtype=np.uint8))
    if int(dlc.max()) > width:
        raise ClipError(f"{what}.dlc: a frame has dlc {int(dlc.max())} beyond the {width} payload bytes stored; the clip is corrupt")
    payload = np.bitwise_xor.accumulate(np.frombuffer(m.payload, dtype=np.uint8).reshape(width, n).T, axis=0)
    out["t_ns"] = t_ns
    out["bus"] = bus[gi]
    out["flags"] = flags[gi]
    out["can_id"] = can_id[gi]
    out["dlc"][order] = dlc
    out["data"][order, :width] = payload
    return out


def is_can_dtype(dtype: np.dtype) -> bool:
    from shadowd.core.signals import CAN_RAW_DTYPE

    return dtype.names == CAN_RAW_DTYPE.names and all(
        dtype[name] == CAN_RAW_DTYPE[name] for name in CAN_RAW_DTYPE.names
    )
