"""Moves clips from the spool to the fleet's ingest endpoint: exactly once, resumable, gated.

Owns: the upload protocol (single PUT, or parts + manifest; docs/upload-protocol.md), the
per-clip upload state that must survive restarts (``<state_dir>/<clip_id>.json``, written
atomically), the persisted daily-budget counter, pacing bodies through the token bucket, and
the uploader's metrics. Every *decision* (gating, order, aging, backoff, expiry, budgets) is
asked of the pure ``shadowd.core.upload_policy``.

Rules:
- A clip leaves the spool (``spool.ack``) only after the server answered 2xx to its last
  request (the single PUT, or the manifest PUT that commits a multipart upload).
- Object keys derive from the clip id (its content SHA-256) and the spool's own record of
  when it was spooled, so a retry or a restart overwrites the same object and can never make
  a second copy. A clip that may already have been sent (spooled before this uploader
  started, or whose last attempt failed) is HEADed first, so a crash between the 2xx and the
  ack does not re-send it.
- Threads: ``run_once`` / ``run_forever`` run on one thread. Helper threads do spool acks
  (overlapping the next transfer), read and hash the next part, and cut a blocked send at
  shutdown. ``metrics()`` may be called from any thread.
- One :meth:`Uploader.run_once` moves at most one request body (a whole small clip, one part,
  or the manifest) and returns what happened; nothing raises out of it for network or server
  faults: they are counted by cause and retried with exponential backoff and jitter until the
  clip expires (``max_age_s``), when it is dropped and counted.
- Bad input never crashes: an unreadable sidecar is reset (costs a re-send, loses nothing); a
  local clip whose bytes no longer hash to its id is dropped as ``corrupt`` and counted.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from ..core.upload_policy import (
    DailyBudget,
    NetworkState,
    QueuedClip,
    TokenBucket,
    UploadConfig,
    backoff_s,
    is_expired,
    network_allows,
    upload_order,
)
from ..errors import ShadowdError, SpoolError, UploadError
from .http_client import FileRange, HttpClient

log = logging.getLogger("shadowd.uploader")

MANIFEST_FORMAT = "shadowd-multipart/1"
_IDLE_POLL_S = 1.0
_GATED_POLL_S = 5.0


class SpoolLike(Protocol):
    """What the uploader needs from ``shadowd.edges.spool.Spool``.

    ``pending()`` yields clips with ``clip_id``, ``priority``, ``size_bytes`` and (optional)
    ``spooled_at_s``, and leaves out leased clips; ``ack`` deletes durably.
    """

    root: Path

    def pending(self) -> list: ...
    def lease(self, clip_id: str): ...
    def release(self, clip_id: str) -> None: ...
    def ack(self, clip_id: str) -> None: ...
    def path(self, clip_id: str) -> Path: ...


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What one :meth:`Uploader.run_once` did.

    ``action`` is one of: ``uploaded`` (clip committed and acked), ``part_sent`` (one part of a
    multipart upload), ``deduped`` (already on the server; acked without sending), ``failed``
    (``cause`` says why; retried after backoff), ``expired`` / ``corrupt`` (dropped, counted),
    ``idle`` (nothing pending), ``waiting`` (every clip is backing off), ``gated`` (policy
    forbids sending now; ``cause`` is the reason). ``wait_s`` says when trying again makes sense.
    """

    action: str
    clip_id: str | None = None
    part_number: int | None = None
    bytes_sent: int = 0
    status: int | None = None
    cause: str = ""
    wait_s: float = 0.0
    message: str = ""


@dataclass(slots=True)
class _ClipState:
    """Per-clip upload state persisted in ``<state_dir>/<clip_id>.json``."""

    clip_id: str
    first_seen_s: float
    date: str  # UTC date the clip was spooled; part of the object key, so it must never change
    mode: str  # "single" | "multipart"
    size_bytes: int
    part_size_bytes: int = 0
    upload_id: str = ""
    parts_done: dict[str, str] = field(default_factory=dict)  # str(part_number) -> sha256 hex
    attempts: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    next_retry_s: float = 0.0
    last_cause: str = ""
    bytes_sent: int = 0
    parts_url: str = ""  # object URL the recorded parts went to (multipart)


class Uploader:
    """Uploads the spool's clips according to ``config``. See the module docstring.

    ``network_state`` is polled before each step (default: always an unmetered, parked
    ethernet link). ``clock`` gives wall-clock seconds (budgets, ages, retry times); ``rng``
    draws the backoff jitter. ``state_dir`` defaults to ``<spool.root>/.upload``.

    Thread-safety: ``run_once``/``run_forever`` belong to one thread; :meth:`metrics` may be
    called from any thread.
    """

    def __init__(
        self,
        spool: SpoolLike,
        config: UploadConfig,
        *,
        network_state: Callable[[], NetworkState] | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        state_dir: Path | None = None,
        mono_clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.spool = spool
        self.config = config
        self._network_state = network_state or (lambda: NetworkState())
        self._clock = clock
        self._started_s = clock()
        self._mono = mono_clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        if state_dir is None:
            state_dir = Path(getattr(spool, "root")) / ".upload"
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._http = HttpClient(
            ca_file=config.ca_file,
            client_cert=config.client_cert,
            client_key=config.client_key,
            pin_sha256=config.pin_sha256,
            timeout_s=config.timeout_s,
        )
        # empty at start: a (re)started uploader earns its burst instead of opening with one
        self._bucket = TokenBucket(config.bandwidth_bytes_per_s, config.effective_burst_bytes, self._mono(),
                                   start_full=False)
        self._budget = self._load_budget()
        self._states: dict[str, _ClipState] = {}
        self._head_checked: set[str] = set()  # clips known not to be on the server yet
        self._lock = threading.Lock()
        self._close_lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self._failures: Counter[str] = Counter()
        self._queue_snapshot: dict[str, Any] = {}
        self._gated = ""
        self._ack_due: list[str] = []  # uploaded, still leased, spool ack not yet queued
        self._ack_queue: queue.Queue[str | None] = queue.Queue()
        self._ack_worker: threading.Thread | None = None
        self._prefetch: tuple[str, int, Any] | None = None  # (clip_id, part, Future)
        self._prefetch_pool = None
        self._remove_orphan_states()

    # ------------------------------------------------------------------------------- public

    def run_once(self, now: float | None = None) -> UploadResult:
        """Do the next step (one request body at most) and say what happened."""
        now = self._clock() if now is None else now
        try:
            allowed, reason = network_allows(self.config.network_policy, self._network_state())
        except ShadowdError as err:
            allowed, reason = False, "network_state_error"
            log.warning("network state unavailable: %s", err)
        pending = self._pending(now)
        if not allowed:
            return self._set_gated(UploadResult("gated", cause=reason, wait_s=_GATED_POLL_S))
        if not pending:
            return self._set_gated(UploadResult("idle", wait_s=_IDLE_POLL_S))

        for q in pending:
            st = self._states[q.clip_id]
            if is_expired(st.first_seen_s, now, self.config.max_age_s):
                return self._drop(st, "expired", f"undeliverable for {now - st.first_seen_s:.0f} s "
                                  f"(max_age_s {self.config.max_age_s:.0f})")
        ready = [q for q in upload_order(pending, now, self.config.aging_s_per_level) if q.next_retry_s <= now]
        if not ready:
            wait = min(q.next_retry_s for q in pending) - now
            return self._set_gated(UploadResult("waiting", wait_s=max(0.0, wait)))
        st = self._states[ready[0].clip_id]
        need = self._next_request_bytes(st)
        if need > self._budget.remaining(now):
            return self._set_gated(UploadResult(
                "gated", cause="daily_budget", wait_s=self._budget.next_day_s(now) - now,
                message=f"daily budget {self.config.daily_budget_bytes} bytes used up"))
        self._gated = ""
        return self._step(st, now)

    def run_forever(self, stop_event: threading.Event) -> None:
        """Upload until ``stop_event`` is set (for a daemon thread). Never raises.

        Stopping is prompt: a paced body stops between chunks and a body blocked on the network
        is cut (the connection is shut down from a watcher thread). The interrupted clip or
        part is retried at the next start; nothing is lost and nothing doubles.
        """
        self._sleep = lambda s: stop_event.wait(s)

        def _watch() -> None:
            stop_event.wait()
            self._http.abort()

        watcher = threading.Thread(target=_watch, name="shadowd-upload-stop", daemon=True)
        watcher.start()
        while not stop_event.is_set():
            try:
                result = self.run_once()
            except Exception:  # noqa: BLE001 - the uploader thread must survive anything
                log.exception("uploader step failed unexpectedly; retrying in %s s", _GATED_POLL_S)
                self._count_failure("internal")
                stop_event.wait(_GATED_POLL_S)
                continue
            if result.action in ("idle", "waiting", "gated"):
                stop_event.wait(min(max(result.wait_s, 0.05), _GATED_POLL_S))
            elif result.action == "failed":
                # the failing clip backs off; others may go at once, but do not spin
                stop_event.wait(0.01)
        watcher.join()
        self.close()

    def close(self) -> None:
        """Finish queued spool acks, stop the helper threads and close the connection.

        Idempotent, and safe to call from another thread after ``run_forever`` was told to
        stop (the daemon does both). The uploader may be used again afterwards.
        """
        with self._close_lock:
            self._flush_acks()
            if self._ack_worker is not None:
                self._ack_queue.put(None)
                self._ack_worker.join()
                self._ack_worker = None
            if self._prefetch_pool is not None:
                self._prefetch_pool.shutdown(wait=True, cancel_futures=True)
                self._prefetch_pool = None
                self._prefetch = None
            self._http.close()

    def metrics(self) -> dict[str, Any]:
        """Counters and the queue as of the last step (the ``upload`` section of status)."""
        with self._lock:
            out: dict[str, Any] = dict(self._queue_snapshot)
            for name in ("bytes_sent", "attempts", "uploaded", "deduped", "parts_sent", "expired",
                         "corrupt", "ack_failed"):
                out[name] = self._counters[name]
            out["failures"] = {"__label__": "cause", **dict(self._failures)}
            out["gated"] = self._gated
            out["connections"] = self._http.connects
            out["budget_used_today_bytes"] = self._budget.used_bytes
            out["budget_daily_bytes"] = self.config.daily_budget_bytes
            out["bandwidth_cap_bytes_per_s"] = self.config.bandwidth_bytes_per_s
            return out

    # ------------------------------------------------------------------------------- queue

    def _pending(self, now: float) -> list[QueuedClip]:
        clips = list(self.spool.pending())
        seen = set()
        queued = []
        by_prio: dict[str, dict[str, int]] = {}
        oldest = now
        for clip in clips:
            cid = clip.clip_id
            seen.add(cid)
            st = self._states.get(cid) or self._load_state(cid, clip, now)
            queued.append(QueuedClip(cid, int(clip.priority), st.size_bytes, st.first_seen_s, st.next_retry_s))
            slot = by_prio.setdefault(str(int(clip.priority)), {"clips": 0, "bytes": 0})
            slot["clips"] += 1
            slot["bytes"] += st.size_bytes
            oldest = min(oldest, st.first_seen_s)
        for cid in list(self._states):
            if cid not in seen:  # evicted or acked behind our back: forget its state
                self._forget(cid)
        with self._lock:
            self._queue_snapshot = {
                "queue_clips": len(queued),
                "queue_bytes": sum(q.size_bytes for q in queued),
                "queue_by_priority": {"__label__": "priority", **by_prio},
                "oldest_clip_age_s": round(now - oldest, 3),
            }
        return queued

    def _state_path(self, clip_id: str) -> Path:
        return self.state_dir / f"{clip_id}.json"

    def _load_state(self, clip_id: str, clip: Any, now: float) -> _ClipState:
        size = int(getattr(clip, "size_bytes", 0) or os.path.getsize(self.spool.path(clip_id)))
        path = self._state_path(clip_id)
        st = None
        spooled_at = float(getattr(clip, "spooled_at_s", 0.0) or 0.0)
        existed = path.exists()
        if existed:
            try:
                st = _ClipState(**json.loads(path.read_text()))
                if st.clip_id != clip_id or st.size_bytes != size:
                    raise ValueError(f"state is for {st.clip_id} of {st.size_bytes} bytes")
            except (ValueError, TypeError, OSError) as err:
                log.warning("upload state %s unreadable (%s); starting the clip over", path, err)
                st = None
        if st is None:
            # ages count from when the clip was spooled, and the {date} in the key stays the same
            # even if this state file is ever lost (the spool keeps spooled_at_s durably)
            first_seen = min(now, spooled_at) if spooled_at > 0 else now
            # the key's date comes from the spool's record alone, never from this process's
            # clock, so every process (and a clock that jumped) computes the same key
            key_day = spooled_at if spooled_at > 0 else now
            multipart = size > self.config.multipart_threshold_bytes
            st = _ClipState(
                clip_id=clip_id,
                first_seen_s=first_seen,
                date=datetime.fromtimestamp(key_day, timezone.utc).strftime("%Y-%m-%d"),
                mode="multipart" if multipart else "single",
                size_bytes=size,
                part_size_bytes=self.config.part_size_bytes if multipart else 0,
                upload_id=uuid.uuid4().hex if multipart else "",
            )
            if spooled_at <= 0:
                self._save_state(st)  # first_seen could not be rebuilt from the spool
        if not existed and spooled_at > self._started_s:
            # spooled after this uploader started and never failed here: no earlier process
            # (nor this one) has sent a byte of it, so the HEAD round trip is skipped. Clips
            # older than our start may have been sent just before a crash: they are HEADed.
            # A wall clock that jumped can only make an old clip look new, which costs a
            # re-send to the same key, never a second copy.
            self._head_checked.add(clip_id)
        self._states[clip_id] = st
        return st

    def _save_state(self, st: _ClipState) -> None:
        """Write the state atomically (temp + rename). Deliberately no fsync: after a power cut
        the file is the old one, the new one, or unreadable, and each of those only costs
        re-sending a part (an unreadable file restarts the clip); nothing is lost or doubled."""
        path = self._state_path(st.clip_id)
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w") as f:
            json.dump(asdict(st), f, separators=(",", ":"))
        os.replace(tmp, path)

    def _forget(self, clip_id: str, *, keep_file: bool = False) -> None:
        self._states.pop(clip_id, None)
        self._head_checked.discard(clip_id)
        if not keep_file:
            self._state_path(clip_id).unlink(missing_ok=True)

    def _remove_orphan_states(self) -> None:
        """State files of clips the spool no longer holds (a crash between ack and cleanup)."""
        contains = getattr(self.spool, "__contains__", None)
        if contains is None:
            return
        for path in self.state_dir.glob("*.json"):
            if not contains(path.stem):
                path.unlink(missing_ok=True)

    def _load_budget(self) -> DailyBudget:
        budget = DailyBudget(self.config.daily_budget_bytes)
        try:
            d = json.loads((self.state_dir / "budget.json").read_text())
            budget.day, budget.used_bytes = int(d["day"]), int(d["used_bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return budget

    def _charge(self, size_bytes: int, now: float) -> None:
        if not size_bytes:
            return
        self._budget.charge(size_bytes, now)
        with self._lock:
            self._counters["bytes_sent"] += size_bytes
        if self.config.daily_budget_bytes:
            tmp = self.state_dir / "budget.json.tmp"
            tmp.write_text(json.dumps({"day": self._budget.day, "used_bytes": self._budget.used_bytes}))
            os.replace(tmp, self.state_dir / "budget.json")

    # ------------------------------------------------------------------------------- protocol

    def object_url(self, st: _ClipState) -> str:
        """The clip's object URL: the endpoint template filled in (stable for the clip's life)."""
        return self.config.endpoint_url_template.format(
            clip_id=st.clip_id, vehicle_id=self.config.vehicle_id, date=st.date,
            platform=self.config.platform)

    def _n_parts(self, st: _ClipState) -> int:
        return max(1, -(-st.size_bytes // st.part_size_bytes))

    def _next_part(self, st: _ClipState) -> int | None:
        for n in range(1, self._n_parts(st) + 1):
            if str(n) not in st.parts_done:
                return n
        return None

    def _next_request_bytes(self, st: _ClipState) -> int:
        if st.mode == "single":
            return st.size_bytes
        n = self._next_part(st)
        if n is None:
            return 0  # the manifest is tiny; never blocked by the budget
        return min(st.part_size_bytes, st.size_bytes - (n - 1) * st.part_size_bytes)

    def _step(self, st: _ClipState, now: float) -> UploadResult:
        cid = st.clip_id
        try:
            leased = self.spool.lease(cid)
            # the path now, before acks start: they hold the spool's lock while they fsync
            path = str(getattr(leased, "path", None) or self.spool.path(cid))
        except (SpoolError, KeyError, FileNotFoundError) as err:
            self._forget(cid)
            return UploadResult("waiting", clip_id=cid, cause="lease", message=str(err))
        self._start_acks()  # the previous clip's ack overlaps this clip's transfer
        acked = False
        try:
            st.attempts += 1
            with self._lock:
                self._counters["attempts"] += 1
            url = self.object_url(st)
            if self.config.head_before_put and cid not in self._head_checked:
                if self._already_there(st, url, now):
                    acked = self._ack(st)
                    with self._lock:
                        self._counters["deduped"] += 1
                    return UploadResult("deduped", clip_id=cid)
                self._head_checked.add(cid)
            if st.mode == "single":
                result = self._put_single(st, url, path, now)
            else:
                result = self._put_next_part(st, url, path, now)
            if result.action == "uploaded":
                acked = self._ack(st)
                with self._lock:
                    self._counters["uploaded"] += 1
            elif result.action in ("corrupt", "expired"):
                acked = True  # dropped from the spool by _drop
            else:
                st.consecutive_failures = 0
                self._save_state(st)
            return result
        except UploadError as err:
            return self._failed(st, err, now)
        finally:
            if not acked:
                try:
                    self.spool.release(cid)
                except (SpoolError, KeyError, FileNotFoundError):
                    pass

    def _request(self, method: str, url: str, st: _ClipState | None, now: float, **kwargs):
        """One HTTP request; the body bytes that left, even on failure, are billed and counted."""
        try:
            return self._http.request(method, url, **kwargs)
        finally:
            sent = self._http.bytes_sent_last
            self._charge(sent, now)
            if st is not None:
                st.bytes_sent += sent

    def _headers(self, sha256_hex: str, body: bytes | None = None, md5_b64: str | None = None) -> dict[str, str]:
        h = {"Content-Type": "application/octet-stream", **self.config.extra_headers}
        b64 = base64.b64encode(bytes.fromhex(sha256_hex)).decode()
        for name in self.config.integrity_headers:
            if name == "x-amz-checksum-sha256":
                h["x-amz-checksum-sha256"] = b64
            elif name == "repr-digest":
                h["Repr-Digest"] = f"sha-256=:{b64}:"
            elif name == "content-md5":
                h["Content-MD5"] = md5_b64 or base64.b64encode(hashlib.md5(body or b"").digest()).decode()
        return h

    def _already_there(self, st: _ClipState, url: str, now: float) -> bool:
        head_url = url if st.mode == "single" else _suffixed(url, ".manifest.json")
        resp = self._request("HEAD", head_url, None, now)
        if resp.status >= 500:
            self._check(resp, f"HEAD {head_url}")  # the server is failing: do not send a body
        if resp.status != 200:
            return False  # 404, or 403 from a URL presigned for PUT only: send it
        if st.mode == "multipart":
            return True  # the manifest is the commit point: only written after every part
        return int(resp.headers.get("content-length", -1)) == st.size_bytes

    def _check(self, resp, what: str) -> None:
        if 200 <= resp.status < 300:
            return
        s = resp.status
        detail = resp.body[:200].decode("utf-8", "replace").strip().replace("\n", " ")
        if s == 507:
            raise UploadError(f"{what}: server has no room (HTTP {s}); will retry", True, "disk_full")
        if s >= 500:
            raise UploadError(f"{what}: server error HTTP {s} {detail!r}; will retry", True, "http_5xx")
        if s in (408, 429):
            raise UploadError(f"{what}: server asked to slow down (HTTP {s}); backing off", True, "throttled")
        if s == 400 and ("digest" in detail.lower() or "checksum" in detail.lower()):
            raise UploadError(f"{what}: server rejected the body checksum (HTTP 400 {detail!r})", True, "integrity")
        raise UploadError(
            f"{what}: refused with HTTP {s} {detail!r}; check the endpoint template and credentials "
            "(retrying at the slowest backoff until the clip expires)", False, f"http_{s // 100}xx")

    def _put_single(self, st: _ClipState, url: str, path: str, now: float) -> UploadResult:
        md5 = None
        if "content-md5" in self.config.integrity_headers:
            md5 = base64.b64encode(_file_digest(path, 0, st.size_bytes, "md5")).decode()
        body = FileRange(path, 0, st.size_bytes)
        resp = self._request("PUT", url, st, now, headers=self._headers(st.clip_id, md5_b64=md5), body=body,
                             pace=self._pace_or_none())
        if resp.status == 400 and self._locally_corrupt(st, path):
            return self._drop(st, "corrupt", "local bytes no longer hash to the clip id")
        self._check(resp, f"PUT {url}")
        return UploadResult("uploaded", clip_id=st.clip_id, bytes_sent=self._http.bytes_sent_last,
                            status=resp.status)

    def _put_next_part(self, st: _ClipState, url: str, path: str, now: float) -> UploadResult:
        if st.parts_done and st.parts_url != url:
            # the endpoint changed (a config push) mid-upload: the parts sent so far are on the
            # old server, so the manifest would point at nothing. Start over at the new one.
            log.warning("endpoint of clip %s changed from %s to %s mid-upload; sending its parts again",
                        st.clip_id[:12], st.parts_url, url)
            st.parts_done.clear()
            st.upload_id = uuid.uuid4().hex
        st.parts_url = url
        n = self._next_part(st)
        if n is None:
            return self._commit_manifest(st, url, path, now)
        data, sha = self._part_bytes(st, path, n)
        if data is None:
            return self._drop(st, "corrupt", f"clip file shorter than {st.size_bytes} bytes")
        size = len(data)
        if n < self._n_parts(st):  # read and hash the next part while this one is on the wire
            self._prefetch = (st.clip_id, n + 1, self._prefetcher().submit(_read_part, st, path, n + 1))
        part_url = _suffixed(url, f".parts/{n:05d}")
        resp = self._request("PUT", part_url, st, now, headers=self._headers(sha, data), body=data,
                             pace=self._pace_or_none())
        self._check(resp, f"PUT {part_url}")
        st.parts_done[str(n)] = sha
        with self._lock:
            self._counters["parts_sent"] += 1
        return UploadResult("part_sent", clip_id=st.clip_id, part_number=n, bytes_sent=size, status=resp.status)

    def _part_bytes(self, st: _ClipState, path: str, n: int) -> tuple[bytes | None, str]:
        """Part ``n``'s bytes and SHA-256: from the prefetch if it read this part, else now."""
        pre, self._prefetch = self._prefetch, None
        if pre is not None and pre[0] == st.clip_id and pre[1] == n:
            return pre[2].result()
        return _read_part(st, path, n)

    def _prefetcher(self):
        if self._prefetch_pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._prefetch_pool = ThreadPoolExecutor(1, thread_name_prefix="shadowd-upload-read")
        return self._prefetch_pool

    def _commit_manifest(self, st: _ClipState, url: str, path: str, now: float) -> UploadResult:
        parts = []
        for n in range(1, self._n_parts(st) + 1):
            size = min(st.part_size_bytes, st.size_bytes - (n - 1) * st.part_size_bytes)
            parts.append({"part_number": n, "size_bytes": size, "sha256": st.parts_done[str(n)]})
        manifest = json.dumps({
            "format": MANIFEST_FORMAT, "clip_id": st.clip_id, "sha256": st.clip_id,
            "size_bytes": st.size_bytes, "part_size_bytes": st.part_size_bytes,
            "upload_id": st.upload_id, "parts": parts,
        }, indent=1).encode()
        man_url = _suffixed(url, ".manifest.json")
        headers = self._headers(hashlib.sha256(manifest).hexdigest(), manifest)
        headers["Content-Type"] = "application/json"
        resp = self._request("PUT", man_url, st, now, headers=headers, body=manifest)
        if resp.status == 400 and self._locally_corrupt(st, path):
            # a server that checks the whole object (S3 full-object checksum) refused it
            return self._drop(st, "corrupt", "local bytes no longer hash to the clip id")
        self._check(resp, f"PUT {man_url}")
        return UploadResult("uploaded", clip_id=st.clip_id, bytes_sent=len(manifest), status=resp.status)

    def _locally_corrupt(self, st: _ClipState, path: str) -> bool:
        """Whether the spooled bytes no longer hash to the clip id (checked only when a server
        refuses a body as damaged: the spool verified every clip when it opened)."""
        return _file_digest(path, 0, st.size_bytes, "sha256").hex() != st.clip_id

    # ------------------------------------------------------------------------------- outcomes

    def _ack(self, st: _ClipState) -> bool:
        """The server has the clip: queue its spool ack; it stays leased until then.

        The spool's ack is durable (unlink + directory fsync, ~10 ms on this disk), so acks run
        on a helper thread *while the next clip is on the wire* (started by :meth:`_step` after
        it leased the next clip, so the two never wait on the spool's lock at the same time),
        and synchronously whenever there is nothing to send. A crash with acks still queued
        leaves those clips spooled; the HEAD on restart finds them on the server and acks them.
        """
        self._ack_due.append(st.clip_id)
        self._forget(st.clip_id, keep_file=True)  # removed once the spool ack is done
        return True

    def _start_acks(self) -> None:
        if not self._ack_due:
            return
        if self._ack_worker is None:
            self._ack_worker = threading.Thread(target=self._ack_loop, name="shadowd-upload-ack", daemon=True)
            self._ack_worker.start()
        for clip_id in self._ack_due:
            self._ack_queue.put(clip_id)
        self._ack_due = []

    def _flush_acks(self) -> None:
        self._start_acks()
        if self._ack_worker is not None:
            self._ack_queue.join()

    def _ack_loop(self) -> None:
        while True:
            clip_id = self._ack_queue.get()
            try:
                if clip_id is None:
                    return
                self._ack_one(clip_id)
            finally:
                self._ack_queue.task_done()

    def _ack_one(self, clip_id: str) -> None:
        try:
            self.spool.ack(clip_id)
            self._state_path(clip_id).unlink(missing_ok=True)
        except (SpoolError, KeyError, FileNotFoundError) as err:
            # the server has it; releasing makes it pending again, and its HEAD acks it
            log.warning("clip %s uploaded but the spool refused the ack: %s", clip_id, err)
            with self._lock:
                self._counters["ack_failed"] += 1
            try:
                self.spool.release(clip_id)
            except (SpoolError, KeyError, FileNotFoundError):
                pass

    def _drop(self, st: _ClipState, what: str, why: str) -> UploadResult:
        log.warning("dropping clip %s (%s): %s", st.clip_id, what, why)
        try:
            self.spool.ack(st.clip_id)
        except (SpoolError, KeyError, FileNotFoundError) as err:
            log.warning("could not drop clip %s from the spool: %s", st.clip_id, err)
        self._forget(st.clip_id)
        with self._lock:
            self._counters[what] += 1
        return UploadResult(what, clip_id=st.clip_id, cause=what, message=why)

    def _count_failure(self, cause: str) -> None:
        with self._lock:
            self._failures[cause] += 1

    def _failed(self, st: _ClipState, err: UploadError, now: float) -> UploadResult:
        st.failures += 1
        st.consecutive_failures += 1
        st.last_cause = err.cause
        attempt = st.consecutive_failures if err.retryable else 10_000
        delay = backoff_s(attempt, self.config.backoff_base_s, self.config.backoff_max_s, self._rng.random())
        st.next_retry_s = now + delay
        self._head_checked.discard(st.clip_id)  # the outcome of the failed request is unknown
        self._count_failure(err.cause)
        self._save_state(st)
        log.info("upload of %s failed (%s), retry in %.1f s: %s", st.clip_id[:12], err.cause, delay, err)
        return UploadResult("failed", clip_id=st.clip_id, cause=err.cause, wait_s=delay, message=str(err))

    def _set_gated(self, result: UploadResult) -> UploadResult:
        """Nothing to send this step: finish queued acks now, and note why we are not sending."""
        self._flush_acks()
        self._gated = result.cause if result.action == "gated" else ""
        return result

    # ------------------------------------------------------------------------------- pacing

    def _pace_or_none(self) -> Callable[[int], int] | None:
        return None if self._bucket.unlimited else self._pace

    def _pace(self, want_bytes: int) -> int:
        if self._http.aborted:
            raise UploadError("upload interrupted by shutdown; resumes at the next start", True, "shutdown")
        want = min(want_bytes, self._bucket.burst_bytes)
        wait = self._bucket.wait_s(want, self._mono())
        if wait > 0:
            self._sleep(wait)
        granted = self._bucket.take(want, self._mono())
        while granted == 0:  # a sleep that returned early
            if self._http.aborted:
                raise UploadError("upload interrupted by shutdown; resumes at the next start", True, "shutdown")
            self._sleep(self._bucket.wait_s(want, self._mono()) or 0.001)
            granted = self._bucket.take(want, self._mono())
        return granted


def _read_part(st: _ClipState, path: str, n: int) -> tuple[bytes | None, str]:
    """Read part ``n`` (1-based) of a clip and hash it (hashlib releases the GIL on big data)."""
    offset = (n - 1) * st.part_size_bytes
    size = min(st.part_size_bytes, st.size_bytes - offset)
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        return None, ""
    return data, hashlib.sha256(data).hexdigest()


def _suffixed(url: str, suffix: str) -> str:
    """``url`` with ``suffix`` appended to its path, before any query string (presigned URLs)."""
    base, sep, query = url.partition("?")
    return f"{base}{suffix}{sep}{query}"


def _file_digest(path: str, offset: int, size: int, algo: str) -> bytes:
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        f.seek(offset)
        left = size
        buf = bytearray(1 << 20)
        view = memoryview(buf)
        while left:
            n = f.readinto(view[:min(len(buf), left)])
            if not n:
                break
            h.update(view[:n])
            left -= n
    return h.digest()
