"""The spool: a durable, bounded, prioritized directory of clips waiting for upload.

Owns every file under the spool root. Layout (docs/spool.md):

    <root>/.lock                  flock held by the one process that owns the spool
    <root>/<clip_id>.clip         the clip bytes; clip_id = sha256 hex of those bytes
    <root>/<clip_id>.json         sidecar: priority, t_ns, meta, size_bytes, spooled_at_s
    <root>/.tmp-*                 files being written (removed on start if a writer died)
    <root>/quarantine/            clips that failed their checksum on start (kept, counted)

Rules of this file:
1. ``put`` returns only once the clip is durable (temp file written and fsynced, renamed,
   directory fsynced): a returned SpooledClip *is* the "accepted" acknowledgement. The
   sidecar is made durable before the clip's rename, so a visible clip always has its
   metadata; the clip's rename is the commit point.
2. Never a half-written clip under its final name: a crash (kill -9, power loss) at any
   point leaves either nothing, a ``.tmp-*`` leftover, or an orphan sidecar; recovery on
   start removes both and verifies every clip's sha256 against its name.
3. Eviction and upload order are decided by shadowd/core/spool_policy.py (pure); this file
   only carries them out and counts them. A leased clip (upload in progress) is never evicted.
4. A full disk (ENOSPC/EDQUOT) or any I/O failure is a SpoolError with the cause; the spool
   state is unchanged, the caller keeps running and may retry; the spool works again as
   soon as space returns.
Thread-safe: one lock guards all state (the pipeline puts while the uploader leases/acks).
One process per spool directory (an flock on ``.lock``); a second one gets a SpoolError.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from shadowd.core.spool_policy import SpoolEntry, admit, upload_order
from shadowd.errors import SpoolError

log = logging.getLogger("shadowd.spool")

CLIP_SUFFIX = ".clip"
META_SUFFIX = ".json"
TMP_PREFIX = ".tmp-"
QUARANTINE = "quarantine"
_HEX = set("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class SpooledClip:
    """A clip accepted into the spool (durable)."""

    clip_id: str  # sha256 hex of the clip bytes
    size_bytes: int
    priority: int
    t_ns: int  # the clip's time (monotonic ns of its window start, as the writer gave it)
    path: Path
    meta: dict = field(default_factory=dict)
    spooled_at_s: float = 0.0  # wall-clock time of acceptance (for ageing in the uploader)


def _is_clip_id(s: str) -> bool:
    return len(s) == 64 and set(s) <= _HEX


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """See the module docstring. Open it once per process; ``close()`` releases the directory."""

    def __init__(self, root: str | Path, quota_bytes: int):
        if not isinstance(quota_bytes, int) or quota_bytes <= 0:
            raise SpoolError(f"spool quota_bytes = {quota_bytes!r} must be a positive integer number of bytes")
        self.root = Path(root)
        self.quota_bytes = quota_bytes
        self._lock = threading.RLock()
        self._clips: dict[str, SpooledClip] = {}
        self._leased: set[str] = set()
        self.counters: Counter[str] = Counter()
        self.evicted: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            (self.root / QUARANTINE).mkdir(exist_ok=True)
            self._lock_fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise SpoolError(f"cannot open spool directory {str(self.root)!r}: {err.strerror}; check the path and permissions") from err
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(self._lock_fd)
            raise SpoolError(f"spool {str(self.root)!r} is in use by another process; run one shadowd per spool directory") from err
        self._recover()

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Release the directory lock; the object must not be used afterwards."""
        with self._lock:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _recover(self) -> None:
        """Start-up: drop temp leftovers and orphan sidecars, verify every clip, rebuild the queue."""
        names = {p.name for p in self.root.iterdir()}
        for name in names:
            p = self.root / name
            if name.startswith(TMP_PREFIX):
                p.unlink(missing_ok=True)
                self.counters["recovered_tmp_removed"] += 1
            elif name.endswith(META_SUFFIX) and name[: -len(META_SUFFIX)] + CLIP_SUFFIX not in names:
                p.unlink(missing_ok=True)
                self.counters["recovered_orphan_meta_removed"] += 1
        for name in sorted(names):
            if not name.endswith(CLIP_SUFFIX):
                continue
            clip_id = name[: -len(CLIP_SUFFIX)]
            path = self.root / name
            reason = None
            meta: dict = {}
            try:
                data = path.read_bytes()
                if not _is_clip_id(clip_id) or hashlib.sha256(data).hexdigest() != clip_id:
                    reason = "checksum"
                else:
                    meta = json.loads((self.root / (clip_id + META_SUFFIX)).read_text())
                    int(meta["priority"]), int(meta["t_ns"])
            except FileNotFoundError:
                reason = "no_metadata"
            except (OSError, ValueError, KeyError, TypeError):
                reason = "unreadable"
            if reason:
                self._quarantine(clip_id, reason)
                continue
            self._clips[clip_id] = SpooledClip(
                clip_id, len(data), int(meta["priority"]), int(meta["t_ns"]), path,
                dict(meta.get("meta") or {}), float(meta.get("spooled_at_s", 0.0)),
            )
        _fsync_dir(self.root)
        if self._clips or self.counters:
            log.info("spool %s recovered: %d clips, %d bytes, %s", self.root, len(self._clips), self._used(), dict(self.counters))

    def _quarantine(self, clip_id: str, reason: str) -> None:
        self.counters["quarantined"] += 1
        self.counters[f"quarantined_{reason}"] += 1
        qdir = self.root / QUARANTINE
        for suffix in (CLIP_SUFFIX, META_SUFFIX):
            src = self.root / (clip_id + suffix)
            if src.exists():
                os.replace(src, qdir / src.name)
        log.warning("spool: clip %s quarantined (%s) in %s", clip_id, reason, qdir)

    # ------------------------------------------------------------------ writing

    def _used(self) -> int:
        return sum(c.size_bytes for c in self._clips.values())

    def _write_durable(self, final: Path, data: bytes) -> None:
        """Temp file, fsync, rename. Raises OSError; leaves no temp behind on failure."""
        tmp = self.root / f"{TMP_PREFIX}{final.name}.{os.getpid()}.{threading.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put(self, clip_bytes: bytes, *, priority: int, t_ns: int, meta: dict | None = None) -> SpooledClip:
        """Store a clip durably; returns once it is on disk (the acceptance acknowledgement).

        Args:
            clip_bytes: the encoded clip (any bytes: the spool checks only its sha256).
            priority: higher is uploaded first and evicted last.
            t_ns: the clip's time; orders clips of equal priority (older first).
            meta: small JSON-serialisable annotations kept with the clip (e.g. vehicle id).
        Returns:
            the SpooledClip; putting the same bytes twice returns the clip already there.
        Raises:
            SpoolError: refused by the quota (reason counted in ``stats()["refused"]``), disk
            full, or another I/O error. Nothing is half-written and the spool stays usable.
        """
        priority, t_ns = int(priority), int(t_ns)
        clip_id = hashlib.sha256(clip_bytes).hexdigest()
        try:
            meta_text = json.dumps({"priority": priority, "t_ns": t_ns, "meta": meta or {},
                                    "size_bytes": len(clip_bytes), "spooled_at_s": time.time()}, sort_keys=True)
        except (TypeError, ValueError) as err:
            raise SpoolError(f"clip meta {meta!r} is not JSON-serialisable ({err}); pass plain str/int/float values") from err
        with self._lock:
            if self._lock_fd < 0:
                raise SpoolError(f"spool {str(self.root)!r} is closed; open a new Spool")
            if clip_id in self._clips:
                self.counters["duplicate"] += 1
                return self._clips[clip_id]
            entries = [SpoolEntry(c.clip_id, c.size_bytes, c.priority, c.t_ns, c.clip_id in self._leased)
                       for c in self._clips.values()]
            decision = admit(entries, self.quota_bytes, len(clip_bytes), priority)
            if not decision.accept:
                self.refused[decision.refuse_reason] += 1
                raise SpoolError(f"spool refused clip {clip_id[:12]} (priority {priority}): {decision.detail}")
            final = self.root / (clip_id + CLIP_SUFFIX)
            meta_path = self.root / (clip_id + META_SUFFIX)
            try:
                self._write_durable(meta_path, meta_text.encode())
                _fsync_dir(self.root)  # the sidecar is durable before the clip can appear
                self._write_durable(final, clip_bytes)
                for victim in decision.evict:
                    self.counters["evicted_bytes"] += self._remove(victim)
                    self.evicted["quota"] += 1
                _fsync_dir(self.root)
            except OSError as err:
                final.unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)
                if err.errno in (errno.ENOSPC, errno.EDQUOT):
                    self.counters["disk_full"] += 1
                    raise SpoolError(
                        f"disk full writing clip {clip_id[:12]} ({len(clip_bytes)} bytes) to {str(self.root)!r}: "
                        f"{err.strerror}; free space on that file system (the clip was not stored, retry later)"
                    ) from err
                self.counters["io_error"] += 1
                raise SpoolError(f"cannot write clip {clip_id[:12]} to {str(self.root)!r}: {err.strerror}; check the disk") from err
            clip = SpooledClip(clip_id, len(clip_bytes), priority, t_ns, final, dict(meta or {}), json.loads(meta_text)["spooled_at_s"])
            self._clips[clip_id] = clip
            self.counters["put"] += 1
            return clip

    def _remove(self, clip_id: str) -> int:
        """Delete a clip and its sidecar (clip first: a sidecar alone is an orphan, removed on start)."""
        c = self._clips.pop(clip_id)
        (self.root / (clip_id + CLIP_SUFFIX)).unlink(missing_ok=True)
        (self.root / (clip_id + META_SUFFIX)).unlink(missing_ok=True)
        return c.size_bytes

    # ------------------------------------------------------------------ upload side

    def _get(self, clip_id: str) -> SpooledClip:
        c = self._clips.get(clip_id)
        if c is None:
            raise SpoolError(f"no clip {clip_id!r} in spool {str(self.root)!r} (acked or evicted already?)")
        return c

    def pending(self) -> list[SpooledClip]:
        """Clips not leased, in upload order: priority descending, then oldest t_ns first."""
        with self._lock:
            entries = [SpoolEntry(c.clip_id, c.size_bytes, c.priority, c.t_ns) for c in self._clips.values()
                       if c.clip_id not in self._leased]
            return [self._clips[e.clip_id] for e in upload_order(entries)]

    def clips(self) -> list[SpooledClip]:
        """Every clip, leased or not, in upload order."""
        with self._lock:
            entries = [SpoolEntry(c.clip_id, c.size_bytes, c.priority, c.t_ns) for c in self._clips.values()]
            return [self._clips[e.clip_id] for e in upload_order(entries)]

    def lease(self, clip_id: str) -> SpooledClip:
        """Mark a clip as being uploaded: it leaves pending() and is never evicted until release/ack."""
        with self._lock:
            c = self._get(clip_id)
            if clip_id in self._leased:
                raise SpoolError(f"clip {clip_id[:12]} is already leased for upload; release or ack it first")
            self._leased.add(clip_id)
            return c

    def release(self, clip_id: str) -> None:
        """The upload failed or was interrupted: the clip is pending (and evictable) again."""
        with self._lock:
            self._get(clip_id)
            self._leased.discard(clip_id)

    def ack(self, clip_id: str) -> None:
        """The server acknowledged the clip: delete it durably."""
        with self._lock:
            self._get(clip_id)
            self._leased.discard(clip_id)
            try:
                self._remove(clip_id)
                _fsync_dir(self.root)
            except OSError as err:
                raise SpoolError(f"cannot delete acked clip {clip_id[:12]} from {str(self.root)!r}: {err.strerror}") from err
            self.counters["acked"] += 1

    def path(self, clip_id: str) -> Path:
        """Where the clip's bytes are (read-only for callers)."""
        with self._lock:
            return self._get(clip_id).path

    def __contains__(self, clip_id: str) -> bool:
        with self._lock:
            return clip_id in self._clips

    def stats(self) -> dict:
        """Counts for status and metrics (JSON-serialisable)."""
        with self._lock:
            by_prio: dict[str, dict[str, int]] = {}
            for c in self._clips.values():
                d = by_prio.setdefault(str(c.priority), {"count": 0, "bytes": 0})
                d["count"] += 1
                d["bytes"] += c.size_bytes
            return {
                "root": str(self.root),
                "quota_bytes": self.quota_bytes,
                "count": len(self._clips),
                "bytes": self._used(),
                "leased": len(self._leased),
                "by_priority": dict(sorted(by_prio.items(), key=lambda kv: -int(kv[0]))),
                "evicted": dict(self.evicted),
                "refused": dict(self.refused),
                "disk_full": self.counters["disk_full"],
                "quarantined": self.counters["quarantined"],
                "counters": dict(self.counters),
            }
