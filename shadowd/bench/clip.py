"""Clip size and speed on the real RAV4 minute: shadowd clips vs MCAP+zstd vs row zstd vs raw.

One run, same windows for every format: the whole minute and 20 s windows, for (1) the raw
CAN frames alone (the figure the design brief quotes: raw 2.98 MB, row zstd-3 1.19 MB, MCAP
4.1 MB) and (2) every stream of a clip (decoded vehicle/perception topics, IMU, raw CAN).

  (a) shadowd clip        encode_clip / decode_clip (checked: decode == input at the declared
                          precision, timestamps to the microsecond)
  (b) MCAP + zstd chunks  one protobuf message per frame (shadowd.clip.mcap_export), read back
                          with the mcap protobuf decoder
  (c) row zstd-3          the raw records, row after row, zstd level 3
  (d) raw                 packed records: for CAN t_ns(8) id(4) bus(1) dlc(1) data(max dlc);
                          for topics the ring frame bytes

Also: 2 s clips with and without a zstd dictionary trained on other clips of the minute.
Throughput is MB (1e6 bytes) of raw input (d) per second, best of ``--repeat`` runs.
Data: shadowd/data/rav4 (decoded with the PIPELINE's edges/can_ingest when available).
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import zstandard

import shadowd
from shadowd.clip import Clip, Provenance, decode_clip, encode_clip
from shadowd.clip.codec import clip_differences
from shadowd.core.signals import RAW_TOPIC, frame_dtype

DATA = Path(shadowd.__file__).parent / "data" / "rav4"
TARGET_VS_MCAP = 5.0
TARGET_VS_ROW_ZSTD = 2.5
TARGET_ENCODE_MBPS = 50.0


def add_arguments(parser) -> None:
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per format (best is reported)")
    parser.add_argument("--window-s", type=float, default=20.0, help="length of the short windows")
    parser.add_argument("--no-mcap", action="store_true", help="skip the (slow, per-frame) MCAP peer")


def _load_streams() -> tuple[dict[str, np.ndarray], str]:
    log = DATA / "c2k19_rav4_seg40.candump.log"
    try:
        from shadowd.edges.can_ingest import decode_can_log
        from shadowd.edges.platforms import load_platform

        streams, _ = decode_can_log(log, load_platform("nt2"))
        source = "edges.can_ingest (platform nt2)"
    except ImportError:
        from shadowd.clip.candump import load_candump

        streams, source = {RAW_TOPIC: load_candump(log)}, "clip.candump (raw only)"
    try:
        from shadowd.edges.imu_ingest import load_phone_imu

        imu = load_phone_imu(DATA / "imu")
    except ImportError:
        imu = np.zeros(0, frame_dtype("imu"))
    streams["imu"] = imu
    return {k: v for k, v in streams.items() if len(v)}, source


def _raw_records(name: str, a: np.ndarray) -> bytes:
    if name != RAW_TOPIC:
        return a.tobytes()
    w = int(a["dlc"].max()) if len(a) else 0
    rec = np.zeros(len(a), [("t_ns", "<i8"), ("can_id", "<u4"), ("bus", "u1"), ("dlc", "u1"), ("data", "u1", (w,))])
    for f in ("t_ns", "can_id", "bus", "dlc"):
        rec[f] = a[f]
    rec["data"] = a["data"][:, :w]
    return rec.tobytes()


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _mcap_bytes(clip: Clip) -> bytes:
    from shadowd.clip.mcap_export import write_mcap

    buf = io.BytesIO()
    write_mcap(clip, buf)
    return buf.getvalue()


def _mcap_read(data: bytes) -> int:
    from mcap.reader import make_reader
    from mcap_protobuf.decoder import DecoderFactory

    reader = make_reader(io.BytesIO(data), decoder_factories=[DecoderFactory()])
    return sum(1 for _ in reader.iter_decoded_messages())


def _measure(clips: list[Clip], repeat: int, with_mcap: bool) -> dict:
    raw = [b"".join(_raw_records(k, a) for k, a in c.streams.items()) for c in clips]
    raw_bytes = sum(len(r) for r in raw)
    frames = sum(len(a) for c in clips for a in c.streams.values())
    mb = raw_bytes / 1e6

    enc_s, encoded = _best(lambda: [encode_clip(c) for c in clips], repeat)
    dec_s, decoded = _best(lambda: [decode_clip(e) for e in encoded], repeat)
    diffs = [d for c, back in zip(clips, decoded) for d in clip_differences(c, back)]
    clip_bytes = sum(len(e) for e in encoded)

    cctx = zstandard.ZstdCompressor(level=3)
    row_enc_s, rows = _best(lambda: [cctx.compress(r) for r in raw], repeat)
    dctx = zstandard.ZstdDecompressor()
    row_dec_s, _ = _best(lambda: [dctx.decompress(r) for r in rows], repeat)
    row_bytes = sum(len(r) for r in rows)

    out = {
        "clips": len(clips),
        "frames": frames,
        "d_raw_bytes": raw_bytes,
        "a_shadowd_clip": {
            "bytes": clip_bytes,
            "encode_MBps": round(mb / enc_s, 1),
            "decode_MBps": round(mb / dec_s, 1),
            "lossless_at_declared_precision": not diffs,
            "differences": diffs[:5],
            "timestamps": "microsecond (t_ns floored to us)",
        },
        "c_row_zstd3": {"bytes": row_bytes, "encode_MBps": round(mb / row_enc_s, 1), "decode_MBps": round(mb / row_dec_s, 1)},
        "ratio_raw_over_clip": round(raw_bytes / clip_bytes, 2),
        "ratio_row_zstd3_over_clip": round(row_bytes / clip_bytes, 2),
    }
    if with_mcap:
        m_enc_s, mcaps = _best(lambda: [_mcap_bytes(c) for c in clips], 1)
        m_dec_s, _ = _best(lambda: [_mcap_read(m) for m in mcaps], 1)
        mcap_bytes = sum(len(m) for m in mcaps)
        out["b_mcap_protobuf_zstd"] = {"bytes": mcap_bytes, "encode_MBps": round(mb / m_enc_s, 2),
                                       "decode_MBps": round(mb / m_dec_s, 2)}
        out["ratio_mcap_over_clip"] = round(mcap_bytes / clip_bytes, 2)
    return out


def _windows(streams: dict[str, np.ndarray], window_s: float | None, prov: Provenance) -> list[Clip]:
    t0 = min(int(a["t_ns"][0]) for a in streams.values())
    t1 = max(int(a["t_ns"][-1]) for a in streams.values())
    step = int(window_s * 1e9) if window_s else t1 - t0 + 1
    clips = []
    for w0 in range(t0, t1 + 1, step):
        w1 = min(w0 + step - 1, t1)
        cut = {k: a[(a["t_ns"] >= w0) & (a["t_ns"] <= w1)] for k, a in streams.items()}
        if any(len(a) for a in cut.values()):
            clips.append(Clip(prov, w0, w1, streams={k: a for k, a in cut.items() if len(a)}))
    return clips


def _dictionary_gain(clips: list[Clip]) -> dict:
    """Short clips with and without a dictionary trained on the other (even-indexed) clips."""
    from shadowd.clip.dictionary import train_dictionary

    train, test = clips[0::2], clips[1::2]
    d = train_dictionary([encode_clip(c) for c in train], size_bytes=32_768)
    plain = sum(len(encode_clip(c)) for c in test)
    with_dict = sum(len(encode_clip(c, dictionary=d)) for c in test)
    return {"clips": len(test), "trained_on": len(train), "dictionary_bytes": len(d.as_bytes()),
            "bytes_without": plain, "bytes_with": with_dict, "saving": round(1 - with_dict / plain, 3)}


def run(args) -> dict:
    repeat = max(1, int(getattr(args, "repeat", 3)))
    window_s = float(getattr(args, "window_s", 20.0))
    with_mcap = not getattr(args, "no_mcap", False)
    streams, source = _load_streams()
    prov = Provenance("rav4-c2k19-seg40", "nt2")
    result: dict = {
        "bench": "clip",
        "data": "comma2k19 RAV4 seg40, 60 s real CAN + phone IMU",
        "decoder": source,
        "streams": {k: len(a) for k, a in streams.items()},
    }
    scopes = {"can_raw": {RAW_TOPIC: streams[RAW_TOPIC]}, "all_streams": streams}
    for scope, ss in scopes.items():
        for label, w in (("minute", None), (f"windows_{window_s:g}s", window_s)):
            result[f"{scope}.{label}"] = _measure(_windows(ss, w, prov), repeat, with_mcap)
    result["dictionary.windows_2s"] = _dictionary_gain(_windows(streams, 2.0, prov))
    m = result["can_raw.minute"]
    result["targets"] = {
        "clip_vs_mcap_ge_5x": (m.get("ratio_mcap_over_clip", float("nan")) >= TARGET_VS_MCAP) if with_mcap else None,
        "clip_vs_row_zstd3_ge_2.5x": m["ratio_row_zstd3_over_clip"] >= TARGET_VS_ROW_ZSTD,
        "encode_ge_50_MBps": m["a_shadowd_clip"]["encode_MBps"] >= TARGET_ENCODE_MBPS,
        "lossless": all(v["a_shadowd_clip"]["lossless_at_declared_precision"]
                        for k, v in result.items() if isinstance(v, dict) and "a_shadowd_clip" in v),
    }
    return result
