"""Replay inputs: turn files on disk into drives of canonical topic frames.

Owns every input kind replay accepts and the rules for finding them:

- CAN logs python-can reads (``.log`` candump -L, ``.asc``, ``.blf``, ``.trc``), decoded through
  the platform's DBC mapping by ``shadowd.edges.can_ingest.decode_can_log`` (the vehicle's own
  decoder). A candump log with an ``imu/`` folder beside it (``{accelerometer,gyro}_{t,value}.npy``,
  axes forward/right/down, the comma2k19 layout) also yields the ``imu`` topic.
- CSV files of canonical signals: a ``t_s`` column plus canonical signal columns.
- MCAP files: channels named after a topic (``/vehicle``, ``vehicle``, ``shadowd/vehicle``),
  protobuf or JSON messages whose fields are canonical signal names (what ``shadowd clip export
  --mcap`` writes); ``t_ns`` from the message, else its log time.
- shadowd clips (``.clip``): a corner case re-run against a new model.

Labelled events live beside an input as ``<input file name>.labels.json``: a list of
``{"kind": str, "start_s": float, "end_s": float}`` with times in seconds from the first frame
of the input.

Rules: a bad input raises ``ReplayError`` naming the file and the reason; the caller reports it
and goes on with the others. Frames are always sorted by ``t_ns``. Nothing here runs a model.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..core.signals import RAW_TOPIC, SIGNALS, TOPICS, frame_dtype
from ..errors import ReplayError, ShadowdError

CAN_SUFFIXES = (".log", ".asc", ".blf", ".trc")
CSV_SUFFIXES = (".csv",)
MCAP_SUFFIXES = (".mcap",)
CLIP_SUFFIXES = (".clip", ".sdclip")
INPUT_SUFFIXES = CAN_SUFFIXES + CSV_SUFFIXES + MCAP_SUFFIXES + CLIP_SUFFIXES
LABELS_SUFFIX = ".labels.json"


@dataclass(frozen=True, slots=True)
class Label:
    """A labelled event in a drive, seconds from the drive's first frame."""

    kind: str
    start_s: float
    end_s: float


@dataclass
class Drive:
    """One input, read: canonical topic frames sorted by ``t_ns``.

    ``origin`` is set for clip inputs: what the clip says produced it (model sha256, triggers,
    window), so A/B can tell whether a new model fixed the corner case.
    """

    name: str
    kind: str
    topics: dict[str, np.ndarray]
    labels: tuple[Label, ...] = ()
    origin: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def t0_ns(self) -> int:
        return min(int(a["t_ns"][0]) for a in self.topics.values() if len(a))

    @property
    def t1_ns(self) -> int:
        return max(int(a["t_ns"][-1]) for a in self.topics.values() if len(a))

    @property
    def duration_s(self) -> float:
        return (self.t1_ns - self.t0_ns) / 1e9


def discover_inputs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories into input files, sorted, each once.

    Directories are walked recursively for files with a known suffix (labels files and
    sidecar folders are not inputs). A path that does not exist raises ReplayError: a typo
    on the command line should stop the run before it starts, not hide in the report.
    """
    found: dict[str, Path] = {}
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and _is_input_name(f.name):
                    found[str(f)] = f
        elif p.exists():
            found[str(p)] = p
        else:
            raise ReplayError(f"replay input {str(p)!r} does not exist; check the path")
    if not found:
        raise ReplayError(
            f"no replay inputs found in {[str(p) for p in paths]}; "
            f"inputs end in {', '.join(INPUT_SUFFIXES)}"
        )
    return sorted(found.values(), key=lambda f: str(f))


def _is_input_name(name: str) -> bool:
    low = name.lower()
    return low.endswith(INPUT_SUFFIXES) and not low.endswith(LABELS_SUFFIX)


def input_kind(path: Path) -> str:
    """``can`` | ``csv`` | ``mcap`` | ``clip`` by suffix; ReplayError for anything else."""
    low = path.name.lower()
    for kind, suffixes in (("can", CAN_SUFFIXES), ("csv", CSV_SUFFIXES), ("mcap", MCAP_SUFFIXES), ("clip", CLIP_SUFFIXES)):
        if low.endswith(suffixes):
            return kind
    raise ReplayError(
        f"{path}: unknown input kind {path.suffix!r}; replay reads {', '.join(INPUT_SUFFIXES)}"
    )


def read_input(path: str | Path, platform: Any, required_signals: Iterable[str] = (),
               labels_dir: str | Path | None = None) -> Drive:
    """Read one input into a Drive.

    Args:
        path: the input file.
        platform: the platform profile whose DBC mapping decodes CAN logs.
        required_signals: canonical signals the model needs; a drive lacking one is refused.
        labels_dir: where to look for ``<file name>.labels.json`` first (default: beside it).
    Raises:
        ReplayError: unreadable file, no decodable frames, missing column, corrupt clip.
    """
    p = Path(path)
    kind = input_kind(p)
    try:
        if kind == "can":
            drive = _read_can(p, platform)
        elif kind == "csv":
            drive = _read_csv(p)
        elif kind == "mcap":
            drive = _read_mcap(p)
        else:
            drive = _read_clip(p)
    except ReplayError:
        raise
    except ShadowdError as err:
        raise ReplayError(f"{p}: {err}") from err
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise ReplayError(f"{p}: cannot read {kind} input: {type(err).__name__}: {err}") from err
    drive.topics = {t: a for t, a in drive.topics.items() if len(a)}
    if not drive.topics:
        raise ReplayError(f"{p}: no frames in this {kind} input; nothing to replay")
    _check_required(p, drive, required_signals)
    drive.labels = read_labels(p, labels_dir)
    return drive


def _check_required(path: Path, drive: Drive, required: Iterable[str]) -> None:
    missing = []
    for name in required:
        if name not in SIGNALS:
            continue
        topic = SIGNALS[name][0].name
        arr = drive.topics.get(topic)
        if arr is None or name not in (arr.dtype.names or ()):
            missing.append(name)
        elif arr.dtype[name].kind == "f" and bool(np.isnan(arr[name]).all()):
            missing.append(name)
    if missing:
        raise ReplayError(
            f"{path}: the model needs {', '.join(sorted(missing))} but this {drive.kind} input has "
            f"no values for {'it' if len(missing) == 1 else 'them'}; add the column(s) or map the "
            f"signal in the platform profile"
        )


def read_labels(path: Path, labels_dir: str | Path | None = None) -> tuple[Label, ...]:
    """The labelled events of input ``path``: ``<name>.labels.json`` in ``labels_dir``, else
    beside the input; () when there are none."""
    candidates = ([Path(labels_dir) / (path.name + LABELS_SUFFIX)] if labels_dir else []) + \
        [path.with_name(path.name + LABELS_SUFFIX)]
    lp = next((c for c in candidates if c.exists()), None)
    if lp is None:
        return ()
    try:
        raw = json.loads(lp.read_text())
    except (OSError, ValueError) as err:
        raise ReplayError(f"{lp}: labels are not readable JSON ({err}); expected a list of "
                          f'{{"kind", "start_s", "end_s"}}') from err
    if isinstance(raw, dict):
        raw = raw.get("events", [])
    labels = []
    for i, ev in enumerate(raw if isinstance(raw, list) else [raw]):
        try:
            lab = Label(str(ev["kind"]), float(ev["start_s"]), float(ev["end_s"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ReplayError(f"{lp}: event #{i} {ev!r} is not {{kind, start_s, end_s}}; fix the "
                              f"labels file") from err
        if not (lab.end_s >= lab.start_s) or not math.isfinite(lab.start_s):
            raise ReplayError(f"{lp}: event #{i} ends ({lab.end_s}) before it starts "
                              f"({lab.start_s}); swap or fix the times")
        labels.append(lab)
    return tuple(sorted(labels, key=lambda l: (l.start_s, l.end_s, l.kind)))


# ----------------------------------------------------------------------------- CAN logs

def _read_can(path: Path, platform: Any) -> Drive:
    from ..edges.can_ingest import decode_raw_log, read_can_log

    raw = read_can_log(path)
    raw.channels = map_numeric_channels(raw.channels, platform, one_based=path.suffix.lower() == ".trc")
    topics, stats = decode_raw_log(raw, platform)  # in t_ns order already (its doc): not sorted again
    decoded = sum(len(a) for t, a in topics.items() if t != RAW_TOPIC)
    if decoded == 0:
        raise ReplayError(
            f"{path}: zero frames decoded through platform "
            f"{getattr(platform, 'name', platform)!r}'s DBC mapping ({_stats_text(stats)}); "
            f"the log is from another vehicle or bus layout; pick the matching --platform"
        )
    notes = {"decode": _plain(stats)}
    imu = None if "imu" in topics else _read_imu_sidecar(path)
    if imu is not None:
        topics["imu"] = imu
        notes["imu_sidecar"] = str(path.parent / "imu")
    return Drive(path_name(path), "can", topics, notes=notes)


def map_numeric_channels(channels: list[str], platform: Any, *, one_based: bool) -> list[str]:
    """Give numeric log channels the platform's channel names.

    candump logs name channels (``can0``); ASC/BLF/TRC logs number them. python-can reads ASC
    and BLF channels 0-based and TRC channels 1-based, so channel N is the platform channel
    ``can<N>`` (``can<N-1>`` for TRC). Named channels and logs already using the platform's
    names are left alone.
    """
    names = {b.channel for b in getattr(platform, "buses", ())}
    if any(c in names for c in channels):
        return list(channels)
    out = []
    for c in channels:
        if c.isdigit():
            n = int(c) - (1 if one_based else 0)
            out.append(f"can{n}")
        else:
            out.append(c)
    return out


def _stats_text(stats: Any) -> str:
    plain = _plain(stats)
    if isinstance(plain, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(plain.items()) if not isinstance(v, (dict, list)))
    return str(plain)


def _plain(obj: Any) -> Any:
    """Stats objects (dataclass, dict, other) as JSON-ready data."""
    if obj is None or isinstance(obj, (int, float, str, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _plain(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _read_imu_sidecar(path: Path) -> np.ndarray | None:
    """The comma2k19 phone IMU beside a candump log, in the canonical vehicle frame."""
    d = path.parent / "imu"
    files = [d / f"{n}.npy" for n in ("accelerometer_t", "accelerometer_value", "gyro_t", "gyro_value")]
    if not all(f.exists() for f in files):
        return None
    acc_t, acc, gyr_t, gyr = (np.load(f, allow_pickle=False) for f in files)
    if acc.ndim != 2 or acc.shape[1] != 3 or len(acc) != len(acc_t):
        raise ReplayError(f"{d}: IMU sidecar arrays have shapes {acc_t.shape}/{acc.shape}; "
                          f"expected (N,) and (N, 3)")
    out = np.zeros(len(acc_t), frame_dtype("imu"))
    out["t_ns"] = np.round(acc_t * 1e9).astype(np.int64)
    # sidecar axes are forward/right/down; canonical is forward/left/up
    flip = np.array([1.0, -1.0, -1.0])
    a = acc * flip
    g = np.stack([np.interp(acc_t, gyr_t, gyr[:, i]) for i in range(3)], axis=1) * flip
    for i, axis in enumerate("xyz"):
        out[f"accel_{axis}_mps2"] = a[:, i]
        out[f"gyro_{axis}_rps"] = g[:, i]
    return _sorted(out)


def path_name(path: Path) -> str:
    """The stable name of an input in reports: its path as given (never absolute-ised)."""
    return str(path)


def _sorted(arr: np.ndarray) -> np.ndarray:
    if len(arr) > 1 and bool((np.diff(arr["t_ns"]) < 0).any()):
        arr = arr[np.argsort(arr["t_ns"], kind="stable")]
    return arr


# ----------------------------------------------------------------------------- CSV

def _read_csv(path: Path) -> Drive:
    with path.open(newline="") as fh:
        header = next(csv.reader(fh), None)
    if not header:
        raise ReplayError(f"{path}: empty CSV; expected a header with t_s and canonical signal columns")
    header = [h.strip() for h in header]
    if "t_s" not in header:
        raise ReplayError(
            f"{path}: no t_s column (header: {', '.join(header[:8])}{'...' if len(header) > 8 else ''}); "
            f"a canonical CSV has t_s (seconds) plus canonical signal columns such as speed_mps"
        )
    known = [h for h in header if h in SIGNALS]
    if not known:
        raise ReplayError(f"{path}: no canonical signal columns (header: {', '.join(header)}); "
                          f"rename columns to canonical names, e.g. speed_mps, steer_angle_deg")
    data = np.genfromtxt(path, delimiter=",", skip_header=1, dtype=np.float64,
                         filling_values=np.nan, invalid_raise=True, ndmin=2)
    if data.size == 0:
        raise ReplayError(f"{path}: the CSV has a header but no rows")
    if data.shape[1] != len(header):
        raise ReplayError(f"{path}: rows have {data.shape[1]} fields, header has {len(header)}")
    col = {h: data[:, i] for i, h in enumerate(header)}
    t_ns = np.round(col["t_s"] * 1e9).astype(np.int64)
    topics: dict[str, np.ndarray] = {}
    for tname, topic in TOPICS.items():
        present = [s for s in topic.signals if s.name in col]
        if not present:
            continue
        arr = np.zeros(len(t_ns), topic.dtype)
        arr["t_ns"] = t_ns
        for s in topic.signals:
            if s.name in col:
                v = col[s.name]
                arr[s.name] = np.nan_to_num(v, nan=0.0) if arr.dtype[s.name].kind in "iu" else v
            elif arr.dtype[s.name].kind == "f":
                arr[s.name] = np.nan
            elif s.name == "gear":
                arr[s.name] = -1
        topics[tname] = _sorted(arr)
    ignored = sorted(set(header) - set(known) - {"t_s"})
    return Drive(path_name(path), "csv", topics, notes={"ignored_columns": ignored} if ignored else {})


# ----------------------------------------------------------------------------- MCAP

def _topic_of_channel(name: str) -> str | None:
    base = name.strip("/").split("/")[-1]
    if base in TOPICS or base == RAW_TOPIC:
        return base
    return None


def _read_mcap(path: Path) -> Drive:
    try:
        from mcap.reader import make_reader
    except ImportError as err:  # pragma: no cover - mcap is in the test extra
        raise ReplayError(f"{path}: MCAP inputs need the mcap package; pip install 'shadowd[mcap]'") from err
    rows: dict[str, list[dict[str, float]]] = {}
    skipped: dict[str, int] = {}
    with path.open("rb") as fh:
        try:
            reader = make_reader(fh)
        except Exception as err:  # the mcap package raises its own types (InvalidMagic, ...)
            raise ReplayError(f"{path}: not an MCAP file ({type(err).__name__}: {err})") from err
        decoders: dict[int, Any] = {}
        for schema, channel, message in _iter_mcap(reader, path):
            topic = _topic_of_channel(channel.topic)
            if topic is None or topic == RAW_TOPIC:
                skipped[channel.topic] = skipped.get(channel.topic, 0) + 1
                continue
            if channel.id not in decoders:
                decoders[channel.id] = _decoder(path, channel, schema)
            fields = _message_fields(decoders[channel.id](message.data))
            fields.setdefault("t_ns", message.log_time)
            rows.setdefault(topic, []).append(fields)
    topics = {}
    for tname, recs in rows.items():
        dt = frame_dtype(tname)
        arr = np.zeros(len(recs), dt)
        for name in dt.names:
            vals = [r.get(name) for r in recs]
            if all(v is None for v in vals):
                if dt[name].kind == "f":
                    arr[name] = np.nan
                continue
            fill = np.nan if dt[name].kind == "f" else 0
            arr[name] = [fill if v is None else v for v in vals]
        topics[tname] = _sorted(arr)
    notes = {"skipped_channels": skipped} if skipped else {}
    return Drive(path_name(path), "mcap", topics, notes=notes)


def _decoder(path: Path, channel: Any, schema: Any):
    """bytes -> message for a channel: JSON natively, protobuf through mcap_protobuf."""
    enc = channel.message_encoding
    if enc == "json":
        return json.loads
    if enc == "protobuf" and schema is not None:
        try:
            from mcap_protobuf.decoder import DecoderFactory
        except ImportError as err:  # pragma: no cover - in the mcap extra
            raise ReplayError(f"{path}: protobuf MCAP channels need mcap-protobuf-support; "
                              f"pip install 'shadowd[mcap]'") from err
        dec = DecoderFactory().decoder_for(enc, schema)
        if dec is not None:
            return dec
    raise ReplayError(f"{path}: channel {channel.topic!r} has message encoding {enc!r}; replay reads "
                      f"json and protobuf channels (export with shadowd clip export --mcap)")


def _iter_mcap(reader: Any, path: Path):
    try:
        for schema, channel, message in reader.iter_messages(log_time_order=True):
            yield schema, channel, message
    except ReplayError:
        raise
    except Exception as err:  # the mcap reader raises many private types on corrupt files
        raise ReplayError(f"{path}: corrupt or unreadable MCAP ({type(err).__name__}: {err})") from err


def _message_fields(decoded: Any) -> dict[str, float]:
    if isinstance(decoded, (bytes, bytearray)):
        decoded = json.loads(decoded)
    if isinstance(decoded, dict):
        return {k: v for k, v in decoded.items() if isinstance(v, (int, float))}
    out = {}
    # every field of the schema, not ListFields(): proto3 leaves out fields equal to 0
    for desc in decoded.DESCRIPTOR.fields:
        value = getattr(decoded, desc.name)
        if isinstance(value, (int, float)):
            out[desc.name] = value
    return out


# ----------------------------------------------------------------------------- clips

def _read_clip(path: Path) -> Drive:
    from ..clip import decode_clip

    clip = decode_clip(path.read_bytes())
    topics, origin = clip_topics_and_origin(clip)
    return Drive(path_name(path), "clip", topics, origin=origin)


def clip_topics_and_origin(clip: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Topic frames and provenance of a decoded clip (adapts to the clip object's layout)."""
    streams = getattr(clip, "streams", None) or getattr(clip, "topics", None) or {}
    topics = {}
    for name, arr in dict(streams).items():
        if name in TOPICS or name == RAW_TOPIC:
            topics[name] = _sorted(np.asarray(arr))
    prov = getattr(clip, "provenance", None)
    origin = {"provenance": _plain(prov)}
    spec = getattr(clip, "spec", None)
    causes = getattr(spec, "causes", None) or getattr(clip, "causes", ()) or ()
    origin["triggers"] = sorted({getattr(c, "trigger", str(c)) for c in causes})
    for attr in ("t0_ns", "t1_ns"):
        v = getattr(spec, attr, None) if spec is not None else getattr(clip, attr, None)
        if v is not None:
            origin[attr] = int(v)
    div = dict(streams).get("divergence")
    if div is not None and len(div) and "score" in (div.dtype.names or ()):
        origin["divergence_mean"] = round(float(np.nanmean(div["score"])), 6)
        origin["divergence_max"] = round(float(np.nanmax(div["score"])), 6)
    return topics, origin
