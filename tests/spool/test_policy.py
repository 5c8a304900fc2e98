"""Spool policy (shadowd.core.spool_policy): upload order and admission, as properties."""

from __future__ import annotations

from hypothesis import given, strategies as st

from shadowd.core.spool_policy import SpoolEntry, admit, upload_order

entries_st = st.lists(
    st.builds(SpoolEntry, clip_id=st.text("0123456789abcdef", min_size=4, max_size=4),
              size_bytes=st.integers(1, 100), priority=st.integers(0, 3), t_ns=st.integers(0, 1000),
              leased=st.booleans()),
    max_size=20, unique_by=lambda e: e.clip_id,
)


@given(entries_st)
def test_upload_order_is_priority_descending_then_oldest_first(entries):
    order = upload_order(entries)
    keys = [(-e.priority, e.t_ns) for e in order]
    assert keys == sorted(keys) and len(order) == len(entries)


@given(entries_st, st.integers(1, 500), st.integers(1, 120), st.integers(0, 3))
def test_admission_never_evicts_leased_or_higher_priority_and_frees_enough(entries, quota, size, prio):
    by_id = {e.clip_id: e for e in entries}
    used = sum(e.size_bytes for e in entries)
    d = admit(entries, quota, size, prio)
    if d.accept:
        victims = [by_id[i] for i in d.evict]
        assert all(not v.leased and v.priority <= prio for v in victims)
        assert used - sum(v.size_bytes for v in victims) + size <= quota
        # lowest priority, then oldest, goes first
        keys = [(v.priority, v.t_ns) for v in victims]
        assert keys == sorted(keys)
    else:
        assert d.refuse_reason in ("larger_than_quota", "protected")
        evictable = sum(e.size_bytes for e in entries if not e.leased and e.priority <= prio)
        assert size > quota or used - evictable + size > quota


def test_equal_priority_older_clip_makes_room_for_a_newer_one():
    old = SpoolEntry("a", 60, 1, t_ns=1)
    d = admit([old], 100, 60, 1)
    assert d.accept and d.evict == ("a",)
