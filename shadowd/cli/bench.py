"""``shadowd bench <name> [--json]``: benchmarks that print JSON figures.

Benchmarks are discovered: every module ``shadowd/bench/<name>.py`` defines
``add_arguments(parser)`` (optional) and ``run(args) -> dict``. Each benchmark measures its
peers in the same run and reports ratios, because the machines are noisy.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil

from .. import bench as _bench_pkg


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark and print its figures as JSON")
    names = sorted(m.name for m in pkgutil.iter_modules(_bench_pkg.__path__) if not m.name.startswith("_"))
    sub = parser.add_subparsers(dest="bench_name", metavar="NAME", required=True)
    for name in names:
        module = importlib.import_module(f"shadowd.bench.{name}")
        p = sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else None)
        p.add_argument("--json", action="store_true", help="print one JSON object (the default output)")
        if hasattr(module, "add_arguments"):
            module.add_arguments(p)
        p.set_defaults(func=_make_runner(module))


def _make_runner(module):
    def _run(args: argparse.Namespace) -> int:
        figures = module.run(args)
        print(json.dumps(figures, indent=None if args.json else 2, sort_keys=False))
        return 0

    return _run
