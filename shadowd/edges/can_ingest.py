"""CAN ingest: raw frames -> decoded topic frames (vehicle, perception, can_raw).

Owns: reading CAN logs (candump -L through the C parser native/src/candump.c, with the numpy /
regex parser as reference and fallback; asc/blf/trc/... through python-can's LogReader), mapping frames to the platform's buses by channel, decoding with the platform's
DBCs (cantools, strict=False, compiled to numpy by ``dbc_decode``), and resampling onto the
topic grids. Two APIs over one implementation, so the daemon and replay decode identically:

* streaming: ``CanIngest(platform).feed(msg)`` / ``feed_many(msgs)`` / ``feed_arrays(...)``
  return ``{topic: frames}`` ready to write into the rings;
* whole file: ``decode_can_log(path, platform) -> (dict[topic, frames], IngestStats)``.

Resampling choice (docs/platforms.md): ``vehicle`` frames are emitted on a fixed grid of
``vehicle_hz`` (tick times are integer multiples of the period in the log's clock) by
zero-order hold of the latest decoded value at or before the tick. A tick is emitted only once
a frame *after* it has been seen, so a later frame can never change an emitted tick, and the
output does not depend on how the input was chunked. Ticks start once every mapped float
signal has been seen (integers/flags start at their declared default). ``perception`` is
emitted on a ``perception_hz`` grid from the radar tracks: the nearest valid, fresh track
within the lane half-width is the lead. ``can_raw`` carries every accepted frame.

Bad input never stops ingest: frames with an unknown channel or id, a payload shorter than
the DBC length, an error flag, or a timestamp older than the newest seen are counted in
``IngestStats`` (and, except for unknown ids/channels, dropped); gaps longer than ``gap_s``
on a bus are counted.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

from ..core.platform import Platform
from ..core.signals import CAN_DATA_BYTES, CAN_RAW_DTYPE, PERCEPTION, RAW_TOPIC, VEHICLE
from ..errors import DecodeError
from .dbc_decode import CompiledDbc
from .platforms import dbc_path

log = logging.getLogger(__name__)

UNKNOWN_BUS = 255
_STD_IDS = 2048  # 11-bit CAN ids: the decode index is a table lookup when every decoded id is one
_FLAG_EXTENDED, _FLAG_FD, _FLAG_ERROR = 1, 2, 4


@dataclass
class IngestStats:
    """Counters of everything ingest saw; never reset by ingest itself."""

    frames_total: int = 0
    frames_decoded: int = 0  # frames of a mapped message that were decoded
    unknown_channel: int = 0
    unknown_id: int = 0  # id not in the bus's DBC (kept in can_raw)
    wrong_length: int = 0  # payload shorter than the DBC length (dropped) or longer (decoded)
    error_frames: int = 0
    out_of_order: int = 0  # older than the newest frame seen (dropped)
    gaps: int = 0  # silences longer than gap_s on a bus
    malformed_lines: int = 0  # unparsable log lines
    vehicle_frames: int = 0
    perception_frames: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=16)
def _load_dbc(path: str) -> CompiledDbc:
    import cantools

    try:
        return CompiledDbc(cantools.database.load_file(path, strict=False))
    except Exception as err:  # noqa: BLE001
        raise DecodeError(f"cannot load DBC {path}: {err}; check the profile's 'dbc' entry") from err


@dataclass
class _Route:
    """One mapped message on one bus: which canonical signals it feeds."""

    bus: int
    msg: object  # CompiledMessage
    mappings: list = field(default_factory=list)
    names: list = field(default_factory=list)  # the signals of msg the mappings read, sorted


class _Grid:
    """Tick bookkeeping for one resampled topic."""

    def __init__(self, rate_hz: float):
        self.period_ns = int(round(1e9 / rate_hz))
        self.next_tick: int | None = None

    def ticks_before(self, t_end_ns: int, start_ns: int) -> np.ndarray:
        """Ticks t with max(next_tick, start) <= t < t_end_ns; advances next_tick."""
        p = self.period_ns
        first = -(-start_ns // p) * p
        if self.next_tick is not None:
            first = max(first, self.next_tick)
        if first >= t_end_ns:
            return np.empty(0, np.int64)
        ticks = np.arange(first, t_end_ns, p, dtype=np.int64)
        self.next_tick = int(ticks[-1]) + p
        return ticks

    def seen_by(self, ticks: np.ndarray, times: np.ndarray, group: np.ndarray | None = None,
                n_groups: int = 1) -> np.ndarray:
        """How many of ``times`` are at or before each tick of ``ticks`` (from ``ticks_before``),
        per group of times (``group[j]`` in ``0..n_groups-1``, all 0 when None): (n_groups,
        len(ticks)), ``np.searchsorted(times_of_group, ticks, "right")`` for ascending times,
        counted in linear time since tick i is ``ticks[0] + i * period``."""
        n = len(ticks)
        if (group is None and min(n, len(times)) <= 64  # few: a binary search costs less
                or n == 0 or len(times) == 0
                or max(abs(int(times.min()) - int(ticks[0])), abs(int(times.max()) - int(ticks[0]))) >= 1 << 62):
            seen = np.empty((n_groups, n), np.intp)
            for g in range(n_groups):
                seen[g] = np.searchsorted(times if group is None else times[group == g], ticks, side="right")
            return seen
        p = self.period_ns
        # times[j] <= ticks[0] + i * p  <=>  i >= ceil((times[j] - ticks[0]) / p)
        due = (times - (int(ticks[0]) - p + 1)) // p
        np.minimum(np.maximum(due, 0, out=due), n, out=due)  # (np.clip's wrapper costs more)
        if group is not None:
            due += group * (n + 1)
        counts = np.bincount(due, minlength=n_groups * (n + 1)).reshape(n_groups, n + 1)
        return np.cumsum(counts[:, :n], axis=1)


@lru_cache(maxsize=16)
def _lookup_tables(dbcs: tuple[str, ...], wanted: tuple[int, ...]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``CanIngest``'s (bus, id) tables for the buses' DBC files and the sorted decoded
    ``bus << 32 | id`` keys: (known, index), each None when an id is past the standard range."""
    known = index = None
    by_id = [_load_dbc(path).by_id for path in dbcs]
    if all(i < _STD_IDS for d in by_id for i in d):
        known = np.zeros((256, _STD_IDS + 1), np.bool_)
        for bi, d in enumerate(by_id):
            known[bi, list(d)] = True
        known.flags.writeable = False
    if all((k & 0xFFFFFFFF) < _STD_IDS for k in wanted) and len(wanted) < 2**15:
        # ids past the standard range land in the last column, which holds -1
        index = np.full((256, _STD_IDS + 1), -1, np.int16)
        for i, k in enumerate(wanted):
            index[k >> 32, k & 0xFFFFFFFF] = i
        index.flags.writeable = False
    return known, index


@lru_cache(maxsize=16)
def _same_layout(dbc: str, messages: tuple[str, ...], signals: tuple[str, ...]) -> bool:
    """The messages of ``dbc`` all decode ``signals`` alike (natively, same length and bits)."""
    msgs = [_load_dbc(dbc).by_name[m] for m in messages]
    return all(m.native for m in msgs) and len({(m.length, tuple(m.fields.get(s) for s in signals)) for m in msgs}) == 1


class CanIngest:
    """Streaming decoder for one platform. Not thread-safe: one feeder at a time."""

    def __init__(self, platform: Platform, *, emit_raw: bool = True, gap_s: float = 0.5):
        self.platform = platform
        self.emit_raw = emit_raw
        self.gap_ns = int(gap_s * 1e9)
        self.stats = IngestStats()
        self._channels = {b.channel: i for i, b in enumerate(platform.buses)}
        dbc_files = tuple(str(dbc_path(b.dbc)) for b in platform.buses)  # by bus index
        self._dbcs = [_load_dbc(f) for f in dbc_files]
        self._bus_index = {b.name: i for i, b in enumerate(platform.buses)}
        self._routes: dict[tuple[int, int], _Route] = {}
        for m in platform.signals.values():
            bus = self._bus_index[m.bus]
            try:
                msg = self._dbcs[bus].by_name[m.message]
            except KeyError:
                raise DecodeError(
                    f"{platform.source}: signals.{m.name}: message {m.message!r} is not in {platform.bus(m.bus).dbc}; "
                    f"fix the mapping") from None
            missing = [s for s in m.sources if s not in {x.name for x in msg.message.signals}]
            if missing:
                raise DecodeError(f"{platform.source}: signals.{m.name}: {m.message} has no signal {missing[0]!r}; "
                                  f"it has {[s.name for s in msg.message.signals]}")
            self._routes.setdefault((bus, msg.frame_id), _Route(bus, msg)).mappings.append(m)
        for route in self._routes.values():
            route.names = sorted({s for m in route.mappings for s in m.sources})
        # enum maps: raw value keys, canonical codes
        self._value_maps = {m.name: (np.array([k for k, _ in m.values], np.float64),
                                     np.array([v for _, v in m.values], np.float64))
                            for m in platform.signals.values() if m.values is not None}
        self._veh_names = [n for n in VEHICLE.dtype.names[1:]]
        self._veh_dtype = VEHICLE.dtype
        # latest canonical values (NaN = not seen yet for floats; ints start at their default)
        self._state = {}
        for s in VEHICLE.signals:
            m = platform.signals.get(s.name)
            self._state[s.name] = (m.default if m is not None else (np.nan if s.dtype == "<f4" else 0.0))
        self._need_seen = {n for n, m in platform.signals.items() if VEHICLE.signal(n).dtype == "<f4"}
        self._veh_start_ns: int | None = None if self._need_seen else 0
        self._veh_grid = _Grid(platform.topic_rates_hz["vehicle"])
        self._per_grid = _Grid(platform.topic_rates_hz["perception"])
        self._newest_ns: int | None = None
        self._bus_last_ns = [None] * len(platform.buses)
        self._perc = platform.perception
        self._perc_start_ns: int | None = None
        if self._perc is not None:
            pbus = self._bus_index[self._perc.bus]
            self._perc_bus = pbus
            self._perc_ids = []
            for name in self._perc.messages:
                try:
                    self._perc_ids.append(self._dbcs[pbus].by_name[name].frame_id)
                except KeyError:
                    raise DecodeError(f"{platform.source}: perception.messages: {name!r} is not in "
                                      f"{platform.bus(self._perc.bus).dbc}") from None
            self._perc_msgs = [self._dbcs[pbus].by_id[fid] for fid in self._perc_ids]
            self._perc_same_layout = _same_layout(dbc_files[pbus], self._perc.messages, (
                self._perc.distance, self._perc.lateral, self._perc.rel_speed, self._perc.valid))
            k = len(self._perc_ids)
            # per track: last update time, distance, lateral (canonical sign), rel speed, valid
            self._tracks = np.full((5, k), np.nan)
        wanted = {(b << 32) | fid for b, fid in self._routes}
        if self._perc is not None:
            wanted |= {(self._perc_bus << 32) | fid for fid in self._perc_ids}
        self._wanted_keys = np.array(sorted(wanted), np.int64)
        # (bus, id) tables when the ids are standard ones (read-only, shared by every CanIngest
        # of these DBCs): whether the id is in the bus's DBC; the index into _wanted_keys or -1
        self._known_lut, self._id_lut = _lookup_tables(dbc_files, tuple(self._wanted_keys.tolist()))

    # -- public streaming API --------------------------------------------------------------
    def feed(self, msg) -> dict[str, np.ndarray]:
        """Feed one ``can.Message``; returns the topic frames it completed (often none)."""
        return self.feed_many((msg,))

    def feed_many(self, msgs: Iterable) -> dict[str, np.ndarray]:
        """Feed ``can.Message`` objects (timestamps in seconds of the log's monotonic clock)."""
        msgs = list(msgs)
        n = len(msgs)
        t_ns = np.empty(n, np.int64)
        bus = np.empty(n, np.uint8)
        ids = np.empty(n, np.uint32)
        dlc = np.empty(n, np.uint8)
        flags = np.zeros(n, np.uint16)
        data = np.zeros((n, CAN_DATA_BYTES), np.uint8)
        for i, m in enumerate(msgs):
            t_ns[i] = int(round(m.timestamp * 1e9))
            bus[i] = self._channels.get(str(m.channel), UNKNOWN_BUS)
            ids[i] = m.arbitration_id
            payload = bytes(m.data)[:CAN_DATA_BYTES]
            dlc[i] = len(payload)
            data[i, : len(payload)] = np.frombuffer(payload, np.uint8)
            flags[i] = (_FLAG_EXTENDED if m.is_extended_id else 0) | (_FLAG_FD if m.is_fd else 0) | (
                _FLAG_ERROR if m.is_error_frame else 0)
        return self.feed_arrays(t_ns, bus, ids, dlc, data, flags)

    def channel_bus(self, channel: str) -> int:
        """Bus index of a channel name (UNKNOWN_BUS when the profile has no such channel)."""
        return self._channels.get(channel, UNKNOWN_BUS)

    def feed_arrays(self, t_ns, bus, can_id, dlc, data, flags=None) -> dict[str, np.ndarray]:
        """Feed frames as columns (the fast path). ``data`` is (N, <=64) uint8.

        Returns ``{"vehicle": ..., "perception": ..., "can_raw": ...}`` with the frames this
        chunk completed (arrays may be empty).
        """
        return self._feed(t_ns, bus, can_id, dlc, data, flags, None)

    def _feed(self, t_ns, bus, can_id, dlc, data, flags, records) -> dict[str, np.ndarray]:
        """``feed_arrays``; ``records``, when not None, holds the same frames as CAN_RAW_DTYPE
        records with ``bus`` in their bus column, and becomes the can_raw output (the frames
        kept, no copy when every frame is)."""
        t_ns = np.ascontiguousarray(t_ns, np.int64)  # a view of records otherwise: read many times
        n = len(t_ns)
        bus = np.asarray(bus, np.uint8)
        can_id = np.asarray(can_id, np.uint32)
        dlc = np.asarray(dlc, np.uint8)
        flags = np.zeros(n, np.uint16) if flags is None else np.asarray(flags, np.uint16)
        data = np.asarray(data, np.uint8)
        st = self.stats
        st.frames_total += n
        out = {"vehicle": np.empty(0, self._veh_dtype), "perception": np.empty(0, PERCEPTION.dtype),
               RAW_TOPIC: np.empty(0, CAN_RAW_DTYPE)}
        if n == 0:
            return out
        keep = self._keep(t_ns, flags)
        unknown_ch = bus == UNKNOWN_BUS
        if keep is not None:
            st.unknown_channel += _count(unknown_ch & keep)
            t_ns, bus, can_id, dlc, flags, data, unknown_ch = (
                a[keep] for a in (t_ns, bus, can_id, dlc, flags, data, unknown_ch))
            if records is not None:
                records = records[keep]
        else:
            st.unknown_channel += _count(unknown_ch)
        if len(t_ns) == 0:
            return out
        self._newest_ns = int(t_ns[-1])
        self._count_gaps(t_ns, bus)
        if self.emit_raw:
            if records is None:
                records = np.zeros(len(t_ns), CAN_RAW_DTYPE)
                records["t_ns"], records["bus"], records["dlc"], records["flags"], records["can_id"] = (
                    t_ns, bus, dlc, flags, can_id)
                records["data"][:, : data.shape[1]] = data[:, :CAN_DATA_BYTES]
            out[RAW_TOPIC] = records
        lut_index = None
        if self._known_lut is not None or self._id_lut is not None:  # row of the (bus, id) tables
            lut_index = bus * np.intp(_STD_IDS + 1) + np.minimum(can_id, _STD_IDS)
        self._count_unknown_ids(bus, can_id, unknown_ch, lut_index)
        groups = self._index_rows(bus, can_id, lut_index)
        updates = self._decode_vehicle(t_ns, groups, dlc, data)
        out["vehicle"] = self._emit_vehicle(updates, self._newest_ns)
        if self._perc is not None:
            out["perception"] = self._emit_perception(t_ns, groups, dlc, data, self._newest_ns)
        return out

    def _keep(self, t_ns, flags) -> np.ndarray | None:
        """Counts the frames dropped as out of order (older than the newest frame seen so far)
        or as error frames; the mask of the others, None when that is every frame."""
        st = self.stats
        keep = None
        newest = self._newest_ns
        if not ((newest is None or t_ns[0] >= newest) and bool((t_ns[1:] >= t_ns[:-1]).all())):
            prev = newest if newest is not None else np.iinfo(np.int64).min
            keep = t_ns >= np.maximum.accumulate(np.concatenate(([prev], t_ns)))[:-1]
            st.out_of_order += len(t_ns) - _count(keep)
        err = (flags & _FLAG_ERROR) != 0
        if err.any():
            if keep is None:
                keep = ~err
                st.error_frames += _count(err)
            else:
                st.error_frames += _count(err & keep)
                keep &= ~err
        return keep

    def flush(self) -> dict[str, np.ndarray]:
        """Emit the ticks at the newest frame's time itself (end of a log)."""
        if self._newest_ns is None:
            return {}
        end = self._newest_ns + 1
        out = {"vehicle": self._emit_vehicle({}, end)}
        if self._perc is not None:
            out["perception"] = self._emit_perception(np.empty(0, np.int64), {}, np.empty(0, np.uint8),
                                                      np.zeros((0, 8), np.uint8), end)
        return out

    # -- internals -------------------------------------------------------------------------
    def _count_gaps(self, t_ns, bus) -> None:
        for b, last in enumerate(self._bus_last_ns):  # a few buses: a mask each, no sort by bus
            on_bus = bus == b
            n_on = _count(on_bus)
            if n_on == 0:
                continue
            t_bus = t_ns if n_on == len(t_ns) else np.compress(on_bus, t_ns)
            if last is not None and int(t_bus[0]) - last > self.gap_ns:
                self.stats.gaps += 1
            self.stats.gaps += _count(t_bus[1:] - t_bus[:-1] > self.gap_ns)
            self._bus_last_ns[b] = int(t_bus[-1])

    def _count_unknown_ids(self, bus, can_id, unknown_ch, lut_index) -> None:
        """Frames on a mapped bus whose id is not in the bus's DBC."""
        if self._known_lut is not None:  # the unknown bus's row of the table is all False
            known = _count(np.take(self._known_lut.reshape(-1), lut_index))
            self.stats.unknown_id += len(bus) - _count(unknown_ch) - known
            return
        bus, can_id = bus[~unknown_ch], can_id[~unknown_ch]
        if len(bus) == 0:
            return
        key = bus.astype(np.int64) << 32 | can_id.astype(np.int64)
        uniq, counts = np.unique(key, return_counts=True)
        for k, c in zip(uniq.tolist(), counts.tolist()):
            if (k & 0xFFFFFFFF) not in self._dbcs[k >> 32].by_id:
                self.stats.unknown_id += c

    def _index_rows(self, bus, can_id, lut_index=None) -> dict[int, np.ndarray]:
        """Rows of each decoded message (``bus << 32 | frame id`` -> ascending row indices),
        in one pass over the frames instead of one comparison pass per message.
        ``lut_index``: ``bus * (_STD_IDS + 1) + min(can_id, _STD_IDS)`` when already computed."""
        if len(bus) == 0 or len(self._wanted_keys) == 0:
            return {}
        if self._id_lut is not None:  # every decoded id is a standard one: a table lookup
            if lut_index is None:
                lut_index = bus * np.intp(_STD_IDS + 1) + np.minimum(can_id, _STD_IDS)
            which = np.take(self._id_lut.reshape(-1), lut_index)
        else:
            keys = self._wanted_keys
            key = (bus.astype(np.int64) << 32) | can_id.astype(np.int64)
            which = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
            which[keys[which] != key] = -1
        rows = np.flatnonzero(which >= 0)
        which = which[rows]
        order = np.argsort(which, kind="stable")  # stable: rows stay ascending within a message
        rows, which = rows[order], which[order]
        bounds = np.searchsorted(which, np.arange(len(self._wanted_keys) + 1))
        return {int(self._wanted_keys[i]): rows[bounds[i]:bounds[i + 1]]
                for i in range(len(self._wanted_keys)) if bounds[i + 1] > bounds[i]}

    def _rows(self, groups: dict[int, np.ndarray], dlc, b, msg) -> np.ndarray:
        sel = groups.get((b << 32) | msg.frame_id)
        if sel is None:
            return np.empty(0, np.intp)
        length = dlc[sel]
        wrong = _count(length != msg.length)
        if wrong == 0:
            return sel
        self.stats.wrong_length += wrong
        return np.compress(length >= msg.length, sel)

    def _track_rows(self, groups, dlc) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the track messages, track after track, and how many each has (``_rows``
        of each, in one pass when the tracks share their layout)."""
        if not self._perc_same_layout:
            sels = [self._rows(groups, dlc, self._perc_bus, msg) for msg in self._perc_msgs]
            sizes = np.array([len(sel) for sel in sels], np.intp)
            return (np.concatenate(sels) if sizes.any() else np.empty(0, np.intp)), sizes
        sels = [groups.get((self._perc_bus << 32) | fid) for fid in self._perc_ids]
        sizes = np.array([0 if sel is None else len(sel) for sel in sels], np.intp)
        if not sizes.any():
            return np.empty(0, np.intp), sizes
        rows = np.concatenate([sel for sel in sels if sel is not None])
        length = dlc[rows]
        need = self._perc_msgs[0].length
        wrong = _count(length != need)
        if wrong:
            self.stats.wrong_length += wrong
            kept = length >= need
            kept_before = np.concatenate(([0], np.cumsum(kept)))  # kept rows before each row
            sizes = np.diff(kept_before[np.cumsum(sizes)], prepend=0)
            rows = np.compress(kept, rows)
        return rows, sizes

    def _decode_tracks(self, rows, sizes, data) -> dict[str, np.ndarray]:
        """The perception signals of the track rows (track after track, ``sizes`` each): one
        decode when every track message has the same layout of them (radar track arrays do)."""
        p = self._perc
        names = [p.distance, p.lateral, p.rel_speed, p.valid]
        if self._perc_same_layout:
            return self._perc_msgs[0].decode(_take_rows(data, rows), names)
        parts = [msg.decode(_take_rows(data, sel), names)
                 for msg, sel in zip(self._perc_msgs, np.split(rows, np.cumsum(sizes)[:-1])) if len(sel)]
        return {name: np.concatenate([part[name] for part in parts]) for name in names}

    def _decode_vehicle(self, t_ns, groups, dlc, data) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        updates = {}
        for (b, _fid), route in self._routes.items():
            sel = self._rows(groups, dlc, b, route.msg)
            if len(sel) == 0:
                continue
            phys = route.msg.decode(_take_rows(data, sel), route.names)
            self.stats.frames_decoded += len(sel)
            t_sel = t_ns[sel]  # shared by the mappings without NaN values (_emit_vehicle uses it)
            for m in route.mappings:
                vals = m.apply([phys[s] for s in m.sources])
                if m.values is not None:
                    keys, codes = self._value_maps[m.name]
                    pos = np.minimum(np.searchsorted(keys, vals), len(keys) - 1)
                    vals = np.where(keys[pos] == vals, codes[pos], m.default)
                nan = np.isnan(vals)
                if nan.any():
                    ok = ~nan
                    updates[m.name] = (t_sel[ok], vals[ok])
                else:
                    updates[m.name] = (t_sel, vals)
        return updates

    def _emit_vehicle(self, updates, t_end_ns: int) -> np.ndarray:
        if self._veh_start_ns is None:
            # start once every mapped float signal has a value: the first tick after all seen
            firsts = []
            for name in self._need_seen:
                if not np.isnan(self._state[name]):
                    continue
                u = updates.get(name)
                if u is None or len(u[0]) == 0:
                    firsts = None
                    break
                firsts.append(int(u[0][0]))
            if firsts is None:
                self._apply_state(updates)
                return np.empty(0, self._veh_dtype)
            self._veh_start_ns = max(firsts) if firsts else 0
        ticks = self._veh_grid.ticks_before(t_end_ns, self._veh_start_ns)
        frames = np.zeros(len(ticks), self._veh_dtype)
        frames["t_ns"] = ticks
        last_at = {}  # id(update times) -> their index at each tick: signals of a message share it
        for name in self._veh_names:
            prev = self._state[name]
            u = updates.get(name)
            if u is None or len(u[0]) == 0:
                frames[name] = prev
                continue
            idx = last_at.get(id(u[0]))
            if idx is None:
                idx = last_at[id(u[0])] = self._veh_grid.seen_by(ticks, u[0])[0] - 1
            frames[name] = np.where(idx >= 0, u[1][np.maximum(idx, 0)], prev)
        self._apply_state(updates)
        self.stats.vehicle_frames += len(frames)
        return frames

    def _apply_state(self, updates) -> None:
        for name, (_t, v) in updates.items():
            if len(v):
                self._state[name] = float(v[-1])

    def _emit_perception(self, t_ns, groups, dlc, data, t_end_ns: int) -> np.ndarray:
        p = self._perc
        k = len(self._perc_ids)
        rows, sizes = self._track_rows(groups, dlc)  # the updates of every track, track after track
        n_rows = len(rows)
        if n_rows:
            tt = t_ns[rows]
            phys = self._decode_tracks(rows, sizes, data)
            # per update: time, distance, lateral (canonical sign), rel speed, valid
            values = np.stack((tt, phys[p.distance], phys[p.lateral] * p.lateral_sign,
                               phys[p.rel_speed], phys[p.valid]), axis=1)
            self.stats.frames_decoded += n_rows
            if self._perc_start_ns is None:
                self._perc_start_ns = int(tt[0])
        if self._perc_start_ns is None:
            return np.empty(0, PERCEPTION.dtype)
        ticks = self._per_grid.ticks_before(t_end_ns, self._perc_start_ns)
        nt = len(ticks)
        # per tick and track: the track's last update at or before the tick, else its state
        if n_rows:
            seen = self._per_grid.seen_by(ticks, tt, np.repeat(np.arange(k), sizes), k).T
            starts = np.cumsum(sizes) - sizes
            state = np.concatenate((values, self._tracks.T))  # row n_rows + i: track i's state
            latest = np.where(seen > 0, seen + (starts - 1), np.arange(n_rows, n_rows + k))
            cols = np.take(state, latest, axis=0).transpose(2, 0, 1)
            updated = sizes > 0
            self._tracks[:, updated] = values[(starts + sizes - 1)[updated]].T
        else:
            cols = np.broadcast_to(self._tracks[:, None, :], (5, nt, k))
        frames = np.zeros(nt, PERCEPTION.dtype)
        frames["t_ns"] = ticks
        if nt:
            fresh = (ticks[:, None] - cols[0]) <= p.stale_s * 1e9
            cand = fresh & (cols[4] > 0.5) & (np.abs(cols[2]) <= p.lane_half_width_m) & (cols[1] > 0)
            dist = np.where(cand, cols[1], np.inf)
            best = np.argmin(dist, axis=1)
            valid = cand[np.arange(nt), best]
            rows = np.arange(nt)
            frames["lead_valid"] = valid
            frames["lead_distance_m"] = np.where(valid, cols[1][rows, best], 0.0)
            frames["lead_lat_m"] = np.where(valid, cols[2][rows, best], 0.0)
            frames["lead_rel_speed_mps"] = np.where(valid, cols[3][rows, best], 0.0)
        self.stats.perception_frames += nt
        return frames


def _count(mask: np.ndarray) -> int:
    """True values in ``mask``, as a Python int (numpy's count is an np.intp, which the
    counters must not become)."""
    return int(np.count_nonzero(mask))


def _take_rows(data: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``data[rows]`` of (N, W) uint8 payloads, a whole row per element (numpy's 2-D fancy
    indexing copies byte by byte, ~6x slower, more on rows of records)."""
    if data.ndim != 2 or data.strides[1] != 1 or data.shape[1] == 0:
        return data[rows]
    width = data.shape[1]
    return data.view(np.dtype((np.void, width)))[:, 0][rows].view(np.uint8).reshape(len(rows), width)


# -- log files ---------------------------------------------------------------------------------

@dataclass
class RawLog:
    """A CAN log as columns. ``channel`` indexes ``channels``.

    ``records``: the same frames as CAN_RAW_DTYPE records when the reader made them (the C
    candump parser); the other columns but ``channel`` are then views of them, and their
    ``bus`` column is scratch (the parser's channel numbers) until ``decode_raw_log`` writes
    the buses into it: it takes them over as its can_raw topic (no copy; the field is None
    afterwards), so that topic array shares its memory with this log's columns.
    """

    t_ns: np.ndarray
    channel: np.ndarray
    channels: list[str]
    can_id: np.ndarray
    dlc: np.ndarray
    flags: np.ndarray
    data: np.ndarray  # (N, width) uint8
    malformed_lines: int = 0
    records: np.ndarray | None = None


_CANDUMP_RE = re.compile(rb"^\s*\((\d+)\.(\d+)\)\s+(\S+)\s+([0-9A-Fa-f]{1,8})#(#?)([0-9A-Fa-f.]*)\s*$")


def read_can_log(path: str | os.PathLike) -> RawLog:
    """Read a CAN log into columns. candump -L files take a vectorized path; any other
    format python-can's LogReader knows (asc, blf, trc, csv, ...) goes through it.

    Raises DecodeError when the file is missing or of an unknown format.
    """
    path = Path(path)
    if not path.is_file():
        raise DecodeError(f"CAN log {path} does not exist; pass a candump/asc/blf/trc file")
    if path.suffix.lower() == ".log":
        native = _map_candump(path)
        return native if native is not None else _read_candump(path.read_bytes())
    return _read_with_python_can(path)


def _hex_matrix(cells: np.ndarray, width: int) -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for i, c in enumerate(b"0123456789abcdef"):
        lut[c] = i
    for i, c in enumerate(b"ABCDEF"):
        lut[c] = 10 + i
    nib = lut[cells.view(np.uint8).reshape(len(cells), width)]
    return (nib[:, 0::2] << 4) | nib[:, 1::2]


_HEX_LUT = np.full(256, 255, np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX_LUT[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX_LUT[_c] = 10 + _i


def _field(buf: np.ndarray, start: np.ndarray, end: np.ndarray, width: int, fill: int = 0) -> np.ndarray:
    """(N, width) bytes of buf[start:end] per row, right-padded with ``fill``."""
    idx = start[:, None] + np.arange(width)[None, :]
    inside = idx < end[:, None]
    np.minimum(idx, len(buf) - 1, out=idx)
    return np.where(inside, buf[idx], np.uint8(fill))


def _read_candump_fast(text: bytes) -> RawLog | None:
    """Vectorized parse of a clean ``candump -L`` file; None when any line needs the careful
    path (comments, CAN-FD ``##``, remote frames, malformed lines)."""
    buf = np.frombuffer(text, np.uint8)
    if len(buf) == 0:
        return None
    if buf[-1] != 10:
        buf = np.concatenate([buf, np.array([10], np.uint8)])
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    n = len(ends)
    if (ends - starts < 8).any() or (buf == 13).any():
        return None
    lp, rp = np.flatnonzero(buf == 40), np.flatnonzero(buf == 41)  # ( )
    sp, hs, dot = np.flatnonzero(buf == 32), np.flatnonzero(buf == 35), np.flatnonzero(buf == 46)
    if not (len(lp) == len(rp) == len(hs) == len(dot) == n and len(sp) == 2 * n):
        return None
    sp1, sp2 = sp[0::2], sp[1::2]
    if not ((lp == starts) & (lp < dot) & (dot < rp) & (rp + 1 == sp1) & (sp1 < sp2) & (sp2 < hs) & (hs < ends)).all():
        return None
    # timestamp: seconds . fraction (up to 9 digits kept)
    w_sec = int((dot - lp - 1).max())
    sec_d = _field(buf, lp + 1, dot, w_sec, 48).astype(np.int64) - 48
    sec_len = dot - lp - 1
    if (sec_d < 0).any() or (sec_d > 9).any():
        return None
    pow_sec = 10 ** np.maximum(sec_len[:, None] - 1 - np.arange(w_sec)[None, :], 0)
    sec = (sec_d * np.where(np.arange(w_sec)[None, :] < sec_len[:, None], pow_sec, 0)).sum(axis=1)
    frac_d = _field(buf, dot + 1, rp, 9, 48).astype(np.int64) - 48
    if (frac_d < 0).any() or (frac_d > 9).any():
        return None
    frac = (frac_d * (10 ** np.arange(8, -1, -1))[None, :]).sum(axis=1)
    t_ns = sec * 1_000_000_000 + frac
    # channel
    w_ch = int((sp2 - sp1 - 1).max())
    if w_ch > 8:
        return None
    ch_words = np.ascontiguousarray(_field(buf, sp1 + 1, sp2, 8)).view("<u8").reshape(n)
    uwords, cinv = np.unique(ch_words, return_inverse=True)
    uch = [w.tobytes().rstrip(b"\0") for w in uwords]
    order = np.argsort(uch, kind="stable")  # channel list in name order, as the careful path gives
    uch = [uch[i] for i in order]
    cinv = np.argsort(order)[cinv]
    # id
    id_len = hs - sp2 - 1
    if (id_len < 1).any() or (id_len > 8).any():
        return None
    id_nib = _HEX_LUT[_field(buf, sp2 + 1, hs, 8, 48)].astype(np.uint32)
    if (id_nib == 255).any():
        return None
    shifts = 4 * (id_len[:, None] - 1 - np.arange(8)[None, :])
    can_id = (np.where(shifts >= 0, id_nib << np.maximum(shifts, 0).astype(np.uint32), 0)).sum(axis=1).astype(np.uint32)
    # payload
    pay_len = ends - hs - 1
    if (pay_len % 2).any() or (pay_len > 2 * CAN_DATA_BYTES).any():
        return None
    w_pay = max(2, int(pay_len.max()))
    nib = _HEX_LUT[_field(buf, hs + 1, ends, w_pay, 48)]
    if (nib == 255).any():
        return None
    data = (nib[:, 0::2] << 4) | nib[:, 1::2]
    flags = np.where(id_len > 3, _FLAG_EXTENDED, 0).astype(np.uint16)
    return RawLog(t_ns, cinv.astype(np.uint16), [c.decode() for c in uch], can_id,
                  (pay_len // 2).astype(np.uint8), flags, data, 0)


_NATIVE_CANDUMP_ABI = 2  # 2: shadowd_candump_parse_records

def _native_parser():
    """``(ffi, lib)`` of the C candump parser (native/src/candump.c), or None: the numpy/regex
    parsers below give the same results (``shadowd.native.kernel``)."""
    from ..native import kernel

    return kernel("shadowd_candump_abi_version", _NATIVE_CANDUMP_ABI, "candump parser")


_C_INTS = {"int64_t": np.int64, "uint8_t": np.uint8, "uint16_t": np.uint16, "uint32_t": np.uint32}
_records_layout: bool | None = None  # _records_match's answer once checked


def _records_match(ffi) -> bool:
    """CAN_RAW_DTYPE has the layout of C's ``struct shadowd_can_raw`` (same fields, offsets,
    types and size), so the C parser can write the can_raw records in place."""
    global _records_layout
    if _records_layout is None:
        ctype = ffi.typeof("struct shadowd_can_raw")
        fields = [(name, f.offset, f.type) for name, f in ctype.fields]
        ok = CAN_RAW_DTYPE.itemsize == ffi.sizeof(ctype) and [f[0] for f in fields] == list(CAN_RAW_DTYPE.names)
        for name, offset, ftype in fields if ok else ():
            want, at = CAN_RAW_DTYPE.fields[name][:2]
            item = ftype.item if ftype.kind == "array" else ftype
            got = np.dtype(_C_INTS.get(item.cname, "V"))
            if ftype.kind == "array":
                got = np.dtype((got, (ftype.length,)))
            ok = ok and at == offset and want == got
        if not ok:
            log.warning("CAN_RAW_DTYPE differs from the C parser's struct shadowd_can_raw; "
                        "reading candump logs into columns and copying them (slower)")
        _records_layout = ok
    return _records_layout


def _expected_rows(text, bound: int) -> int:
    """Rows to allocate for a candump text: its lines, estimated from its first 64 KiB, plus a
    quarter (at most ``bound``). Sized to the log rather than to the bound (4x for usual lines),
    a minute's records (~11 MB) stay under glibc's mmap threshold once it has adapted, so their
    memory is reused from one log to the next instead of mapped and page-faulted afresh
    (-1.3 ms a minute); the caller parses again with ``bound`` rows when the estimate is short."""
    sample = bytes(text[:65536])
    lines = max(sample.count(b"\n"), sample.count(b"\r"), 1)
    return min(bound, len(text) * lines * 5 // (4 * len(sample)) + 1024) if sample else 1


def _read_candump_native(text: bytes) -> RawLog | None:
    """candump -L text through the C parser; None when it is not built or the log has more
    channels than it tracks (the Python parser takes those). Same result as ``_read_candump_py``
    (tests/ingest compares them on the real log and on malformed lines), with ``records`` when
    CAN_RAW_DTYPE matches the C struct (else the columns are parsed and records left None)."""
    native = _native_parser()
    if native is None:
        return None
    ffi, lib = native
    cap = len(text) // 10 + 1  # the shortest valid line is 11 bytes with its newline (candump.h)
    info = ffi.new("struct shadowd_candump_info *")
    if _records_match(ffi):
        for rows_max in (_expected_rows(text, cap), cap):  # the bound when the estimate falls short
            records = np.empty(rows_max, CAN_RAW_DTYPE)
            rows = lib.shadowd_candump_parse_records(
                ffi.from_buffer("uint8_t[]", text), len(text), rows_max,
                ffi.cast("struct shadowd_can_raw *", ffi.from_buffer(records)), info)
            if rows != -errno.ENOSPC:
                break
        if rows < 0:
            return None  # -E2BIG: channels the C table cannot hold (the Python parser takes them)
        records = records[:rows]
        chan, cols = records["bus"], tuple(records[k] for k in ("t_ns", "can_id", "dlc", "flags"))
        data = records["data"]
    else:
        cols = (np.empty(cap, np.int64), np.empty(cap, np.uint32), np.empty(cap, np.uint8), np.empty(cap, np.uint16))
        chan = np.empty(cap, np.uint16)
        t_ns, can_id, dlc, flags = cols
        for stride in (8, lib.SHADOWD_CANDUMP_DATA_BYTES):  # classic CAN first; CAN-FD logs go again
            data = np.empty((cap, stride), np.uint8)
            rows = lib.shadowd_candump_parse(
                ffi.from_buffer("uint8_t[]", text), len(text), cap, ffi.from_buffer("int64_t[]", t_ns),
                ffi.from_buffer("uint16_t[]", chan), ffi.from_buffer("uint32_t[]", can_id),
                ffi.from_buffer("uint8_t[]", dlc), ffi.from_buffer("uint16_t[]", flags),
                ffi.from_buffer("uint8_t[]", data), stride, info)
            if rows != -errno.EMSGSIZE:
                break
        if rows < 0:
            return None  # -E2BIG, as above
        # views of the columns: the pages past ``rows`` were never touched, so they cost no memory
        chan, cols, data, records = chan[:rows], tuple(c[:rows] for c in cols), data[:rows], None
    if rows == 0:
        return RawLog(np.empty(0, np.int64), np.empty(0, np.uint16), [], np.empty(0, np.uint32),
                      np.empty(0, np.uint8), np.empty(0, np.uint16), np.zeros((0, 8), np.uint8),
                      int(info.malformed_lines))
    names = [ffi.unpack(info.channel[i], info.channel_len[i]) for i in range(info.n_channels)]
    # channel list in name order, as the Python parser gives (np.unique of the names)
    order = sorted(range(len(names)), key=lambda i: names[i])
    remap = np.empty(len(names), np.uint16)
    remap[order] = np.arange(len(names), dtype=np.uint16)
    channel = np.take(remap, chan)
    data = data[:, : max(1, int(info.max_dlc))]
    if records is None:
        data = np.ascontiguousarray(data)
    t_ns, can_id, dlc, flags = cols
    return RawLog(t_ns, channel, [names[i].decode() for i in order], can_id, dlc, flags, data,
                  int(info.malformed_lines), records)


def _map_candump(path: Path) -> RawLog | None:
    """The C parser straight over the file's pages (mmap: no copy of the text into a bytes
    object); None when the parser is not built, the file is empty or cannot be mapped."""
    if _native_parser() is None:
        return None
    try:
        with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as text:
            return _read_candump_native(text)
    except (OSError, ValueError):  # ValueError: an empty file cannot be mapped
        return None


def _read_candump(text: bytes) -> RawLog:
    native = _read_candump_native(text)
    if native is not None:
        return native
    return _read_candump_py(text)


def _read_candump_py(text: bytes) -> RawLog:
    """The reference parser: vectorized numpy for clean logs, a regex per line otherwise."""
    fast = _read_candump_fast(text)
    if fast is not None:
        return fast
    rows = []
    malformed = 0
    for line in text.splitlines():
        if not line.strip():
            continue
        m = _CANDUMP_RE.match(line)
        if m is not None and m.group(5) == b"#":  # CAN-FD: "id##<flags nibble><data>"
            groups = (*m.groups()[:5], m.group(6)[1:])
        else:
            groups = m.groups() if m is not None else None
        if groups is None or len(groups[5].replace(b".", b"")) % 2:
            malformed += 1
            continue
        rows.append(groups)
    if not rows:
        return RawLog(np.empty(0, np.int64), np.empty(0, np.uint16), [], np.empty(0, np.uint32),
                      np.empty(0, np.uint8), np.empty(0, np.uint16), np.zeros((0, 8), np.uint8), malformed)
    sec, frac, ch, ids, fd, payload = zip(*rows)
    frac_arr = np.char.ljust(np.array(frac).astype("S9"), 9, b"0")  # ns digits, truncated past 9
    t_ns = np.array(sec).astype(np.int64) * 1_000_000_000 + frac_arr.astype(np.int64)
    uids, inv = np.unique(np.array(ids), return_inverse=True)
    can_id = np.array([int(x, 16) for x in uids.tolist()], np.uint32)[inv]
    ext = np.array([len(x) > 3 for x in uids.tolist()])[inv]
    uch, cinv = np.unique(np.array(ch), return_inverse=True)
    pay = np.array(payload)
    if pay.dtype.itemsize > 1 and any(b"." in x for x in pay[:100].tolist()):
        pay = np.char.replace(pay, b".", b"")
    w = max(2, pay.dtype.itemsize + pay.dtype.itemsize % 2)
    pay = pay.astype(f"S{w}")
    data = _hex_matrix(pay, w)
    dlc = ((pay.view(np.uint8).reshape(len(pay), w) != 0).sum(axis=1) // 2).astype(np.uint8)
    is_fd = np.array([x == b"#" for x in fd])
    flags = (ext * _FLAG_EXTENDED | is_fd * _FLAG_FD).astype(np.uint16)
    return RawLog(t_ns, cinv.astype(np.uint16), [c.decode() for c in uch.tolist()], can_id, dlc, flags, data, malformed)


def _read_with_python_can(path: Path) -> RawLog:
    import can

    try:
        reader = can.LogReader(str(path))
    except Exception as err:  # noqa: BLE001
        raise DecodeError(f"cannot read CAN log {path}: {err}; supported: candump .log, .asc, .blf, .trc, .csv") from err
    msgs = []
    malformed = 0
    it = iter(reader)
    while True:
        try:
            msgs.append(next(it))
        except StopIteration:
            break
        except Exception:  # noqa: BLE001 - one bad record must not lose the rest
            malformed += 1
            if malformed > 10_000:
                break
    channels = sorted({str(m.channel) for m in msgs})
    cidx = {c: i for i, c in enumerate(channels)}
    n = len(msgs)
    data = np.zeros((n, 8 if all(len(m.data) <= 8 for m in msgs) else CAN_DATA_BYTES), np.uint8)
    for i, m in enumerate(msgs):
        data[i, : len(m.data)] = np.frombuffer(bytes(m.data)[: data.shape[1]], np.uint8)
    return RawLog(
        t_ns=np.array([int(round(m.timestamp * 1e9)) for m in msgs], np.int64),
        channel=np.array([cidx[str(m.channel)] for m in msgs], np.uint16), channels=channels,
        can_id=np.array([m.arbitration_id for m in msgs], np.uint32),
        dlc=np.array([len(m.data) for m in msgs], np.uint8),
        flags=np.array([(m.is_extended_id * _FLAG_EXTENDED) | (m.is_fd * _FLAG_FD) | (m.is_error_frame * _FLAG_ERROR)
                        for m in msgs], np.uint16),
        data=data, malformed_lines=malformed,
    )


def _take_records(raw: RawLog) -> np.ndarray | None:
    """``raw.records``, taken over (RawLog's doc), when they still hold the log's frames: the
    columns have not been replaced by other arrays since the read."""
    records, raw.records = raw.records, None
    if records is None or len(records) != len(raw.t_ns):
        return None
    cols = (raw.t_ns, raw.can_id, raw.dlc, raw.flags, raw.data)
    return records if all(np.may_share_memory(c, records) for c in cols) else None


def decode_raw_log(raw: RawLog, platform: Platform, *, emit_raw: bool = True) -> tuple[dict[str, np.ndarray], IngestStats]:
    """Decode an already-read log (whole-file API; same code as streaming). Every topic comes
    out in ``t_ns`` order: frames older than the newest one seen are dropped, ticks ascend."""
    ing = CanIngest(platform, emit_raw=emit_raw)
    ing.stats.malformed_lines = raw.malformed_lines
    bus_of_channel = np.array([ing.channel_bus(c) for c in raw.channels] or [UNKNOWN_BUS], np.uint8)
    bus = np.take(bus_of_channel, raw.channel) if len(raw.t_ns) else np.empty(0, np.uint8)
    records = _take_records(raw) if emit_raw else None
    if records is not None:
        records["bus"] = bus
    out = ing._feed(raw.t_ns, bus, raw.can_id, raw.dlc, raw.data, raw.flags, records)
    tail = ing.flush()
    for k, v in tail.items():
        out[k] = np.concatenate([out[k], v])
    return out, ing.stats


def decode_can_log(path: str | os.PathLike, platform: Platform, *, emit_raw: bool = True
                   ) -> tuple[dict[str, np.ndarray], IngestStats]:
    """Whole-file API for replay: ``({"vehicle", "perception", "can_raw": frames}, stats)``."""
    return decode_raw_log(read_can_log(path), platform, emit_raw=emit_raw)
