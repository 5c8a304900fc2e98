"""The C parser's record output (shadowd_candump_parse_records): ``read_can_log`` gives the
can_raw records along with the columns, the columns equal the column parser's and the Python
reference parser's (real log, generated logs with broken lines), the records hold the same
frames, and ``decode_raw_log`` hands the records over as its can_raw topic with the same bytes a
copy would have."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings

from shadowd.core.signals import CAN_DATA_BYTES, CAN_RAW_DTYPE
from shadowd.edges import can_ingest
from shadowd.edges.can_ingest import RawLog, _read_candump_native, _read_candump_py, decode_raw_log, read_can_log
from shadowd.edges.platforms import load_platform

from .test_candump_native_parser import RAV4_LOG, assert_same, candump_text


@pytest.fixture
def columns_only(monkeypatch):
    """The C parser's column output, as for a CAN_RAW_DTYPE the C struct does not match."""
    monkeypatch.setattr(can_ingest, "_records_layout", False)


def assert_records_hold_the_columns(log: RawLog) -> None:
    rec = log.records
    assert rec is not None and rec.dtype == CAN_RAW_DTYPE and len(rec) == len(log.t_ns)
    for field, col in (("t_ns", log.t_ns), ("dlc", log.dlc), ("flags", log.flags), ("can_id", log.can_id)):
        assert np.array_equal(rec[field], col), field
    # the bus column holds the parser's channel numbers (order of first appearance)
    first_seen = np.unique(log.channel, return_index=True)[1]
    assert np.array_equal(np.argsort(np.argsort(first_seen))[log.channel], rec["bus"])
    width = log.data.shape[1]
    assert np.array_equal(rec["data"][:, :width], log.data)
    assert not rec["data"][np.arange(CAN_DATA_BYTES)[None, :] >= rec["dlc"][:, None]].any()  # zero past dlc


def test_the_records_layout_matches_the_c_struct():
    ffi, _lib = can_ingest._native_parser()
    assert can_ingest._records_match(ffi)
    assert ffi.sizeof("struct shadowd_can_raw") == CAN_RAW_DTYPE.itemsize == 80


def test_a_dtype_unlike_the_c_struct_is_read_into_columns(monkeypatch):
    ffi, _lib = can_ingest._native_parser()
    fields = [(n, CAN_RAW_DTYPE.fields[n][0]) for n in CAN_RAW_DTYPE.names]
    for other in (np.dtype(fields[:1] + [("bus", "<u2")] + fields[2:]),  # a field of another type
                  np.dtype(fields[1:] + fields[:1])):  # the fields in another order
        monkeypatch.setattr(can_ingest, "CAN_RAW_DTYPE", other)
        monkeypatch.setattr(can_ingest, "_records_layout", None)
        assert not can_ingest._records_match(ffi)
    text = RAV4_LOG.read_bytes()[:100_000]
    got = _read_candump_native(text)
    assert got.records is None
    assert_same(got, _read_candump_py(text))


def test_real_log_records_and_columns(columns_only):
    text = RAV4_LOG.read_bytes()
    columns = _read_candump_native(text)
    assert columns.records is None
    can_ingest._records_layout = None  # check the layout again: the records path
    records = _read_candump_native(text)
    assert_same(records, columns)
    assert_same(records, _read_candump_py(text))
    assert_records_hold_the_columns(records)


@settings(max_examples=150, deadline=None)
@given(candump_text())
def test_generated_logs_records_and_columns(text):
    can_ingest._records_layout = False
    try:
        columns = _read_candump_native(text)
    finally:
        can_ingest._records_layout = None
    got = _read_candump_native(text)
    assert_same(got, columns)
    assert (got.records is not None) == (len(got.t_ns) > 0) and columns.records is None
    if len(got.t_ns):
        assert_records_hold_the_columns(got)


def test_an_estimate_that_falls_short_parses_again(tmp_path):
    # long lines first (the row estimate comes from the first 64 KiB), then many short ones
    long_lines = b"".join(b"(1.%06d) can0 123#0011%s\n" % (i, b" " * 900) for i in range(80))
    short_lines = b"".join(b"(2.%06d) c 7#%02X\n" % (i, i % 256) for i in range(50_000))
    text = long_lines + short_lines
    assert can_ingest._expected_rows(text, len(text) // 10 + 1) < 50_080
    p = tmp_path / "mixed.log"
    p.write_bytes(text)
    got = read_can_log(p)
    assert len(got.t_ns) == 50_080
    assert_same(got, _read_candump_py(text))
    assert_records_hold_the_columns(got)


def test_decode_takes_the_records_over_with_the_bytes_of_a_copy():
    platform = load_platform("nt2")
    raw = read_can_log(RAV4_LOG)
    plain = RawLog(*(np.array(getattr(raw, f)) if f != "channels" else list(raw.channels)
                     for f in ("t_ns", "channel", "channels", "can_id", "dlc", "flags", "data")), raw.malformed_lines)
    records = raw.records
    topics, stats = decode_raw_log(raw, platform)
    assert topics["can_raw"] is records and raw.records is None  # taken over, not copied
    ref_topics, ref_stats = decode_raw_log(plain, platform)  # no records: the copy
    assert stats.as_dict() == ref_stats.as_dict()
    assert {k: v.tobytes() for k, v in topics.items()} == {k: v.tobytes() for k, v in ref_topics.items()}
    again, _ = decode_raw_log(raw, platform)  # a second decode of the same log copies
    assert {k: v.tobytes() for k, v in again.items()} == {k: v.tobytes() for k, v in ref_topics.items()}


def test_dropped_frames_and_replaced_columns(tmp_path):
    platform = load_platform("nt2")
    lines = RAV4_LOG.read_bytes().splitlines(keepends=True)[:30_000]
    lines[1000:1000] = [b"(46400.000000) can0 260#08FFFB0000001884\n"]  # older than the newest: dropped
    lines[2000:2000] = [b"not a frame\n", re.sub(rb"\) \S+ ", b") can7 ", lines[1999])]  # malformed, unknown channel
    p = tmp_path / "bad.log"
    p.write_bytes(b"".join(lines))
    raw = read_can_log(p)
    plain = RawLog(np.array(raw.t_ns), np.array(raw.channel), list(raw.channels), np.array(raw.can_id),
                   np.array(raw.dlc), np.array(raw.flags), np.array(raw.data), raw.malformed_lines)
    topics, stats = decode_raw_log(raw, platform)
    ref, ref_stats = decode_raw_log(plain, platform)
    assert (stats.out_of_order, stats.malformed_lines) == (1, 1) and "can7" in raw.channels
    assert stats.as_dict() == ref_stats.as_dict()
    assert {k: v.tobytes() for k, v in topics.items()} == {k: v.tobytes() for k, v in ref.items()}
    # columns replaced after the read: the records no longer hold the log, so they are not used
    raw = read_can_log(p)
    raw.t_ns = raw.t_ns + 10**9
    topics, _ = decode_raw_log(raw, platform)
    assert np.array_equal(topics["can_raw"]["t_ns"][:10], raw.t_ns[:10])
