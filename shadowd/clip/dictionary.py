"""Trained zstd dictionaries for clip bodies (``shadowd clip train-dict``).

Short clips compress poorly on their own: the protobuf framing, field names and the typical
byte planes of each channel repeat in every clip. A dictionary trained on decompressed clip
bodies captures them once; a clip written with it names the dictionary id in its header.
Rules: pure functions over bytes; reading and writing files is the CLI's job.
"""

from __future__ import annotations

from collections.abc import Iterable

import zstandard

from shadowd.clip.codec import decode_proto
from shadowd.errors import ClipError


def train_dictionary(clips: Iterable[bytes], *, size_bytes: int = 65_536, dictionaries=None) -> zstandard.ZstdCompressionDict:
    """Train a zstd dictionary on the (uncompressed) bodies of existing clips.

    Raises ClipError when a sample is not a valid clip or there are too few samples.
    """
    samples = [decode_proto(c, dictionaries=dictionaries)[1].SerializeToString() for c in clips]
    if len(samples) < 5:
        raise ClipError(f"{len(samples)} clips are too few to train a dictionary; give at least 5 (ideally hundreds)")
    try:
        return zstandard.train_dictionary(size_bytes, samples)
    except zstandard.ZstdError as err:
        raise ClipError(f"zstd could not train a {size_bytes}-byte dictionary on {len(samples)} clips ({err}); "
                        f"give more clips or a smaller --size") from err
