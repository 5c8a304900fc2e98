"""``shadowd produce INPUT``: play a recorded drive into the topic rings (a desktop producer)."""

from __future__ import annotations

import argparse
import json

from ..core.signals import RAW_TOPIC, TOPICS


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("produce", help="play a recorded drive into the shared-memory rings, paced like a vehicle")
    p.add_argument("input", help="a replay input: CAN log (+ imu/ sidecar), CSV, MCAP or clip")
    p.add_argument("--platform", default="desktop", help="platform profile whose DBC mapping decodes CAN logs")
    p.add_argument("--speed", type=float, default=1.0, help="pace relative to real time (0: as fast as possible)")
    p.add_argument("--loops", type=int, default=1, help="play the drive this many times")
    p.add_argument("--ring", action="append", default=[], metavar="TOPIC=NAME",
                   help="ring segment per topic (default shadowd.<topic> for every topic of the input)")
    p.set_defaults(func=_do_produce)


def _do_produce(args: argparse.Namespace) -> int:
    from ..edges.platforms import load_platform
    from ..errors import ConfigError
    from ..producer import play
    from ..replay.inputs import read_input

    names = {}
    for item in args.ring:
        topic, sep, name = item.partition("=")
        if not sep or topic not in (*TOPICS, RAW_TOPIC):
            raise ConfigError(f"--ring {item!r}: use TOPIC=NAME with TOPIC one of {[*TOPICS, RAW_TOPIC]}")
        names[topic] = name
    drive = read_input(args.input, load_platform(args.platform))
    if not names:
        names = {t: f"shadowd.{t}" for t in drive.topics}
    written = play(drive.topics, names, speed=args.speed, loops=args.loops)
    print(json.dumps({"written": written}))
    return 0
