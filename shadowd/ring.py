"""Typed Python access to the shared-memory frame rings (the C core in native/).

This module is the ONLY importer of ``shadowd._native``. It owns:

* the ABI handshake at import (the compiled library must be the one this file was written
  for, else ImportError saying how to rebuild);
* ``_check(rc, op)``, the one choke point turning the C library's negative errno codes into
  ``RingError`` / ``RingCorruptError`` / ``RingVersionError`` with messages that say what is
  wrong, show the values and say how to fix it;
* ``RingWriter`` / ``RingReader``: frames are numpy structured arrays of a topic's dtype
  (``shadowd.core.signals.frame_dtype``); batch reads copy straight into the caller's
  preallocated array through ``ffi.from_buffer`` (no per-frame Python work);
* ``RingHistory``: the ``shadowd.core.types.History`` protocol over a set of readers;
* ``ring_memory_bytes`` / ``capacity_for``: sizing helpers for platform profiles.
The module's other C parts (the candump parser, the divergence and window kernels) are found
through ``shadowd.native.kernel``.

Rules: one writer per ring (enforced by the C core); a handle is used by one thread at a time
(open one reader per thread); every C call releases the GIL (cffi API mode), so ``wait()``
never stalls other threads. Keep ``_ABI_VERSION`` / ``LAYOUT_VERSION`` in sync with
native/include/shadowd/ring.h; tests/ring/test_ring_abi.py fails when they drift.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .errors import RingCorruptError, RingError, RingVersionError

try:
    from ._native import ffi, lib
except ImportError as err:  # pragma: no cover - depends on the build
    raise ImportError(
        f"shadowd's C ring core is not built ({err}); build it with "
        "`.venv/bin/python -m pip install --no-build-isolation -e .` (needs a C compiler)"
    ) from err

_ABI_VERSION = 1
LAYOUT_VERSION = 1
"""Segment layout version this build reads (SHADOWD_RING_LAYOUT_VERSION in ring.h)."""

if lib.shadowd_ring_abi_version() != _ABI_VERSION or lib.SHADOWD_RING_LAYOUT_VERSION != LAYOUT_VERSION:
    raise ImportError(
        f"shadowd._native has ring ABI v{lib.shadowd_ring_abi_version()} / layout "
        f"v{lib.SHADOWD_RING_LAYOUT_VERSION}, shadowd/ring.py expects ABI v{_ABI_VERSION} / layout "
        f"v{LAYOUT_VERSION}: a stale build is installed; rebuild with "
        "`.venv/bin/python -m pip install --no-build-isolation -e .`"
    )

SHM_DIR = "/dev/shm"
"""Where named segments live (shm_open's directory on Linux)."""

MAX_CAPACITY = int(lib.SHADOWD_RING_MAX_CAPACITY)
MAX_FRAME_BYTES = int(lib.SHADOWD_RING_MAX_PAYLOAD)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_INT32_MAX = 2**31 - 1


def segment_path(name: str) -> str:
    """The file of a ring: a bare topic name maps to ``/dev/shm/shadowd.<name>``; anything
    with a ``/`` is taken as a path (tests use tmp dirs)."""
    if "/" in name:
        return name
    if not _NAME_RE.match(name):
        raise RingError(
            f"ring name {name!r} is not valid: use letters, digits, '_', '.', '-' "
            "(or pass a path containing '/')",
            _errno.EINVAL,
        )
    return f"{SHM_DIR}/shadowd.{name}"


def ring_memory_bytes(frame_bytes: int | np.dtype, capacity: int) -> int:
    """Bytes of shared memory a ring of ``capacity`` frames of ``frame_bytes`` takes
    (header + slots), for platform memory budgets. Raises RingError on invalid sizes."""
    size = frame_bytes.itemsize if isinstance(frame_bytes, np.dtype) else int(frame_bytes)
    total = int(lib.shadowd_ring_segment_size(size, capacity)) if 0 < size < 2**32 and 0 <= capacity < 2**64 else 0
    if total == 0:
        raise RingError(
            f"no ring of {capacity} frames x {size} bytes: capacity must be a power of two in "
            f"[2, {MAX_CAPACITY}] and frames 1..{MAX_FRAME_BYTES} bytes",
            _errno.EINVAL,
        )
    return total


def capacity_for(window_s: float, rate_hz: float, margin: float = 1.25) -> int:
    """The smallest power-of-two capacity holding ``window_s`` of history at ``rate_hz``
    (times ``margin``): size each ring to the pre-trigger window so the ring is the history."""
    if not (window_s > 0 and rate_hz > 0 and margin >= 1):
        raise RingError(
            f"capacity_for(window_s={window_s}, rate_hz={rate_hz}, margin={margin}): all must be "
            "positive and margin >= 1",
            _errno.EINVAL,
        )
    need = max(2, int(np.ceil(window_s * rate_hz * margin)))
    cap = 1 << (need - 1).bit_length()
    if cap > MAX_CAPACITY:
        raise RingError(
            f"{window_s} s at {rate_hz} Hz needs {need} slots, above the ring maximum "
            f"{MAX_CAPACITY}: shorten the window or lower the rate",
            _errno.EINVAL,
        )
    return cap


@dataclass(frozen=True, slots=True)
class RingInfo:
    """What a segment header says right now."""

    path: str
    layout_version: int
    frame_bytes: int
    slot_bytes: int
    capacity: int
    segment_bytes: int
    head_seq: int
    oldest_seq: int
    writer_pid: int
    writer_generation: int


@dataclass(frozen=True, slots=True)
class RingStats:
    """Counters of one handle (process local)."""

    frames: int  # read by this reader / committed by this writer
    dropped: int  # frames this reader lost because the writer lapped it
    torn: int  # copies discarded because the slot was overwritten while copied
    cursor_seq: int


def _info_of(path: str, c_info) -> RingInfo:
    return RingInfo(
        path=path,
        layout_version=c_info.layout_version,
        frame_bytes=c_info.payload_max,
        slot_bytes=c_info.slot_size,
        capacity=c_info.capacity,
        segment_bytes=c_info.segment_size,
        head_seq=c_info.head,
        oldest_seq=c_info.oldest,
        writer_pid=c_info.writer_pid,
        writer_generation=c_info.writer_generation,
    )


def _check(rc: int, op: str, path: str = "?", c_info=None, dtype: np.dtype | None = None) -> int:
    """The one place a C return code becomes an exception. Returns rc when it is >= 0."""
    if rc >= 0:
        return rc
    code = -rc
    what = f'ring "{path}": {op}'
    if code == _errno.EPROTO:
        got = c_info.layout_version if c_info is not None else "?"
        raise RingVersionError(
            f'{what}: segment has layout v{got}, this build reads v{LAYOUT_VERSION}; rebuild the '
            "producer against the same native/include/shadowd/ring.h as shadowd and restart both",
            code,
        )
    if code == _errno.EMSGSIZE:
        seg = c_info.payload_max if c_info is not None else "?"
        want = f"{dtype.itemsize}-byte frames ({dtype.descr})" if dtype is not None else "another size"
        raise RingVersionError(
            f"{what}: segment carries {seg}-byte frames but the reader expects {want}; the "
            "producer and shadowd disagree on the topic schema: rebuild the producer from "
            "shadowd.core.signals and recreate the ring",
            code,
        )
    if code == _errno.EBADMSG:
        if c_info is not None and c_info.file_size and c_info.file_size < max(
            int(lib.SHADOWD_RING_HEADER_SIZE), c_info.segment_size
        ):
            detail = (
                f"segment is truncated: the file has {c_info.file_size} bytes, its header needs "
                f"{max(int(lib.SHADOWD_RING_HEADER_SIZE), c_info.segment_size)}"
            )
        elif c_info is not None and c_info.magic not in (0, _MAGIC):
            detail = f"not a shadowd ring (magic 0x{c_info.magic:016x}, expected 0x{_MAGIC:016x})"
        elif c_info is not None:
            detail = (
                f"header does not add up (frame {c_info.payload_max} B, slot {c_info.slot_size} B, "
                f"capacity {c_info.capacity}, size {c_info.segment_size} B)"
            )
        else:
            detail = "a slot or the head sequence contradicts the segment layout"
        raise RingCorruptError(
            f"{what}: {detail}; remove the segment (rm {path}) and restart its producer", code
        )
    if code == _errno.ENOENT:
        raise RingError(f"{what}: no such segment; start its producer first or check the topic name", code)
    if code == _errno.EBUSY:
        pid = c_info.writer_pid if c_info is not None else "?"
        raise RingError(
            f"{what}: another writer (pid {pid}) holds this ring; a ring has exactly one writer: "
            "stop the other producer or use another topic name",
            code,
        )
    if code == _errno.EEXIST:
        raise RingError(
            f"{what}: a segment with other frame size or capacity exists; pass replace=True or "
            f"remove it (rm {path})",
            code,
        )
    if code == _errno.EAGAIN:
        raise RingError(f"{what}: the segment is still being created by its producer; retry shortly", code)
    raise RingError(f"{what}: {os.strerror(code)} (errno {code})", code)


_MAGIC = 0x474E495257444853  # "SHDWRING"; keep in sync with RING_MAGIC in native/src/ring.c
_NULL = ffi.NULL
_read_batch = lib.shadowd_ring_read_batch


def _t_ns_offset(dtype: np.dtype) -> int:
    field = dtype.fields.get("t_ns") if dtype.fields else None
    if field is None:
        return -1
    if field[0] != np.dtype("<i8"):
        raise RingError(f"dtype field t_ns is {field[0]}, must be '<i8' (monotonic ns)", _errno.EINVAL)
    return int(field[1])


def _frame_dtype(dtype) -> np.dtype:
    dt = np.dtype(dtype)
    if dt.itemsize == 0 or dt.itemsize > MAX_FRAME_BYTES or dt.hasobject:
        raise RingError(
            f"dtype {dt} cannot be a ring frame: needs 1..{MAX_FRAME_BYTES} bytes and no Python objects",
            _errno.EINVAL,
        )
    return dt


class _Handle:
    """Shared plumbing of writers and readers: the C handle and the dtype."""

    def __init__(self, handle, path: str, dtype: np.dtype):
        self._h = ffi.gc(handle, lib.shadowd_ring_close)
        self.path = path
        self.dtype = dtype
        self._itemsize = dtype.itemsize
        self._info = ffi.new("struct shadowd_ring_info *")
        self._stats = ffi.new("struct shadowd_ring_stats *")
        self._matched = ffi.new("uint64_t *")
        lib.shadowd_ring_info(self._h, self._info)
        self.capacity = int(self._info.capacity)

    def _handle(self):
        if self._h is None:
            raise RingError(f'ring "{self.path}": handle is closed; open it again', _errno.EBADF)
        return self._h

    def close(self) -> None:
        """Release the handle (a writer marks the ring as having no writer). Idempotent."""
        if self._h is not None:
            h, self._h = self._h, None
            ffi.release(h)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def info(self) -> RingInfo:
        lib.shadowd_ring_info(self._handle(), self._info)
        return _info_of(self.path, self._info)

    @property
    def stats(self) -> RingStats:
        lib.shadowd_ring_stats(self._handle(), self._stats)
        s = self._stats
        return RingStats(frames=s.frames, dropped=s.dropped, torn=s.torn, cursor_seq=s.cursor)

    @property
    def writer_alive(self) -> bool:
        """True while the ring's writer process lives (pid and start time still match)."""
        return bool(_check(lib.shadowd_ring_writer_alive(self._handle()), "writer_alive", self.path))

    def frames(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        """Still-valid frames with t0_ns <= t_ns <= t1_ns, oldest first; no cursor moves.

        Frames the writer overwrites during the look-up are left out (they are gone). The
        first C call only counts the matches, so the result is allocated at its size (a
        can_raw ring holds 10^5 frames; the usual window is a fraction of it)."""
        h = self._handle()
        t0_ns = max(int(t0_ns), -(2**63))  # open-ended windows are fine
        t1_ns = min(int(t1_ns), 2**63 - 1)
        want = 0
        out = np.empty(0, dtype=self.dtype)
        n = 0
        for _ in range(8):
            buf = ffi.from_buffer(out, require_writable=True) if want else _NULL
            n = _check(
                lib.shadowd_ring_find(
                    h, t0_ns, t1_ns, buf, self._itemsize, want, _NULL, _NULL, self._matched
                ),
                "find",
                self.path,
            )
            matched = int(self._matched[0])
            if matched <= want:
                break
            want = min(matched + 64, self.capacity)  # frames may keep landing inside [t0, t1]
            out = np.empty(want, dtype=self.dtype)
        return out[:n]


class RingWriter(_Handle):
    """The one writer of a ring. ``write()`` never blocks: a full ring overwrites its oldest
    frame. Create with :meth:`create`."""

    @classmethod
    def create(
        cls,
        name: str,
        dtype,
        capacity: int,
        *,
        replace: bool = False,
        start_seq: int = 0,
    ) -> "RingWriter":
        """Create the ring ``name`` (see :func:`segment_path`) for frames of ``dtype``, or
        re-attach to an existing one with the same frame size and capacity (a restarted
        producer resumes at its head and readers keep reading). ``replace`` recreates a ring
        with other parameters (or a corrupt one); readers of the old one then see its writer
        dead and must reopen by name. Call :meth:`unlink` first for a fresh, empty ring.
        ``start_seq`` is for tests of the 2^32/2^64 wrap. Raises RingError (busy: another live
        writer; exists with other parameters; bad sizes), RingVersionError, RingCorruptError."""
        dt = _frame_dtype(dtype)
        path = segment_path(name)
        t_off = _t_ns_offset(dt)
        ring_memory_bytes(dt, capacity)  # validates the sizes with a clear message
        out = ffi.new("struct shadowd_ring **")
        rc = lib.shadowd_ring_create(
            path.encode(), dt.itemsize, capacity, start_seq % 2**64,
            lib.SHADOWD_RING_REPLACE if replace else 0, out,
        )
        if rc < 0:
            info = ffi.new("struct shadowd_ring_info *")
            if rc == -_errno.EBUSY:
                probe = ffi.new("struct shadowd_ring **")
                if lib.shadowd_ring_open(path.encode(), 0, 0, info, probe) == 0:
                    lib.shadowd_ring_close(probe[0])
            _check(rc, "create", path, info, dt)
        writer = cls(out[0], path, dt)
        writer._t_off = t_off
        writer._last = None
        writer._last_ptr = None
        return writer

    def write(self, frames) -> int:
        """Write one record (np.void / 0-d array) or a 1-D array of records of the ring's
        dtype; each frame's ``t_ns`` field is its slot timestamp. Returns frames written."""
        h = self._handle()
        if frames is not self._last:
            arr = np.asarray(frames)
            if arr.dtype != self.dtype:
                raise RingError(
                    f'ring "{self.path}": frames of dtype {arr.dtype} given, the ring carries '
                    f"{self.dtype}; build frames with shadowd.core.signals.frame_dtype(topic)",
                    _errno.EINVAL,
                )
            arr = np.ascontiguousarray(arr.reshape(-1))
            ptr = ffi.from_buffer(arr)
            if arr is frames:  # cache only arrays the caller keeps reusing
                self._last, self._last_ptr = frames, ptr
        else:
            arr, ptr = frames, self._last_ptr
        n = len(arr)
        done = 0
        while done < n:
            k = min(n - done, _INT32_MAX)
            done += _check(
                lib.shadowd_ring_write_batch(h, ptr + done * self._itemsize, self._itemsize, k, self._t_off),
                "write",
                self.path,
            )
        return n

    def unlink(self) -> None:
        """Remove the segment file (readers that have it open keep their mapping)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class RingReader(_Handle):
    """One reader of a ring with its own cursor. Open with :meth:`open`."""

    @classmethod
    def open(cls, name: str, dtype, *, start: str = "latest", timeout_s: float = 0.0) -> "RingReader":
        """Open ring ``name`` for frames of ``dtype``. ``start="latest"`` reads only frames
        written from now on; ``"oldest"`` starts with the history still in the ring.
        ``timeout_s`` > 0 keeps retrying (every 10 ms) while the segment does not exist yet or
        is still being created, so a reader may start before its producer.
        Raises RingError (missing segment), RingVersionError (other layout version or frame
        size), RingCorruptError (truncated, wrong magic, header that does not add up)."""
        dt = _frame_dtype(dtype)
        path = segment_path(name)
        if start not in ("latest", "oldest"):
            raise RingError(f'start={start!r}: use "latest" or "oldest"', _errno.EINVAL)
        out = ffi.new("struct shadowd_ring **")
        info = ffi.new("struct shadowd_ring_info *")
        flags = lib.SHADOWD_RING_FROM_OLDEST if start == "oldest" else 0
        deadline = time.monotonic() + timeout_s
        while True:
            rc = lib.shadowd_ring_open(path.encode(), dt.itemsize, flags, info, out)
            if rc not in (-_errno.ENOENT, -_errno.EAGAIN) or time.monotonic() >= deadline:
                break
            time.sleep(0.01)
        _check(rc, "open", path, info, dt)
        reader = cls(out[0], path, dt)
        try:
            st = os.stat(path)
            reader._file_id = (st.st_dev, st.st_ino)
        except OSError:
            reader._file_id = None
        reader._dropped = ffi.new("uint64_t *")
        reader._last = None
        reader._last_ptr = None
        reader._one = np.empty(1, dtype=dt)
        return reader

    def _buffer(self, out: np.ndarray):
        if not isinstance(out, np.ndarray) or out.dtype != self.dtype or out.ndim != 1:
            raise RingError(
                f'ring "{self.path}": read_into needs a 1-D numpy array of dtype {self.dtype}, got '
                f"{type(out).__name__} {getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}",
                _errno.EINVAL,
            )
        if not out.flags.c_contiguous or not out.flags.writeable:
            raise RingError(f'ring "{self.path}": read_into needs a contiguous, writable array', _errno.EINVAL)
        self._last, self._last_ptr = out, ffi.from_buffer(out, require_writable=True)
        self._last_n = min(len(out), _INT32_MAX)
        return self._last_ptr

    def read_into(self, out: np.ndarray) -> tuple[int, int]:
        """Copy up to ``len(out)`` next frames into ``out`` (one C call, no per-frame Python
        work). Returns ``(n, dropped)``: frames copied into out[:n] and frames lost to lapping
        since the previous call. ``(0, 0)`` when nothing is new.

        The hot path of every reader: the buffer of the last array passed in is kept (the
        array is referenced, so it cannot be freed or resized), so reusing one preallocated
        array costs a single C call."""
        if out is not self._last:
            self._buffer(out)
        h = self._h
        if h is None:
            self._handle()  # raises the closed-handle error
        rc = _read_batch(h, self._last_ptr, self._itemsize, self._last_n, _NULL, _NULL, self._dropped)
        if rc < 0:
            _check(rc, "read", self.path)
        return rc, self._dropped[0]

    def read(self, max_n: int = 1024) -> np.ndarray:
        """The next (up to ``max_n``) frames as a new array; lapping losses go to ``stats``."""
        out = np.empty(max_n, dtype=self.dtype)
        n, _ = self.read_into(out)
        return out[:n].copy() if n < max_n // 2 else out[:n]

    def read_one(self):
        """The next frame as a numpy record (np.void), or None when nothing is new."""
        n, _ = self.read_into(self._one)
        return self._one[0].copy() if n else None

    def poll(self) -> bool:
        """True when at least one frame is ready (non-blocking)."""
        return bool(lib.shadowd_ring_poll(self._handle()))

    def wait(self, timeout_s: float | None) -> bool:
        """Block until a frame is ready (True) or ``timeout_s`` passes (False); None waits
        forever. The GIL is released while waiting."""
        timeout_ns = -1 if timeout_s is None else max(0, int(timeout_s * 1e9))
        return bool(_check(lib.shadowd_ring_wait(self._handle(), timeout_ns), "wait", self.path))

    def wait_for(self, frames: int, timeout_s: float) -> bool:
        """Block until ``frames`` frames are unread (True) or ``timeout_s`` passes (False). Woken
        by the writer's publishes, not by a timer: a reader that needs every k-th frame waits
        for the k-th next one. The GIL is released while waiting."""
        timeout_ns = max(0, int(timeout_s * 1e9))
        return bool(_check(lib.shadowd_ring_wait_for(self._handle(), frames, timeout_ns), "wait", self.path))

    def seek(self, where: str) -> None:
        """Move the cursor to ``"latest"`` (skip everything) or ``"oldest"`` (replay history)."""
        if where not in ("latest", "oldest"):
            raise RingError(f'seek({where!r}): use "latest" or "oldest"', _errno.EINVAL)
        _check(lib.shadowd_ring_seek(self._handle(), 1 if where == "oldest" else 0), "seek", self.path)

    @property
    def replaced(self) -> bool:
        """True when the ring's name now points at another segment (recreated with
        ``replace=True`` or removed): this reader will see no new frames; reopen by name."""
        try:
            st = os.stat(self.path)
        except OSError:
            return True
        return (st.st_dev, st.st_ino) != self._file_id

    @property
    def dropped_total(self) -> int:
        """Frames this reader lost because the writer lapped it, since open."""
        return self.stats.dropped

    @property
    def torn_reads(self) -> int:
        """Copies discarded because the slot was overwritten while being copied."""
        return self.stats.torn


DRAIN_FIELDS = ("read", "n", "late", "out_of_order", "full", "dropped", "last_ns", "error")
"""What ``RingDrain.run`` returns per ring, in order (shadowd_ring_drain's summary): frames read
from the ring, kept (written where ``into`` said), late, out of order, whether the read filled
its room, lost to lapping, the time of the last frame read that was not late, the read's error."""


def drain_available() -> bool:
    """Whether this build has ``shadowd_ring_drain`` (``RingDrain``)."""
    check = getattr(lib, "shadowd_ring_drain_abi_version", None)
    return check is not None and check() == 1 and lib.SHADOWD_RING_DRAIN_SUMMARY == len(DRAIN_FIELDS)


class RingDrain:
    """A service wake-up's reads of several rings in one C call (``shadowd_ring_drain``): each
    reader's next frames go straight into the memory their consumer names (``into``: a
    ShadowCore buffer's, from ``Session.intake``) or into a scratch array of the drain's own
    (``discard``: only counted), filtered as the consumer filters on arrival (late and out of
    order frames left out and counted). ``run`` returns every ring's results in one flat list,
    ``len(DRAIN_FIELDS)`` ints per ring in that order. The drain holds its readers' C handles:
    once one of them is closed, build a new drain before the next ``run``."""

    def __init__(self, readers: list[RingReader], room: int):
        self.readers = list(readers)
        self._d = ffi.new("struct shadowd_ring_drain[]", max(1, len(readers)))
        self._scratch = []
        for i, r in enumerate(self.readers):
            frames = np.empty(room, r.dtype)
            times = np.empty(room, np.int64)
            self._scratch.append((ffi.from_buffer("uint8_t[]", frames), ffi.from_buffer("int64_t[]", times), frames,
                                  times))
            d = self._d[i]
            d.ring = r._handle()
            d.stride = r._itemsize
            d.t_ns_offset = _t_ns_offset(r.dtype)
        self._room = room
        self._summary_n = len(self.readers) * len(DRAIN_FIELDS)
        self._summary = ffi.new("int64_t[]", max(1, self._summary_n))

    def into(self, i: int, frames_ptr, t_ptr, room: int, floor_ns: int) -> None:
        """Ring ``i``'s frames go to ``frames_ptr`` / ``t_ptr`` (at most ``room``), frames not
        after ``floor_ns`` or not after the one before them left out as out of order; each
        ``run`` appends after the frames the previous one kept, until the room is used up
        (``full``)."""
        d = self._d[i]
        d.frames, d.t_ns, d.room, d.floor_ns, d.append = frames_ptr, t_ptr, room, floor_ns, 1

    def discard(self, i: int) -> None:
        """Ring ``i``'s frames are only counted (read into the drain's scratch array)."""
        d = self._d[i]
        frames, times = self._scratch[i][:2]
        d.frames, d.t_ns, d.room, d.floor_ns, d.append = frames, times, self._room, _INT64_MIN, 0

    def aim(self, place: Callable[[int], tuple | None]) -> None:
        """Point ring ``i`` ``into`` what ``place(i)`` returns (pointers, room, floor), or
        ``discard`` its frames where that is None."""
        for i in range(len(self.readers)):
            where = place(i)
            if where is None:
                self.discard(i)
            else:
                self.into(i, *where)

    def run(self, late_ns: int) -> list[int]:
        """Read every ring once; frames stamped at or before ``late_ns`` are late. Returns
        ``DRAIN_FIELDS`` per ring, flat (one list: a wake-up reads no C struct field by field);
        a ring whose read failed has ``error`` set and nothing read: ``raise_errors`` once the
        others' frames are taken."""
        d = self._d
        for i in range(len(self.readers)):
            d[i].late_ns = late_ns
        _check(lib.shadowd_ring_drain(d, len(self.readers), self._summary), "drain")
        return ffi.unpack(self._summary, self._summary_n)

    def raise_errors(self) -> None:
        """Raise what the failed read of the last ``run`` raises (RingError), if one failed."""
        d = self._d
        for i in range(len(self.readers)):
            if d[i].error:
                _check(d[i].error, "read", self.readers[i].path)


_INT64_MIN = -(2**63)


class RingHistory:
    """``shadowd.core.types.History`` over rings: ``frames(topic, t0_ns, t1_ns)``."""

    def __init__(self, rings: Mapping[str, _Handle]):
        self._rings = dict(rings)

    def frames(self, topic: str, t0_ns: int, t1_ns: int) -> np.ndarray:
        try:
            ring = self._rings[topic]
        except KeyError:
            raise RingError(
                f"no ring for topic {topic!r}; known: {sorted(self._rings)}", _errno.ENOENT
            ) from None
        return ring.frames(t0_ns, t1_ns)
