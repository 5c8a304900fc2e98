"""Shared, session-cached decodes of the real RAV4 minute (decoding is deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shadowd" / "data"
RAV4_LOG = DATA / "rav4" / "c2k19_rav4_seg40.candump.log"


@pytest.fixture(scope="session")
def rav4_raw():
    from shadowd.edges.can_ingest import read_can_log

    return read_can_log(RAV4_LOG)


@pytest.fixture(scope="session")
def rav4_topics(rav4_raw):
    from shadowd.edges.can_ingest import decode_raw_log
    from shadowd.edges.platforms import load_platform

    return decode_raw_log(rav4_raw, load_platform("nt2"))
