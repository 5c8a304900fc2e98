"""``shadowd status | reload | flush``: talk to the running service over its control socket."""

from __future__ import annotations

import argparse
import json
import os

from ..core.metrics import to_prometheus
from ..edges.control import DEFAULT_SOCKET, request


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    default = os.environ.get("SHADOWD_CONTROL_SOCKET", DEFAULT_SOCKET)
    status = subparsers.add_parser("status", help="show the running service's state (rates, drops, latency, spool, upload, config)")
    fmt = status.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the status tree as JSON")
    fmt.add_argument("--prometheus", action="store_true", help="print metrics in Prometheus text format")
    status.set_defaults(func=_do_status)
    reload = subparsers.add_parser("reload", help="re-read the config and apply pending bundles (like SIGHUP)")
    reload.set_defaults(func=_do_simple("reload"))
    flush = subparsers.add_parser("flush", help="seal pending clips now and push the spool to the uploader")
    flush.set_defaults(func=_do_simple("flush"))
    for p in (status, reload, flush):
        p.add_argument("--socket", default=default, help=f"control socket path (default {default}; env SHADOWD_CONTROL_SOCKET)")


def _do_status(args: argparse.Namespace) -> int:
    tree = request(args.socket, "status")
    if args.prometheus:
        print(to_prometheus(tree), end="")
    elif args.json:
        print(json.dumps(tree, indent=2, sort_keys=True))
    else:
        _print_human(tree)
    return 0


def _print_human(tree, indent: int = 0) -> None:
    for key, value in tree.items():
        if key == "__label__":
            continue
        if isinstance(value, dict):
            print(" " * indent + f"{key}:")
            _print_human(value, indent + 2)
        else:
            print(" " * indent + f"{key}: {value}")


def _do_simple(cmd: str):
    def _run(args: argparse.Namespace) -> int:
        result = request(args.socket, cmd)
        print(json.dumps(result, sort_keys=True) if not isinstance(result, str) else result)
        return 0

    return _run
