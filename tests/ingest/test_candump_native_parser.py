"""The C candump parser (native/src/candump.c) gives exactly the reference Python parser's
columns: on the real RAV4 log, on generated logs mixing valid and broken lines (hypothesis),
and through ``read_can_log``; a log it cannot take (too many channels) still reads."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import shadowd
from shadowd.edges.can_ingest import RawLog, _read_candump_native, _read_candump_py, read_can_log

RAV4_LOG = Path(shadowd.__file__).parent / "data" / "rav4" / "c2k19_rav4_seg40.candump.log"

FIELDS = ("t_ns", "channel", "can_id", "dlc", "flags", "data")


def assert_same(native: RawLog | None, ref: RawLog) -> None:
    assert native is not None, "the C parser is not built (rebuild with pip install -e .)"
    assert native.channels == ref.channels
    assert native.malformed_lines == ref.malformed_lines
    for name in FIELDS:
        a, b = getattr(native, name), getattr(ref, name)
        assert a.dtype == b.dtype, name
        assert a.shape == b.shape, (name, a.shape, b.shape)
        assert np.array_equal(a, b), name


def test_real_log_parses_identically():
    text = RAV4_LOG.read_bytes()
    native = _read_candump_native(text)
    assert_same(native, _read_candump_py(text))
    assert len(native.t_ns) == 135_468 and native.channels == ["can0", "can1", "can128", "can129"]


def test_read_can_log_uses_the_native_parser_and_matches(tmp_path):
    p = tmp_path / "drive.log"
    p.write_bytes(RAV4_LOG.read_bytes()[:200_000] + b"(1.0) can0 not a frame\n")
    got = read_can_log(p)
    assert got.malformed_lines == 1
    assert_same(got, _read_candump_py(p.read_bytes()))


_ws = st.sampled_from([" ", "  ", "\t"])
_trail = st.sampled_from(["", " ", "\t"])
_hex = st.text("0123456789abcdefABCDEF", min_size=1, max_size=8)


@st.composite
def _line(draw) -> str:
    sec = draw(st.integers(0, 9 * 10**9))  # past int64 ns the reference wraps; C refuses (candump.h)
    frac = draw(st.text("0123456789", min_size=1, max_size=12))
    chan = draw(st.sampled_from(["can0", "can1", "vcan12", "x"]))
    fd = draw(st.booleans())
    n_bytes = draw(st.integers(0, 64 if fd else 8))
    payload = "".join(f"{b:02X}" for b in draw(st.binary(min_size=n_bytes, max_size=n_bytes)))
    if fd:
        payload = draw(st.sampled_from("0123456789ABCDEF")) + payload
    line = (f"{draw(st.sampled_from(['', ' ']))}({sec}.{frac}){draw(_ws)}{chan}{draw(_ws)}{draw(_hex)}#"
            f"{'#' if fd else ''}{payload}{draw(_trail)}")
    if draw(st.integers(0, 4)) == 0:  # break it: replace, drop or insert a character
        i = draw(st.integers(0, len(line)))
        c = draw(st.sampled_from(list("()#. xZ9\x00")))
        op = draw(st.sampled_from(["replace", "drop", "insert"]))
        line = line[:i] + (c if op != "drop" else "") + line[i + (op != "insert"):]
    return line


@st.composite
def candump_text(draw) -> bytes:
    """A log of generated lines (a fifth of them broken), with \\n, \\r\\n or \\r endings, with
    blank lines or not."""
    lines = draw(st.lists(_line(), max_size=30))
    if draw(st.booleans()):
        lines = [x for line in lines for x in (line, "   ")]
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join(lines).encode()
    # past int64 nanoseconds the reference wraps and the C parser refuses the line (candump.h)
    assume(all(int(sec) < 9 * 10**9 for sec in re.findall(rb"\((\d+)\.", text)))
    return text


@settings(max_examples=150, deadline=None)
@given(candump_text())
def test_generated_logs_parse_identically(text):
    assert_same(_read_candump_native(text), _read_candump_py(text))


def test_more_channels_than_the_c_table_fall_back_to_python(tmp_path):
    p = tmp_path / "many.log"
    p.write_bytes(b"".join(b"(1.%d) ch%d 1#00\n" % (i, i) for i in range(70)))
    assert _read_candump_native(p.read_bytes()) is None
    got = read_can_log(p)
    assert len(got.channels) == 70 and len(got.t_ns) == 70

