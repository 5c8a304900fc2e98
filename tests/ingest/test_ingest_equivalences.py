"""CanIngest's fast paths give what the plain numpy they replace gives: the decoded real minute
has the bytes the previous implementation produced (digests taken with it), the tick
resampling counts (``_Grid.seen_by``) equal ``np.searchsorted``, row gathers (``_take_rows``)
equal fancy indexing, the radar tracks decoded together equal them decoded one message at a
time (with truncated payloads among them), and the counters stay Python ints."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowd.edges.can_ingest import CanIngest, _Grid, _take_rows, decode_raw_log, read_can_log
from shadowd.edges.platforms import load_platform

from .test_candump_native_parser import RAV4_LOG

# sha256[:16] of the topics' bytes and the counters, decoding the real minute with the
# implementation before the record parser (commit 2e63003)
PREVIOUS = {
    "can_raw": "1f3a1e142616da48",
    "perception": "11c7e1b62bbb92f3",
    "vehicle": "ea570372f7c9bfb1",
}
PREVIOUS_STATS = dict(frames_total=135468, frames_decoded=46976, unknown_channel=24234, unknown_id=23230,
                      wrong_length=0, error_frames=0, out_of_order=0, gaps=0, malformed_lines=0,
                      vehicle_frames=5998, perception_frames=1200)


@pytest.mark.parametrize("platform", ["nt2", "desktop"])
def test_the_real_minute_decodes_to_the_previous_bytes(platform):
    topics, stats = decode_raw_log(read_can_log(RAV4_LOG), load_platform(platform))
    assert {k: hashlib.sha256(v.tobytes()).hexdigest()[:16] for k, v in topics.items()} == PREVIOUS
    assert stats.as_dict() == PREVIOUS_STATS
    assert all(type(v) is int for v in stats.as_dict().values())


_times = st.lists(st.integers(-(2**62), 2**62), max_size=60).map(sorted)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**10), st.integers(-(2**62), 2**62), st.integers(0, 80), st.lists(_times, min_size=1, max_size=4),
       st.booleans())
def test_seen_by_counts_what_searchsorted_finds(period, start, n_ticks, groups, near):
    grid = _Grid(1e9 / period)
    p = grid.period_ns
    first = start // p * p
    ticks = first + p * np.arange(n_ticks, dtype=np.int64)
    if near:  # times around the ticks, the usual case (far ones take the searchsorted path)
        groups = [sorted(first + t % (p * (n_ticks + 2)) - p for t in g) for g in groups]
    times = [np.array(g, np.int64) for g in groups]
    want = np.array([np.searchsorted(t, ticks, side="right") for t in times]).reshape(len(times), n_ticks)
    group = np.repeat(np.arange(len(times)), [len(t) for t in times])
    got = grid.seen_by(ticks, np.concatenate(times), group, len(times))
    assert got.shape == want.shape and np.array_equal(got, want)
    assert np.array_equal(grid.seen_by(ticks, times[0])[0], want[0])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.integers(1, 64), st.integers(0, 16), st.data())
def test_take_rows_equals_fancy_indexing(n, width, pad, data):
    base = np.arange(n * (width + pad), dtype=np.int64).astype(np.uint8).reshape(n, width + pad)
    for arr in (base[:, :width], np.ascontiguousarray(base[:, :width]), base[:, pad:][:, :width] if pad < width else base):
        rows = np.array(data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=30 if n else 0)), np.intp)
        got = _take_rows(arr, rows)
        assert got.dtype == np.uint8 and np.array_equal(got, arr[rows]) and got.shape == arr[rows].shape


def test_tracks_decoded_together_equal_one_message_at_a_time():
    raw = read_can_log(RAV4_LOG)
    platform = load_platform("nt2")
    together, alone = CanIngest(platform), CanIngest(platform)
    assert together._perc_same_layout
    alone._perc_same_layout = False
    bus = np.array([together.channel_bus(c) for c in raw.channels], np.uint8)[raw.channel]
    dlc = raw.dlc.copy()
    tracks = np.flatnonzero(np.isin(raw.can_id, together._perc_ids) & (bus == together._perc_bus))
    dlc[tracks[::97]] = 5  # truncated track payloads: counted and dropped
    for start in range(0, len(raw.t_ns), 40_000):
        part = slice(start, start + 40_000)
        cols = (raw.t_ns[part], bus[part], raw.can_id[part], dlc[part], raw.data[part], raw.flags[part])
        a, b = together.feed_arrays(*cols), alone.feed_arrays(*cols)
        assert {k: v.tobytes() for k, v in a.items()} == {k: v.tobytes() for k, v in b.items()}
    assert together.stats.as_dict() == alone.stats.as_dict()
    assert together.stats.wrong_length == len(tracks[::97]) and together.stats.perception_frames > 1000
