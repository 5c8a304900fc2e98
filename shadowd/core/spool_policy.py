"""Spool decisions: upload order and what to evict when a new clip does not fit the quota.

Rules of this file:
1. Pure: decisions are functions of the spool's state handed in as values; no files, no clock.
   shadowd/edges/spool.py does the I/O and calls these.
2. Upload order: priority descending, then oldest first (t_ns ascending), then clip id (so
   the order is total and reproducible).
3. Eviction order: lowest priority first, then oldest first. A clip that is leased (being
   uploaded) is never evicted. A clip of higher priority than the incoming one is never
   evicted to make room for it: the incoming clip is refused instead. Equal priority may be
   evicted (older clips make room for newer ones of the same importance).
4. Refusal reasons are short words counted by the spool: ``larger_than_quota`` (the clip alone
   exceeds the quota), ``protected`` (what would have to go is higher priority or leased).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """What the policy needs to know about one spooled clip."""

    clip_id: str
    size_bytes: int
    priority: int
    t_ns: int
    leased: bool = False


@dataclass(frozen=True, slots=True)
class Admission:
    """The decision for an incoming clip: evict these (in order) and accept, or refuse."""

    accept: bool
    evict: tuple[str, ...] = ()
    refuse_reason: str | None = None
    detail: str = ""


def upload_order(entries: Iterable[SpoolEntry]) -> list[SpoolEntry]:
    """Entries in the order the uploader should send them (rule 2)."""
    return sorted(entries, key=lambda e: (-e.priority, e.t_ns, e.clip_id))


def eviction_order(entries: Iterable[SpoolEntry]) -> list[SpoolEntry]:
    """Entries in the order they would be evicted (rule 3), leased ones left out."""
    return sorted((e for e in entries if not e.leased), key=lambda e: (e.priority, e.t_ns, e.clip_id))


def admit(entries: Iterable[SpoolEntry], quota_bytes: int, size_bytes: int, priority: int) -> Admission:
    """Decide whether a clip of ``size_bytes`` / ``priority`` fits, and what to evict for it."""
    entries = list(entries)
    if size_bytes > quota_bytes:
        return Admission(False, refuse_reason="larger_than_quota",
                         detail=f"clip of {size_bytes} bytes is larger than the whole spool quota of {quota_bytes} bytes")
    used = sum(e.size_bytes for e in entries)
    need = used + size_bytes - quota_bytes
    if need <= 0:
        return Admission(True)
    evict: list[str] = []
    freed = 0
    for e in eviction_order(entries):
        if e.priority > priority:
            break
        evict.append(e.clip_id)
        freed += e.size_bytes
        if freed >= need:
            return Admission(True, evict=tuple(evict))
    leased = sum(e.size_bytes for e in entries if e.leased)
    higher = sum(e.size_bytes for e in entries if not e.leased and e.priority > priority)
    return Admission(
        False,
        refuse_reason="protected",
        detail=(f"spool is full ({used} of {quota_bytes} bytes) and only {freed} bytes of priority <= {priority} "
                f"could be evicted, {need} needed ({higher} bytes are higher priority, {leased} bytes are being uploaded)"),
    )
