"""``shadowd clip info | verify | dump | export --mcap | train-dict``: tools for clip files.

Glue only: reading/writing files and formatting; the format lives in shadowd/clip/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shadowd.errors import ClipError


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("clip", help="inspect, verify, dump and export clip files")
    sub = parser.add_subparsers(dest="clip_command", metavar="ACTION", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    def _dict_arg(p):
        p.add_argument("--dict", action="append", default=[], metavar="FILE",
                       help="zstd dictionary the clips were written with (repeatable)")

    p = sub.add_parser("info", help="provenance, window, causes, per-stream frames and bytes", formatter_class=fmt)
    p.add_argument("clip", type=Path)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _dict_arg(p)
    p.set_defaults(func=_do_info)

    p = sub.add_parser("verify", help="check clips fully; exit 1 naming what is wrong", formatter_class=fmt)
    p.add_argument("clips", type=Path, nargs="+")
    _dict_arg(p)
    p.set_defaults(func=_do_verify)

    p = sub.add_parser("dump", help="write streams as CSV for a quick look", formatter_class=fmt)
    p.add_argument("clip", type=Path)
    p.add_argument("--stream", help="only this stream (to stdout unless -o is given)")
    p.add_argument("-o", "--out", type=Path, help="directory for <stream>.csv files")
    _dict_arg(p)
    p.set_defaults(func=_do_dump)

    p = sub.add_parser("export", help="export to MCAP (protobuf schemas) for Foxglove", formatter_class=fmt)
    p.add_argument("clip", type=Path)
    p.add_argument("--mcap", type=Path, required=True, metavar="OUT", help="MCAP file to write")
    _dict_arg(p)
    p.set_defaults(func=_do_export)

    p = sub.add_parser("train-dict", help="train a zstd dictionary on clips (helps short clips)", formatter_class=fmt)
    p.add_argument("clips", type=Path, nargs="+")
    p.add_argument("-o", "--out", type=Path, required=True, help="dictionary file to write (.zdict)")
    p.add_argument("--size", type=int, default=65_536, help="dictionary size in bytes")
    p.set_defaults(func=_do_train)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ClipError(f"cannot read clip {str(path)!r}: {err.strerror}; check the path") from err


def _dicts(args) -> list:
    from shadowd.clip import load_dictionary

    return [load_dictionary(p) for p in args.dict]


def _load(args, path: Path):
    from shadowd.clip import decode_clip

    return decode_clip(_read(path), dictionaries=_dicts(args))


def clip_summary(data: bytes, dictionaries=None) -> dict:
    """What ``info`` shows, as a dict (stream bytes are the encoded channel sizes before zstd)."""
    import dataclasses

    from shadowd.clip import decode_clip, read_header
    from shadowd.clip.codec import decode_proto

    h = read_header(data)
    _, m = decode_proto(data, dictionaries=dictionaries)
    clip = decode_clip(data, dictionaries=dictionaries)
    streams = {}
    for s in m.streams:
        enc = s.can.ByteSize() if s.HasField("can") else sum(c.ByteSize() for c in s.channels)
        a = clip.streams[s.name]
        streams[s.name] = {"frames": int(s.frame_count), "raw_bytes": int(a.nbytes), "encoded_bytes": int(enc)}
    return {
        "size_bytes": h.size_bytes, "format_version": h.format_version, "checksum_sha256": h.checksum,
        "dictionary_id": h.dictionary_id, "body_bytes": h.raw_body_size_bytes,
        "provenance": dataclasses.asdict(clip.provenance),
        "t0_ns": clip.t0_ns, "t1_ns": clip.t1_ns, "duration_s": (clip.t1_ns - clip.t0_ns) / 1e9,
        "truncated": clip.truncated, "priority": clip.priority,
        "causes": [{"t_ns": c.t_ns, "trigger": c.trigger, "priority": c.priority, "score": c.score,
                    "values": c.causes} for c in clip.causes],
        "streams": streams,
    }


def _do_info(args) -> int:
    s = clip_summary(_read(args.clip), _dicts(args))
    if args.json:
        print(json.dumps(s, sort_keys=True))
        return 0
    p = s["provenance"]
    print(f"clip        {args.clip}  ({s['size_bytes']} bytes, format v{s['format_version']}, sha256 {s['checksum_sha256'][:16]}...)")
    print(f"vehicle     {p['vehicle_id']}  platform {p['platform']}  config v{p['config_version']}  "
          f"shadowd {p['software_version']}  schema v{p['schema_version']}")
    print(f"model       sha256 {p['model_sha256'] or '-'}")
    print(f"window      {s['t0_ns']} .. {s['t1_ns']} ns  ({s['duration_s']:.3f} s){'  TRUNCATED' if s['truncated'] else ''}"
          f"  priority {s['priority']}")
    for t in p["triggers"]:
        print(f"trigger     {t['name']}: {t['expr']}  {json.dumps(t['params'], sort_keys=True)}")
    for c in s["causes"]:
        print(f"cause       {c['trigger']} at {c['t_ns']} ns  score {c['score']:g}  priority {c['priority']}"
              f"  {json.dumps(c['values'], sort_keys=True)}")
    print(f"{'stream':<14}{'frames':>9}{'raw bytes':>12}{'encoded':>10}")
    for name, st in s["streams"].items():
        print(f"{name:<14}{st['frames']:>9}{st['raw_bytes']:>12}{st['encoded_bytes']:>10}")
    return 0


def _do_verify(args) -> int:
    from shadowd.clip import verify_clip

    dicts = _dicts(args)
    bad = 0
    for path in args.clips:
        try:
            h = verify_clip(_read(path), dictionaries=dicts)
            print(f"ok    {path}  v{h.format_version}  {h.size_bytes} bytes  sha256 {h.checksum}")
        except ClipError as err:
            bad += 1
            print(f"BAD   {path}: {err}")
    return 1 if bad else 0


def _do_dump(args) -> int:
    from shadowd.clip.csv_dump import write_csv

    clip = _load(args, args.clip)
    names = list(clip.streams)
    if args.stream:
        if args.stream not in clip.streams:
            raise ClipError(f"clip has no stream {args.stream!r}; it has {', '.join(names) or 'none'}")
        names = [args.stream]
    if args.out is None:
        if not args.stream:
            raise ClipError("dump of every stream needs -o DIR (one CSV per stream); or pick one with --stream NAME")
        try:
            write_csv(args.stream, clip.streams[args.stream], sys.stdout)
            sys.stdout.flush()
        except BrokenPipeError:  # `| head`: the reader has seen enough
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        with open(args.out / f"{name}.csv", "w", newline="") as f:
            rows = write_csv(name, clip.streams[name], f)
        print(f"{args.out / f'{name}.csv'}  {rows} rows")
    return 0


def _do_export(args) -> int:
    from shadowd.clip.mcap_export import write_mcap

    clip = _load(args, args.clip)
    n = write_mcap(clip, args.mcap)
    print(f"{args.mcap}  {n} messages on {len(clip.streams) + bool(clip.causes)} channels")
    return 0


def _do_train(args) -> int:
    from shadowd.clip.dictionary import train_dictionary

    d = train_dictionary([_read(p) for p in args.clips], size_bytes=args.size)
    args.out.write_bytes(d.as_bytes())
    print(f"{args.out}  dictionary id {d.dict_id()}  {len(d.as_bytes())} bytes from {len(args.clips)} clips")
    return 0
