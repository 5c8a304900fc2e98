"""CanIngest finds the rows of each decoded message by a table lookup when every decoded id is
an 11-bit one, else by a search over sorted (bus, id) keys (extended-id platforms); both give
the same topics and counters on the real RAV4 log, fed whole and in uneven chunks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import shadowd
from shadowd.edges.can_ingest import CanIngest, read_can_log
from shadowd.edges.platforms import load_platform

LOG = Path(shadowd.__file__).parent / "data" / "rav4" / "c2k19_rav4_seg40.candump.log"


def _ingest(table: bool) -> CanIngest:
    ing = CanIngest(load_platform("desktop"), gap_s=0.02)
    assert ing._id_lut is not None and ing._known_lut is not None  # the RAV4 DBCs: 11-bit ids
    if not table:
        ing._id_lut = ing._known_lut = None  # what a platform with an extended id gets
    return ing


@pytest.mark.parametrize("chunk", [10**9, 9_973])
def test_search_index_and_table_index_decode_the_same(chunk):
    raw = read_can_log(LOG)
    with_table, with_search = _ingest(True), _ingest(False)
    bus = np.array([with_table.channel_bus(c) for c in raw.channels], np.uint8)[raw.channel]
    for start in range(0, len(raw.t_ns), chunk):
        part = slice(start, start + chunk)
        cols = (raw.t_ns[part], bus[part], raw.can_id[part], raw.dlc[part], raw.data[part], raw.flags[part])
        a, b = with_table.feed_arrays(*cols), with_search.feed_arrays(*cols)
        assert {k: v.tobytes() for k, v in a.items()} == {k: v.tobytes() for k, v in b.items()}
    assert with_table.stats.as_dict() == with_search.stats.as_dict()
    assert with_table.stats.vehicle_frames > 5000 and with_table.stats.unknown_id > 0 and with_table.stats.gaps > 0
