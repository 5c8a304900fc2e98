"""Clips: the file format (proto/shadowd/clip/v1/clip.proto), its codec, builder and exports.

Public API (stable; REPLAY, the daemon and the uploader code against it):
    Clip, Provenance, TriggerDef          shadowd.clip.model
    encode_clip(clip, *, dictionary=None, precisions=None) -> bytes
    decode_clip(data, *, dictionaries=None) -> Clip
    verify_clip(data, *, dictionaries=None) -> ClipHeader      (checksum + structure, raises ClipError)
    clip_differences(original, decoded) -> list[str]           (empty when lossless at declared precision)
    build_clip(spec, history, *, extra_streams, provenance) -> Clip;  ArrayHistory
"""

from shadowd.clip.builder import ArrayHistory, build_clip
from shadowd.clip.codec import (
    FORMAT_VERSION,
    MAGIC,
    ClipHeader,
    clip_differences,
    decode_clip,
    encode_clip,
    load_dictionary,
    read_header,
    verify_clip,
)
from shadowd.clip.model import Clip, Provenance, TriggerDef

__all__ = [
    "ArrayHistory",
    "Clip",
    "ClipHeader",
    "FORMAT_VERSION",
    "MAGIC",
    "Provenance",
    "TriggerDef",
    "build_clip",
    "clip_differences",
    "decode_clip",
    "encode_clip",
    "load_dictionary",
    "read_header",
    "verify_clip",
]
